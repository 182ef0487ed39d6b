"""The file store's cascades: the SQL twins of ``cascade_cancel``, ``cascade_run``,
``restore_one`` and ``restore_run`` in ``lua/lib.lua`` (the why is written there).

A task that ends dead or cancelled cancels the blocked tasks that depend on it, and
theirs, in its own transaction, looking at no more than ``cascade_batch`` tasks (rule 10,
counted on ``Tx.cascade_left``); what is left waits in the ``cascades`` table (kind
``cancel``) for the reaper's pass. The walk consumes the ``dependents`` rows; a task it
cancels records ``cancelled_by``, and a retry with restore walks those back (kind
``restore`` for what is left over).

``ops`` and ``admin`` call in here; this module builds on ``tx`` and ``states`` only.
"""

from __future__ import annotations

import re

from .states import enter
from .tx import Row, Tx, load_task, set_task, split

OVER = ("dead", "cancelled")
CANCEL, RESTORE = "cancel", "restore"


# The root cause inside a cascade's reason, as lib.lua's patterns read it.
_ROOT = (re.compile(r"\((.+)\)$", re.S), re.compile(r"^dependency (.+)$", re.S))


def reason(dep: str, state: str, why: str, cancelled_by: str) -> str:
    """Why the dependents of ``dep`` end: ``dependency t1 dead``, or, when dep was itself
    cancelled by a cascade, ``dependency t2 cancelled (t1 dead)``."""
    if cancelled_by:
        for pattern in _ROOT:
            if m := pattern.search(why):
                return f"dependency {dep} cancelled ({m.group(1)})"
    return f"dependency {dep} {state}"


def _pend(tx: Tx, kind: str, tid: str) -> None:
    tx.run(
        "INSERT OR IGNORE INTO cascades (ns, kind, id, at_ms) VALUES (:ns, :k, :id, :now)",
        k=kind,
        id=tid,
        now=tx.now,
    )


def _unpend(tx: Tx, kind: str, tid: str) -> None:
    tx.run("DELETE FROM cascades WHERE ns = :ns AND kind = :k AND id = :id", k=kind, id=tid)


def _next(tx: Tx, kind: str, queue: list[str] | None, pos: int) -> str | None:
    """The next task a walk visits: from its own queue, else the oldest pending."""
    if queue is not None:
        return queue[pos] if pos < len(queue) else None
    row = tx.one("SELECT id FROM cascades WHERE ns = :ns AND kind = :k ORDER BY at_ms, id LIMIT 1", k=kind)
    return None if row is None else str(row[0])


def _has_dependents(tx: Tx, tid: str) -> bool:
    return tx.one("SELECT 1 FROM dependents WHERE ns = :ns AND dep = :d LIMIT 1", d=tid) is not None


def _has_cascaded(tx: Tx, tid: str) -> bool:
    row = tx.one(
        "SELECT 1 FROM tasks INDEXED BY tasks_cancelled_by WHERE ns = :ns AND cancelled_by = :x"
        " AND cancelled_by <> '' LIMIT 1",
        x=tid,
    )
    return row is not None


def cancel(tx: Tx, tid: str) -> None:
    """Call when ``tid`` has just ended dead or cancelled (after its own audit event)."""
    _unpend(tx, RESTORE, tid)  # a restore of its dependents under way stops
    if _has_dependents(tx, tid):
        _pend(tx, CANCEL, tid)
        run(tx, tid)


def revived(tx: Tx, tid: str) -> None:
    """``tid`` is alive again (retried, requeued): what still waits on it keeps waiting."""
    _unpend(tx, CANCEL, tid)


def run(tx: Tx, first: str | None) -> None:
    """Cancel the blocked dependents of ``first``'s closure (or of the oldest pending when
    None) until the budget is spent, with a ``cascade`` event and one ``cancelled`` each."""
    done: list[tuple[str, str, str]] = []
    more, queue, pos, lead = False, [first] if first else None, 0, first
    while (x := _next(tx, CANCEL, queue, pos)) is not None:
        if tx.cascade_left <= 0:
            more = True
            break
        pos, lead = pos + 1, lead or x
        tx.cascade_left -= 1
        xt = tx.one("SELECT state, reason, cancelled_by FROM tasks WHERE ns = :ns AND id = :id", id=x)
        # A task retried or requeued meanwhile lives again: what still waits on it keeps waiting.
        over = xt is not None and xt["state"] in OVER
        if xt is not None and over:
            why = reason(x, xt["state"], xt["reason"], xt["cancelled_by"])
            rows = tx.all(
                "SELECT id FROM dependents WHERE ns = :ns AND dep = :x ORDER BY id LIMIT :n",
                x=x,
                n=tx.cascade_left,
            )
            for (d,) in rows:
                tx.run("DELETE FROM dependents WHERE ns = :ns AND dep = :x AND id = :d", x=x, d=d)
                tx.cascade_left -= 1
                dt = load_task(tx, d)
                if dt is None or dt["state"] != "blocked":
                    continue
                enter(tx, dt, "cancelled", reason=why, cancelled_by=x)
                _unpend(tx, RESTORE, d)
                if _has_dependents(tx, d):
                    _pend(tx, CANCEL, d)
                    if queue is not None:
                        queue.append(d)
                done.append((d, why, x))
        if over and _has_dependents(tx, x):
            more = True
            if queue is None:
                break  # the budget ran out on the oldest pending
        else:
            _unpend(tx, CANCEL, x)
    if done or more:
        tx.audit("cascade", lead or "", data={"cancelled": len(done), "more": more})
    for d, why, x in done:
        tx.audit("cancelled", d, data={"reason": why, "after": x})
        tx.cascade_log["cancelled"].append(d)


def restore_one(tx: Tx, d: str, x: str, queue: list[str] | None) -> tuple[str, str, str, str] | None:
    """Put back one task a cascade from ``x`` cancelled, x being alive again: blocked on
    what is not done (queued if nothing), or, when another dependency can still never
    finish, left cancelled because of that one. Returns (id, outcome, reason, dependency)."""
    t = load_task(tx, d)
    if t is None or t["state"] != "cancelled" or t["cancelled_by"] != x:
        return None
    waits = []
    for dep in split(t["after"]):
        ds = tx.one("SELECT state, reason, cancelled_by FROM tasks WHERE ns = :ns AND id = :id", id=dep)
        if ds is None or ds["state"] in OVER:
            why = f"dependency {dep} missing" if ds is None else reason(dep, ds[0], ds[1], ds[2])
            set_task(tx, d, reason=why, cancelled_by=dep)
            return d, "kept", why, dep
        if ds["state"] != "done":
            waits.append(dep)
    for dep in waits:
        tx.run("INSERT OR IGNORE INTO dependents (ns, dep, id) VALUES (:ns, :dep, :id)", dep=dep, id=d)
    new = "blocked" if waits else "queued"
    enter(tx, t, new, reason="", cancelled_by="", waiting=len(waits))
    if _has_cascaded(tx, d):
        _pend(tx, RESTORE, d)
        if queue is not None:
            queue.append(d)
    return d, new, "", x


def start_restore(tx: Tx, tid: str, operator: str) -> None:
    """An operator's retry with restore: bring back what cascades from ``tid`` cancelled."""
    _pend(tx, RESTORE, tid)
    restore_run(tx, tid, operator)


def restore_run(tx: Tx, first: str | None, operator: str = "") -> None:
    """Restore what cascades from ``first`` cancelled (and from those), or go on with the
    oldest pending restores when None, until the budget is spent; ``operator`` (who asked
    for it, if this call is theirs) is named in its events."""
    done: list[tuple[str, str, str, str]] = []
    more, queue, pos, lead = False, [first] if first else None, 0, first
    while (x := _next(tx, RESTORE, queue, pos)) is not None:
        if tx.cascade_left <= 0:
            more = True
            break
        pos, lead = pos + 1, lead or x
        tx.cascade_left -= 1
        xt = tx.one("SELECT state FROM tasks WHERE ns = :ns AND id = :id", id=x)
        alive = xt is not None and xt["state"] not in OVER
        if alive:
            rows = tx.all(
                "SELECT id FROM tasks INDEXED BY tasks_cancelled_by WHERE ns = :ns AND cancelled_by = :x"
                " AND cancelled_by <> '' ORDER BY seq LIMIT :n",
                x=x,
                n=tx.cascade_left,
            )
            for (d,) in rows:
                tx.cascade_left -= 1
                if (r := restore_one(tx, d, x, queue)) is not None:
                    done.append(r)
        if alive and _has_cascaded(tx, x):
            more = True
            if queue is None:
                break
        else:
            _unpend(tx, RESTORE, x)
    if done or more:
        kept = sum(1 for r in done if r[1] == "kept")
        data = {"restored": len(done) - kept, "kept": kept, "more": more}
        tx.audit("restore", lead or "", data=data, operator=operator)
    for d, outcome, why, dep in done:
        if outcome == "kept":
            tx.audit("not-restored", d, data={"reason": why, "after": dep}, operator=operator)
        else:
            tx.audit("restored", d, data={"to": outcome, "after": dep}, operator=operator)
            tx.cascade_log["restored"].append(d)


def cascaded_count(tx: Tx, tid: str) -> int:
    row = tx.one(
        "SELECT COUNT(*) FROM tasks INDEXED BY tasks_cancelled_by WHERE ns = :ns AND cancelled_by = :x"
        " AND cancelled_by <> ''",
        x=tid,
    )
    return int(row[0]) if row else 0


def pending(tx: Tx) -> int:
    """How many tasks' cascades or restores wait for the next pass."""
    row = tx.one("SELECT COUNT(*) FROM cascades WHERE ns = :ns")
    return int(row[0]) if row else 0


def stuck(tx: Tx, after_seq: int, limit: int, also: list[str]) -> tuple[list[tuple[Row, str, str]], int]:
    """Blocked tasks waiting on a dependency that can never finish, among the ``limit``
    blocked after ``after_seq`` and those ``also`` names: (row, dependency, its state),
    oldest first, and where to look next (0 at the end)."""
    window = tx.all(
        "SELECT * FROM tasks WHERE ns = :ns AND state = 'blocked' AND seq > :s ORDER BY seq LIMIT :n",
        s=after_seq,
        n=limit,
    )
    next_seq = int(window[-1]["seq"]) if len(window) == limit else 0
    rows = {r["id"]: r for r in window}
    for tid in also:
        if tid not in rows and (r := load_task(tx, tid)) is not None and r["state"] == "blocked":
            rows[tid] = r
    out = []
    for r in sorted(rows.values(), key=lambda r: int(r["seq"])):
        for dep in split(r["after"]):
            d = tx.one("SELECT state FROM tasks WHERE ns = :ns AND id = :id", id=dep)
            if d is None or d[0] in OVER:
                out.append((r, dep, "missing" if d is None else str(d[0])))
                break
    return out, next_seq
