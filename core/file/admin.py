"""The file store's path locks, recovery pass, leader lease and operator actions: the SQL
twins of ``lock``, ``unlock``, ``reap``, ``leader``, ``move``, ``extend``, ``queue_state``
and ``reset_breaker`` in ``lua/``. Conventions as in ``ops``.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

from .. import constants as C
from ..errors import ErrorCode
from ..models import Lock, LockHold
from ..operator_actions import MOVES
from . import affinity as file_affinity
from . import bidding as file_bidding
from . import cascade as file_cascade
from .ops import check_seen, drop_hold, promote_due, reap_due, renew_task_locks, take_out
from .states import enter, pause_heads, ready_entered
from .tx import Refused, Row, Tx, set_task

# --- lock-1.lua, unlock-1.lua ----------------------------------------------------------


def lock(tx: Tx, paths: list[str], agent: str, ttl_ms: int, shared: bool, task: str) -> int:
    expires = tx.now + ttl_ms
    if task:
        t = tx.one("SELECT state, agent, deadline_ms FROM tasks WHERE ns = :ns AND id = :id", id=task)
        if t is None:
            raise Refused(ErrorCode.NOT_FOUND, task)
        if t["state"] != "claimed" or t["agent"] != agent or t["deadline_ms"] <= tx.now:
            raise Refused(ErrorCode.NOT_HOLDER, task)
        expires = t["deadline_ms"]  # the hold lives as long as the claim (renew_task_locks)

    def clash(path: str) -> str | None:
        """The first live holder other than ``agent`` that a hold on ``path`` clashes with."""
        who = tx.one(
            "SELECT agent FROM holds WHERE ns = :ns AND path = :p AND agent <> :a AND expires_ms > :now "
            "AND NOT (:shared AND shared) ORDER BY agent, task LIMIT 1",
            p=path,
            a=agent,
            now=tx.now,
            shared=shared,
        )
        return None if who is None else str(who[0])

    for path in paths:
        # A lock covers everything under it: the path itself, its ancestors, its descendants.
        candidates = [path] + [path[:i] for i in range(1, len(path)) if path[i] == "/"]
        under = tx.all(
            "SELECT DISTINCT path FROM holds WHERE ns = :ns AND path >= :lo AND path < :hi ORDER BY path",
            lo=path + "/",
            hi=path + "0",  # "0" sorts right after "/"
        )
        candidates += [r[0] for r in under]
        for c in candidates:
            who = clash(c)
            if who is not None:
                raise Refused(ErrorCode.CONFLICT, c, who)

    for path in paths:
        tx.run(
            "INSERT OR REPLACE INTO holds (ns, path, agent, task, shared, expires_ms) "
            "VALUES (:ns, :p, :a, :t, :s, :e)",
            p=path,
            a=agent,
            t=task,
            s=shared,
            e=expires,
        )
    tx.audit("locked", task, agent, data={"paths": paths, "shared": shared, "expires_ms": expires})
    return expires


def unlock(tx: Tx, paths: list[str], agent: str, task: str | None, own: bool = False) -> list[str]:
    """Drop the agent's holds on ``paths``: all, or those of ``task`` ('' the untied ones).
    ``own``: a path locked by another agent and not by this one refuses the whole call."""
    if own:
        for path in paths:
            live = tx.all(
                "SELECT agent FROM holds WHERE ns = :ns AND path = :p AND expires_ms > :now "
                "ORDER BY agent, task",
                p=path,
                now=tx.now,
            )
            holders = [r[0] for r in live]
            if holders and agent not in holders:
                raise Refused(ErrorCode.NOT_YOURS, "lock", path, holders[0], agent)
    out = []
    for path in paths:
        # An expired hold held nothing: the reaper drops it (and says so in the audit trail).
        held = tx.all(
            "SELECT task FROM holds WHERE ns = :ns AND path = :p AND agent = :a AND expires_ms > :now "
            "AND (:any OR task = :t)",
            p=path,
            a=agent,
            now=tx.now,
            any=task is None,
            t=task or "",
        )
        for (t,) in held:
            drop_hold(tx, path, agent, t)
        if held:
            out.append(path)
    if out:
        tx.audit("unlocked", task or "", agent, data={"paths": out})
    return out


def locks_of(rows: list[Row], now_ms: int) -> list[Lock]:
    """Hold rows (path, agent, task, shared, expires_ms; in path order) as locks."""
    out: list[Lock] = []
    for path, group in groupby(rows, key=lambda r: str(r["path"])):
        holds = [LockHold(r["agent"], r["expires_ms"], r["task"], bool(r["shared"])) for r in group]
        lock = Lock.of(path, holds, now_ms)
        if lock is not None:
            out.append(lock)
    return out


def live_locks(tx: Tx) -> list[Lock]:
    """Locked paths in path order with their live holds (expired ones are ignored)."""
    rows = tx.all(
        "SELECT path, agent, task, shared, expires_ms FROM holds "
        "WHERE ns = :ns AND expires_ms > :now ORDER BY path, agent, task",
        now=tx.now,
    )
    return locks_of(rows, tx.now)


# --- reap-1.lua, leader-1.lua ------------------------------------------------------------


def reap(tx: Tx, by: dict[str, str] | None = None) -> dict[str, Any]:
    """One recovery pass; with ``by`` (a ``ReaperId``'s fields), recorded as the reaper heartbeat."""
    expired = reap_due(tx)
    promoted = promote_due(tx)
    closed = file_bidding.close_auctions(tx)
    file_affinity.steal_due(tx, ready_entered)
    file_affinity.ring_reap(tx, ready_entered)
    dropped = 0
    paths = tx.all(
        "SELECT DISTINCT path FROM holds INDEXED BY holds_expiry WHERE ns = :ns AND expires_ms <= :now "
        "ORDER BY path LIMIT :n",
        now=tx.now,
        n=C.reap_batch,
    )
    for (path,) in paths:
        gone = tx.all(
            "SELECT agent, task FROM holds WHERE ns = :ns AND path = :p AND expires_ms <= :now "
            "ORDER BY agent, task",
            p=path,
            now=tx.now,
        )
        for agent, task in gone:
            drop_hold(tx, path, agent, task)
        tx.audit("lock-expired", data={"path": path, "holders": sorted({r[0] for r in gone})})
        dropped += len(gone)
    trimmed = _trim_audit(tx)
    if by is not None:
        _record_pass(tx, by, expired, promoted, dropped)
    return {
        "expired": expired,
        "promoted": promoted,
        "dropped": dropped,
        "trimmed": trimmed,
        **tx.cascade_log,
        "pending": file_cascade.pending(tx),
        "auctions": closed,
    }


def _trim_audit(tx: Tx) -> int:
    """Cap the audit table like the capped stream, in large steps so it stays cheap, and at
    most ``file_audit_trim_batch`` events per pass (rule 10: the next pass goes on)."""
    cut = tx.counter("event") - C.audit_max_len
    if cut <= 0:
        return 0
    oldest = tx.one("SELECT MIN(seq) FROM events WHERE ns = :ns")
    if oldest is None or oldest[0] is None or cut - oldest[0] < C.file_audit_trim_slack:
        return 0
    upto = min(cut, oldest[0] + C.file_audit_trim_batch - 1)
    return tx.run("DELETE FROM events WHERE ns = :ns AND seq <= :upto", upto=upto).rowcount


def _record_pass(
    tx: Tx, by: dict[str, str], expired: list[tuple[str, str]], promoted: list[str], dropped: int
) -> None:
    """The reaper heartbeat (reap-1.lua's ``reaper:status`` hash): no audit event, no hint."""
    tx.run(
        "INSERT INTO reaper (ns, kind, host, pid, interval_ms, at_ms, passes) "
        "VALUES (:ns, :kind, :host, :pid, :interval_ms, :now, 1) "
        "ON CONFLICT (ns) DO UPDATE SET kind = excluded.kind, host = excluded.host, pid = excluded.pid, "
        "interval_ms = excluded.interval_ms, at_ms = excluded.at_ms, passes = passes + 1",
        now=tx.now,
        **by,
    )
    if not (expired or promoted or dropped):
        return
    ids = {
        outcome: ",".join(tid for tid, out in expired if out == outcome)
        for outcome in ("queued", "orphaned", "dead")
    }
    tx.run(
        "UPDATE reaper SET reaped_kind = :kind, reaped_host = :host, reaped_pid = :pid, "
        "reaped_interval_ms = :interval_ms, reaped_ms = :now, requeued = :requeued, orphaned = :orphaned, "
        "dead = :dead, promoted = :promoted, locks_expired = :dropped WHERE ns = :ns",
        now=tx.now,
        requeued=ids["queued"],
        orphaned=ids["orphaned"],
        dead=ids["dead"],
        promoted=",".join(promoted),
        dropped=dropped,
        **by,
    )


def reaper_status(tx: Tx) -> tuple[int, int, int | None, dict[str, str]]:
    """The clock, the live claims, the soonest lease deadline and the reaper heartbeat's fields."""
    live = tx.one("SELECT COUNT(*), MIN(deadline_ms) FROM tasks WHERE ns = :ns AND state = 'claimed'")
    row = tx.one("SELECT * FROM reaper WHERE ns = :ns")
    fields = {} if row is None else {k: str(v) for k, v in dict(row).items() if k != "ns"}
    count, soonest = (live[0], live[1]) if live is not None else (0, None)
    return tx.now, int(count), None if soonest is None else int(soonest), fields


def led_by_other(tx: Tx, holder: str) -> bool:
    """Whether another holder has the reaper's leader lease now."""
    row = tx.one("SELECT holder, expires_ms FROM leases WHERE ns = :ns AND name = 'reaper'")
    return row is not None and row["holder"] != holder and row["expires_ms"] > tx.now


def lead(tx: Tx, holder: str, lease_ms: int) -> bool:
    """Take or keep the reaper's leader lease; a lease of 0 lets the caller's go (False)."""
    if lease_ms == 0:
        tx.run("DELETE FROM leases WHERE ns = :ns AND name = 'reaper' AND holder = :h", h=holder)
        return False
    if led_by_other(tx, holder):
        return False
    tx.run(
        "INSERT INTO leases (ns, name, holder, expires_ms) VALUES (:ns, 'reaper', :h, :e) "
        "ON CONFLICT (ns, name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms",
        h=holder,
        e=tx.now + lease_ms,
    )
    return True


# --- move-1.lua, extend-1.lua, queue_state-1.lua, reset_breaker-1.lua ----------------------


def move(
    tx: Tx, tid: str, seen_state: str, seen_token: int, action: str, operator: str, target: str, restore: bool
) -> str:
    """Run an operator's move (``operator_actions.MOVES``) on what the operator saw."""
    t = check_seen(tx, tid, seen_state, seen_token)
    op = MOVES.get(action)
    if op is None:
        raise Refused(ErrorCode.BAD_INPUT, f"unknown action {action}")
    if not op.applies(t["state"]):
        raise Refused(ErrorCode.WRONG_STATE, op.refused(t["state"]))
    if op.assigns and tx.one("SELECT 1 FROM agents WHERE ns = :ns AND name = :a", a=target) is None:
        raise Refused(ErrorCode.NOT_FOUND, target)
    if restore and not op.restores:
        raise Refused(ErrorCode.BAD_INPUT, "only a retry restores dependents")

    rb = take_out(tx, t)
    new = op.to.value
    fields: dict[str, Any] = {}
    if (reason := op.reason_by(operator)) is not None:
        fields["reason"] = reason
    if op.reset_counts:
        fields.update(failures=0, expiries=0)
    enter(tx, t, new, assigned=target if op.assigns else None, **fields)
    data = {"from": t["state"], "to": new, "assigned": target, **rb}
    tx.audit(op.event, tid, t["agent"], t["token"], data, operator)
    if new in file_cascade.OVER:
        file_cascade.cancel(tx, tid)
    else:
        file_cascade.revived(tx, tid)
    if restore:
        file_cascade.start_restore(tx, tid, operator)
    return new


def extend(tx: Tx, tid: str, token: int, extra_ms: int, operator: str) -> int:
    t = check_seen(tx, tid, "claimed", token)
    deadline = max(int(t["deadline_ms"]), tx.now) + extra_ms
    set_task(tx, tid, deadline_ms=deadline, updated_ms=tx.now)
    renew_task_locks(tx, tid, deadline)
    tx.audit("extended", tid, t["agent"], t["token"], {"deadline_ms": deadline}, operator)
    return deadline


def queue_state(tx: Tx, queue: str, pause: bool, operator: str) -> bool:
    if pause:
        sql = "INSERT OR IGNORE INTO paused (ns, queue) VALUES (:ns, :q)"
    else:
        sql = "DELETE FROM paused WHERE ns = :ns AND queue = :q"
    changed = tx.run(sql, q=queue).rowcount > 0
    if changed:
        pause_heads(tx, queue, pause)
        tx.audit("paused" if pause else "resumed", data={"queue": queue}, operator=operator)
    return changed


def reset_breaker(tx: Tx, agent: str, operator: str) -> None:
    found = tx.run(
        "UPDATE agents SET consecutive_failures = 0, breaker_open_until_ms = 0 WHERE ns = :ns AND name = :a",
        a=agent,
    ).rowcount
    if not found:
        raise Refused(ErrorCode.NOT_FOUND, agent)
    tx.claimable = True  # for that agent
    tx.audit("breaker-reset", agent=agent, operator=operator)
