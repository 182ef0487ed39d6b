"""What the Redis backend gives views: the board snapshot, server facts, and change watching
(``Store.snapshot``, ``server_facts``, ``key_events``, ``changes``).

A snapshot is three pipelined round trips, whatever the size of the board: the clock,
counts, ids and names; the hashes those name and each queue's signatures; the depth of
each (queue, signature) ready set. Plain reads, not a script: nothing holds Redis while
the rows are read. The reads are not one transaction, so a row that moved on between the
round trips is left out of the section it was read for.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator
from typing import Any

from redis import exceptions as rexc

from .. import constants as C
from ..models import Agent, Event, Lock, ServerInfo, State, Task
from ..snapshot import PlanTree, Snapshot, by_review_time, claimed_per_queue, queue_rows
from . import bidding
from .reads import count_in, live_claims

# Server facts shown on the control room's store pane, in this order.
INFO_FIELDS = (
    "redis_version",
    "redis_mode",
    "role",
    "uptime_in_seconds",
    "connected_clients",
    "used_memory_human",
    "maxmemory_policy",
    "aof_enabled",
)


def _pairs(flat: dict[str, str] | list[str]) -> dict[str, str]:
    return flat if isinstance(flat, dict) else dict(zip(flat[::2], flat[1::2], strict=True))


async def read(r: Any, ns: str, want: frozenset[str], n: int, event_count: int) -> Snapshot:
    """The snapshot of namespace ``ns``: ``want`` the sections, ``n`` rows per table."""
    p1 = r.pipeline(transaction=False)
    p1.time()
    for s in State:
        count_in(p1, ns, s)
    p1.smembers(C.queues_key(ns))
    p1.smembers(C.paused_key(ns))
    p1.scard(C.agents_key(ns))
    p1.zcard(C.lockpaths_key(ns))
    p1.zrange(C.servers_key(ns), 0, C.max_servers - 1, withscores=True)
    if "claims" in want:
        live_claims(p1, ns, n)
    if "orphans" in want:
        p1.zrevrange(C.state_key(ns, State.ORPHANED.value), 0, n - 1)
        p1.zrevrange(C.state_key(ns, State.DEAD.value), 0, n - 1)
    if "review" in want:
        p1.zrange(C.state_key(ns, State.REVIEW.value), 0, n - 1)
    if "agents" in want:
        p1.smembers(C.agents_key(ns))
    if "locks" in want:
        p1.zrange(C.lockpaths_key(ns), 0, n - 1)
    if "events" in want:
        p1.xrevrange(C.events_key(ns), "+", "-", count=event_count)
    r1 = iter(await p1.execute())

    secs, micros = next(r1)
    store_ms = int(secs) * 1000 + int(micros) // 1000
    counts = {s: int(next(r1)) for s in State}
    queues, paused, agents_total, locks_total = next(r1), next(r1), int(next(r1)), int(next(r1))
    servers = [sid for sid, expires in next(r1) if expires > store_ms]
    claim_ids = next(r1) if "claims" in want else []
    orphan_ids, dead_ids = (next(r1), next(r1)) if "orphans" in want else ([], [])
    review_ids = next(r1) if "review" in want else []
    names = sorted(next(r1))[:n] if "agents" in want else []
    lock_paths = next(r1) if "locks" in want else []
    raw_events = next(r1) if "events" in want else []
    queue_names = sorted(queues)
    task_ids = [*claim_ids, *orphan_ids, *dead_ids[: n - len(orphan_ids)], *review_ids]

    p2 = r.pipeline(transaction=False)
    for q in queue_names:
        p2.smembers(C.capsigs_key(ns, q))
    for tid in task_ids:
        p2.hgetall(C.task_key(ns, tid))
    for name in names:
        p2.hgetall(C.agent_key(ns, name))
        p2.smembers(C.held_key(ns, name))
        p2.zcard(C.affine_key(ns, name))
    for path in lock_paths:
        p2.hgetall(C.lock_key(ns, path))
    if servers:
        p2.hmget(C.server_records_key(ns), servers)
    r2 = iter(await p2.execute())

    sigs = [sorted(next(r2)) for _ in queue_names]
    tasks = [
        Task.from_fields(f, tid) for tid, f in zip(task_ids, [next(r2) for _ in task_ids], strict=True) if f
    ]
    raw_agents = [(next(r2), next(r2), next(r2)) for _ in names]
    raw_locks = [next(r2) for _ in lock_paths]
    records = next(r2) if servers else []

    ready: dict[str, int] = dict.fromkeys(queue_names, 0)
    if any(sigs):
        p3 = r.pipeline(transaction=False)
        for q, qsigs in zip(queue_names, sigs, strict=True):
            for sig in qsigs:
                p3.zcard(C.ready_key(ns, q, sig))
        depths = iter(await p3.execute())
        for q, qsigs in zip(queue_names, sigs, strict=True):
            ready[q] = sum(int(next(depths)) for _ in qsigs)

    claims = sorted((t for t in tasks if t.state is State.CLAIMED), key=lambda t: (t.deadline_ms, t.seq))[:n]
    orphaned = [t for t in tasks if t.state is State.ORPHANED] + [t for t in tasks if t.state is State.DEAD]
    reviews = by_review_time((t for t in tasks if t.state is State.REVIEW), n)
    agents = [
        Agent.from_fields({**f, "owned": str(owned)}, tuple(sorted(held)))
        for f, held, owned in raw_agents
        if f
    ]
    read_locks = (Lock.from_fields(path, f, store_ms) for path, f in zip(lock_paths, raw_locks, strict=True))
    open_auctions = await bidding.auctions(r, ns, min(n, C.auctions_view_max)) if "auctions" in want else []
    return Snapshot(
        store_ms=store_ms,
        counts=counts,
        queues=queue_rows(ready, claimed_per_queue(claims), paused, claimed_per_queue(reviews)),
        claims=tuple(claims),
        orphans=tuple(orphaned[:n]),
        agents=tuple(agents),
        agents_total=agents_total,
        locks=tuple(lock for lock in read_locks if lock is not None),
        locks_total=locks_total,
        events=tuple(Event.from_fields(eid, _pairs(fields)) for eid, fields in reversed(raw_events)),
        servers=tuple(
            sorted((ServerInfo.from_json(json.loads(x)) for x in records if x), key=lambda s: s.id)
        ),
        sections=want,
        queue_claims_exact=False,
        auctions=tuple(open_auctions),
        reviews=reviews,
        plans=await read_plans(r, ns) if "plans" in want else (),
    )


async def read_plans(r: Any, ns: str) -> tuple[PlanTree, ...]:
    """The newest unfinished plans with their first subtasks: three pipelined round trips of
    bounded size. The plans index also holds finished plans (until it is trimmed or
    retention removes them), so a few times as many are looked at as are shown."""
    ids = await r.zrevrange(C.plans_key(ns), 0, 4 * C.snapshot_plans - 1)
    p1 = r.pipeline(transaction=False)
    for tid in ids:
        p1.hgetall(C.task_key(ns, tid))
    found = zip(ids, await p1.execute(), strict=True)
    parents = [t for t in (Task.from_fields(f, tid) for tid, f in found if f) if not t.state.final]
    parents = parents[: C.snapshot_plans]
    p2 = r.pipeline(transaction=False)
    for t in parents:
        p2.zrange(C.plan_children_key(ns, t.id), 0, C.snapshot_plan_subtasks - 1)
    kids = await p2.execute()
    p3 = r.pipeline(transaction=False)
    for names in kids:
        for tid in names:
            p3.hgetall(C.task_key(ns, tid))
    rows = iter(await p3.execute())
    trees = []
    for parent, names in zip(parents, kids, strict=True):
        subs = [
            Task.from_fields(f, tid) for tid, f in zip(names, [next(rows) for _ in names], strict=True) if f
        ]
        trees.append(PlanTree(parent, tuple(subs)))
    return tuple(trees)


async def server_facts(r: Any) -> dict[str, str]:
    """A few facts about the server (INFO), in ``INFO_FIELDS`` order."""
    info: dict[str, Any] = await r.info()
    return {k: str(info[k]) for k in INFO_FIELDS if k in info}


async def key_events_on(r: Any, switch: bool) -> bool:
    """Whether the server sends the key events ``changes`` listens to; with ``switch``,
    turned on when off, adding to (never removing) what it already sends. False when they
    are off and stay off (no switch, or CONFIG refused as on a managed Redis): views then
    rely on the hints and their periodic reconcile."""
    try:
        flags = str((await r.config_get("notify-keyspace-events")).get("notify-keyspace-events", ""))
        if C.keyspace_events_on(flags):
            return True
        if not switch:
            return False
        await r.config_set("notify-keyspace-events", C.keyspace_events_merged(flags))
        return True
    except rexc.ResponseError:
        return False


async def changes(r: Any, ns: str) -> AsyncGenerator[None, None]:
    """Yield once subscribed, then on every hint of ``ns`` and every key event naming one
    of its keys, on a subscription of its own (closed when the iteration ends)."""
    hints = C.hints_channel(ns)
    ours = C.prefix(ns)
    # The reaper's leader lease is renewed (SET ... PX: an "expire" key event) every
    # pass: not a change of the board, and it would refresh every view twice a second.
    lease = C.reaper_key(ns)
    db = int(r.connection_pool.connection_kwargs.get("db", 0))
    key_channels = [f"__keyevent@{db}__:{name}" for name in C.keyspace_event_names]
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(hints, *key_channels)
        yield  # changes made while nobody was subscribed
        while True:
            message = await pubsub.get_message(timeout=1.0)
            # A key event names a key; only this namespace's keys matter here.
            if message is None:
                continue
            if message["channel"] == hints or (message["data"].startswith(ours) and message["data"] != lease):
                yield
    finally:
        # The connection may already be gone (the outage that ended the watch).
        with contextlib.suppress(rexc.ConnectionError, rexc.TimeoutError, OSError):
            await pubsub.aclose()
