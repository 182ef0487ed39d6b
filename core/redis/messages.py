"""The Redis backend's reads of messages (``lua/send-1.lua`` and ``lua/inbox-1.lua`` write
them): unread counts for views and the news a waiting claimer looks for, each a pipeline
of a few O(log n) commands per agent."""

from __future__ import annotations

import json
from typing import Any

from .. import constants as C
from ..messages import from_fields
from ..models import Message


def messages_of(reply: list[Any]) -> list[Message]:
    """The messages of an inbox script's reply (after its status): JSON, read flag, ..."""
    flat = reply[1:]
    return [
        from_fields(json.loads(raw), read == "1") for raw, read in zip(flat[::2], flat[1::2], strict=True)
    ]


async def unread(r: Any, ns: str, agents: list[str]) -> dict[str, int]:
    """Unread messages per agent: the inbox's size less its read marks (they are exactly
    its ids), plus the broadcasts less the agent's marks of those still in the log."""
    first = await r.zrange(C.broadcasts_key(ns), 0, 0, withscores=True)
    low = f"{int(first[0][1])}" if first else "+inf"
    pipe = r.pipeline(transaction=False)
    pipe.zcard(C.broadcasts_key(ns))
    for a in agents:
        pipe.zcard(C.inbox_key(ns, a))
        pipe.zcard(C.inbox_read_key(ns, a))
        pipe.zcount(C.broadcast_read_key(ns, a), low, "+inf")
    got = [int(x) for x in await pipe.execute()]
    sent = got[0]
    return {
        a: max(0, got[1 + 3 * i] - got[2 + 3 * i]) + max(0, sent - got[3 + 3 * i])
        for i, a in enumerate(agents)
    }


async def news(r: Any, ns: str, agent: str, after: int) -> tuple[int, int]:
    """(the newest message id, unread messages to ``agent`` with an id above ``after``)."""
    low = f"({after}"
    pipe = r.pipeline(transaction=False)
    pipe.get(C.seq_key(ns, "message"))
    for key in (C.inbox_key(ns, agent), C.inbox_read_key(ns, agent)):
        pipe.zcount(key, low, "+inf")
    for key in (C.broadcasts_key(ns), C.broadcast_read_key(ns, agent)):
        pipe.zcount(key, low, "+inf")
    top, direct, direct_read, sent, sent_read = await pipe.execute()
    return int(top or 0), max(0, int(direct) - int(direct_read)) + max(0, int(sent) - int(sent_read))


async def export(
    r: Any, ns: str, agents: list[str]
) -> tuple[list[dict[str, str]], list[dict[str, str]], str]:
    """The messages, read marks and message counter of a board dump (``core/dump.py``),
    read in one MULTI: every box ``messages:boxes`` names, the read marks of ``agents``
    and of every box's agent."""
    boxes = list(await r.zrange(C.message_boxes_key(ns), 0, -1))
    names = sorted(set(agents) | {b for b in boxes if b != "*"})
    pipe = r.pipeline(transaction=True)
    pipe.get(C.seq_key(ns, "message"))
    for b in boxes:
        pipe.zrange(C.broadcasts_key(ns) if b == "*" else C.inbox_key(ns, b), 0, -1)
    for a in names:
        pipe.zrange(C.inbox_read_key(ns, a), 0, -1)
        pipe.zrange(C.broadcast_read_key(ns, a), 0, -1)
    top, *rest = await pipe.execute()
    found = [json.loads(raw) for box in rest[: len(boxes)] for raw in box]
    messages = [
        {
            "id": str(m["id"]),
            "sender": m["sender"],
            "to": m.get("to") or "",
            "text": m["text"],
            "at_ms": str(m["at_ms"]),
        }
        for m in sorted(found, key=lambda m: int(m["id"]))
    ]
    marks = rest[len(boxes) :]
    reads = [
        {"agent": a, "id": mid}
        for i, a in enumerate(names)
        for mid in sorted({*marks[2 * i], *marks[2 * i + 1]}, key=int)
    ]
    return messages, reads, str(top or 0)


def queue_import(pipe: Any, ns: str, board: dict[str, Any], base: int) -> None:
    """Queue the writes of a dump's messages and read marks, ids shifted past ``base`` (the
    destination's message counter), as ``lua/send-1.lua`` and ``lua/inbox-1.lua`` keep them."""
    broadcast: set[int] = set()
    for m in board.get("messages", []):
        mid, to = int(m["id"]) + base, m.get("to", "")
        body = {"id": mid, "sender": m["sender"], "to": to, "text": m["text"], "at_ms": int(m["at_ms"])}
        pipe.zadd(C.inbox_key(ns, to) if to else C.broadcasts_key(ns), {json.dumps(body): mid})
        pipe.zadd(C.message_boxes_key(ns), {to or "*": int(m["at_ms"])}, lt=True)
        if not to:
            broadcast.add(mid)
    for rd in board.get("reads", []):
        mid = int(rd["id"]) + base
        key = C.broadcast_read_key if mid in broadcast else C.inbox_read_key
        pipe.zadd(key(ns, rd["agent"]), {str(mid): mid})
    top = int(board.get("counters", {}).get("message") or 0)
    if top:
        pipe.incrby(C.seq_key(ns, "message"), top)
