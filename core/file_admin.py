"""The file store's path locks, recovery pass, leader lease and operator actions: the SQL
twins of ``lock``, ``unlock``, ``reap``, ``leader``, ``move``, ``extend``, ``queue_state``
and ``reset_breaker`` in ``lua/``. Conventions as in ``file_ops``.
"""

from __future__ import annotations

from typing import Any

from . import constants as C
from .file_ops import (
    Refused,
    Tx,
    check_seen,
    drop_hold,
    enter,
    pause_heads,
    promote_due,
    reap_due,
    set_task,
    take_out,
)
from .models import Lock, LockHold
from .scripts import ErrorCode

# --- lock-1.lua, unlock-1.lua ----------------------------------------------------------


def lock(tx: Tx, paths: list[str], agent: str, ttl_ms: int, shared: bool, task: str) -> int:
    if task:
        t = tx.one("SELECT state, agent FROM tasks WHERE ns = :ns AND id = :id", id=task)
        if t is None:
            raise Refused(ErrorCode.NOT_FOUND, task)
        if t["state"] != "claimed" or t["agent"] != agent:
            raise Refused(ErrorCode.NOT_HOLDER, task)

    def clash(path: str) -> str | None:
        """The first live holder other than ``agent`` that a lock on ``path`` clashes with."""
        lk = tx.one("SELECT mode FROM locks WHERE ns = :ns AND path = :p", p=path)
        if lk is None or (shared and lk["mode"] == "shared"):
            return None
        who = tx.one(
            "SELECT agent FROM holds WHERE ns = :ns AND path = :p AND agent <> :a AND expires_ms > :now "
            "ORDER BY agent LIMIT 1",
            p=path,
            a=agent,
            now=tx.now,
        )
        return None if who is None else str(who[0])

    for path in paths:
        # A lock covers everything under it: the path itself, its ancestors, its descendants.
        candidates = [path] + [path[:i] for i in range(1, len(path)) if path[i] == "/"]
        under = tx.all(
            "SELECT path FROM locks WHERE ns = :ns AND path >= :lo AND path < :hi ORDER BY path",
            lo=path + "/",
            hi=path + "0",  # "0" sorts right after "/"
        )
        candidates += [r[0] for r in under]
        for c in candidates:
            who = clash(c)
            if who is not None:
                raise Refused(ErrorCode.CONFLICT, c, who)

    expires = tx.now + ttl_ms
    mode = "shared" if shared else "exclusive"
    for path in paths:
        tx.run(
            "INSERT INTO locks (ns, path, mode) VALUES (:ns, :p, :m) "
            "ON CONFLICT (ns, path) DO UPDATE SET mode = excluded.mode",
            p=path,
            m=mode,
        )
        tx.run(
            "INSERT INTO holds (ns, path, agent, expires_ms, task) VALUES (:ns, :p, :a, :e, :t) "
            "ON CONFLICT (ns, path, agent) DO UPDATE SET "
            "expires_ms = excluded.expires_ms, task = excluded.task",
            p=path,
            a=agent,
            e=expires,
            t=task,
        )
    tx.audit("locked", task, agent, data={"paths": paths, "shared": shared, "expires_ms": expires})
    return expires


def unlock(tx: Tx, paths: list[str], agent: str) -> list[str]:
    out = []
    for path in paths:
        if tx.one("SELECT 1 FROM holds WHERE ns = :ns AND path = :p AND agent = :a", p=path, a=agent):
            drop_hold(tx, path, agent)
            out.append(path)
    if out:
        tx.audit("unlocked", agent=agent, data={"paths": out})
    return out


def live_locks(tx: Tx) -> list[Lock]:
    """Locked paths in path order with their live holders (expired ones are ignored)."""
    rows = tx.all(
        "SELECT l.path, l.mode, h.agent, h.expires_ms, h.task FROM locks l "
        "JOIN holds h ON h.ns = l.ns AND h.path = l.path "
        "WHERE l.ns = :ns AND h.expires_ms > :now ORDER BY l.path, h.agent",
        now=tx.now,
    )
    out: list[Lock] = []
    for r in rows:
        hold = LockHold(agent=r["agent"], expires_ms=r["expires_ms"], task=r["task"])
        if out and out[-1].path == r["path"]:
            out[-1] = Lock(out[-1].path, out[-1].shared, (*out[-1].holders, hold))
        else:
            out.append(Lock(path=r["path"], shared=r["mode"] == "shared", holders=(hold,)))
    return out


# --- reap-1.lua, leader-1.lua ------------------------------------------------------------


def reap(tx: Tx) -> dict[str, Any]:
    expired = reap_due(tx)
    promoted = promote_due(tx)
    dropped = 0
    paths = tx.all(
        "SELECT DISTINCT path FROM holds INDEXED BY holds_expiry WHERE ns = :ns AND expires_ms <= :now "
        "ORDER BY path LIMIT :n",
        now=tx.now,
        n=C.reap_batch,
    )
    for (path,) in paths:
        gone = [
            r[0]
            for r in tx.all(
                "SELECT agent FROM holds WHERE ns = :ns AND path = :p AND expires_ms <= :now ORDER BY agent",
                p=path,
                now=tx.now,
            )
        ]
        for agent in gone:
            drop_hold(tx, path, agent)
        tx.audit("lock-expired", data={"path": path, "holders": gone})
        dropped += len(gone)
    _trim_audit(tx)
    return {"expired": expired, "promoted": promoted, "dropped": dropped}


def _trim_audit(tx: Tx) -> None:
    """Cap the audit table like the capped stream, in large steps so it stays cheap."""
    cut = tx.counter("event") - C.audit_max_len
    if cut <= 0:
        return
    oldest = tx.one("SELECT MIN(seq) FROM events WHERE ns = :ns")
    if oldest is not None and oldest[0] is not None and cut - oldest[0] >= C.file_audit_trim_slack:
        tx.run("DELETE FROM events WHERE ns = :ns AND seq <= :cut", cut=cut)


def lead(tx: Tx, holder: str, lease_ms: int) -> bool:
    row = tx.one("SELECT holder, expires_ms FROM leases WHERE ns = :ns AND name = 'reaper'")
    if row is not None and row["holder"] != holder and row["expires_ms"] > tx.now:
        return False
    tx.run(
        "INSERT INTO leases (ns, name, holder, expires_ms) VALUES (:ns, 'reaper', :h, :e) "
        "ON CONFLICT (ns, name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms",
        h=holder,
        e=tx.now + lease_ms,
    )
    return True


# --- move-1.lua, extend-1.lua, queue_state-1.lua, reset_breaker-1.lua ----------------------

_ALLOWED = {
    "kill": {"claimed"},
    "kill-dead": {"claimed"},
    "requeue": {"claimed", "orphaned", "retrying", "dead"},
    "cancel": {"blocked", "queued", "claimed", "retrying", "orphaned"},
    "retry": {"dead"},
    "reassign": {"claimed", "orphaned", "queued", "retrying", "dead"},
}
_EVENT = {
    "kill": "killed",
    "kill-dead": "killed",
    "requeue": "requeued",
    "cancel": "cancelled",
    "retry": "retried",
    "reassign": "reassigned",
}


def move(tx: Tx, tid: str, seen_state: str, seen_token: int, action: str, operator: str, target: str) -> str:
    t = check_seen(tx, tid, seen_state, seen_token)
    if action not in _ALLOWED:
        raise Refused(ErrorCode.BAD_INPUT, f"unknown action {action}")
    if t["state"] not in _ALLOWED[action]:
        raise Refused(ErrorCode.WRONG_STATE, f"{action} does not apply to a {t['state']} task")
    if action == "reassign" and tx.one("SELECT 1 FROM agents WHERE ns = :ns AND name = :a", a=target) is None:
        raise Refused(ErrorCode.NOT_FOUND, target)

    rb = take_out(tx, t)
    new = "queued"
    if action == "kill-dead":
        new = "dead"
        set_task(tx, tid, reason=f"killed by {operator}")
    elif action == "cancel":
        new = "cancelled"
        set_task(tx, tid, reason=f"cancelled by {operator}")
    elif action == "retry":
        set_task(tx, tid, failures=0, expiries=0, reason="")
    enter(tx, t, new, assigned=target if action == "reassign" else None)
    data = {"from": t["state"], "to": new, "assigned": target, **rb}
    tx.audit(_EVENT[action], tid, t["agent"], t["token"], data, operator)
    return new


def extend(tx: Tx, tid: str, token: int, extra_ms: int, operator: str) -> int:
    t = check_seen(tx, tid, "claimed", token)
    deadline = max(int(t["deadline_ms"]), tx.now) + extra_ms
    set_task(tx, tid, deadline_ms=deadline, updated_ms=tx.now)
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
