"""The file backend: a board in one SQLite database (WAL mode) in a directory, for one machine.

Every operation is one transaction holding the change and its audit event, so rule 4 is
SQLite's atomic commit. The operations themselves are in ``ops``, ``claim``, ``admin``,
``cascade``, ``retention``, ``servers``, ``snapshot`` and ``dump``, one twin per Lua script;
``runner.TxRunner``, which ``FileStore`` is, runs them (on which thread, with the writer
turn, retried while another connection holds the database).

Waiting (a blocking claim, ``wait_for_change``, ``follow``) watches the board's change
counters (see ``runner``). A woken claimer still takes work through the atomic claim
(rule 8); a missed change costs delay, never a task.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from .. import constants as C
from ..bidding import Auction, Bid, Outcome
from ..dump import Board
from ..errors import BadInput, NotFound
from ..identity import Role, TokenInfo
from ..models import Agent, Claim, ClaimMiss, Event, Lock, Message, ReapReport, ServerInfo, State, Stuck, Task
from ..reaper import ReaperId, ReaperPass, ReaperStatus
from ..retention import BOARD
from ..snapshot import Snapshot
from ..store import Store
from ..topology import Topology
from . import admin as file_admin
from . import affinity as file_affinity
from . import bidding as file_bidding
from . import cascade as file_cascade
from . import claim as file_claim
from . import dump as file_dump
from . import messages as file_messages
from . import ops as file_ops
from . import retention as file_retention
from . import review as file_review
from . import servers as file_servers
from . import snapshot as file_snapshot
from .runner import TxRunner
from .schema import AGENT_COLUMNS, db_path, event_of, task_of
from .tx import SIGS, Tx, load_task


class FileStore(TxRunner, Store):
    """A namespace in ``<dir>/claimroom.db`` for a ``file:///dir`` URL."""

    def __init__(self, url: str, namespace: str) -> None:
        super().__init__(db_path(url), namespace)
        self.url = url
        self._seen_changes: int | None = None  # what wait_for_change last reported

    # --- tasks -----------------------------------------------------------------------

    async def _add(self, specs: list[dict[str, Any]], by: str) -> list[str]:
        return await self._write(file_ops.add, specs, by)

    async def _known(self, ids: list[str], capsigs: list[str]) -> tuple[set[str], set[str], int]:
        def go(tx: Tx) -> tuple[set[str], set[str], int]:
            found: set[str] = set()
            for start in range(0, len(ids), 500):
                named = {f"i{k}": tid for k, tid in enumerate(ids[start : start + 500])}
                marks = ", ".join(":" + k for k in named)
                rows = tx.all(f"SELECT id FROM tasks WHERE ns = :ns AND id IN ({marks})", **named)
                found.update(r[0] for r in rows)
            in_use = {r[0] for r in tx.all(SIGS)}  # at most max_capsigs rows
            return found, in_use & set(capsigs), len(in_use)

        return await self._read(go)

    @staticmethod
    def _claim_tx(
        tx: Tx, agent: str, queues: list[str], ttl_ms: int, count: int
    ) -> tuple[list[sqlite3.Row], ClaimMiss, int]:
        rows, why, next_ms = file_claim.claim(tx, agent, ttl_ms, queues, count)
        tx.finish()
        # On a miss, the counter a waiter watches, as of this commit (a later change, even
        # one racing with this claim's return, makes it look again): an agent at capacity
        # gets room back when one of its leases ends, which any change may be (changes);
        # any other waits for work becoming claimable (claimable).
        if rows:
            return rows, ClaimMiss(why, next_ms), 0
        return rows, ClaimMiss(why, next_ms), tx.counter("changes" if why == "at-capacity" else "claimable")

    @staticmethod
    def _could_claim_or_news(tx: Tx, agent: str, queues: list[str], mark: int) -> bool:
        return file_claim.could_claim(tx, agent, queues) or file_messages.news(tx, agent, mark)[1] > 0

    @staticmethod
    def _claims(rows: list[sqlite3.Row]) -> list[Claim]:
        # Built after the commit: every other writer waits while a transaction is open.
        return [Claim(task, task.token, task.deadline_ms) for task in map(task_of, rows)]

    async def _claim(
        self, agent: str, queues: list[str], ttl_ms: int, count: int
    ) -> tuple[list[Claim], ClaimMiss]:
        rows, why, _ = await self._write(self._claim_tx, agent, queues, ttl_ms, count)
        return self._claims(rows), why

    async def _claim_waiting(
        self, agent: str, queues: list[str], ttl_ms: int, count: int, wait_s: float
    ) -> tuple[list[Claim], ClaimMiss]:
        # Woken only by the claimable counter (bumped by what can make work claimable, never
        # by a heartbeat; an agent at capacity: by any change), and then claims only when a
        # read, which takes no write lock, finds something this agent could take in its
        # queues: idle claimers cost one claim per re-check, however busy the board.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        # A new unread message ends the wait (see core/messages.py); a send bumps claimable.
        mark, _ = await self._message_news(agent, C.max_counter)
        while True:
            rows, why, seen = await self._write(self._claim_tx, agent, queues, ttl_ms, count)
            left = deadline - loop.time()
            if rows or left <= 0:
                return self._claims(rows), why
            if (await self._message_news(agent, mark))[1]:
                return [], ClaimMiss("message")
            pause = min(left, C.wait_recheck_s)
            if why.next_change_in_ms >= 0:
                pause = min(pause, why.next_change_in_ms / 1000 + 0.001)
            until = loop.time() + pause
            claimable = why.reason != "at-capacity"  # as _claim_tx chose the counter
            while (left := until - loop.time()) > 0:
                now = await self._await_change(seen, left, claimable=claimable)
                if now == seen or await self._read(self._could_claim_or_news, agent, queues, mark):
                    break
                seen = now

    async def _heartbeat(
        self, task: str, token: int, ttl_ms: int | None, updates: dict[str, str], agent: str
    ) -> int:
        return await self._write(file_ops.heartbeat, task, token, ttl_ms, updates, agent)

    async def _complete(self, task: str, token: int, result: str, agent: str, review: str = "") -> list[str]:
        return await self._write(file_ops.complete, task, token, result, agent, review)

    async def _fail(
        self, task: str, token: int, reason: str, fatal: bool, jitter: float, agent: str
    ) -> tuple[State, int]:
        state, ready = await self._write(file_ops.fail, task, token, reason, fatal, jitter, agent)
        return State(state), ready

    async def _release(self, task: str, token: int, agent: str) -> None:
        await self._write(file_ops.release, task, token, agent)

    async def _held(self, agent: str) -> list[Task]:
        def go(tx: Tx) -> list[Task]:
            rows = tx.all(
                "SELECT * FROM tasks WHERE ns = :ns AND agent = :a AND state = 'claimed' ORDER BY id", a=agent
            )
            return [task_of(r) for r in rows]

        return await self._read(go)

    async def _get(self, task: str) -> Task:
        row = await self._read(load_task, task)
        if row is None:
            raise NotFound(f"no such task: {task}")
        return task_of(row)

    async def _tasks(self, state: State | None, queue: str | None, limit: int, offset: int) -> list[Task]:
        def go(tx: Tx) -> list[Task]:
            where = "ns = :ns"
            if state is not None:
                where += " AND state = :state"
            if queue is not None:
                where += " AND queue = :queue"
            rows = tx.all(
                f"SELECT * FROM tasks WHERE {where} ORDER BY seq LIMIT :limit OFFSET :offset",
                state=None if state is None else state.value,
                queue=queue,
                limit=limit,
                offset=offset,
            )
            # Built on the worker thread: thousands of rows would otherwise hold the
            # caller's event loop (a control room's frames) for a few hundred ms.
            return [task_of(r) for r in rows]

        return await self._read(go)

    async def _counts(self) -> dict[State, int]:
        def go(tx: Tx) -> dict[str, int]:
            return {
                r[0]: r[1] for r in tx.all("SELECT state, COUNT(*) FROM tasks WHERE ns = :ns GROUP BY state")
            }

        found = await self._read(go)
        return {s: found.get(s.value, 0) for s in State}

    # --- agents ----------------------------------------------------------------------

    async def _register(self, agent: str, caps: str, max_claims: int, session: str) -> None:
        await self._write(file_ops.register, agent, caps, max_claims, session)

    async def _alive(self, agent: str) -> int:
        return await self._write(file_ops.alive, agent)

    async def _agents(self) -> list[Agent]:
        def go(tx: Tx) -> list[Agent]:
            held: dict[str, list[str]] = {}
            for r in tx.all("SELECT agent, id FROM tasks WHERE ns = :ns AND state = 'claimed'"):
                held.setdefault(r[0], []).append(r[1])
            owned = file_affinity.owned(tx)
            return [
                Agent.from_fields(
                    {**{k: str(r[k]) for k in AGENT_COLUMNS}, "owned": str(owned.get(r["name"], 0))},
                    tuple(sorted(held.get(r["name"], []))),
                )
                for r in tx.all("SELECT * FROM agents WHERE ns = :ns ORDER BY name")
            ]

        return await self._read(go)

    # --- locks -----------------------------------------------------------------------

    async def _lock(self, paths: list[str], agent: str, ttl_ms: int, shared: bool, task: str) -> int:
        return await self._write(file_admin.lock, paths, agent, ttl_ms, shared, task)

    async def _unlock(self, paths: list[str], agent: str, task: str | None, own: bool) -> list[str]:
        return await self._write(file_admin.unlock, paths, agent, task, own)

    async def _locks(self) -> list[Lock]:
        return await self._read(file_admin.live_locks)

    # --- audit and recovery ----------------------------------------------------------

    @staticmethod
    def _after(tx: Tx, after: str) -> int:
        if after in ("-", "0", ""):
            return 0
        if after == "$":
            return tx.counter("event")
        if after.isdigit():
            return int(after)
        raise BadInput(f"invalid event id {after!r}: use an id from this store's events, - or $")

    def _events_tx(self, tx: Tx, task: str | None, after: str, count: int) -> tuple[list[Event], int, int]:
        since = self._after(tx, after)
        if task is None:
            rows = tx.all(
                "SELECT * FROM events WHERE ns = :ns AND seq > :since ORDER BY seq LIMIT :n",
                since=since,
                n=count,
            )
        elif tx.one("SELECT 1 FROM tasks WHERE ns = :ns AND id = :t", t=task) is None:
            rows = []  # removed by retention (its history goes with it), or never there
        else:
            rows = tx.all(
                "SELECT * FROM events WHERE ns = :ns AND task = :t AND task <> '' AND seq > :since "
                "ORDER BY seq LIMIT :n",
                t=task,
                since=since,
                n=count,
            )
        last = rows[-1]["seq"] if rows else since
        return [event_of(r) for r in rows], last, tx.counter("changes")

    async def _events(self, task: str | None, after: str, count: int) -> list[Event]:
        return (await self._read(self._events_tx, task, after, max(count, 0)))[0]

    async def _follow(self, task: str | None, after: str) -> AsyncIterator[Event]:
        since = after
        while True:
            batch, last, seen = await self._read(self._events_tx, task, since, 500)
            since = str(last)
            for event in batch:
                yield event
            if not batch:
                await self._await_change(seen, 1.0)

    async def _reap(self, by: ReaperId | None) -> ReapReport:
        out = await self._background_write(file_admin.reap, None if by is None else by.fields())
        by_outcome: dict[str, list[str]] = {"queued": [], "orphaned": [], "dead": []}
        for tid, outcome in out["expired"]:
            by_outcome[outcome].append(tid)
        return ReapReport(
            requeued=tuple(by_outcome["queued"]),
            orphaned=tuple(by_outcome["orphaned"]),
            dead=tuple(by_outcome["dead"]),
            promoted=tuple(out["promoted"]),
            locks_expired=out["dropped"],
            cancelled=tuple(out["cancelled"]),
            restored=tuple(out["restored"]),
            cascades_pending=out["pending"],
            auctions_closed=tuple(out["auctions"]),
        )

    async def _retain(self) -> tuple[int, int, int, bool]:
        # On the worker thread, as the reaper's other writes should be: a host's event loop
        # (the control room's) never waits for the writer turn.
        return await self._background_write(file_retention.retain)

    async def _set_retention(self, scope: str, changes: dict[str, int], reset: bool) -> None:
        await self._write(file_retention.set_settings, scope, changes, reset)
        if scope == BOARD:
            # Every queue may follow the board's settings: each is due for a look at the next
            # pass, marked in capped batches (rule 10).
            while await self._write(file_retention.due_now, 500):
                pass

    async def _retention_settings(self, queue: str | None) -> tuple[dict[str, int], dict[str, int]]:
        return await self._read(file_retention.settings_of, queue)

    async def _reaper_status(self) -> ReaperStatus:
        now, live, soonest, fields = await self._read(file_admin.reaper_status)
        return ReaperStatus(
            now_ms=now, live_claims=live, next_deadline_ms=soonest, last=ReaperPass.from_fields(fields)
        )

    async def _lead(self, holder: str, lease_ms: int) -> bool:
        # Standing by is a read: many waiting processes must not queue for the write lock
        # every interval only to learn that another leads.
        if lease_ms and await self._read(file_admin.led_by_other, holder):
            return False
        return await self._background_write(file_admin.lead, holder, lease_ms)

    async def _server(self, server_id: str, record: str, ttl_ms: int) -> tuple[int, int]:
        return await self._background_write(file_servers.refresh, server_id, record, ttl_ms)

    async def _latest_events(self, count: int) -> list[Event]:
        def go(tx: Tx) -> list[Event]:
            rows = tx.all("SELECT * FROM events WHERE ns = :ns ORDER BY seq DESC LIMIT :n", n=count)
            return [event_of(r) for r in reversed(rows)]

        return await self._read(go)

    async def _servers(self) -> list[ServerInfo]:
        return [ServerInfo.from_json(r) for r in await self._read(file_servers.live)]

    async def _wait_for_change(self, timeout_s: float) -> bool:
        if self._seen_changes is None:
            self._seen_changes = await self._changes()  # like subscribing: from now on
        seen = self._seen_changes
        now = await self._await_change(seen, timeout_s)
        self._seen_changes = now
        return now != seen

    # --- operator actions --------------------------------------------------------------

    async def _act(
        self, action: str, task: str, seen: State, token: int, operator: str, agent: str, restore: bool
    ) -> State:
        return State(
            await self._write(file_admin.move, task, seen.value, token, action, operator, agent, restore)
        )

    async def _review(
        self, task: str, verdict: str, note: str, reviewer: str, operator: str, token: int
    ) -> tuple[State, list[str]]:
        state, unblocked = await self._write(
            file_review.decide, task, verdict, note, reviewer, operator, token
        )
        return State(state), unblocked

    async def _dependents_cancelled(self, task: str) -> int:
        return await self._read(file_cascade.cascaded_count, task)

    async def _stuck(self, after_seq: int, limit: int, also: list[str]) -> tuple[list[Stuck], int]:
        def go(tx: Tx) -> tuple[list[Stuck], int]:
            found, next_seq = file_cascade.stuck(tx, after_seq, limit, also)
            return [Stuck(task_of(r), dep, state) for r, dep, state in found], next_seq

        return await self._read(go)

    async def _audit(self, kind: str, task: str, agent: str, detail: str) -> None:
        await self._write(file_ops.audit, kind, task, agent, detail)

    async def _token_save(self, digest: str, agent: str, role: str, hint: str) -> int:
        return await self._write(file_ops.token_create, digest, agent, role, hint)

    @staticmethod
    def _token_info(row: sqlite3.Row) -> TokenInfo:
        return TokenInfo(row["agent"], Role.of(row["role"]), row["created_ms"], row["hint"])

    async def _token_find(self, digest: str) -> TokenInfo | None:
        def go(tx: Tx) -> TokenInfo | None:
            row = tx.one("SELECT * FROM tokens WHERE ns = :ns AND digest = :d", d=digest)
            return None if row is None else self._token_info(row)

        return await self._read(go)

    async def _token_list(self) -> list[TokenInfo]:
        def go(tx: Tx) -> list[TokenInfo]:
            return [self._token_info(r) for r in tx.all("SELECT * FROM tokens WHERE ns = :ns")]

        return await self._read(go)

    async def _token_revoke(self, agent: str) -> int:
        return await self._write(file_ops.token_revoke, agent)

    async def _extend(self, task: str, token: int, extra_ms: int, operator: str) -> int:
        return await self._write(file_admin.extend, task, token, extra_ms, operator)

    async def _queue_state(self, queue: str, pause: bool, operator: str) -> bool:
        return await self._write(file_admin.queue_state, queue, pause, operator)

    async def _paused(self) -> set[str]:
        def go(tx: Tx) -> set[str]:
            return {r[0] for r in tx.all("SELECT queue FROM paused WHERE ns = :ns")}

        return await self._read(go)

    async def _reset_breaker(self, agent: str, operator: str) -> None:
        await self._write(file_admin.reset_breaker, agent, operator)

    # --- messages (core/messages.py; the SQL in messages.py) -----------------------------

    async def _send(self, sender: str, to: str, text: str) -> Message:
        return await self._write(file_messages.send, sender, to, text)

    async def _inbox(self, agent: str, unread: bool, limit: int, mark: bool) -> list[Message]:
        if mark:
            return await self._write(file_messages.inbox, agent, unread, limit, mark)
        return await self._read(file_messages.inbox, agent, unread, limit, mark)

    async def _unread(self, agents: list[str]) -> dict[str, int]:
        return await self._read(file_messages.unread, agents)

    async def _message_news(self, agent: str, after: int) -> tuple[int, int]:
        return await self._read(file_messages.news, agent, after)

    async def ping(self) -> float:
        start = time.perf_counter()
        await self._read(lambda tx: tx.now)
        return (time.perf_counter() - start) * 1000

    async def close(self) -> None:
        await self._shut_down()

    # --- bidding (core/bidding.py, file/bidding.py) -----------------------------------

    async def _bid(self, task: str, agent: str, cost: float, ttl_ms: int) -> tuple[Bid, int]:
        at, close = await self._write(file_bidding.bid, task, agent, cost, ttl_ms)
        return Bid(task, agent, cost, at, ttl_ms), close

    async def _bid_outcome(self, task: str, agent: str) -> Outcome:
        status, winner, close, row = await self._write(file_bidding.outcome, task, agent)
        claim = None
        if row is not None:
            t = task_of(row)
            claim = Claim(t, t.token, t.deadline_ms)
        return Outcome(task, agent, status, winner, close, claim)

    async def _auctions(self, limit: int) -> list[Auction]:
        def go(tx: Tx) -> list[Auction]:
            return [
                Auction(r["id"], r["title"], r["queue"], r["close_ms"], tuple(bids))
                for r, bids in file_bidding.auctions(tx, limit)
            ]

        return await self._read(go)

    async def _bids(self, task: str) -> list[Bid]:
        return await self._read(file_bidding.bids_of, task)

    # --- views: the control room's reads (snapshot.py) --------------------------------

    async def _snapshot(self, sections: frozenset[str], rows: int, events: int) -> Snapshot:
        return await self._read(file_snapshot.read, sections, rows, events)

    async def _server_facts(self) -> dict[str, str]:
        return await self._read(file_snapshot.facts, self._path)

    async def _topology(self) -> Topology:
        return Topology("file")  # one machine: no replicas, no failover

    async def _key_events(self, switch: bool) -> bool | None:
        return None  # every commit is seen (PRAGMA data_version), hand-made ones included

    async def _change_feed(self) -> AsyncGenerator[None, None]:
        seen = await self._changes()  # from now on, as a subscription would be
        yield
        while True:
            now = await self._await_change(seen, 1.0)
            if now != seen:
                seen = now
                yield

    # --- whole-board export and import (dump.py; the format is in core/dump.py) ----

    async def _now_ms(self) -> int:
        return await self._read(lambda tx: tx.now)

    async def _export(self) -> Board:
        return await self._read(file_dump.export, self.namespace)

    async def _import(self, board: Board, merge: bool) -> dict[str, int]:
        return await self._write(file_dump.load, self.namespace, self.url, board, merge)

    async def _plan(self, specs: list[dict[str, Any]], by: str, claim: list[Any] | None) -> list[str]:
        opts: dict[str, Any] = {"plan": True} if claim is None else {"plan": True, "claim": claim}
        return await self._write(file_ops.add, specs, by, opts)
