"""The control room's model of a board: one snapshot read, capped so a huge board stays cheap.

On Redis the snapshot is three pipelined round trips (ids and counts; the hashes those ids
name; the per-queue ready depths) instead of one call per Store method, so a refresh costs
the same few milliseconds whether the board holds 100 tasks or 100 000. Every table is
capped at ``row_limit`` rows, picked by urgency (soonest lease deadline first, newest
orphans first); the totals come from the state indexes, so the panes can say "500 of 12 034".
The overview also looks for blocked tasks that wait on something that can never finish
(``Store.stuck``), one window of blocked tasks per refresh.

Any other Store is read through its public API (``_read_generic``), slower but the same model.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import exceptions as rexc

from claimroom.core import constants as C
from claimroom.core.errors import StoreUnavailable
from claimroom.core.models import Agent, Event, Lock, ServerInfo, State, Stuck, Task
from claimroom.core.redis.store import RedisStore
from claimroom.core.store import Store
from claimroom.core.storeurl import redacted

# What each pane shows beyond the counts and queues every snapshot has. A refresh reads
# only the active pane's sections (the rest keep their last reading), so a board under
# heavy traffic costs the app what one pane needs, not all eight.
SECTIONS = frozenset({"claims", "orphans", "agents", "locks", "events", "stuck"})
PANE_SECTIONS: dict[str, frozenset[str]] = {
    "overview": SECTIONS,
    "queues": frozenset({"claims"}),  # claimed counts per queue come from the claims read
    "claims": frozenset({"claims"}),
    "agents": frozenset({"agents"}),
    "orphans": frozenset({"orphans"}),
    "locks": frozenset({"locks"}),
    "events": frozenset({"events"}),
    "store": frozenset(),
}

ROW_LIMIT = 200  # rows read per table: four pages; the totals say how many more there are
EVENT_LIMIT = 200  # audit events kept in view
# Blocked tasks waiting on work that can never finish ("needs attention"): each refresh of
# the overview checks one window of blocked tasks, oldest first, and the ones it found
# before; a bigger board is walked a window per refresh, so none costs more than this.
STUCK_WINDOW = 500
STUCK_KEEP = 50  # stuck tasks remembered, and checked again, between windows
PING_HISTORY = 120  # pings kept for the store pane (one per snapshot)
EVENT_PAGE, EVENT_PAGES = 1000, 20  # generic path: audit catch-up per refresh

_UNAVAILABLE = (rexc.ConnectionError, rexc.TimeoutError, rexc.BusyLoadingError, OSError)

# Server facts shown on the store pane, in this order.
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


@dataclass(frozen=True)
class QueueRow:
    """One queue: how much is waiting, how much is being worked on, whether it is paused."""

    name: str
    ready: int
    claimed: int  # counted among the claims read, so exact unless the claims table was capped
    paused: bool


@dataclass(frozen=True)
class Snapshot:
    """The board as read at one moment; everything a pane renders comes from here."""

    store_ms: int  # the store's clock (TIME) at the read
    read_ms: int  # the app's clock at the read
    counts: dict[State, int]
    queues: tuple[QueueRow, ...]
    claims: tuple[Task, ...]  # soonest deadline first
    orphans: tuple[Task, ...]  # orphaned (newest first), then dead (newest first)
    agents: tuple[Agent, ...]
    agents_total: int
    locks: tuple[Lock, ...]
    locks_total: int
    events: tuple[Event, ...]  # oldest first
    ping_ms: float
    stuck: tuple[Stuck, ...] = ()  # blocked on a dependency that can never finish, oldest first
    servers: tuple[ServerInfo, ...] = ()  # the MCP servers on the board (claimroom serve)

    @property
    def claims_total(self) -> int:
        return self.counts.get(State.CLAIMED, 0)

    @property
    def orphans_total(self) -> int:
        return self.counts.get(State.ORPHANED, 0) + self.counts.get(State.DEAD, 0)

    def task(self, task_id: str) -> Task | None:
        """A task among the rows read (claims and orphans)."""
        for t in (*self.claims, *self.orphans):
            if t.id == task_id:
                return t
        return None


def _pairs(flat: dict[str, str] | list[str]) -> dict[str, str]:
    return flat if isinstance(flat, dict) else dict(zip(flat[::2], flat[1::2], strict=True))


class Board:
    """Reads snapshots of one namespace and remembers recent pings."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float] = time.time,
        *,
        row_limit: int = ROW_LIMIT,
        event_limit: int = EVENT_LIMIT,
        pipelined: bool = True,
        switch_key_events: bool = True,
    ) -> None:
        self.store = store
        # Whether ``watch`` may turn the server's key events on (CONFIG SET); a read-only
        # control room changes nothing, server settings included.
        self.switch_key_events = switch_key_events
        # Redis gets the pipelined read; ``pipelined=False`` forces the public-API path (tests).
        self.pipelined = pipelined and isinstance(store, RedisStore)
        self.clock = clock
        self.row_limit = row_limit
        self.event_limit = event_limit
        self.pings: deque[float] = deque(maxlen=PING_HISTORY)
        # The generic path follows the audit trail incrementally (it cannot read it backwards).
        self._events: deque[Event] = deque(maxlen=event_limit)
        self._last_event = "-"
        self.sections: frozenset[str] = SECTIONS  # what the next read fetches (Redis path)
        self._last: Snapshot | None = None  # sections not fetched are carried over from here
        # Whether the server sends the key events ``watch`` listens to; None: not known yet,
        # or no such thing (the file store).
        self.key_events: bool | None = None
        self._stuck: tuple[Stuck, ...] = ()
        self._stuck_from = 0  # where the next window of blocked tasks starts (creation order)

    @property
    def url(self) -> str:
        """The store URL with any password hidden."""
        return redacted(self.store.url)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _down(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"store unavailable at {self.url} ({exc.__class__.__name__}: {exc})")

    async def read(self) -> Snapshot:
        """One snapshot; ``StoreUnavailable`` when the store cannot be reached."""
        ping = await self.store.ping()
        self.pings.append(ping)
        try:
            if self.pipelined and isinstance(self.store, RedisStore):
                return await self._read_redis(self.store, ping)
            return await self._read_generic(ping)
        except _UNAVAILABLE as exc:
            raise self._down(exc) from None

    async def _read_stuck(self) -> tuple[Stuck, ...]:
        """The next window of blocked tasks checked for dependencies that can never finish,
        plus those found before (checked again: an operator may have cancelled them)."""
        found, self._stuck_from = await self.store.stuck(
            after_seq=self._stuck_from, limit=STUCK_WINDOW, also=[s.task.id for s in self._stuck]
        )
        self._stuck = tuple(sorted(found, key=lambda s: s.task.seq)[:STUCK_KEEP])
        return self._stuck

    async def server_info(self) -> dict[str, str]:
        """A few facts about the server for the store pane (empty for non-Redis stores)."""
        if not isinstance(self.store, RedisStore):
            return {}
        try:
            info: dict[str, Any] = await self.store.redis.info()
        except _UNAVAILABLE as exc:
            raise self._down(exc) from None
        return {k: str(info[k]) for k in INFO_FIELDS if k in info}

    async def watch(self, on_hint: Callable[[], None], on_live: Callable[[bool], None]) -> None:
        """Call ``on_hint`` whenever the board may have changed, until the link breaks.

        On Redis this owns its own subscription to the hints channel (rather than
        ``Store.wait_for_change``'s shared one) so a broken subscription can be dropped and
        made anew after an outage. Raises ``StoreUnavailable`` when the link breaks.
        """
        if not isinstance(self.store, RedisStore):
            try:
                await self.store.wait_for_change(0.01)  # the first call only sets its baseline
                on_live(True)
                on_hint()  # changes made before the baseline
                while True:
                    if await self.store.wait_for_change(1.0):
                        on_hint()
            finally:
                on_live(False)
        redis = self.store.redis
        hints = C.hints_channel(self.store.namespace)
        ours = C.prefix(self.store.namespace)
        # The reaper's leader lease is renewed (SET ... PX: an "expire" key event) every
        # pass: not a change of the board, and it would refresh every view twice a second.
        lease = C.reaper_key(self.store.namespace)
        db = int(redis.connection_pool.connection_kwargs.get("db", 0))
        key_channels = [f"__keyevent@{db}__:{name}" for name in C.keyspace_event_names]
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            self.key_events = await self._key_events_on(redis, self.switch_key_events)
            await pubsub.subscribe(hints, *key_channels)
            on_live(True)
            on_hint()  # changes made while we were not subscribed
            while True:
                message = await pubsub.get_message(timeout=1.0)
                # A key event names a key; only this namespace's keys matter here.
                if message is None:
                    continue
                if message["channel"] == hints or (
                    message["data"].startswith(ours) and message["data"] != lease
                ):
                    on_hint()
        except _UNAVAILABLE as exc:
            raise self._down(exc) from None
        finally:
            on_live(False)
            with contextlib.suppress(*_UNAVAILABLE):  # the connection may already be gone
                await pubsub.aclose()

    @staticmethod
    async def _key_events_on(redis: Any, switch: bool) -> bool:
        """Whether the server sends the key events claimroom needs; with ``switch``, turned
        on when off, adding to (never removing) what it already sends. False when they are
        off and stay off (read-only, or CONFIG refused as on a managed Redis): views then
        rely on the hints and the reconcile."""
        try:
            flags = str((await redis.config_get("notify-keyspace-events")).get("notify-keyspace-events", ""))
            if C.keyspace_events_on(flags):
                return True
            if not switch:
                return False
            await redis.config_set("notify-keyspace-events", C.keyspace_events_merged(flags))
            return True
        except rexc.ResponseError:
            return False

    # --- Redis: three pipelined round trips ------------------------------------------

    async def _read_redis(self, rs: RedisStore, ping: float) -> Snapshot:
        ns, n, r = rs.namespace, self.row_limit, rs.redis
        prefix = C.prefix(ns)

        last = self._last
        want = self.sections if last is not None else SECTIONS  # the first read fills every pane

        p1 = r.pipeline(transaction=False)
        p1.time()
        for s in State:
            p1.zcard(C.state_key(ns, s.value))
        p1.smembers(C.queues_key(ns))
        p1.smembers(C.paused_key(ns))
        p1.scard(C.agents_key(ns))
        p1.zcard(C.lockpaths_key(ns))
        if "claims" in want:
            p1.zrange(C.deadlines_key(ns), 0, n - 1)
        if "orphans" in want:
            p1.zrevrange(C.state_key(ns, State.ORPHANED.value), 0, n - 1)
            p1.zrevrange(C.state_key(ns, State.DEAD.value), 0, n - 1)
        if "agents" in want:
            p1.smembers(C.agents_key(ns))
        if "locks" in want:
            p1.zrange(C.lockpaths_key(ns), 0, n - 1)
        if "events" in want:
            p1.xrevrange(C.events_key(ns), "+", "-", count=self.event_limit)
        r1 = iter(await p1.execute())

        secs, micros = next(r1)
        store_ms = int(secs) * 1000 + int(micros) // 1000
        counts = {s: int(next(r1)) for s in State}
        queues, paused, agents_total, locks_total = next(r1), next(r1), int(next(r1)), int(next(r1))
        claim_ids = next(r1) if "claims" in want else []
        orphan_ids, dead_ids = (next(r1), next(r1)) if "orphans" in want else ([], [])
        names = sorted(next(r1))[:n] if "agents" in want else []
        lock_paths = next(r1) if "locks" in want else []
        raw_events = next(r1) if "events" in want else []
        queue_names = sorted(queues)
        task_ids = [*claim_ids, *orphan_ids, *dead_ids][: 2 * n]

        p2 = r.pipeline(transaction=False)
        for q in queue_names:
            p2.smembers(prefix + "capsigs:" + q)
        for tid in task_ids:
            p2.hgetall(C.task_key(ns, tid))
        for name in names:
            p2.hgetall(C.agent_key(ns, name))
            p2.smembers(C.held_key(ns, name))
        for path in lock_paths:
            p2.hgetall(C.lock_key(ns, path))
        r2 = await p2.execute()

        pos = 0
        sigs: list[list[str]] = [sorted(x) for x in r2[pos : pos + len(queue_names)]]
        pos += len(queue_names)
        tasks = [Task.from_fields(f) for f in r2[pos : pos + len(task_ids)] if f]
        pos += len(task_ids)
        raw_agents = r2[pos : pos + 2 * len(names)]
        pos += 2 * len(names)
        raw_locks = r2[pos:]

        ready: dict[str, int] = dict.fromkeys(queue_names, 0)
        if any(sigs):
            p3 = r.pipeline(transaction=False)
            for q, qsigs in zip(queue_names, sigs, strict=True):
                for sig in qsigs:
                    p3.zcard(C.ready_key(ns, q, sig))
            depths = iter(await p3.execute())
            for q, qsigs in zip(queue_names, sigs, strict=True):
                ready[q] = sum(int(next(depths)) for _ in qsigs)

        # The reads were not one transaction: keep only rows still in the state they were read for.
        if last is None or "claims" in want:
            claims = sorted(
                (t for t in tasks if t.state is State.CLAIMED), key=lambda t: (t.deadline_ms, t.seq)
            )
            claims = claims[:n]
        else:
            claims = list(last.claims)
        if last is None or "orphans" in want:
            orphans = [t for t in tasks if t.state is State.ORPHANED] + [
                t for t in tasks if t.state is State.DEAD
            ]
        else:
            orphans = list(last.orphans)
        if last is None or "agents" in want:
            agents = [
                Agent.from_fields(f, tuple(sorted(held)))
                for f, held in zip(raw_agents[::2], raw_agents[1::2], strict=True)
                if f
            ]
        else:
            agents = list(last.agents)
        if last is None or "locks" in want:
            read = (
                Lock.from_fields(path, f, store_ms) for path, f in zip(lock_paths, raw_locks, strict=True)
            )
            locks = [lock for lock in read if lock is not None]
        else:
            locks = list(last.locks)
        if last is None or "events" in want:
            events = [Event.from_fields(eid, _pairs(fields)) for eid, fields in reversed(raw_events)]
        else:
            events = list(last.events)
        stuck = await self._read_stuck() if last is None or "stuck" in want else last.stuck
        snap = Snapshot(
            store_ms=store_ms,
            read_ms=self.now_ms(),
            counts=counts,
            queues=self._queues(queue_names, ready, claims, set(paused)),
            claims=tuple(claims),
            orphans=tuple(orphans[:n]),
            agents=tuple(agents),
            agents_total=agents_total,
            locks=tuple(locks),
            locks_total=locks_total,
            events=tuple(events),
            ping_ms=ping,
            stuck=stuck,
            servers=tuple(await rs.servers()),
        )
        self._last = snap
        return snap

    @staticmethod
    def _queues(
        names: list[str], ready: dict[str, int], claims: list[Task], paused: set[str]
    ) -> tuple[QueueRow, ...]:
        busy: dict[str, int] = {}
        for t in claims:
            busy[t.queue] = busy.get(t.queue, 0) + 1
        every = sorted(set(names) | set(busy) | paused)
        return tuple(QueueRow(q, ready.get(q, 0), busy.get(q, 0), q in paused) for q in every)

    # --- any Store: the public API --------------------------------------------------

    async def _read_generic(self, ping: float) -> Snapshot:
        s, n = self.store, self.row_limit
        counts = await s.counts()
        claims = sorted(await s.tasks(state=State.CLAIMED, limit=5000), key=lambda t: (t.deadline_ms, t.seq))[
            :n
        ]
        orphaned = await s.tasks(state=State.ORPHANED, limit=5000)
        dead = await s.tasks(state=State.DEAD, limit=5000)
        queued = await s.tasks(state=State.QUEUED, limit=5000)  # depths are approximate past 5000
        paused = await s.paused()
        agents = await s.agents()
        locks = await s.locks()
        # The public API reads the trail forwards only: catch up a page at a time (bounded per
        # refresh, so a long trail costs a few refreshes, never one long stall), keeping the last few.
        for _ in range(EVENT_PAGES):
            new = await s.events(after=self._last_event, count=EVENT_PAGE)
            self._events.extend(new)
            if new:
                self._last_event = new[-1].id
            if len(new) < EVENT_PAGE:
                break
        ready: dict[str, int] = {}
        for t in queued:
            ready[t.queue] = ready.get(t.queue, 0) + 1
        now = self.now_ms()
        return Snapshot(
            store_ms=now,
            read_ms=now,
            counts=counts,
            queues=self._queues(sorted(ready), ready, claims, paused),
            claims=tuple(claims),
            orphans=tuple((orphaned[::-1] + dead[::-1])[:n]),
            agents=tuple(agents[:n]),
            agents_total=len(agents),
            locks=tuple(locks[:n]),
            locks_total=len(locks),
            events=tuple(self._events),
            ping_ms=ping,
            stuck=await self._read_stuck(),
            servers=tuple(await s.servers()),
        )


async def read_with_timeout(board: Board, timeout_s: float) -> Snapshot:
    """A snapshot, treating a store that does not answer in time as unavailable."""
    try:
        async with asyncio.timeout(timeout_s):
            return await board.read()
    except TimeoutError:
        raise StoreUnavailable(f"store at {board.url} did not answer within {timeout_s:.0f} s") from None
