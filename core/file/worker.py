"""The one thread that does a file store's SQLite work, and calls its callers can give up on.

SQLite connections must not be shared by threads at once, and waiting for the database must
not block the event loop, so each store hands its work to one thread. The hand-off is a
queue and ``call_soon_threadsafe`` (lighter than an executor: no futures chained across
threads). A writer waits for its turn by sleeping in ``flock`` (see ``writers``),
which has no timeout; so the caller holds the timeout instead: when it runs out before the
work has started, the caller gets "store busy" and the work, once its turn comes, is
dropped unstarted. Work that has started always runs to its end (a transaction is never
cut short) and is bounded by SQLite's own busy deadline.

A thread hop costs more CPU here than the transaction it carries, so a write does not hop
when it need not: see ``runner.TxRunner._write`` and ``Handoff``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any


class GaveUp(Exception):
    """Work whose caller stopped waiting before it started: dropped (nobody gets this)."""


class Call:
    """One piece of work handed to the worker: started by the worker, or given up by its
    caller, whichever comes first. ``deadline`` (``time.monotonic``) is the one time limit
    of the whole operation: the caller's wait and the worker's tries both end there, so a
    wait for the writer turn and a wait for SQLite's lock never add up to twice the limit."""

    __slots__ = ("_abandoned", "_lock", "_started", "deadline")

    def __init__(self, deadline: float) -> None:
        self._lock = threading.Lock()
        self._started = False
        self._abandoned = False
        self.deadline = deadline

    def start(self) -> None:
        """The worker is about to do the work; ``GaveUp`` when the caller already gave up."""
        with self._lock:
            if self._abandoned:
                raise GaveUp
            self._started = True

    def give_up(self) -> bool:
        """The caller stops waiting; True when the work will never be done."""
        with self._lock:
            if not self._started:
                self._abandoned = True
            return self._abandoned


# A job's result that its caller does not wait for (it was handed the writer turn instead):
# not sent back, which would wake the caller's event loop for nothing.
NO_REPLY: Any = object()


class Handoff:
    """A writer turn the worker waited for on behalf of a caller that may still be waiting
    for it on its own thread: if so, the turn is handed over and the caller does the work
    (and lets the turn go); if the caller stopped waiting, the worker does it."""

    __slots__ = ("_lock", "_ready", "_state")

    _WAITING, _HANDED, _LEFT = 0, 1, 2

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Lock()
        self._ready.acquire()  # released by the worker when it hands the turn over
        self._state = self._WAITING

    def hand_over(self) -> bool:
        """The worker holds the turn: True when the caller takes it from here."""
        with self._lock:
            if self._state != self._WAITING:
                return False
            self._state = self._HANDED
        self._ready.release()
        return True

    def wait(self, timeout_s: float) -> bool:
        """The caller waits up to ``timeout_s`` for the turn: True when it now holds it;
        False when it stopped waiting (the worker will do the work itself)."""
        if self._ready.acquire(timeout=timeout_s):
            return True
        return self.leave()

    def leave(self) -> bool:
        """The caller stops waiting; True when the turn was handed over meanwhile (the
        caller holds it, and must use it or let it go)."""
        with self._lock:
            if self._state == self._HANDED:
                return True
            self._state = self._LEFT
            return False


Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():  # given up (or cancelled) meanwhile: nobody is listening
        return
    if exc is None:
        fut.set_result(result)
    else:
        fut.set_exception(exc)


class Worker:
    """A daemon thread running submitted functions in order."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Job | Callable[[], object] | None] = queue.SimpleQueue()
        self._current: asyncio.Future[Any] | None = None  # the job under way
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._jobs.put((loop, fut, fn, args))
        return fut

    def stop(self, last: Callable[[], object] | None = None) -> None:
        """End the thread after the work already queued (it may be waiting for a turn),
        running ``last`` (nobody waits for it) before it ends."""
        if last is not None:
            self._jobs.put(last)
        self._jobs.put(None)

    def stranded(self) -> bool:
        """Whether the job under way is one its caller gave up on: typically asleep in
        ``flock`` for a writer turn that another process holds, for as long as it holds it.
        Asked on the caller's event loop, the one thread that settles its futures."""
        current = self._current
        return current is not None and current.done()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            if callable(job):
                with contextlib.suppress(Exception):  # the last job: nobody to tell
                    job()
                continue
            loop, fut, fn, args = job
            result: Any = None
            exc: BaseException | None = None
            self._current = fut
            try:
                result = fn(*args)
            except BaseException as e:  # handed to the caller, whatever it is
                exc = e
            finally:
                self._current = None
            if result is NO_REPLY:
                continue
            with contextlib.suppress(RuntimeError):  # the caller's loop closed: nobody listens
                loop.call_soon_threadsafe(_settle, fut, result, exc)
