"""Market-based bidding: what a bid is, how bids rank, and what an auction's end gives.

A task added with ``bid_window_s`` opens a bidding window once it is ready (at its add
when it waits on nothing, else when its last dependency is done); the window opens once
in a task's life: a task requeued, retried or restored later goes to its queue. While open
the task is ``blocked``; agents bid a cost, and at the window's end (closed by the next
claim or reaper pass on the store's clock) the lowest bid wins the claim atomically, ties
going to the earliest bid, then to the agent's name (``rank``). A bidder that can no longer
take the task then is passed over for the next one; with no bid left the task is queued.

Both stores keep a bid as ``"cost|at_ms|ttl_ms"`` (``encoded``); the Lua twin of ``rank``
is ``close_one`` in ``lua/lib.lua``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from . import constants
from .errors import BadInput
from .models import Claim


@dataclass(frozen=True)
class Bid:
    """One agent's standing offer in a window: ``cost`` (lower wins), placed at ``at_ms``
    (store clock; a new bid by the same agent replaces the old one and its time), and
    the lease ``ttl_ms`` its claim gets if it wins."""

    task: str
    agent: str
    cost: float
    at_ms: int
    ttl_ms: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Auction:
    """An open bidding window: its task, when it closes (store clock) and its bids, best first."""

    task: str
    title: str
    queue: str
    close_ms: int
    bids: tuple[Bid, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "title": self.title,
            "queue": self.queue,
            "close_ms": self.close_ms,
            "bids": [b.to_json() for b in self.bids],
        }


@dataclass(frozen=True)
class Outcome:
    """What a window came to for one bidder (``bid --wait``).

    ``status``: "open" (not closed yet), "won" (``claim`` is the won claim, handed over
    now; None when it already ended), "lost" (``winner`` won it), "queued" (no eligible
    bid: the task went to its queue)."""

    task: str
    agent: str
    status: str
    winner: str = ""
    close_ms: int = 0
    claim: Claim | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "agent": self.agent,
            "status": self.status,
            "winner": self.winner,
            "close_ms": self.close_ms,
            "claim": None if self.claim is None else self.claim.to_json(),
        }


def cost(value: Any) -> float:
    """A bid's cost: a finite number from 0 to ``max_bid_cost``; ``BadInput`` else."""
    if isinstance(value, bool):
        raise BadInput(f"cost must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"cost must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(number) or number < 0:
        raise BadInput(f"cost must be 0 or more, got {str(value)[:40]!r}")
    if number > constants.max_bid_cost:
        raise BadInput(f"cost must be at most {constants.max_bid_cost:g}")
    return number


def window_ms(value: Any) -> int:
    """A bidding window in seconds, returned in ms: more than 0, at most ``max_bid_window_s``."""
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"bid window must be a number of seconds, got {str(value)[:40]!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise BadInput(f"bid window must be more than 0 seconds, got {str(value)[:40]!r}")
    if seconds > constants.max_bid_window_s:
        raise BadInput(f"bid window must be at most {constants.max_bid_window_s:.0f} seconds")
    return max(1, round(seconds * 1000))


def encoded(cost_: float, at_ms: int, ttl_ms: int) -> str:
    """A bid as both stores keep it."""
    return f"{cost_!r}|{at_ms}|{ttl_ms}"


def decoded(task: str, agent: str, raw: str) -> Bid:
    c, at, ttl = raw.split("|")
    return Bid(task, agent, float(c), int(at), int(ttl))


def rank(bids: Iterable[Bid]) -> list[Bid]:
    """Bids best first: the lowest cost, then the earliest, then the agent's name."""
    return sorted(bids, key=lambda b: (b.cost, b.at_ms, b.agent))


class _Board(Protocol):
    """What ``wait_outcome`` needs of a store."""

    async def bid_outcome(self, task: str, agent: str) -> Outcome: ...
    async def now_ms(self) -> int: ...
    async def reap(self) -> Any: ...


async def wait_outcome(store: _Board, task: str, agent: str, wait_s: float) -> Outcome:
    """The outcome once the window closed, or as it is when ``wait_s`` ran out.

    The window's end is known (its close time, on the store's clock), so the waiter wakes
    then rather than on a hint; a window still open past it is closed by a reaper pass run
    here, so the outcome never waits for another process (and never depends on one: rule
    8). Before its window opens (dependencies not done), it looks every ``wait_recheck_s``.
    Many waits may share one store (an MCP server's): each holds no connection while it waits."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    reaped_at = -1
    while True:
        out = await store.bid_outcome(task, agent)
        left = deadline - loop.time()
        if out.status not in ("open", "waiting") or left <= 0:
            return out
        pause = min(left, constants.wait_recheck_s)
        if out.status == "open":
            now = await store.now_ms()
            if now >= out.close_ms and reaped_at != now:
                reaped_at = now
                await store.reap()
                continue
            pause = min(pause, max(0.0, (out.close_ms - now) / 1000) + 0.002)
        await asyncio.sleep(pause)
