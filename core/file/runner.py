"""How a file store runs its transactions: the SQLite connections, the worker thread, the writer turn.

Every operation is one transaction (``BEGIN IMMEDIATE`` for changes), retried while another
connection holds the database, up to one deadline. A write runs on the caller's thread when
its writer turn is free or comes within ``file_turn_block_s`` (see ``_write``); reads, and
writes that wait longer, run on the store's one worker thread (a connection must not be
used by two threads at once), so no long wait blocks the event loop.

Waiting (``_await_change``) polls a second connection's ``PRAGMA data_version`` every
``file_poll_s``: it changes only when another connection committed, and then per-namespace
counters say whether this board moved: ``changes`` (bumped by every change the Redis
backend announces on its hints channel: what views wait for) and ``claimable`` (bumped by
what can make work claimable, as announced on its claimable and wake channels: what
claimers wait for).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .. import constants as C
from . import plan as file_plan
from .schema import connect, is_busy, unavailable
from .tx import Refused, Tx
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


class TxRunner:
    """Runs ``fn(tx, *args)`` transactions on one namespace of ``path``; ``FileStore`` is one."""

    namespace: str

    def __init__(self, path: Path, namespace: str) -> None:
        self.namespace = namespace
        self._path = path
        self._worker: Worker | None = None
        self._conn: sqlite3.Connection | None = None
        self._watch: sqlite3.Connection | None = None
        self._watch_version = -1
        self._writers: WriterQueue | None = None  # taken on the first write, let go on close
        self._turn_lock = threading.Lock()
        self._watch_changes = 0
        self._watch_claimable = 0
        # The connections are used by the worker thread and, for writes that need not wait,
        # by the caller's thread: one at a time, under this lock (also when closing races
        # with calls still under way).
        self._mutex = threading.RLock()
        self._pid = os.getpid()

    # --- the _sync methods run on the worker thread ------------------------------------

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
                tx.ended = file_plan.settle  # a task that ends rolls up into its plan
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

    async def _background_write(self, fn: Callable[..., T], *args: Any) -> T:
        """A write always done by the worker thread: the reaper's, which runs inside hosts
        such as the control room, whose event loop must never wait for the writer turn."""
        return await self._call(self._sync_tx, fn, args, True)

    async def _shut_down(self) -> None:
        """Close the connections and stop the worker thread (the store's ``close``)."""
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
