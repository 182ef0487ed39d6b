"""The file store's operations: each one the SQL twin of a script in ``lua/`` (the claim's is
in ``claim``, the path locks', recovery's and the operator's in ``admin``).

Every function runs inside one write transaction (``runner.TxRunner._sync_tx``) and takes
a ``Tx`` (``tx``): the connection, the namespace and the store's ``now``. Each keeps the contract
written in the header of its Lua file, helpers included (``leave``/``enter`` and the claim
index are in ``states``). A refusal is raised as ``Refused`` and the transaction still
commits what came before it, as a script's writes stand when it returns an error code (an
expired lease found by a heartbeat stays expired).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .. import constants as C
from ..errors import ErrorCode
from . import affinity as file_affinity
from . import bidding as file_bidding
from . import cascade as file_cascade
from . import plan as file_plan
from .finish import finish_done
from .states import enter
from .tx import SIGS, Refused, Row, Tx, count_sig, load_task, set_task, split

_REF = re.compile(r"\$(\d+)")


# --- lib.lua ------------------------------------------------------------------------


def drop_hold(tx: Tx, path: str, agent: str, task: str) -> None:
    """Drop one (agent, task) hold on a path; the lock goes with its last hold."""
    tx.run(
        "DELETE FROM holds WHERE ns = :ns AND path = :p AND agent = :a AND task = :t", p=path, a=agent, t=task
    )


def release_task_locks(tx: Tx, tid: str) -> list[str]:
    """The holds of one claim end with it; returns their paths."""
    rows = tx.all(
        "SELECT path, agent FROM holds WHERE ns = :ns AND task = :t AND task <> '' ORDER BY path, agent",
        t=tid,
    )
    for r in rows:
        drop_hold(tx, r["path"], r["agent"], tid)
    return [r["path"] for r in rows]


# The subtasks a claim created that nobody took: tasks_parent (ns, parent, spawn_token) reads
# that claim's subtasks only, not every subtask the task ever had (rule 10).
ROLLBACK_CHILDREN = (
    "SELECT * FROM tasks INDEXED BY tasks_parent WHERE ns = :ns AND parent = :p AND parent <> ''"
    " AND spawn_token = :tok AND attempts = 0 AND state IN ('queued', 'blocked', 'retrying') ORDER BY seq"
)


def renew_task_locks(tx: Tx, tid: str, deadline: int) -> None:
    """A claim's new deadline is its holds' new expiry: they live as long as the claim."""
    tx.run("UPDATE holds SET expires_ms = :d WHERE ns = :ns AND task = :t AND task <> ''", d=deadline, t=tid)


def rollback(tx: Tx, t: Row) -> dict[str, list[str]]:
    """Rule 7: give back the claim's locks, cancel the subtasks it made that nobody took."""
    tid = t["id"]
    set_task(tx, tid, plan_failed="")  # its plan starts over with the next planner
    locks = release_task_locks(tx, tid)
    cancelled = []
    tx.rolling_back = tid  # what it cancels is no failure of its plan (file_plan.settle)
    for c in tx.all(ROLLBACK_CHILDREN, p=tid, tok=t["token"]):
        set_task(tx, c["id"], reason=f"rollback of {tid}")
        enter(tx, c, "cancelled")
        tx.audit("cancelled", c["id"], data={"reason": "rollback", "parent": tid})
        cancelled.append(c["id"])
    # After the loop: a subtask that waits on another one being rolled back is cancelled
    # as rolled back itself, not as a dependent.
    for cid in cancelled:
        file_cascade.cancel(tx, cid)
    tx.rolling_back = ""
    return {"locks": locks, "cancelled": cancelled}


def agent_failed(tx: Tx, agent: str) -> None:
    a = tx.one("SELECT * FROM agents WHERE ns = :ns AND name = :a", a=agent)
    if a is None:
        return
    n = a["consecutive_failures"] + 1
    until = a["breaker_open_until_ms"]
    if n >= C.breaker_threshold:
        until = tx.now + C.breaker_cooldown_ms
        if a["breaker_open_until_ms"] <= tx.now:
            tx.audit("breaker-opened", agent=agent, data={"failures": n, "until_ms": until})
    tx.run(
        "UPDATE agents SET consecutive_failures = :n, breaker_open_until_ms = :u "
        "WHERE ns = :ns AND name = :a",
        n=n,
        u=until,
        a=agent,
    )


def num(x: float) -> float | int:
    """A number as cjson writes it: whole numbers without a fraction."""
    return int(x) if x == int(x) else x


def expire_one(tx: Tx, t: Row) -> str:
    """An expired lease (rule 5): early work requeued, late work orphaned, the cap: dead."""
    tid = t["id"]
    expiries = t["expiries"] + 1
    progress = float(t["progress"])
    rb = rollback(tx, t)
    agent_failed(tx, t["agent"])
    outcome = "orphaned"
    if expiries >= C.max_lease_expiries:
        outcome = "dead"
        set_task(tx, tid, reason="lease-expired")
    elif progress < C.late_stage_progress:
        outcome = "queued"
    set_task(tx, tid, expiries=expiries)
    enter(tx, t, outcome)
    data = {"outcome": outcome, "progress": num(progress), "expiries": expiries, **rb}
    tx.audit("expired", tid, t["agent"], t["token"], data)
    if outcome == "dead":
        file_cascade.cancel(tx, tid)
    return outcome


def reap_due(tx: Tx) -> list[tuple[str, str]]:
    rows = tx.all(
        "SELECT * FROM tasks WHERE ns = :ns AND state = 'claimed' AND deadline_ms <= :now "
        "ORDER BY deadline_ms LIMIT :n",
        now=tx.now,
        n=C.reap_batch,
    )
    expired = [(t["id"], expire_one(tx, t)) for t in rows]
    # Cascades and restores that did not fit in the call that started them go on here.
    file_cascade.run(tx, None)
    file_cascade.restore_run(tx, None)
    return expired


def promote_due(tx: Tx) -> list[str]:
    """Retrying tasks whose backoff ended become claimable."""
    rows = tx.all(
        "SELECT * FROM tasks WHERE ns = :ns AND state = 'retrying' AND ready_ms <= :now "
        "ORDER BY ready_ms LIMIT :n",
        now=tx.now,
        n=C.reap_batch,
    )
    for t in rows:
        enter(tx, t, "queued")
        tx.audit("ready", t["id"], data={"after": "backoff"})
    return [t["id"] for t in rows]


def check_lease(tx: Tx, tid: str, token: int, agent: str = "") -> Row:
    """Rule 2; a lease whose deadline passed is expired here and now, as the reaper would.
    ``agent`` (not ""): the caller acts as that agent, and another's claim is refused
    before anything happens to it (rule 11)."""
    t = load_task(tx, tid)
    if t is None:
        raise Refused(ErrorCode.NOT_FOUND, tid)
    if t["state"] != "claimed" or t["token"] != token:
        raise Refused(ErrorCode.LEASE_LOST, tid)
    if agent and t["agent"] != agent:
        raise Refused(ErrorCode.NOT_YOURS, "claim", tid, t["agent"], agent)
    if t["deadline_ms"] <= tx.now:
        expire_one(tx, t)
        raise Refused(ErrorCode.LEASE_LOST, tid)
    return t


def touch_agent(tx: Tx, agent: str) -> None:
    tx.run("UPDATE agents SET last_seen_ms = :now WHERE ns = :ns AND name = :a", now=tx.now, a=agent)
    file_affinity.touch(tx, agent)


def check_seen(tx: Tx, tid: str, seen_state: str, seen_token: int) -> Row:
    """Operator actions are a compare-and-set on the state and token the operator saw."""
    t = load_task(tx, tid)
    if t is None:
        raise Refused(ErrorCode.NOT_FOUND, tid)
    if t["state"] != seen_state or t["token"] != seen_token:
        raise Refused(ErrorCode.CHANGED, tid)
    return t


def take_out(tx: Tx, t: Row) -> dict[str, list[str]]:
    """Take a task out of its state for an operator; a live claim is rolled back (rule 7)."""
    if t["state"] == "claimed":
        return rollback(tx, t)
    return {"locks": [], "cancelled": []}


# --- add-1.lua ------------------------------------------------------------------------


def add(tx: Tx, specs: list[dict[str, Any]], by: str = "", opts: dict[str, Any] | None = None) -> list[str]:
    opts = opts or {}
    if opts.get("plan"):
        # A plan (Store.plan): written whole by this one transaction. Under a planner's
        # claim, that claim must be the caller's and live (as every agent action checks it).
        if len(specs) > C.max_plan_tasks:
            raise Refused(ErrorCode.BAD_INPUT, f"at most {C.max_plan_tasks} tasks in one plan")
        if claim := opts.get("claim"):
            pt = check_lease(tx, claim[0], int(claim[1]), claim[2])
            if pt["plan_depth"] >= C.max_plan_depth:
                raise Refused(ErrorCode.BAD_INPUT, f"plans nest at most {C.max_plan_depth} deep")
    elif len(specs) > C.add_chunk:
        raise Refused(ErrorCode.BAD_INPUT, f"at most {C.add_chunk} tasks per add call")
    # Validate every reference before writing anything.
    for i, s in enumerate(specs):
        for dep in s["after"]:
            m = _REF.fullmatch(dep)
            if m:
                if int(m.group(1)) >= i:
                    raise Refused(ErrorCode.BAD_INPUT, f"after {dep} must name an earlier task of the batch")
            elif load_task(tx, dep) is None:
                raise Refused(ErrorCode.NOT_FOUND, dep)
        parent = s["parent"]
        m = _REF.fullmatch(parent)
        if m:
            if int(m.group(1)) >= i:
                raise Refused(ErrorCode.BAD_INPUT, f"parent {parent} must name an earlier task of the batch")
        elif parent and load_task(tx, parent) is None:
            raise Refused(ErrorCode.NOT_FOUND, parent)

    # A claim looks at every capability set in use (rule 10), so their number is capped.
    # (The empty set is not counted: tx.count_sig.)
    in_use = {r[0] for r in tx.all(SIGS)}
    fresh = {s["requires"] for s in specs} - in_use - {""}
    if fresh and len(in_use) + len(fresh) > C.max_capsigs:
        raise Refused(ErrorCode.TOO_MANY_CAPSIGS, str(len(in_use) + len(fresh)))

    def resolve(ref: str) -> str:
        m = _REF.fullmatch(ref)
        return ids[int(m.group(1))] if m else ref

    ids: list[str] = []
    for s in specs:
        seq = tx.incr("task")
        tid = f"t{seq}"
        ids.append(tid)
        parent = resolve(s["parent"]) if s["parent"] else ""
        # Unique after resolving: "$0" and that task's id must not be waited for twice.
        deps = list(dict.fromkeys(resolve(d) for d in s["after"]))
        waiting, blocker, why = 0, "", ""
        for dep in deps:
            row = load_task(tx, dep)
            if row is not None and row["state"] in file_cascade.OVER:
                # It could never run: added cancelled, as a cascade would have left it.
                if not blocker:
                    blocker = dep
                    why = file_cascade.reason(dep, row["state"], row["reason"], row["cancelled_by"])
            else:
                if row is None or row["state"] != "done":
                    waiting += 1
                # Listed even when done: retention keeps dep as long as this task is on the
                # board (file_retention), so a dependency is never found missing.
                tx.run("INSERT OR IGNORE INTO dependents (ns, dep, id) VALUES (:ns, :d, :id)", d=dep, id=tid)
        window = int(s.get("bid_window_ms", 0))
        spawn_token = 0
        if parent:
            p = load_task(tx, parent)
            if p is not None and p["state"] == "claimed":
                spawn_token = p["token"]
        # A plan's subtask counts in its parent's plan_left; its depth is one below the parent's.
        plan, depth = resolve(s.get("plan", "")), 0
        if plan:
            up = tx.one(
                "UPDATE tasks SET plan_left = plan_left + 1, plan_total = plan_total + 1"
                " WHERE ns = :ns AND id = :p RETURNING plan_depth", p=plan,
            )  # fmt: skip
            depth = (up[0] if up else 0) + 1
        tx.run(
            "INSERT INTO tasks (ns, id, seq, title, state, queue, priority, requires, after, parent,"
            " affinity, payload, max_attempts, waiting, spawn_token, created_ms, updated_ms,"
            " bid_window_ms, steal_after_ms, paths, plan, plan_depth, plan_wait) VALUES"
            " (:ns, :id, :seq, :title, '', :queue, :priority, :requires, :after, :parent, :affinity,"
            " :payload, :max_attempts, :waiting, :spawn, :now, :now, :window, :steal_after, :paths, :plan,"
            " :depth, :hold)",
            id=tid, seq=seq, title=s["title"], queue=s["queue"], priority=s["priority"],
            requires=s["requires"], after=",".join(deps), parent=parent, affinity=s["affinity"],
            payload=s["payload"], max_attempts=s["max_attempts"], waiting=waiting, spawn=spawn_token,
            now=tx.now, window=window, steal_after=s.get("steal_after_ms", -1), paths=s.get("paths", ""),
            plan=plan, depth=depth, hold=int(bool(s.get("hold"))),
        )  # fmt: skip
        count_sig(tx, s["requires"], 1)
        # A bid window keeps it blocked: the window opens below once nothing is waited for.
        state = "blocked" if waiting > 0 or window > 0 or s.get("hold") else "queued"
        data: dict[str, Any] = {"state": state, "queue": s["queue"], "priority": s["priority"]}
        if window > 0:
            data["bid_window_ms"] = window
        row = load_task(tx, tid)
        assert row is not None
        if blocker:
            state = data["state"] = "cancelled"
            data |= {"reason": why, "after": blocker}
            enter(tx, row, state, reason=why, cancelled_by=blocker)
        else:
            enter(tx, row, state)
        tx.audit("added", tid, by, data=data)
        if window > 0 and waiting == 0 and not blocker:
            file_bidding.open_auction(tx, tid, window)
    return ids


# --- heartbeat, complete, fail, release -------------------------------------------------


def heartbeat(
    tx: Tx, tid: str, token: int, ttl_ms: int | None, updates: dict[str, str], agent: str = ""
) -> int:
    t = check_lease(tx, tid, token, agent)
    ttl = t["ttl_ms"] if ttl_ms is None else ttl_ms
    deadline = tx.now + ttl
    fields: dict[str, Any] = {"deadline_ms": deadline, "ttl_ms": ttl, "updated_ms": tx.now}
    for key, value in updates.items():
        if key not in ("progress", "stage", "checkpoint"):  # column names: never from outside
            raise Refused(ErrorCode.BAD_INPUT, f"cannot set {key!r} in a heartbeat")
        fields[key] = float(value) if key == "progress" else value
    set_task(tx, tid, **fields)
    renew_task_locks(tx, tid, deadline)
    touch_agent(tx, t["agent"])
    stage = updates.get("stage")
    if stage is not None and stage != t["stage"]:
        tx.audit("stage", tid, t["agent"], token, {"stage": stage})
    else:
        tx.changed = True  # the script publishes every heartbeat for live views
    return deadline


def complete(tx: Tx, tid: str, token: int, result: str, agent: str = "", review: str = "") -> list[str]:
    """Done; or, with a ``review`` reference, delivered: in review, its dependents still
    blocked. A plan's parent whose planner completes it while subtasks are unfinished waits
    for them (or dies, when one of them already died): neither done nor delivered yet."""
    t = check_lease(tx, tid, token, agent)
    out: list[str] = []
    planned = file_plan.complete(tx, t, result)
    if planned is not None:
        review = ""
    elif review:
        enter(tx, t, "review", result=result, progress=1.0, reason="", review_ref=review, review_ms=tx.now)
    else:
        out = finish_done(tx, t, result=result, progress=1.0, reason="")
    locks = release_task_locks(tx, tid)
    tx.run(
        "UPDATE agents SET consecutive_failures = 0, last_seen_ms = :now WHERE ns = :ns AND name = :a",
        now=tx.now,
        a=t["agent"],
    )
    if review:
        tx.audit("delivered", tid, t["agent"], token, {"ref": review, "locks": locks})
    else:
        detail = {"locks": locks} | ({"plan": planned} if planned else {})
        tx.audit("completed", tid, t["agent"], token, detail)
    if planned == "dead":
        tx.audit("plan-dead", tid, data={"reason": t["plan_failed"]})
        file_cascade.cancel(tx, tid)
    return out


def fail(
    tx: Tx, tid: str, token: int, reason: str, fatal: bool, jitter: float, agent: str = ""
) -> tuple[str, int]:
    t = check_lease(tx, tid, token, agent)
    failures = t["failures"] + 1
    rb = rollback(tx, t)
    agent_failed(tx, t["agent"])
    state, ready = "dead", 0
    if not fatal and failures < t["max_attempts"]:
        state = "retrying"
        delay = min(C.backoff_base_ms * 2.0 ** (failures - 1), float(C.backoff_max_ms))
        # Equal jitter, computed as the script does (IEEE doubles, then floor).
        ready = tx.now + math.floor(delay / 2 + delay / 2 * jitter)
    set_task(tx, tid, failures=failures, reason=reason, ready_ms=ready)
    enter(tx, t, state)
    data = {"reason": reason, "fatal": fatal, "next": state, "ready_ms": ready, "failures": failures, **rb}
    tx.audit("failed", tid, t["agent"], token, data)
    if state == "dead":
        file_cascade.cancel(tx, tid)
    return state, ready


def release(tx: Tx, tid: str, token: int, agent: str = "") -> None:
    t = check_lease(tx, tid, token, agent)
    rb = rollback(tx, t)
    enter(tx, t, "queued")
    tx.audit("released", tid, t["agent"], token, rb)


# --- agents ------------------------------------------------------------------------------


def register(tx: Tx, agent: str, caps: str, max_claims: int, session: str = "") -> None:
    tx.run(
        "INSERT INTO agents (ns, name, caps, max_claims, last_seen_ms, registered_ms, session) "
        "VALUES (:ns, :a, :caps, :m, :now, :now, :session) ON CONFLICT (ns, name) DO UPDATE SET "
        "caps = excluded.caps, max_claims = excluded.max_claims, last_seen_ms = excluded.last_seen_ms,"
        " auto = 0, session = excluded.session",
        a=agent,
        caps=caps,
        m=max_claims,
        now=tx.now,
        session=session,
    )
    file_affinity.touch(tx, agent)
    tx.claimable = True  # new capabilities or capacity
    data: dict[str, Any] = {"capabilities": split(caps), "max_claims": max_claims}
    if session:
        data["session"] = session
    tx.audit("registered", agent=agent, data=data)


def alive(tx: Tx, agent: str) -> int:
    if tx.one("SELECT 1 FROM agents WHERE ns = :ns AND name = :a", a=agent) is None:
        raise Refused(ErrorCode.NOT_FOUND, agent)
    touch_agent(tx, agent)
    tx.changed = True
    return tx.now


# --- audit-1.lua, token_create-1.lua, token_revoke-1.lua ------------------------------------


def audit(tx: Tx, kind: str, tid: str, agent: str, detail: str) -> None:
    data = json.loads(detail)
    if tid and load_task(tx, tid) is None:
        data["task"], tid = tid, ""  # as the script: a task not on the board is named in the detail
    tx.audit(kind, tid, agent, data=data)


def token_create(tx: Tx, digest: str, agent: str, role: str, hint: str) -> int:
    row = tx.one("SELECT COUNT(*) FROM tokens WHERE ns = :ns")
    if row is not None and row[0] >= C.max_tokens:
        raise Refused(
            ErrorCode.BAD_INPUT,
            f"this board holds {C.max_tokens} tokens already: revoke some first "
            "(claimroom token revoke AGENT)",
        )
    tx.run(
        "INSERT OR REPLACE INTO tokens (ns, digest, agent, role, created_ms, hint)"
        " VALUES (:ns, :d, :a, :r, :now, :h)",
        d=digest, a=agent, r=role, now=tx.now, h=hint,
    )  # fmt: skip
    tx.audit("token-created", agent=agent, data={"role": role, "hint": hint})
    return tx.now


def token_revoke(tx: Tx, agent: str) -> int:
    n = tx.run("DELETE FROM tokens WHERE ns = :ns AND agent = :a", a=agent).rowcount
    if n > 0:
        tx.audit("token-revoked", agent=agent, data={"tokens": n})
    return int(n)
