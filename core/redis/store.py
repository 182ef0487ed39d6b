"""The Redis backend: every state change is one Lua script (see ``scripts.py``).

The reads that take several commands are in ``reads.py`` (the control room's views in
``snapshot.py``, the whole-board dump in ``dump.py``); here each is one guarded call, so a
lost connection is "store unavailable" wherever it happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from redis import exceptions as rexc

from .. import constants as C
from ..bidding import Auction, Bid, Outcome
from ..dump import Board
from ..endpoints import endpoint
from ..errors import ErrorCode, StoreUnavailable
from ..identity import Role, TokenInfo
from ..models import (
    Agent,
    Claim,
    ClaimMiss,
    Completion,
    Event,
    Lock,
    Message,
    ReapReport,
    ServerInfo,
    State,
    Stuck,
    Task,
)
from ..reaper import ReaperId, ReaperStatus
from ..snapshot import Snapshot
from ..store import Store
from ..storeurl import redacted
from ..topology import Topology
from . import bidding, connect, dump, functions, reads, topology
from . import messages as mail
from . import snapshot as views
from .admin import RedisAdmin
from .coalesce import Coalescer

T = TypeVar("T")

_UNAVAILABLE = (rexc.ConnectionError, rexc.TimeoutError, rexc.BusyLoadingError, OSError)


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def claimed_fields(reply: list[Any]) -> list[tuple[str, dict[str, str] | None]]:
    """Each task a claim script's reply {0, id, n, text, ...} claimed: its id and fields.

    A task's fields come joined by U+001F in one text (lib.lua reply_task). None when the
    text does not split into its count: a field holds U+001F, which only a hand-written
    value can (stored text refuses control characters), so the caller reads the task.
    """
    out: list[tuple[str, dict[str, str] | None]] = []
    for tid, n, text in zip(reply[1::3], reply[2::3], reply[3::3], strict=True):
        flat = str(text).split("\x1f")
        out.append((str(tid), _pairs(flat) if len(flat) == int(n) else None))
    return out


def _applies(message: dict[str, Any], wake: str, queues: list[str], caps: set[str]) -> bool:
    """Whether a hint on the claimable or the agent's wake channel can mean work for a
    claimer of ``queues`` (all when empty) holding ``caps``: only then does it claim again."""
    if message.get("type") != "message":
        return False
    if message["channel"] == wake:
        return True
    queue, _, sig = str(message["data"]).partition(" ")
    if queues and queue != "*" and queue not in queues:
        return False
    return sig == "*" or {c for c in sig.split(",") if c} <= caps


class RedisStore(Store):
    """A namespace on a Redis server (standalone, or one Cluster slot through the hash tag)."""

    def __init__(self, url: str, namespace: str, *, coalesce: bool = True) -> None:
        self.url = url
        self.namespace = namespace
        self._prefix = C.prefix(namespace)
        self._stream = C.events_key(namespace)
        self._channel = C.hints_channel(namespace)
        self._claimable = C.claimable_channel(namespace)
        # Typed Any on purpose: redis-py's stubs type every reply as bytes | str whatever
        # decode_responses says; with it on, replies here are str (and lists of str).
        # One master serves the namespace, however the URL reaches it (connect.py).
        self._redis: Any = connect.client(
            url,
            self._stream,
            decode_responses=True,
            socket_connect_timeout=C.connect_timeout_s,
            max_connections=256,
        )
        self._watch: Any = None
        # Concurrent script calls share round trips (see coalesce.py); off: one trip per call.
        # A URL's wait=N makes every batch wait for N replicas (WAIT on the batch's own
        # connection), so it always goes through the coalescer.
        replicas, wait_ms = connect.wait_of(url)
        on = coalesce or replicas > 0
        self._coalescer = Coalescer(self._redis, wait=(replicas, wait_ms)) if on else None

    # --- plumbing --------------------------------------------------------------------

    def _down(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(
            f"store unavailable at {redacted(self.url)} ({connect.reason(exc)}); "
            "run `claimroom up` to start it, or point CLAIMROOM_URL at a running Redis"
        )

    async def _guard(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except _UNAVAILABLE as exc:
            raise self._down(exc) from None
        except functions.OldServer as exc:
            raise StoreUnavailable(f"store at {redacted(self.url)} cannot serve claimroom: {exc}") from None

    async def _run(self, name: str, *args: Any) -> list[Any]:
        """Run a script; return what follows its status, or raise its refusal."""
        keys, argv = [self._stream], [self._prefix, *args]
        if self._coalescer is None:
            reply = await self._guard(lambda: functions.call(self._redis, name, keys, argv))
        else:
            coalescer = self._coalescer
            reply = await self._guard(lambda: coalescer.call(name, keys, argv))
        status = int(reply[0])
        if status < 0:
            raise ErrorCode(status).exception([str(x) for x in reply[1:]])
        return list(reply)

    # --- tasks -----------------------------------------------------------------------

    async def _add(self, specs: list[dict[str, Any]], by: str) -> list[str]:
        reply = await self._run("add", json.dumps(specs), by)
        return [str(x) for x in reply[1:]]

    async def _known(self, ids: list[str], capsigs: list[str]) -> tuple[set[str], set[str], int]:
        # Plain reads, pipelined in slices: no script call, so nothing holds Redis long.
        return await self._guard(lambda: reads.known(self._redis, self.namespace, ids, capsigs))

    async def _claims(self, reply: list[Any]) -> tuple[list[Claim], ClaimMiss, str]:
        """The claims of a claim script's reply, or why none; and the agent's capabilities
        when none (what a waiting claimer can take)."""
        if int(reply[0]) == 1:
            return [], ClaimMiss(str(reply[1]), int(reply[2])), str(reply[3])
        claims = []
        for tid, fields in claimed_fields(reply):
            if fields is not None:
                task = Task.from_fields(fields, tid)
            else:  # the claim is made: the task as it is now
                task = await self._guard(partial(reads.get, self._redis, self.namespace, tid))
            claims.append(Claim(task, task.token, task.deadline_ms))
        return claims, ClaimMiss(""), ""

    async def _claim_caps(
        self, agent: str, queues: list[str], ttl_ms: int, count: int
    ) -> tuple[list[Claim], ClaimMiss, str]:
        return await self._claims(await self._run("claim", agent, ttl_ms, ",".join(queues), count))

    async def _claim(
        self, agent: str, queues: list[str], ttl_ms: int, count: int
    ) -> tuple[list[Claim], ClaimMiss]:
        got, why, _caps = await self._claim_caps(agent, queues, ttl_ms, count)
        return got, why

    async def _claim_waiting(
        self, agent: str, queues: list[str], ttl_ms: int, count: int, wait_s: float
    ) -> tuple[list[Claim], ClaimMiss]:
        # Subscribe before the first attempt so no hint falls between attempt and wait.
        # A hint only wakes us: the task is still taken through the atomic claim (rule 8),
        # and the periodic re-check means a lost hint costs delay, never a missed task.
        # Only hints of work this claimer could take wake it (not a heartbeat, not work in
        # another queue or needing a capability it lacks), so idle claimers cost Redis
        # one claim per re-check, however busy the board.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        wake = C.wake_channel(self.namespace, agent)
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        # A message that arrives while it waits ends the wait (ClaimMiss "message"): one
        # newer than this mark, unread, as read at each re-check (the hint only hurries it).
        mark, _ = await self._message_news(agent, C.max_counter)
        try:
            await self._guard(lambda: pubsub.subscribe(self._claimable, wake))
            while True:
                got, why, caps = await self._claim_caps(agent, queues, ttl_ms, count)
                left = deadline - loop.time()
                if got or left <= 0:
                    return got, why
                if (await self._message_news(agent, mark))[1]:
                    return [], ClaimMiss("message")
                pause = min(left, C.wait_recheck_s)
                if why.next_change_in_ms >= 0:
                    pause = min(pause, why.next_change_in_ms / 1000 + 0.001)
                can = {c for c in caps.split(",") if c}
                await self._until_claimable(pubsub, wake, queues, can, loop.time() + pause)
        finally:
            await pubsub.aclose()

    async def _until_claimable(
        self, pubsub: Any, wake: str, queues: list[str], caps: set[str], until: float
    ) -> None:
        """Return at ``until``, or as soon as a hint says there may be work for this claimer."""
        loop = asyncio.get_running_loop()
        while (left := until - loop.time()) > 0:
            message = await self._guard(partial(pubsub.get_message, timeout=left))
            if message is not None and _applies(message, wake, queues, caps):
                # Several hints may have queued up; one claim attempt covers them all.
                while await self._guard(lambda: pubsub.get_message(timeout=0)) is not None:
                    pass
                return

    async def _heartbeat(
        self, task: str, token: int, ttl_ms: int | None, updates: dict[str, str], agent: str
    ) -> int:
        flat = [x for kv in updates.items() for x in kv]
        reply = await self._run("heartbeat", task, token, "" if ttl_ms is None else ttl_ms, agent, *flat)
        return int(reply[1])

    async def _complete(self, task: str, token: int, result: str, agent: str, review: str = "") -> list[str]:
        reply = await self._run("complete", task, token, result, agent, review)
        return [str(x) for x in reply[1:]]

    async def _complete_and_claim(
        self, task: str, token: int, result: str, agent: str, queues: list[str], ttl_ms: int, count: int
    ) -> tuple[list[str], list[Claim], ClaimMiss]:
        # complete-1.lua's ARGV[7] "1": then the claim, in the same call; one flat reply
        # {0, k, k unblocked ids, the claim's reply}.
        qs = ",".join(queues)
        reply = await self._run("complete", task, token, result, agent, "", "1", ttl_ms, qs, count)
        k = int(reply[1])
        got, why, _caps = await self._claims(reply[2 + k :])
        return [str(x) for x in reply[2 : 2 + k]], got, why

    async def _complete_many(
        self, items: list[tuple[str, int, str]], agent: str, queues: list[str], ttl_ms: int, count: int
    ) -> tuple[list[Completion], list[Claim], ClaimMiss]:
        # complete_many-1.lua: one flat reply {0, n, each task's reply as its length then
        # its elements, the claim's reply or 0}.
        flat = [x for item in items for x in item]
        reply = await self._run("complete_many", agent, count, ttl_ms, ",".join(queues), *flat)
        outcomes, at = [], 2
        for task, _, _ in items:
            size = int(reply[at])
            each, at = reply[at + 1 : at + 1 + size], at + 1 + size
            status = int(each[0])
            if status < 0:
                outcomes.append(Completion(task, [], ErrorCode(status).exception([str(x) for x in each[1:]])))
            else:
                outcomes.append(Completion(task, [str(x) for x in each[1:]]))
        if count == 0:
            return outcomes, [], ClaimMiss("")
        got, why, _caps = await self._claims(reply[at:])
        return outcomes, got, why

    async def _fail(
        self, task: str, token: int, reason: str, fatal: bool, jitter: float, agent: str
    ) -> tuple[State, int]:
        reply = await self._run("fail", task, token, reason, "1" if fatal else "0", repr(jitter), agent)
        return State(reply[1]), int(reply[2])

    async def _release(self, task: str, token: int, agent: str) -> None:
        await self._run("release", task, token, agent)

    async def _held(self, agent: str) -> list[Task]:
        return await self._guard(lambda: reads.held(self._redis, self.namespace, agent))

    async def _get(self, task: str) -> Task:
        return await self._guard(lambda: reads.get(self._redis, self.namespace, task))

    async def _tasks(self, state: State | None, queue: str | None, limit: int, offset: int) -> list[Task]:
        return await self._guard(
            lambda: reads.tasks(self._redis, self.namespace, state, queue, limit, offset)
        )

    async def _counts(self) -> dict[State, int]:
        return await self._guard(lambda: reads.counts(self._redis, self.namespace))

    # --- agents ----------------------------------------------------------------------

    async def _register(self, agent: str, caps: str, max_claims: int, session: str) -> None:
        await self._run("register", agent, caps, max_claims, session)

    async def _alive(self, agent: str) -> int:
        return int((await self._run("alive", agent))[1])

    async def _agents(self) -> list[Agent]:
        return await self._guard(lambda: reads.agents(self._redis, self.namespace))

    # --- locks -----------------------------------------------------------------------

    async def _lock(self, paths: list[str], agent: str, ttl_ms: int, shared: bool, task: str) -> int:
        reply = await self._run("lock", agent, ttl_ms, "1" if shared else "0", task, *paths)
        return int(reply[1])

    async def _unlock(self, paths: list[str], agent: str, task: str | None, own: bool) -> list[str]:
        which = "*" if task is None else task
        return [str(x) for x in (await self._run("unlock", agent, which, "1" if own else "", *paths))[1:]]

    async def _locks(self) -> list[Lock]:
        return await self._guard(lambda: reads.locks(self._redis, self.namespace))

    # --- audit and recovery ----------------------------------------------------------

    async def _events(self, task: str | None, after: str, count: int) -> list[Event]:
        if task is not None:
            return await self._guard(
                lambda: reads.task_events(self._redis, self.namespace, task, after, count)
            )
        return await self._scan(None, "-" if after == "-" else "(" + after, "+", count)

    async def _scan(self, task: str | None, start: str, end: str, count: int) -> list[Event]:
        """Events from ``start`` to ``end`` (XRANGE bounds), of one task if given, read
        through the whole trail (``reads.scan``)."""
        return await self._guard(lambda: reads.scan(self._redis, self.namespace, task, start, end, count))

    async def _follow(self, task: str | None, after: str) -> AsyncIterator[Event]:
        last = after
        while True:
            reply = await self._guard(partial(self._redis.xread, {self._stream: last}, block=1000, count=500))
            for _stream, entries in reply or []:
                for eid, fields in entries:
                    last = eid
                    event = Event.from_fields(eid, fields)
                    if task is None or event.task == task:
                        yield event

    async def _reap(self, by: ReaperId | None) -> ReapReport:
        who = ("", "", "", "") if by is None else (by.kind, by.host, by.pid, by.interval_ms)
        reply = await self._run("reap", *who)
        expired = [str(x) for x in reply[1]]
        by_outcome: dict[str, list[str]] = {"queued": [], "orphaned": [], "dead": []}
        for tid, outcome in zip(expired[::2], expired[1::2], strict=True):
            by_outcome[outcome].append(tid)
        return ReapReport(
            requeued=tuple(by_outcome["queued"]),
            orphaned=tuple(by_outcome["orphaned"]),
            dead=tuple(by_outcome["dead"]),
            promoted=tuple(str(x) for x in reply[2]),
            locks_expired=int(reply[3]),
            cancelled=tuple(str(x) for x in reply[4]),
            restored=tuple(str(x) for x in reply[5]),
            cascades_pending=int(reply[6]),
            auctions_closed=tuple(str(x) for x in reply[7]),
        )

    async def _retain(self) -> tuple[int, int, int, bool]:
        reply = await self._run("retain")
        return int(reply[1]), int(reply[2]), int(reply[3]), bool(int(reply[4]))

    async def _set_retention(self, scope: str, changes: dict[str, int], reset: bool) -> None:
        from ..retention import BOARD, encoded

        await self._run("retention", scope, encoded(changes), "1" if reset else "")
        if scope == BOARD:
            # Every queue may follow the board's settings: each is due for a look at the next
            # pass. Marked in capped batches (rule 10), at most once round the set.
            key = C.retention_due_key(self.namespace)
            rounds = int(await self._guard(lambda: self._redis.zcard(key))) // 500 + 1
            for _ in range(rounds):
                later = await self._guard(lambda: self._redis.zrangebyscore(key, "(0", "+inf", 0, 500))
                if not later:
                    break
                await self._guard(partial(self._redis.zadd, key, dict.fromkeys(later, 0), xx=True))

    async def _retention_settings(self, queue: str | None) -> tuple[dict[str, int], dict[str, int]]:
        return await self._guard(lambda: reads.retention_settings(self._redis, self.namespace, queue))

    async def _reaper_status(self) -> ReaperStatus:
        return await self._guard(lambda: reads.reaper_status(self._redis, self.namespace))

    async def _lead(self, holder: str, lease_ms: int) -> bool:
        key = C.reaper_key(self.namespace)
        return bool(
            await self._guard(lambda: functions.call(self._redis, "leader", [key], [holder, lease_ms]))
        )

    async def _act(
        self, action: str, task: str, seen: State, token: int, operator: str, agent: str, restore: bool
    ) -> State:
        reply = await self._run(
            "move", task, seen.value, token, action, operator, agent, "1" if restore else ""
        )
        return State(reply[1])

    async def _review(
        self, task: str, verdict: str, note: str, reviewer: str, operator: str, token: int
    ) -> tuple[State, list[str]]:
        reply = await self._run(
            "review",
            task,
            verdict,
            note,
            reviewer,
            operator,
            token,
            C.review_capability,
            C.review_note_prefix,
        )
        return State(reply[1]), [str(x) for x in reply[2:]]

    async def _dependents_cancelled(self, task: str) -> int:
        return int(await self._guard(lambda: self._redis.scard(C.cascaded_key(self.namespace, task))))

    async def _stuck(self, after_seq: int, limit: int, also: list[str]) -> tuple[list[Stuck], int]:
        return await self._guard(lambda: reads.stuck(self._redis, self.namespace, after_seq, limit, also))

    async def _audit(self, kind: str, task: str, agent: str, detail: str) -> None:
        await self._run("audit", kind, task, agent, detail)

    async def _token_save(self, digest: str, agent: str, role: str, hint: str) -> int:
        return int((await self._run("token_create", digest, agent, role, hint))[1])

    @staticmethod
    def _token_info(raw: str) -> TokenInfo:
        d = json.loads(raw)
        return TokenInfo(str(d["agent"]), Role.of(str(d["role"])), int(d["created_ms"]), str(d["hint"]))

    async def _token_find(self, digest: str) -> TokenInfo | None:
        raw = await self._guard(lambda: self._redis.hget(C.tokens_key(self.namespace), digest))
        return None if raw is None else self._token_info(raw)

    async def _token_list(self) -> list[TokenInfo]:
        found = await self._guard(lambda: self._redis.hgetall(C.tokens_key(self.namespace)))
        return [self._token_info(raw) for raw in found.values()]

    async def _token_revoke(self, agent: str) -> int:
        return int((await self._run("token_revoke", agent))[1])

    async def _extend(self, task: str, token: int, extra_ms: int, operator: str) -> int:
        return int((await self._run("extend", task, token, extra_ms, operator))[1])

    async def _queue_state(self, queue: str, pause: bool, operator: str) -> bool:
        return bool(int((await self._run("queue_state", queue, "pause" if pause else "resume", operator))[1]))

    async def _paused(self) -> set[str]:
        return set(await self._guard(lambda: self._redis.smembers(C.paused_key(self.namespace))))

    async def _reset_breaker(self, agent: str, operator: str) -> None:
        await self._run("reset_breaker", agent, operator)

    async def _wait_for_change(self, timeout_s: float) -> bool:
        if self._watch is None:
            self._watch = self._redis.pubsub(ignore_subscribe_messages=True)
            await self._guard(lambda: self._watch.subscribe(self._channel))
        msg = await self._guard(lambda: self._watch.get_message(timeout=timeout_s))
        return msg is not None

    async def _server(self, server_id: str, record: str, ttl_ms: int) -> tuple[int, int]:
        key = C.servers_key(self.namespace)
        now, started = await self._guard(
            lambda: functions.call(self._redis, "server", [key], [server_id, record, ttl_ms])
        )
        return int(now), int(started)

    async def _latest_events(self, count: int) -> list[Event]:
        newest = await self._guard(lambda: self._redis.xrevrange(self._stream, "+", "-", count=count))
        return [Event.from_fields(eid, fields) for eid, fields in reversed(newest)]

    async def _servers(self) -> list[ServerInfo]:
        return await self._guard(lambda: reads.servers(self._redis, self.namespace))

    async def ping(self) -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await self._guard(self._redis.ping)
        return (loop.time() - start) * 1000

    async def close(self) -> None:
        if self._coalescer is not None:
            await self._coalescer.close()
        if self._watch is not None:
            await self._watch.aclose()
            self._watch = None
        await self._redis.aclose()

    # --- views: the control room's reads (snapshot.py) --------------------------------

    async def _snapshot(self, sections: frozenset[str], rows: int, events: int) -> Snapshot:
        return await self._guard(lambda: views.read(self._redis, self.namespace, sections, rows, events))

    async def _server_facts(self) -> dict[str, str]:
        return await self._guard(lambda: views.server_facts(self._redis))

    async def _topology(self) -> Topology:
        return await self._guard(lambda: topology.read(self._redis, endpoint(self.url), self.namespace))

    async def _key_events(self, switch: bool) -> bool | None:
        return await self._guard(lambda: views.key_events_on(self._redis, switch))

    async def _change_feed(self) -> AsyncGenerator[None, None]:
        feed = views.changes(self._redis, self.namespace)
        async with contextlib.aclosing(feed):
            try:
                async for _ in feed:
                    yield
            except _UNAVAILABLE as exc:
                raise self._down(exc) from None

    # --- messages (core/messages.py; lua/send-1.lua, lua/inbox-1.lua, messages.py) ------

    async def _send(self, sender: str, to: str, text: str) -> Message:
        reply = await self._run("send", sender, to, text)
        return Message(int(reply[1]), sender, to, text, int(reply[2]))

    async def _inbox(self, agent: str, unread: bool, limit: int, mark: bool) -> list[Message]:
        reply = await self._run("inbox", agent, "1" if unread else "", limit, "1" if mark else "")
        return mail.messages_of(reply)

    async def _unread(self, agents: list[str]) -> dict[str, int]:
        return await self._guard(lambda: mail.unread(self._redis, self.namespace, agents))

    async def _message_news(self, agent: str, after: int) -> tuple[int, int]:
        return await self._guard(lambda: mail.news(self._redis, self.namespace, agent, after))

    # --- bidding (core/bidding.py, redis/bidding.py) -----------------------------------

    async def _bid(self, task: str, agent: str, cost: float, ttl_ms: int) -> tuple[Bid, int]:
        reply = await self._run("bid", task, agent, repr(cost), ttl_ms)
        return bidding.bid_of(task, agent, cost, ttl_ms, reply)

    async def _bid_outcome(self, task: str, agent: str) -> Outcome:
        return bidding.outcome(task, agent, await self._run("won", task, agent))

    async def _auctions(self, limit: int) -> list[Auction]:
        return await self._guard(lambda: bidding.auctions(self._redis, self.namespace, limit))

    async def _bids(self, task: str) -> list[Bid]:
        return await self._guard(lambda: bidding.bids(self._redis, self.namespace, task))

    @property
    def admin(self) -> RedisAdmin:
        """Server-side tools for benchmarks and tests (see ``admin.py``): not the contract."""
        return RedisAdmin(self._redis, self.namespace, self._coalescer)

    # --- whole-board export and import (dump.py; the format is in core/dump.py) ----

    async def _now_ms(self) -> int:
        sec, usec = await self._guard(self._redis.time)
        return int(sec) * 1000 + int(usec) // 1000

    async def _export(self) -> Board:
        board = await self._guard(lambda: dump.export(self._redis, self.namespace))
        names = [a["name"] for a in board["agents"]]
        found = await self._guard(lambda: mail.export(self._redis, self.namespace, names))
        board["messages"], board["reads"], board["counters"]["message"] = found
        return board

    async def _import(self, board: Board, merge: bool) -> dict[str, int]:
        return await self._guard(
            lambda: dump.load(self._redis, self.namespace, redacted(self.url), board, merge)
        )

    async def _plan(self, specs: list[dict[str, Any]], by: str, claim: list[Any] | None) -> list[str]:
        opts: dict[str, Any] = {"plan": True} if claim is None else {"plan": True, "claim": claim}
        reply = await self._run("add", json.dumps(specs), by, json.dumps(opts))
        return [str(x) for x in reply[1:]]
