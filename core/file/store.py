"""The file backend: a board in one SQLite database (WAL mode) in a directory, for one machine.

Every operation is one transaction (``BEGIN IMMEDIATE`` for changes) holding the change
and its audit event, so rule 4 is SQLite's atomic commit; the operations themselves are
in ``file_ops``/``file_admin``, one twin per Lua script. A write runs on the caller's thread
when its writer turn is free or comes within ``file_turn_block_s`` (see ``_write``); reads,
and writes that wait longer, run on the store's one worker thread (a connection must not
be used by two threads at once), so no long wait blocks the event loop.

Waiting (a blocking claim, ``wait_for_change``, ``follow``) polls a second connection's
``PRAGMA data_version`` every ``file_poll_s``: it changes only when another connection
committed, and then per-namespace counters say whether this board moved: ``changes``
(bumped by every change the Redis backend announces on its hints channel: what views
wait for) and ``claimable`` (bumped by what can make work claimable, as announced on its
claimable and wake channels: what claimers wait for). A woken claimer still takes work
through the atomic claim (rule 8); a missed change costs delay, never a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, TypeVar

from .. import constants as C
from ..dump import Board
from ..errors import BadInput, NotFound
from ..identity import Role, TokenInfo
from ..models import Agent, Claim, ClaimMiss, Event, Lock, ReapReport, ServerInfo, State, Stuck, Task
from ..reaper import ReaperId, ReaperPass, ReaperStatus
from ..retention import BOARD
from ..snapshot import Snapshot
from ..store import Store
from . import admin as file_admin
from . import cascade as file_cascade
from . import claim as file_claim
from . import dump as file_dump
from . import ops as file_ops
from . import retention as file_retention
from . import servers as file_servers
from . import snapshot as file_snapshot
from .schema import AGENT_COLUMNS, connect, db_path, event_of, is_busy, task_of, unavailable
from .tx import Refused, Tx, load_task
from .worker import NO_REPLY, Call, Handoff, Worker
from .writers import WriterQueue, close_queue, open_queue

T = TypeVar("T")
_BUGS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)


_abandoned: list[sqlite3.Connection] = []  # a parent's connections, in a forked child


class _Busy(Exception):
    """Another connection holds the database: try again (or give up: "store busy")."""

    def __init__(self, error: sqlite3.Error) -> None:
        super().__init__(str(error))
        self.error = error


def _deadline() -> float:
    """When an operation starting now gives up: "store busy" (``time.monotonic``)."""
    return time.monotonic() + C.file_busy_timeout_s


class FileStore(Store):
    """A namespace in ``<dir>/claimroom.db`` for a ``file:///dir`` URL."""

    def __init__(self, url: str, namespace: str) -> None:
        self.url = url
        self.namespace = namespace
        self._path = db_path(url)
        self._worker: Worker | None = None
        self._conn: sqlite3.Connection | None = None
        self._watch: sqlite3.Connection | None = None
        self._watch_version = -1
        self._writers: WriterQueue | None = None  # taken on the first write, let go on close
        self._turn_lock = threading.Lock()
        self._watch_changes = 0
        self._watch_claimable = 0
        self._seen_changes: int | None = None  # what wait_for_change last reported
        # The connections are used by the worker thread and, for writes that need not wait,
        # by the caller's thread: one at a time, under this lock (also when close() races
        # with calls still under way).
        self._mutex = threading.RLock()
        self._pid = os.getpid()

    # --- plumbing (the _sync methods run on the worker thread) -----------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect(self._path)
        return self._conn

    def _turn(self) -> WriterQueue:
        """This file's writer queue, opened on the first write (either thread may ask)."""
        with self._turn_lock:
            if self._writers is None:
                self._writers = open_queue(self._path)
            return self._writers

    def _sync_tx(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        write: bool,
        call: Call,
        handoff: Handoff | None = None,
    ) -> T:
        """Run ``fn(tx, *args)`` in one transaction, retrying while another writer holds
        the lock, up to the call's deadline; commits also when ``fn`` refuses. A write
        whose caller still waits on ``handoff`` gets only the turn (``NO_REPLY``)."""
        if not write:
            call.start()
            with self._mutex:
                return self._attempts(fn, args, write, call.deadline)
        # The turn before the connection, on every path: a caller handed the turn takes the
        # connection next, and must never find it held by a writer waiting for that turn.
        turn = self._turn()
        turn.acquire()  # sleeps until this file's writer turn; the caller holds the timeout
        if handoff is not None and handoff.hand_over():
            return NO_REPLY  # type: ignore[no-any-return]  # the caller does the work, lets the turn go
        try:
            call.start()  # GaveUp when the caller stopped waiting: the turn passes on unused
            with self._mutex:
                # The time spent waiting for the turn counts: one limit for the whole write.
                return self._attempts(fn, args, write, call.deadline)
        finally:
            turn.release()

    def _attempts(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool, deadline: float) -> T:
        while True:
            try:
                return self._attempt(fn, args, write)
            except _Busy as busy:
                if time.monotonic() >= deadline:
                    raise unavailable(self._path, busy.error) from None
            # Short random pauses: under contention every waiter gets many fair chances per
            # second, unlike SQLite's busy handler (sleeps up to 100 ms).
            time.sleep(random.uniform(0, C.file_busy_retry_s))

    def _attempt(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        """One try at ``fn``'s transaction; ``_Busy`` when another connection holds the
        database (nothing was done)."""
        refused: Refused | None = None
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                tx = Tx(conn, self.namespace)
                try:
                    result = fn(tx, *args)
                except Refused as exc:
                    refused = exc
                tx.finish()
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
        except _BUGS:
            raise  # a mistake in claimroom, not a state of the store: never "unavailable"
        except sqlite3.Error as exc:
            if is_busy(exc):
                raise _Busy(exc) from None
            raise unavailable(self._path, exc) from None
        except OSError as exc:
            raise unavailable(self._path, exc) from None
        if refused is not None:
            raise refused.code.exception(refused.detail)
        return result

    def _sync_changes(self, call: Call) -> tuple[int, int]:
        """This board's change and claimable counters, re-read only when another connection
        committed."""
        call.start()
        with self._mutex:
            return self._sync_changes_locked()

    def _sync_changes_locked(self) -> tuple[int, int]:
        try:
            if self._watch is None:
                self._connection()  # so the schema exists before the watcher reads it
                self._watch = connect(self._path, create=False)
            version = self._watch.execute("PRAGMA data_version").fetchone()[0]
            if version != self._watch_version:
                found = dict(
                    self._watch.execute(
                        "SELECT name, value FROM counters WHERE ns = ? AND name IN ('changes', 'claimable')",
                        (self.namespace,),
                    ).fetchall()
                )
                self._watch_version = version
                self._watch_changes = int(found.get("changes", 0))
                self._watch_claimable = int(found.get("claimable", 0))
        except sqlite3.Error as exc:
            if is_busy(exc):
                # a hint only: look again at the next poll
                return self._watch_changes, self._watch_claimable
            raise unavailable(self._path, exc) from None
        return self._watch_changes, self._watch_claimable

    def _sync_close(self, call: Call) -> None:
        call.start()
        with self._mutex:
            self._sync_close_locked()

    def _sync_close_locked(self) -> None:
        for conn in (self._conn, self._watch):
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
        self._conn = self._watch = None
        self._watch_version = -1
        if self._writers is not None:
            close_queue(self._path, self._writers)
            self._writers = None

    def _after_fork(self) -> None:
        if self._pid != os.getpid():
            # Used in a forked child: SQLite connections must not cross a fork, so the
            # parent's are left alone (kept, never closed here) and new ones opened.
            _abandoned.extend(c for c in (self._conn, self._watch) if c is not None)
            self._pid, self._worker, self._conn, self._watch = os.getpid(), None, None, None
            self._writers = None  # the parent's; the child's registry of queues starts empty
            self._mutex, self._watch_version = threading.RLock(), -1
            self._turn_lock = threading.Lock()

    async def _call(self, fn: Callable[..., T], *args: Any, deadline: float | None = None) -> T:
        """``fn(*args, call)`` on the worker thread; "store busy" when it has not started
        by ``deadline`` (default: ``file_busy_timeout_s`` from now; it then never runs)."""
        self._after_fork()
        call = Call(_deadline() if deadline is None else deadline)
        result: T = await self._outcome(self._submit(fn, *args, call), call)
        return result

    def _submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        if self._worker is None:
            self._worker = Worker("claimroom-file")
        return self._worker.submit(fn, *args)

    async def _outcome(self, fut: asyncio.Future[Any], call: Call) -> Any:
        left = max(0.0, call.deadline - time.monotonic())
        timer = asyncio.get_running_loop().call_later(left, self._give_up, call, fut)
        try:
            return await fut
        finally:
            timer.cancel()

    def _give_up(self, call: Call, fut: asyncio.Future[Any]) -> None:
        if not fut.done() and call.give_up():
            fut.set_exception(unavailable(self._path, sqlite3.OperationalError("database is locked")))

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` in a write transaction, on this thread when that costs no thread hop.

        Handing work to the worker and back costs more CPU than the transaction itself
        (thread wake-ups, an event-loop wake-up, the GIL changing hands: ~150 us of CPU
        here for the hop alone), and with several agent processes on few cores that CPU
        is the limit (bench/claims.py). So: a write whose turn is free runs at once; one
        whose turn comes within ``file_turn_block_s`` (the usual wait: a few transactions
        of other processes) is handed the turn by the worker, which slept in ``flock``
        for it, and runs here too. Only a longer wait is awaited without blocking this
        loop, with the worker doing the work. The loop is so held up at most
        ``file_turn_block_s`` plus one transaction; anything that could take longer (SQLite's
        lock held by a writer that does not queue, the connection busy with a read) goes
        to the worker, where the caller's timeout covers it."""
        self._after_fork()
        deadline = _deadline()
        turn = self._turn()
        if turn.try_acquire():
            done, result = self._run_with_turn(turn, fn, args)
        else:
            handoff, call = Handoff(), Call(deadline)
            fut = self._submit(self._sync_tx, fn, args, True, call, handoff)
            try:
                handed = handoff.wait(C.file_turn_block_s)
            except BaseException:  # interrupted (KeyboardInterrupt): the work is dropped, the turn never kept
                call.give_up()
                fut.cancel()  # nobody will read what the worker says
                if handoff.leave():
                    turn.release()
                raise
            if not handed:
                result = await self._outcome(fut, call)  # the worker does it when the turn comes
                return result  # type: ignore[no-any-return]  # fn's result, untyped across the thread hop
            done, result = self._run_with_turn(turn, fn, args)
        if not done:
            return await self._call(self._sync_tx, fn, args, True, deadline=deadline)
        # Still a turn of the event loop, as awaiting the worker would be: a caller
        # looping over writes must not starve the loop's other tasks.
        await asyncio.sleep(0)
        return result  # type: ignore[return-value]  # done: fn ran, so this is its T (None: not done)

    def _run_with_turn(
        self, turn: WriterQueue, fn: Callable[..., T], args: tuple[Any, ...]
    ) -> tuple[bool, T | None]:
        """Holding the writer turn: ``fn`` here, now, in one try; (False, None) when it
        would have to wait (the connection in use by the worker, SQLite's lock taken by a
        writer outside the queue). Lets the turn go either way."""
        try:
            if not self._mutex.acquire(blocking=False):
                return False, None
            try:
                return True, self._attempt(fn, args, True)
            except _Busy:
                return False, None
            finally:
                self._mutex.release()
        finally:
            turn.release()

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._call(self._sync_tx, fn, args, False)

    async def _changes(self) -> int:
        return (await self._call(self._sync_changes))[0]

    async def _await_change(self, seen: int, timeout_s: float, claimable: bool = False) -> int:
        """The change counter (with ``claimable``: the claimable counter) once it differs
        from ``seen``, or after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            now = (await self._call(self._sync_changes))[1 if claimable else 0]
            left = deadline - loop.time()
            if now != seen or left <= 0:
                return now
            await asyncio.sleep(min(C.file_poll_s, left))

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
            in_use = {r[0] for r in tx.all(file_claim.SIGS)}  # at most max_capsigs rows
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
        while True:
            rows, why, seen = await self._write(self._claim_tx, agent, queues, ttl_ms, count)
            left = deadline - loop.time()
            if rows or left <= 0:
                return self._claims(rows), why
            pause = min(left, C.wait_recheck_s)
            if why.next_change_in_ms >= 0:
                pause = min(pause, why.next_change_in_ms / 1000 + 0.001)
            until = loop.time() + pause
            claimable = why.reason != "at-capacity"  # as _claim_tx chose the counter
            while (left := until - loop.time()) > 0:
                now = await self._await_change(seen, left, claimable=claimable)
                if now == seen or await self._read(file_claim.could_claim, agent, queues):
                    break
                seen = now

    async def _heartbeat(
        self, task: str, token: int, ttl_ms: int | None, updates: dict[str, str], agent: str
    ) -> int:
        return await self._write(file_ops.heartbeat, task, token, ttl_ms, updates, agent)

    async def _complete(self, task: str, token: int, result: str, agent: str) -> list[str]:
        return await self._write(file_ops.complete, task, token, result, agent)

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
            return [
                Agent.from_fields(
                    {k: str(r[k]) for k in AGENT_COLUMNS}, tuple(sorted(held.get(r["name"], [])))
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

    async def _background_write(self, fn: Callable[..., T], *args: Any) -> T:
        """A write always done by the worker thread: the reaper's, which runs inside hosts
        such as the control room, whose event loop must never wait for the writer turn."""
        return await self._call(self._sync_tx, fn, args, True)

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

    async def ping(self) -> float:
        start = time.perf_counter()
        await self._read(lambda tx: tx.now)
        return (time.perf_counter() - start) * 1000

    async def close(self) -> None:
        worker = self._worker
        if worker is None:  # only writes that ran at once: nothing else uses the connection
            if self._pid == os.getpid():
                with self._mutex:
                    self._sync_close_locked()
            return
        if worker.stranded():
            # Asleep for a writer turn that another process holds, on behalf of a caller
            # that already got "store busy": waiting behind it would keep that caller (a
            # CLI command, say) a second full timeout. The worker closes the connections
            # itself if the turn ever comes; else they end with the process.
            self._worker = None
            worker.stop(last=lambda: self._sync_close(Call(0.0)))
            return
        try:
            await self._call(self._sync_close)
        finally:
            self._worker = None
            worker.stop()

    # --- views: the control room's reads (snapshot.py) --------------------------------

    async def _snapshot(self, sections: frozenset[str], rows: int, events: int) -> Snapshot:
        return await self._read(file_snapshot.read, sections, rows, events)

    async def _server_facts(self) -> dict[str, str]:
        return await self._read(file_snapshot.facts, self._path)

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
