"""The agent CLI's bidding: ``claimroom bid`` and the bids ``claimroom show`` adds to a task
with a bidding window (core/bidding.py says what bidding is)."""

from __future__ import annotations

import argparse
import time

from .errors import LeaseLost, NothingToClaim
from .models import Task
from .output import Printer
from .safetext import shown
from .store import Store


async def bid(a: argparse.Namespace, s: Store, out: Printer, agent: str) -> None:
    """``claimroom bid`` as ``agent`` (the token's, when there is one)."""
    placed = await s.bid(a.task, agent, a.cost, ttl_s=a.ttl)
    if a.wait is None:
        out.done(
            {"bid": placed.to_json()},
            f"{shown(agent)} bid {placed.cost:g} on {shown(a.task)}",
        )
        return
    got = await s.wait_bid(a.task, agent, wait_s=a.wait)
    if got.status == "won" and got.claim is not None:
        out.claim(got.claim)
        return
    if got.status == "won":
        raise LeaseLost(f"lease lost: {a.task} was won by {agent}, but that claim has ended")
    if got.status == "lost":
        raise NothingToClaim(f"lost: {got.winner} won {a.task}")
    if got.status == "queued":
        raise NothingToClaim(f"{a.task} went to its queue: no bid could take it at the window's end")
    raise NothingToClaim(f"{a.task}'s bidding window had not closed within --wait")


async def show(task: Task, s: Store, out: Printer) -> None:
    """``show TASK`` for a task with a bidding window: the task, then its bids."""
    bids = await s.bids(task.id)
    if out.json_mode:
        out.done({**task.to_json(), "bids": [b.to_json() for b in bids]}, "")
        return
    out.task(task)
    left = (task.bid_close_ms - int(time.time() * 1000)) / 1000
    window = f"window {task.bid_window_ms / 1000:g}s"
    if task.bid_winner:
        out.done({}, f"{'auction':<12}{window}, won by {shown(task.bid_winner)}")
    elif bids or (task.state.value == "blocked" and task.bid_close_ms):
        out.done({}, f"{'auction':<12}{window}, closes in {max(left, 0):.1f}s, {len(bids)} bids")
    for rank, b in enumerate(bids, 1):
        out.done({}, f"{'  bid ' + str(rank):<12}{shown(b.agent)} cost {b.cost:g}")
