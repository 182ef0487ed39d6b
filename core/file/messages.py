"""The file store's messages: the SQL twins of ``lua/send-1.lua``, ``lua/inbox-1.lua`` and
the message part of ``lua/retain-1.lua`` (the why is in ``core/messages.py``).

A message is a row of ``messages`` (recipient '' for a broadcast); a read mark a row of
``message_reads``, deleted with its message, so an agent's read marks are exactly those of
messages still kept and counting unread is counting rows.
"""

from __future__ import annotations

from typing import Any

from .. import constants as C
from ..errors import ErrorCode
from ..messages import OPERATOR, from_fields, is_operator
from ..models import Message
from .tx import Refused, Row, Tx

_MINE = "m.ns = :ns AND m.recipient IN (:a, '')"
_READ = "EXISTS (SELECT 1 FROM message_reads r WHERE r.ns = m.ns AND r.agent = :a AND r.id = m.id)"


def _agent_exists(tx: Tx, name: str) -> bool:
    return tx.one("SELECT 1 FROM agents WHERE ns = :ns AND name = :a", a=name) is not None


def _delete(tx: Tx, ids: list[int]) -> int:
    """Delete messages and their read marks (by every agent: the marks of one broadcast)."""
    for start in range(0, len(ids), 500):
        part = {f"i{k}": mid for k, mid in enumerate(ids[start : start + 500])}
        marks = ", ".join(":" + k for k in part)
        tx.run(f"DELETE FROM messages WHERE ns = :ns AND id IN ({marks})", **part)
        tx.run(f"DELETE FROM message_reads WHERE ns = :ns AND id IN ({marks})", **part)
    return len(ids)


def send(tx: Tx, sender: str, to: str, text: str) -> Message:
    operator = is_operator(sender)
    if not operator and not _agent_exists(tx, sender):
        raise Refused(ErrorCode.NO_AGENT, sender)
    if to and not _agent_exists(tx, to):
        raise Refused(ErrorCode.NO_AGENT, to)
    mid = tx.incr("message")
    tx.run(
        "INSERT INTO messages (ns, id, sender, recipient, text, at_ms) VALUES (:ns, :id, :s, :to, :t, :now)",
        id=mid,
        s=sender,
        to=to,
        t=text,
        now=tx.now,
    )
    cap = C.inbox_max if to else C.broadcasts_max
    row = tx.one("SELECT COUNT(*) FROM messages WHERE ns = :ns AND recipient = :to", to=to)
    over = int(row[0]) - cap if row else 0
    if over > 0:
        old = tx.all(
            "SELECT id FROM messages WHERE ns = :ns AND recipient = :to ORDER BY id LIMIT :n", to=to, n=over
        )
        _delete(tx, [int(r[0]) for r in old])
    tx.claimable = True  # waiting claimers look at their inbox (a broadcast: all of them)
    data: dict[str, Any] = {"from": sender, "to": to or "*", "id": mid, "size": len(text.encode())}
    if operator:
        tx.audit("message", operator=sender[len(OPERATOR) :], data=data)
    else:
        tx.audit("message", agent=sender, data=data)
    return Message(mid, sender, to, text, tx.now)


def _message(row: Row, read: bool) -> Message:
    return from_fields(
        {
            "id": row["id"],
            "sender": row["sender"],
            "to": row["recipient"],
            "text": row["text"],
            "at_ms": row["at_ms"],
        },
        read,
    )


def inbox(tx: Tx, agent: str, unread: bool, limit: int, mark: bool) -> list[Message]:
    if not _agent_exists(tx, agent):
        raise Refused(ErrorCode.NO_AGENT, agent)
    if unread:
        rows = tx.all(
            f"SELECT m.*, 0 AS seen FROM messages m WHERE {_MINE} AND NOT {_READ} ORDER BY m.id LIMIT :n",
            a=agent,
            n=limit,
        )
    else:
        rows = tx.all(
            f"SELECT m.*, {_READ} AS seen FROM messages m WHERE {_MINE} ORDER BY m.id DESC LIMIT :n",
            a=agent,
            n=limit,
        )
        rows.reverse()
    out = [_message(r, bool(r["seen"])) for r in rows]
    if mark:
        fresh = [m.id for m in out if not m.read]
        for mid in fresh:
            tx.run(
                "INSERT OR IGNORE INTO message_reads (ns, agent, id) VALUES (:ns, :a, :id)", a=agent, id=mid
            )
        tx.changed = tx.changed or bool(fresh)  # views' unread counts (the hints channel's twin)
    return out


def unread(tx: Tx, agents: list[str]) -> dict[str, int]:
    """Unread per agent: its messages and the broadcasts, less its read marks (exactly those
    of messages still kept): three index counts each."""
    sent = tx.one("SELECT COUNT(*) FROM messages WHERE ns = :ns AND recipient = ''")
    broadcasts = int(sent[0]) if sent else 0
    out = {}
    for a in agents:
        direct = tx.one("SELECT COUNT(*) FROM messages WHERE ns = :ns AND recipient = :a", a=a)
        read = tx.one("SELECT COUNT(*) FROM message_reads WHERE ns = :ns AND agent = :a", a=a)
        out[a] = max(0, (int(direct[0]) if direct else 0) + broadcasts - (int(read[0]) if read else 0))
    return out


def news(tx: Tx, agent: str, after: int) -> tuple[int, int]:
    """(the newest message id, unread messages to ``agent`` with an id above ``after``)."""
    row = tx.one(
        f"SELECT COUNT(*) FROM messages m WHERE {_MINE} AND m.id > :after AND NOT {_READ}",
        a=agent,
        after=after,
    )
    return tx.counter("message"), int(row[0]) if row else 0


def trim(tx: Tx, horizon_ms: int) -> tuple[int, bool]:
    """Retention: messages older than the audit trail's horizon (-1: none), a batch at a
    time; (how many went, whether more are due)."""
    if horizon_ms < 0:
        return 0, False
    rows = tx.all(
        "SELECT id FROM messages WHERE ns = :ns AND at_ms < :cut ORDER BY at_ms LIMIT :n",
        cut=tx.now - horizon_ms,
        n=C.retention_messages_batch,
    )
    n = _delete(tx, [int(r[0]) for r in rows])
    return n, n >= C.retention_messages_batch


def dumped(tx: Tx) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The messages and read marks of a board dump (``core/dump.py``), oldest first."""
    messages = [
        {
            "id": str(r["id"]),
            "sender": r["sender"],
            "to": r["recipient"],
            "text": r["text"],
            "at_ms": str(r["at_ms"]),
        }
        for r in tx.all("SELECT * FROM messages WHERE ns = :ns ORDER BY id")
    ]
    reads = [
        {"agent": r["agent"], "id": str(r["id"])}
        for r in tx.all("SELECT agent, id FROM message_reads WHERE ns = :ns ORDER BY agent, id")
    ]
    return messages, reads


def load(tx: Tx, messages: list[dict[str, str]], reads: list[dict[str, str]], top: int) -> None:
    """Write a dump's messages and read marks, their ids shifted past this board's own; the
    counter moves on by the dump's ``top``."""
    base = tx.counter("message")
    for m in messages:
        tx.run(
            "INSERT INTO messages (ns, id, sender, recipient, text, at_ms)"
            " VALUES (:ns, :id, :s, :to, :t, :at)",
            id=int(m["id"]) + base,
            s=m["sender"],
            to=m.get("to", ""),
            t=m["text"],
            at=int(m["at_ms"]),
        )
    for r in reads:
        tx.run(
            "INSERT OR IGNORE INTO message_reads (ns, agent, id) VALUES (:ns, :a, :id)",
            a=r["agent"],
            id=int(r["id"]) + base,
        )
    tx.incr("message", top)
