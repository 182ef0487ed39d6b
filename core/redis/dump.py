"""The Redis backend's whole-board export and import (the dump format is in ``migrate``).

The export reads the board in one MULTI (an atomic snapshot); the import writes it in one
MULTI, watched so that nothing else writes between the emptiness check and the write, and
builds every index a task's state needs as ``lua/lib.lua`` would.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import WatchError

from .. import affinity
from .. import constants as C
from ..dump import (
    FORMAT,
    VERSION,
    Board,
    LockDump,
    dumped_holds,
    in_auction,
    lock_clash,
    not_empty,
    renumbered,
    waits_for_owner,
)
from ..errors import Conflict
from ..models import LockHold, State, event_fields, seq_of, unstored_fields
from ..retention import decoded, encoded
from . import messages
from .reads import count_in, live_claims

TRIES = 5  # reads (or watched writes) tried before a board that keeps changing is refused
# A task hash stores no field at its default (lib.lua task_defaults): an import of a dump
# in the full shape an older claimroom wrote arrives lean, as add-1.lua writes it ('' never
# arrives either).
DEFAULTS = {
    "steal_after_ms": "-1", "attempts": "0", "failures": "0", "expiries": "0", "waiting": "0",
    "plan_depth": "0", "plan_wait": "0", "token": "0", "priority": "0", "max_attempts": "3",
}  # fmt: skip
# lib.lua's notes to itself, not part of a board: an agent's `solo` (claim_tasks), a task's
# `plain` (add-1.lua), and the ids in a task's event fields (its index of its events, which
# an import builds anew from the events it writes, under new ids). An export leaves them out
# and an import writes none: the scripts then look for themselves.
MARKS = frozenset({"solo", "plain", *C.task_event_fields})


def _unmarked(fields: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in fields.items() if k not in MARKS}


def _exported(task: dict[str, str]) -> dict[str, str]:
    """A task as a dump holds it: unmarked, with what its hash leaves unstored and
    models.Task.from_fields fills in (a done task's progress, a lease's default length),
    which a dump's reader would take for 0."""
    return _unmarked(task) | unstored_fields(task)


def _ms(time_reply: Any) -> int:
    """Redis TIME's reply in ms."""
    return int(time_reply[0]) * 1000 + int(time_reply[1]) // 1000


async def export(r: Any, ns: str) -> Board:
    """The whole board of ``ns``: the names of everything in one MULTI, then everything
    they name in another, looked at again whenever the board moved in between."""

    async def head() -> list[Any]:
        pipe = r.pipeline(transaction=True)
        pipe.get(C.seq_key(ns, "task"))
        pipe.get(C.seq_key(ns, "token"))
        pipe.smembers(C.agents_key(ns))
        pipe.zrange(C.lockpaths_key(ns), 0, -1)
        pipe.zrange(C.auctions_key(ns), 0, -1)
        for st in State:
            if st is State.CLAIMED:  # indexed by deadline: sorted by their seq once read (below)
                live_claims(pipe, ns, withscores=True)
            else:
                pipe.zrange(C.state_key(ns, st.value), 0, -1, withscores=True)
        return list(await pipe.execute())

    for _ in range(TRIES):
        top, _tok, agents, paths, auctions, *by_state = await head()
        names = sorted(agents)
        # The tasks on the board, in creation order (retention removes finished ones, so
        # the ids are not simply t1..tN; one that moves on meanwhile is still read).
        ids = [tid for tid, _seq in sorted((x for st in by_state for x in st), key=lambda x: x[1])]

        pipe = r.pipeline(transaction=True)
        pipe.time()
        pipe.get(C.seq_key(ns, "task"))
        pipe.get(C.seq_key(ns, "token"))
        pipe.smembers(C.agents_key(ns))
        pipe.zrange(C.lockpaths_key(ns), 0, -1)
        for tid in ids:
            pipe.hgetall(C.task_key(ns, tid))
        for a in names:
            pipe.hgetall(C.agent_key(ns, a))
        for path in paths:
            pipe.hgetall(C.lock_key(ns, path))
        pipe.xrange(C.events_key(ns), "-", "+")
        pipe.smembers(C.paused_key(ns))
        pipe.smembers(C.queues_key(ns))
        pipe.hgetall(C.retention_key(ns))
        for tid in auctions:
            pipe.hgetall(C.bids_key(ns, tid))
        raw = list(await pipe.execute())

        now, top2, tok2, agents2, paths2 = raw[:5]
        if (top2, set(agents2), list(paths2)) != (top, set(agents), list(paths)):
            continue  # the board moved between the two reads: look again
        rest = raw[5:]
        # A hash holds neither its id nor its seq (lib.lua seq_of); a dump holds both.
        rows, rest = rest[: len(ids)], rest[len(ids) :]
        tasks = [
            {"id": tid, "seq": str(seq_of(tid)), **row} if row else row
            for tid, row in zip(ids, rows, strict=True)
        ]
        agent_rows, rest = rest[: len(names)], rest[len(names) :]
        lock_rows, rest = rest[: len(paths)], rest[len(paths) :]
        stream, paused, queues, kept, *bid_rows = rest
        open_ids = {t["id"] for t in tasks if t and in_auction(t)}
        locks: list[LockDump] = []
        for path, f in zip(paths, lock_rows, strict=True):
            holds = dumped_holds(LockHold.all_in(f))
            if holds:
                locks.append({"path": path, "holds": holds})
        return {
            "format": FORMAT,
            "version": VERSION,
            "namespace": ns,
            "now_ms": str(_ms(now)),
            "counters": {"task": str(top2 or 0), "token": str(tok2 or 0)},
            "tasks": sorted((_exported(t) for t in tasks if t), key=lambda t: int(t["seq"])),
            "agents": [_unmarked(a) for a in agent_rows if a],
            "locks": locks,
            "events": [dict(event_fields(fields)) for _eid, fields in stream],  # named fields, either form
            "paused": sorted(paused),
            "queues": sorted(queues),
            "retention": {scope: decoded(raw) for scope, raw in sorted(kept.items())},
            "bids": [
                {"task": tid, "agent": agent, "cost": c, "at_ms": at, "ttl_ms": ttl}
                for tid, found in zip(auctions, bid_rows, strict=True)
                if tid in open_ids
                for agent, (c, at, ttl) in sorted((a, v.split("|")) for a, v in found.items())
            ],
        }
    raise Conflict("the board kept changing during the export; stop the agents and retry")


async def load(r: Any, ns: str, url: str, board: Board, merge: bool) -> dict[str, int]:
    """Write a checked dump into ``ns``; ``Conflict`` into a non-empty namespace unless
    ``merge``, or when a merged lock would clash (``url``: the destination, as shown)."""
    for _ in range(TRIES):
        try:
            return await _load_once(r, ns, url, board, merge)
        except WatchError:
            continue
    raise Conflict("the destination kept changing during the import; stop its agents and retry")


async def _load_once(r: Any, ns: str, url: str, board: Board, merge: bool) -> dict[str, int]:
    stream = C.events_key(ns)
    watched = [
        C.seq_key(ns, "task"), C.seq_key(ns, "token"), C.agents_key(ns), C.lockpaths_key(ns),
        stream, C.paused_key(ns), C.seq_key(ns, "message"), C.deadlines_key(ns),
        *(C.state_key(ns, s.value) for s in State if s is not State.CLAIMED),
    ]  # fmt: skip
    async with r.pipeline(transaction=True) as pipe:
        await pipe.watch(*watched)
        n_tasks = 0
        for s in State:
            n_tasks += int(await count_in(pipe, ns, s))
        have_agents = set(await pipe.smembers(C.agents_key(ns)))
        n_events = int(await pipe.xlen(stream))
        paths = list(await pipe.zrange(C.lockpaths_key(ns), 0, -1))
        have_paused = set(await pipe.smembers(C.paused_key(ns)))
        top = int(await pipe.get(C.seq_key(ns, "task")) or 0)
        token = int(await pipe.get(C.seq_key(ns, "token")) or 0)
        if n_tasks or have_agents or n_events or paths or have_paused:
            if not merge:
                raise not_empty(ns, url, n_tasks, len(have_agents), n_events)
            board = renumbered(board, top)
            present: list[LockDump] = []
            for path in paths:
                f = await pipe.hgetall(C.lock_key(ns, path))
                present.append({"path": path, "holds": dumped_holds(LockHold.all_in(f))})
            clash = lock_clash(board["locks"], present, _ms(await pipe.time()))
            if clash:
                raise Conflict(clash)
        messages_base = int(await pipe.get(C.seq_key(ns, "message")) or 0)
        last = await pipe.xrevrange(stream, "+", "-", count=1)
        last_ms, last_seq = (int(x) for x in last[0][0].split("-")) if last else (0, 0)
        pipe.multi()
        # The timers written below are not in `due`: the next claim sweeps all and sets it.
        pipe.delete(C.due_key(ns))
        paused = have_paused | set(board["paused"])
        owners = {a["name"] for a in board["agents"]}
        for t in board["tasks"]:
            _queue_task(pipe, ns, t, paused, owners)
        for a in board["agents"]:
            if a["name"] not in have_agents:
                pipe.hset(C.agent_key(ns, a["name"]), mapping=_unmarked(a))
                pipe.sadd(C.agents_key(ns), a["name"])
                # On the ring as last seen (lib.lua's touch_agent): the reaper takes it off
                # when that was longer than affinity_live_s ago.
                pipe.zadd(C.live_key(ns), {a["name"]: int(a.get("last_seen_ms") or 0)})
                pipe.zadd(C.ring_key(ns), {m: p for p, m in affinity.members(a["name"])})
        for lk in board["locks"]:
            path = lk["path"]
            fields = {}
            for h in lk["holds"]:
                hold = h["agent"] + ("|" + h["task"] if h["task"] else "")  # as lib.lua's hold_key
                fields["h:" + hold] = h["expires_ms"]
                fields["m:" + hold] = h["mode"]
                if h["task"]:
                    pipe.sadd(C.tasklocks_key(ns, h["task"]), h["agent"] + "|" + path)
            pipe.hset(C.lock_key(ns, path), mapping=fields)
            latest = max(int(h["expires_ms"]) for h in lk["holds"])
            pipe.zadd(C.locks_key(ns), {path: latest}, gt=True)
            pipe.zadd(C.lockpaths_key(ns), {path: 0})
        on_board, indexed = {t["id"] for t in board["tasks"]}, set()
        for e in board["events"]:
            ms = max(int(e.get("at_ms") or 0), last_ms)
            last_seq = last_seq + 1 if ms == last_ms else 0
            last_ms = ms
            eid = f"{ms}-{last_seq}"
            pipe.xadd(stream, {k: v for k, v in e.items() if v not in ("", None)}, id=eid)
            if e.get("task") in on_board:  # each task's index of its events, as lib.lua's audit keeps it
                pipe.rpush(C.task_events_key(ns, e["task"]), eid)
                indexed.add(e["task"])
        for tid in indexed:
            pipe.ltrim(C.task_events_key(ns, tid), -C.task_events_max, -1)
        for b in board.get("bids", []):
            pipe.hset(C.bids_key(ns, b["task"]), b["agent"], f"{b['cost']}|{b['at_ms']}|{b['ttl_ms']}")
        for scope, settings in board.get("retention", {}).items():
            # A destination's own settings win over the incoming ones (merge).
            pipe.hsetnx(C.retention_key(ns), scope, encoded(settings))
        if board["paused"]:
            pipe.sadd(C.paused_key(ns), *board["paused"])
        # board["queues"] is not written: the queues set follows the tasks (_queue_task).
        pipe.set(C.seq_key(ns, "task"), max(top, int(board["counters"].get("task") or 0)))
        pipe.set(C.seq_key(ns, "token"), max(token, int(board["counters"].get("token") or 0)))
        messages.queue_import(pipe, ns, dict(board), messages_base)
        pipe.publish(C.hints_channel(ns), "imported ")
        pipe.publish(C.claimable_channel(ns), "* *")
        await pipe.execute()
    return {
        "tasks": len(board["tasks"]),
        "agents": len(board["agents"]),
        "locks": len(board["locks"]),
        "events": len(board["events"]),
        "paused": len(board["paused"]),
    }


def _queue_task(pipe: Any, ns: str, t: dict[str, str], paused: set[str], owners: set[str]) -> None:
    """Queue the writes of one task and every index its state needs (as lib.lua's enter)."""
    tid = t["id"]
    # Neither id nor seq: the key and the id say both (lib.lua seq_of; core/dump.py check).
    fields = {
        k: v for k, v in _unmarked(t).items() if v != "" and DEFAULTS.get(k) != v and k not in ("id", "seq")
    }
    # Affinity: a task waiting for its owner keeps waiting (until its steal time) when the
    # board brings that owner; else it is anyone's now.
    waits = waits_for_owner(t, owners)
    if not waits:
        fields.pop("steal_ms", None)
    pipe.hset(C.task_key(ns, tid), mapping=fields)
    seq, state, sig = int(t["seq"]), t["state"], t.get("requires", "")
    if state != "claimed":  # a claimed task's index is deadlines (below)
        pipe.zadd(C.state_key(ns, state), {tid: seq})
    if state == "queued":
        score = (C.max_priority - int(t.get("priority") or 0)) * C.ready_priority_step + seq
        # Either index takes away the agent's `solo` mark, as lib.lua's give_personal does.
        if t.get("assigned"):
            pipe.zadd(C.assigned_key(ns, t["assigned"]), {tid: score})
            pipe.hdel(C.agent_key(ns, t["assigned"]), "solo")
        elif waits:  # lib.lua's route
            pipe.zadd(C.affine_key(ns, t["owner"]), {tid: score})
            pipe.hdel(C.agent_key(ns, t["owner"]), "solo")
            pipe.zadd(C.steal_key(ns), {tid: int(t["steal_ms"])})
        else:
            queue = t["queue"]
            pipe.zadd(C.ready_key(ns, queue, sig), {tid: score})
            pipe.sadd(C.capsigs_key(ns, queue), sig)
            pipe.sadd(C.queues_key(ns), queue)
            if queue not in paused:
                pipe.zadd(C.heads_key(ns, sig), {queue: score}, lt=True)
    elif state == "retrying":
        pipe.zadd(C.backoff_key(ns), {tid: int(t.get("ready_ms") or 0)})
    elif state == "claimed":
        pipe.zadd(C.deadlines_key(ns), {tid: int(t.get("deadline_ms") or 0)})
        pipe.sadd(C.held_key(ns, t["agent"]), tid)
    elif in_auction(t):
        pipe.zadd(C.auctions_key(ns), {tid: int(t["bid_close_ms"])})
    if state not in ("done", "cancelled"):
        pipe.hincrby(C.sigs_key(ns), sig, 1)
    if t.get("parent") and t.get("spawn_token", "0") not in ("", "0"):
        # Rollback of the claim that spawned it looks here (lib.lua).
        pipe.sadd(C.children_key(ns, t["parent"], t["spawn_token"]), tid)
    # Every dependency, done or not: a done task never completes again, so the extra
    # members never count down anyone's wait.
    for dep in (d for d in t.get("after", "").split(",") if d):
        pipe.sadd(C.dependents_key(ns, dep), tid)
    if int(t.get("plan_total") or 0):
        pipe.zadd(C.plans_key(ns), {tid: seq})  # the plans pane's index (add-1.lua)
    if t.get("plan"):
        pipe.zadd(C.plan_children_key(ns, t["plan"]), {tid: seq})
    if state == "cancelled" and t.get("cancelled_by"):
        pipe.sadd(C.cascaded_key(ns, t["cancelled_by"]), tid)  # what a retry with restore walks
    kind = {"done": "done", "dead": "failed", "cancelled": "failed"}.get(state)
    if kind:
        # Retention's index (lib.lua retention_enter), in the order they finished, before
        # every task that finishes here later (scored by when: lib.lua finish_order).
        fin = int(t.get("updated_ms") or 0) - C.finished_import_offset
        pipe.zadd(C.finished_key(ns, kind, t["queue"]), {tid: fin})
        pipe.zadd(C.retention_due_key(ns), {f"{kind}:{t['queue']}": 0})
