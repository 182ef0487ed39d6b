"""The file store's plan rollup: the SQL twins of ``plan_settle`` and
``plan_complete`` in ``lua/lib.lua`` (the why is written there).

``states.enter`` calls ``settle`` (through ``Tx.ended``, which the runner sets: this module
sits above ``states``) as a task ends (done, dead, cancelled), inside that state change as
``lib.lua``'s enter does: O(1) per subtask that ends, its parent rolling up into its own
parent in turn (nesting is capped at ``max_plan_depth`` when plans are added).
"""

from __future__ import annotations

from . import cascade as file_cascade
from .finish import unblock_dependents
from .states import enter
from .tx import Row, Tx, load_task, set_task


def settle(tx: Tx, tid: str, new: str) -> None:
    """Task ``tid`` has just entered ``new`` (done, dead or cancelled): roll it up into its
    plan parent (``Tx.ended``, called by ``states.enter``)."""
    row = tx.one("SELECT plan, reason FROM tasks WHERE ns = :ns AND id = :id", id=tid)
    if row is None or not row["plan"]:
        return
    p = load_task(tx, row["plan"])
    if p is None:
        return  # retention removed it (a parent that died long ago)
    pid, left = p["id"], p["plan_left"] - 1
    set_task(tx, pid, plan_left=left)
    waits = p["state"] == "blocked" and bool(p["plan_wait"])
    if new == "done":
        if waits and left <= 0:
            enter(tx, p, "done", plan_wait=0, progress=1.0)
            tx.audit("plan-done", pid, data={"after": tid})
            unblock_dependents(tx, pid)
        return
    why = f"subtask {tid} {'died' if new == 'dead' else 'cancelled'}: {row['reason']}"
    if waits:
        enter(tx, p, "dead", plan_wait=0, reason=why)
        tx.audit("plan-dead", pid, data={"reason": why, "subtask": tid})
        file_cascade.cancel(tx, pid)
    elif p["state"] == "claimed" and tx.rolling_back != pid:  # the planner works on: it ends dead
        tx.run(
            "UPDATE tasks SET plan_failed = :why WHERE ns = :ns AND id = :id AND plan_failed = ''",
            why=why,
            id=pid,
        )


def complete(tx: Tx, t: Row, result: str) -> str | None:
    """A planner completing its claim on plan parent ``t``: dead when a subtask already
    ended dead or cancelled, blocked while subtasks are unfinished; None: an ordinary
    completion (nothing done here)."""
    if t["plan_failed"]:
        enter(tx, t, "dead", result=result, reason=t["plan_failed"], plan_failed="")
        return "dead"
    if t["plan_left"] > 0:
        enter(tx, t, "blocked", result=result, plan_wait=1)
        return "blocked"
    return None
