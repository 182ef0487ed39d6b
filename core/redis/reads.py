"""The Redis backend's reads: tasks, agents, locks, the audit trail, what is stuck, who reaps.

Plain reads (pipelined where they take several commands), never a script: nothing holds
Redis while rows are read. Each takes the client (``r``, replies decoded to str) and the
namespace; the store wraps each call so that a lost connection is "store unavailable".
"""

from __future__ import annotations

import json
from typing import Any

from .. import constants as C
from ..errors import NotFound
from ..models import Agent, Event, Lock, ServerInfo, State, Stuck, Task, seq_of
from ..reaper import ReaperPass, ReaperStatus
from ..retention import BOARD, decoded


def _ms(time_reply: Any) -> int:
    """Redis TIME's reply in ms."""
    return int(time_reply[0]) * 1000 + int(time_reply[1]) // 1000


def count_in(pipe: Any, ns: str, state: State) -> Any:
    """Queue (or, on a pipeline in immediate mode, run) the count of ``state``'s tasks: the
    size of its index ``state:<state>`` (by creation order), but claimed tasks are indexed in
    ``deadlines`` only, by the end of their lease (lib.lua enter keeps no second index of
    them on the path of every claim and completion), less ``deadlines_keep``."""
    if state is State.CLAIMED:
        return pipe.zcount(C.deadlines_key(ns), "-inf", "(inf")
    return pipe.zcard(C.state_key(ns, state.value))


def live_claims(r: Any, ns: str, n: int = -1, *, withscores: bool = False) -> Any:
    """Read (on a pipeline: queue the read of) up to ``n`` (-1: all) claimed tasks, soonest
    deadline first: ``deadlines`` up to "(inf", so never ``deadlines_keep``."""
    return r.zrangebyscore(C.deadlines_key(ns), "-inf", "(inf", 0, n, withscores=withscores)


async def claimed_in_order(r: Any, ns: str) -> list[tuple[str, int]]:
    """The claimed tasks (id, seq), oldest first: their index is by deadline, and a task's
    seq is the number in its id (models.seq_of)."""
    return sorted(((tid, seq_of(tid)) for tid in await live_claims(r, ns)), key=lambda x: x[1])


def event_key(eid: str) -> tuple[int, int]:
    """An audit event id (``ms-seq``, ``ms``, or ``-`` before all) in its order."""
    if eid == "-":
        return (-1, -1)
    ms, _, seq = eid.partition("-")
    return (int(ms), int(seq or 0))


# --- tasks -------------------------------------------------------------------------


async def known(r: Any, ns: str, ids: list[str], capsigs: list[str]) -> tuple[set[str], set[str], int]:
    """Which of ``ids`` are tasks, which of ``capsigs`` are in use, how many are in use (the
    empty set never counts: lib.lua count_sig)."""
    # Pipelined in slices, so no one reply is huge.
    found: set[str] = set()
    for start in range(0, len(ids), 1000):
        part = ids[start : start + 1000]
        pipe = r.pipeline(transaction=False)
        for tid in part:
            pipe.exists(C.task_key(ns, tid))
        found.update(tid for tid, n in zip(part, await pipe.execute(), strict=True) if n)
    # At most max_capsigs fields, and '' on a board an older claimroom counted it on.
    in_use = set(await r.hkeys(C.sigs_key(ns))) - {""}
    return found, in_use & set(capsigs), len(in_use)


async def fetch(r: Any, ns: str, ids: list[str]) -> list[Task]:
    """The tasks of ``ids`` that exist, in that order: one pipelined read."""
    pipe = r.pipeline(transaction=False)
    for tid in ids:
        pipe.hgetall(C.task_key(ns, tid))
    return [Task.from_fields(f, tid) for tid, f in zip(ids, await pipe.execute(), strict=True) if f]


async def get(r: Any, ns: str, task: str) -> Task:
    fields = await r.hgetall(C.task_key(ns, task))
    if not fields:
        raise NotFound(f"no such task: {task}")
    return Task.from_fields(fields, task)


async def held(r: Any, ns: str, agent: str) -> list[Task]:
    ids = sorted(await r.smembers(C.held_key(ns, agent)))
    # A task that moved on between the two reads is left out: held means claimed by agent.
    return [t for t in await fetch(r, ns, ids) if t.state is State.CLAIMED and t.agent == agent]


async def tasks(
    r: Any, ns: str, state: State | None, queue: str | None, limit: int, offset: int
) -> list[Task]:
    """Tasks in creation order, of one state and queue if given; paged."""
    out: list[Task] = []
    chunk = max(limit, 200)
    pos = offset
    claimed = [tid for tid, _seq in await claimed_in_order(r, ns)] if state is State.CLAIMED else []
    after_seq, skip = 0, offset  # every state: a cursor on creation order, past the offset
    while len(out) < limit:
        if state is None:
            found = await _in_creation_order(r, ns, after_seq, chunk + skip)
            if not found:
                break
            after_seq = found[-1][1]
            ids = [tid for tid, _seq in found[skip:]]
            skip = max(0, skip - len(found))
        else:
            if state is State.CLAIMED:
                ids = claimed[pos : pos + chunk]
            else:
                ids = await r.zrange(C.state_key(ns, state.value), pos, pos + chunk - 1)
            if not ids:
                break
            pos += len(ids)
        out.extend(t for t in await fetch(r, ns, ids) if queue is None or t.queue == queue)
    return out[:limit]


async def _in_creation_order(r: Any, ns: str, after_seq: int, n: int) -> list[tuple[str, int]]:
    """Up to ``n`` tasks created after ``after_seq`` (id, seq), oldest first: the state
    indexes merged (retention removes finished tasks, so ids are not simply t1..tN)."""
    pipe = r.pipeline(transaction=False)
    for s in State:
        if s is not State.CLAIMED:
            pipe.zrangebyscore(C.state_key(ns, s.value), f"({after_seq}", "+inf", 0, n, withscores=True)
    claimed = [(tid, seq) for tid, seq in await claimed_in_order(r, ns) if seq > after_seq][:n]
    parts = [*await pipe.execute(), claimed]
    merged = sorted(((tid, int(seq)) for part in parts for tid, seq in part), key=lambda x: x[1])
    return merged[:n]


async def counts(r: Any, ns: str) -> dict[State, int]:
    pipe = r.pipeline(transaction=False)
    for s in State:
        count_in(pipe, ns, s)
    return dict(zip(State, await pipe.execute(), strict=True))


async def stuck(r: Any, ns: str, after_seq: int, limit: int, also: list[str]) -> tuple[list[Stuck], int]:
    """Blocked tasks waiting on a task that can never finish, among the ``limit`` blocked
    after ``after_seq`` and ``also``; and the ``after_seq`` to look from next (0: the end)."""
    blocked_key = C.state_key(ns, State.BLOCKED.value)
    window = await r.zrangebyscore(blocked_key, f"({after_seq}", "+inf", 0, limit, withscores=True)
    next_seq = int(window[-1][1]) if len(window) == limit else 0
    ids = list(dict.fromkeys([*(tid for tid, _ in window), *also]))

    async def hmget(tids: list[str], *names: str) -> list[list[str | None]]:
        pipe = r.pipeline(transaction=False)
        for tid in tids:
            pipe.hmget(C.task_key(ns, tid), *names)
        return list(await pipe.execute())

    rows = await hmget(ids, "state", "after")
    waits = {
        tid: [d for d in (after or "").split(",") if d]
        for tid, (state, after) in zip(ids, rows, strict=True)
        if state == "blocked"
    }
    deps = list(dict.fromkeys(d for after in waits.values() for d in after))
    states = await hmget(deps, "state")
    over = {
        d: s or "missing" for d, (s,) in zip(deps, states, strict=True) if s in (None, "dead", "cancelled")
    }
    on: dict[str, str] = {}
    for tid, after in waits.items():
        hopeless = [d for d in after if d in over]
        if hopeless:
            on[tid] = hopeless[0]
    found = sorted(await fetch(r, ns, list(on)), key=lambda t: t.seq)
    return [Stuck(t, on[t.id], over[on[t.id]]) for t in found], next_seq


# --- agents and locks ----------------------------------------------------------------


async def agents(r: Any, ns: str) -> list[Agent]:
    names = sorted(await r.smembers(C.agents_key(ns)))
    pipe = r.pipeline(transaction=False)
    for n in names:
        pipe.hgetall(C.agent_key(ns, n))
        pipe.smembers(C.held_key(ns, n))
        pipe.zcard(C.affine_key(ns, n))
    raw = await pipe.execute()
    return [
        Agent.from_fields({**f, "owned": str(owned)}, tuple(sorted(held)))
        for f, held, owned in zip(raw[::3], raw[1::3], raw[2::3], strict=True)
        if f
    ]


async def locks(r: Any, ns: str) -> list[Lock]:
    paths = await r.zrange(C.lockpaths_key(ns), 0, 9999)
    pipe = r.pipeline(transaction=False)
    pipe.time()
    for p in paths:
        pipe.hgetall(C.lock_key(ns, p))
    raw = await pipe.execute()
    now_ms = _ms(raw[0])
    found = (Lock.from_fields(path, f, now_ms) for path, f in zip(paths, raw[1:], strict=True))
    return [lock for lock in found if lock is not None]


# --- the audit trail -----------------------------------------------------------------


async def scan(r: Any, ns: str, task: str | None, start: str, end: str, count: int) -> list[Event]:
    """Events from ``start`` to ``end`` (XRANGE bounds), of one task if given: read
    through the whole trail, a thousand at a time."""
    stream = C.events_key(ns)
    out: list[Event] = []
    while len(out) < count:
        batch = await r.xrange(stream, start, end, count=1000)
        if not batch:
            break
        for eid, fields in batch:
            event = Event.from_fields(eid, fields)
            if task is None or event.task == task:
                out.append(event)
        start = "(" + batch[-1][0]
    return out[:count]


async def task_events(r: Any, ns: str, task: str, after: str, count: int) -> list[Event]:
    """One task's events through its index (``taskevents:<id>`` and the event fields of
    its hash, ``C.task_event_fields``, written by every audit in lib.lua): one read of the
    ids, one pipelined read of those events, whatever the length of the trail. Ids the
    trail has trimmed are skipped."""
    stream = C.events_key(ns)
    pipe = r.pipeline(transaction=False)
    pipe.lrange(C.task_events_key(ns, task), 0, -1)
    pipe.hmget(C.task_key(ns, task), "state", *C.task_event_fields)
    listed, (exists, *held) = await pipe.execute()
    if not exists:
        return []  # removed by retention (its history goes with it), or never there
    # The list is in order but for an earlier claim's id moved there later (lib.lua).
    ids = sorted({*listed, *(eid for eid in held if eid)}, key=event_key)
    if not ids:
        # A task from before the index (an older claimroom): the whole trail, as it was.
        return await scan(r, ns, task, "-" if after == "-" else "(" + after, "+", count)
    since = event_key(after)
    wanted = [eid for eid in ids if event_key(eid) > since][:count]
    pipe = r.pipeline(transaction=False)
    for eid in [ids[0], *wanted]:
        pipe.xrange(stream, eid, eid)
    first, *found = await pipe.execute()
    events = [Event.from_fields(got[0][0], got[0][1]) for got in found if got]
    if first and Event.from_fields(*first[0]).type != "added" and len(ids) < C.task_events_max:
        # Its first events were written before the index existed (an older claimroom):
        # those come from the trail, read up to the first indexed one.
        start = "-" if after == "-" else "(" + after
        older = await scan(r, ns, task, start, "(" + ids[0], count)
        events = (older + events)[:count]
    return events


# --- recovery, retention, servers ------------------------------------------------------


async def reaper_status(r: Any, ns: str) -> ReaperStatus:
    pipe = r.pipeline(transaction=True)  # one moment: the clock and the board agree
    pipe.time()
    pipe.hgetall(C.reaper_status_key(ns))
    count_in(pipe, ns, State.CLAIMED)
    live_claims(pipe, ns, 1, withscores=True)
    clock, fields, live, head = await pipe.execute()
    return ReaperStatus(
        now_ms=_ms(clock),
        live_claims=int(live),
        next_deadline_ms=int(head[0][1]) if head else None,
        last=ReaperPass.from_fields(fields),
    )


async def retention_settings(r: Any, ns: str, queue: str | None) -> tuple[dict[str, int], dict[str, int]]:
    """The stored settings of the board and of ``queue`` ({} for none)."""
    board, own = await r.hmget(C.retention_key(ns), BOARD, queue or BOARD)
    return decoded(board), decoded(own) if queue is not None else {}


async def servers(r: Any, ns: str) -> list[ServerInfo]:
    """The MCP servers whose records are live (at most ``max_servers``)."""
    pipe = r.pipeline(transaction=True)
    pipe.time()
    pipe.zrange(C.servers_key(ns), 0, C.max_servers - 1, withscores=True)
    clock, ids = await pipe.execute()
    now = _ms(clock)
    live = [sid for sid, expires in ids if expires > now]
    if not live:
        return []
    raw = await r.hmget(C.server_records_key(ns), live)
    return [ServerInfo.from_json(json.loads(x)) for x in raw if x]
