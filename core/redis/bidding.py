"""The Redis backend's side of bidding (core/bidding.py): the bid and outcome scripts'
replies, and the open auctions read for views (a plain pipelined read, never a script)."""

from __future__ import annotations

from typing import Any

from .. import constants as C
from ..bidding import Auction, Bid, Outcome, decoded, rank
from ..models import Claim, Task


def outcome(task: str, agent: str, reply: list[Any]) -> Outcome:
    """The ``won`` script's reply as an ``Outcome``."""
    _, status, winner, close, flat = reply
    claim = None
    if flat:
        t = Task.from_fields(dict(zip(flat[::2], flat[1::2], strict=True)), task)
        claim = Claim(t, t.token, t.deadline_ms)
    return Outcome(task, agent, str(status), str(winner), int(close), claim)


async def auctions(r: Any, ns: str, limit: int) -> list[Auction]:
    """The open windows closing first, at most ``limit``, each with its bids best first."""
    entries = await r.zrange(C.auctions_key(ns), 0, limit - 1, withscores=True)
    if not entries:
        return []
    pipe = r.pipeline(transaction=False)
    for tid, _ in entries:
        pipe.hmget(C.task_key(ns, tid), "state", "title", "queue", "waiting")
        pipe.hgetall(C.bids_key(ns, tid))
    replies = await pipe.execute()
    out = []
    for i, (tid, close) in enumerate(entries):
        (state, title, queue, waiting), bids = replies[2 * i], replies[2 * i + 1]
        if state != "blocked" or int(waiting or 0) > 0:
            continue  # left its window meanwhile (an operator's cancel): the next close drops it
        ranked = rank(decoded(tid, agent, raw) for agent, raw in bids.items())
        out.append(Auction(tid, title or "", queue or "", int(close), tuple(ranked)))
    return out


async def bids(r: Any, ns: str, task: str) -> list[Bid]:
    """One window's bids, best first ([] when it has none or is not open)."""
    found = await r.hgetall(C.bids_key(ns, task))
    return rank(decoded(task, agent, raw) for agent, raw in found.items())


def bid_of(task: str, agent: str, cost: float, ttl_ms: int, reply: list[Any]) -> tuple[Bid, int]:
    """The ``bid`` script's reply: the bid as stored and the window's close time."""
    return Bid(task, agent, cost, int(reply[2]), ttl_ms), int(reply[1])
