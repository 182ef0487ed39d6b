"""A task entering a state in the file store: ``lib.lua``'s ``leave``/``enter`` as one UPDATE
(the state indexes are partial indexes over the state column), with the claim index
(heads, capsigs, queues; ``ready_add``/``ready_remove`` in ``lib.lua``) and the finished
index (``retention.entered``) kept by hand as the Lua keeps them.
"""

from __future__ import annotations

from typing import Any

from . import affinity as file_affinity
from . import retention as file_retention
from .tx import Row, Tx, count_sig

# What choosing a task to claim reads (enter's needs and the ordering): the whole row costs
# SQLite and Python a little per column, and is read once, when the claim is made.
PICK = "id, state, priority, seq, attempts, assigned, queue, requires, steal_ms"

# The best claimable task of one (queue, signature): one seek in the tasks_ready index;
# HEAD_OF reads the index alone (it holds priority and seq), HEAD_TASK the row too.
HEAD_OF = (
    "SELECT priority, seq FROM tasks WHERE ns = :ns AND queue = :q AND requires = :s"
    " AND state = 'queued' AND assigned = '' AND steal_ms = 0 ORDER BY priority DESC, seq LIMIT 1"
)
HEAD_TASK = HEAD_OF.replace("priority, seq", PICK, 1)


def enter(
    tx: Tx, t: Row, new: str, assigned: str | None = None, returning: bool = False, **fields: Any
) -> Row | None:
    """Put a task into a state, setting ``fields`` in the same UPDATE; the partial indexes
    follow the row, the claim index is kept here (lib.lua's leave and enter). ``t`` is the
    row as it was (its state, queue, requires, priority, seq and assigned are read). With
    ``returning``, the row as it now is."""
    who = t["assigned"] if assigned is None else assigned
    # Affinity (file_affinity): a task waiting for its owner is in no ready set; one
    # entering queued, unassigned, may be routed to its key's owner instead of one.
    was_ready = t["state"] == "queued" and not t["assigned"]
    waited = was_ready and file_affinity.waits_for_owner(tx, t)
    routed = False
    if new == "queued" and not who and "steal_ms" not in fields:
        fields = {**file_affinity.route(tx, t), **fields}
        routed = fields.get("steal_ms", 0) > 0
    elif waited:
        fields.setdefault("steal_ms", 0)
    file_retention.entered(tx, t, new)
    cols = "".join(f", {k} = :{k}" for k in fields)
    row = tx.one(
        f"UPDATE tasks SET state = :state_, updated_ms = :now_, assigned = :who_{cols}"
        f" WHERE ns = :ns AND id = :id_{' RETURNING *' if returning else ''}",
        state_=new, now_=tx.now, who_=who, id_=t["id"], **fields,
    )  # fmt: skip
    if was_ready and not waited:
        ready_left(tx, t["queue"], t["requires"])
    if t["state"] == "blocked" and new != "blocked":  # lib.lua's drop_auction: its window ends
        tx.run("DELETE FROM auctions WHERE ns = :ns AND task = :id", id=t["id"])
        tx.run("DELETE FROM bids WHERE ns = :ns AND task = :id", id=t["id"])
    if new == "queued" and not routed:
        if who:
            tx.claimable = True  # for that agent
        else:
            ready_entered(tx, t["queue"], t["requires"], t["priority"], t["seq"])
    if t["state"] in _ENDED and new not in _ENDED:  # unfinished again: its plan parent counts it
        tx.run(_PLAN_REOPEN, id=t["id"])
    if new in _FINISHED and t["state"] not in _FINISHED:
        count_sig(tx, t["requires"], -1)
    elif t["state"] in _FINISHED and new not in _FINISHED:
        count_sig(tx, t["requires"], 1)  # unfinished again (a cascade's restore)
    if new in _ENDED and t["state"] not in _ENDED and tx.ended is not None:
        tx.ended(tx, t["id"], new)  # its plan parent's rollup (file_plan.settle)
    return row


_FINISHED = ("done", "cancelled")
_ENDED = ("done", "dead", "cancelled")
_PLAN_REOPEN = (
    "UPDATE tasks SET plan_left = plan_left + 1 WHERE ns = :ns"
    " AND id = (SELECT plan FROM tasks WHERE ns = :ns AND id = :id)"
)


def ready_entered(tx: Tx, queue: str, sig: str, priority: int, seq: int) -> None:
    """A task became claimable in (queue, sig)."""
    if tx.run("INSERT OR IGNORE INTO capsigs (ns, queue, sig) VALUES (:ns, :q, :s)", q=queue, s=sig).rowcount:
        tx.run("INSERT OR IGNORE INTO queues (ns, queue) VALUES (:ns, :q)", q=queue)
    if tx.one("SELECT 1 FROM paused WHERE ns = :ns AND queue = :q", q=queue) is None:
        tx.run(
            "INSERT INTO heads (ns, sig, queue, priority, seq) VALUES (:ns, :s, :q, :p, :seq)"
            " ON CONFLICT (ns, sig, queue) DO UPDATE SET priority = excluded.priority, seq = excluded.seq"
            " WHERE excluded.priority > heads.priority"
            " OR (excluded.priority = heads.priority AND excluded.seq < heads.seq)",
            s=sig, q=queue, p=priority, seq=seq,
        )  # fmt: skip
        tx.claimable = True


# The head of an open (queue, sig) follows its best task, in one statement; no row when the
# pair has no task left or the queue is paused.
_HEAD_FOLLOWS = (
    f"UPDATE heads SET (priority, seq) = ({HEAD_OF}) WHERE ns = :ns AND sig = :s AND queue = :q"
    f" AND EXISTS ({HEAD_OF}) RETURNING 1"
)


def ready_left(tx: Tx, queue: str, sig: str) -> None:
    """A task of (queue, sig) stopped being claimable (its row already says so)."""
    if tx.one(_HEAD_FOLLOWS, q=queue, s=sig) is not None or tx.one(HEAD_OF, q=queue, s=sig) is not None:
        return
    tx.run("DELETE FROM heads WHERE ns = :ns AND sig = :s AND queue = :q", s=sig, q=queue)
    tx.run("DELETE FROM capsigs WHERE ns = :ns AND queue = :q AND sig = :s", q=queue, s=sig)
    if tx.one("SELECT 1 FROM capsigs WHERE ns = :ns AND queue = :q LIMIT 1", q=queue) is None:
        tx.run("DELETE FROM queues WHERE ns = :ns AND queue = :q", q=queue)


def pause_heads(tx: Tx, queue: str, pause: bool) -> None:
    """A queue paused leaves the head index, resumed it comes back: one row per signature."""
    for (sig,) in tx.all("SELECT sig FROM capsigs WHERE ns = :ns AND queue = :q", q=queue):
        if pause:
            tx.run("DELETE FROM heads WHERE ns = :ns AND sig = :s AND queue = :q", s=sig, q=queue)
            continue
        head = tx.one(HEAD_OF, q=queue, s=sig)
        if head is not None:
            tx.run(
                "INSERT OR REPLACE INTO heads (ns, sig, queue, priority, seq) VALUES (:ns, :s, :q, :p, :seq)",
                s=sig, q=queue, p=head["priority"], seq=head["seq"],
            )  # fmt: skip
    if not pause:
        tx.claimable = True
