"""A task becoming done, the SQL twin of ``finish_done`` and ``unblock_dependents`` in
``lua/lib.lua``: the one path to done for a completion (``ops.complete``), an accepted
review (``review.decide``) and a plan parent whose last subtask is done (``plan.settle``).
"""

from __future__ import annotations

from typing import Any

from . import bidding as file_bidding
from .states import enter
from .tx import Row, Tx, load_task, set_task


def unblock_dependents(tx: Tx, tid: str) -> list[str]:
    """The tasks waiting on ``tid`` (just done) that waited only on it: each becomes queued
    (audited "ready"), or, with a bid window, has its window opened (it stays blocked:
    bidding first). Returns the ids made ready."""
    out = []
    names = tx.all("SELECT id FROM dependents WHERE ns = :ns AND dep = :id", id=tid)
    dependents = sorted((r for r in (load_task(tx, n[0]) for n in names) if r), key=lambda r: int(r["seq"]))
    for d in dependents:
        if d["state"] != "blocked":
            continue
        set_task(tx, d["id"], waiting=d["waiting"] - 1)
        if d["waiting"] - 1 > 0:
            continue
        if d["bid_window_ms"] > 0 and d["bid_close_ms"] <= 0:
            file_bidding.open_auction(tx, d["id"], d["bid_window_ms"], tid)
        else:
            enter(tx, d, "queued")
            tx.audit("ready", d["id"], data={"after": tid})
            out.append(d["id"])
    return out


def finish_done(tx: Tx, t: Row, **fields: Any) -> list[str]:
    """``t`` done with ``fields`` written, its dependents unblocked; returns the ids made ready."""
    enter(tx, t, "done", **fields)
    return unblock_dependents(tx, t["id"])
