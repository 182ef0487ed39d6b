"""The queue the writers of one file store wait in, across threads and processes.

SQLite hands its write lock to whoever asks first after it is freed; a writer that finds it
taken has to sleep and ask again. With eight agent processes on two cores that polling cost
twice the CPU per claim+complete cycle of one process, and the lock sat idle while every
waiter slept (bench/claims.py). Here a writer first takes an ``flock`` on a side file
(``claimroom.db-lock``): a waiter sleeps in the kernel and wakes the moment the holder lets
go, so SQLite's lock is almost always free when asked for (the polling in
``FileStore._attempts`` stays for writers that do not queue here, such as a ``sqlite3``
shell).

``flock`` has no timeout, and an operation must fail with "store busy" rather than hang
(say, behind a stopped process). So the blocking wait is made by a helper thread; a caller
that gives up marks its request abandoned, and the helper lets go of the lock the moment it
gets it. Within a process a plain lock queues the threads first, so one request at a time
reaches the helper.
"""

from __future__ import annotations

import fcntl
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class _Request:
    granted: threading.Event = field(default_factory=threading.Event)
    abandoned: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class WriterQueue:
    """One database file's writers, in this process: ``acquire`` before ``BEGIN IMMEDIATE``,
    ``release`` after ``COMMIT``."""

    def __init__(self, db: Path) -> None:
        self._threads = threading.Lock()
        try:
            self._fd: int | None = os.open(f"{db}-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:  # a read-only directory: no queue, SQLite's lock alone (and its error)
            self._fd = None
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._helper: threading.Thread | None = None
        self.users = 0  # open stores on this file in this process (see ``open_queue``)

    def acquire(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for this file's writer turn; False when it did not come."""
        deadline = time.monotonic() + timeout_s
        if not self._threads.acquire(timeout=timeout_s):
            return False
        if self._fd is None:
            return True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        except OSError:  # a file system without flock: SQLite's lock alone
            return True
        request = _Request()
        if self._helper is None:
            self._helper = threading.Thread(
                target=self._wait_for_turns, name="claimroom-writers", daemon=True
            )
            self._helper.start()
        self._requests.put(request)
        if request.granted.wait(max(0.0, deadline - time.monotonic())):
            return True
        with request.lock:
            if request.granted.is_set():
                return True
            request.abandoned = True
        self._threads.release()
        return False

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    def close(self) -> None:
        """Stop the helper and close the side file (the last store on this file closed)."""
        if self._helper is not None:
            self._requests.put(None)
            self._helper.join(1.0)  # it may be waiting out an abandoned turn: it is a daemon
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _wait_for_turns(self) -> None:
        fd = self._fd
        assert fd is not None
        while True:
            request = self._requests.get()
            if request is None:
                return
            fcntl.flock(fd, fcntl.LOCK_EX)
            with request.lock:
                if request.abandoned:  # its caller stopped waiting: pass the turn on
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    continue
                request.granted.set()


_queues: dict[Path, WriterQueue] = {}
_queues_lock = threading.Lock()


def open_queue(db: Path) -> WriterQueue:
    """The writer queue of the database file ``db`` in this process, for one more store;
    each call is paired with ``close_queue`` (an open side file would keep, say, a
    mounted directory busy)."""
    with _queues_lock:
        found = _queues.get(db)
        if found is None:
            found = _queues[db] = WriterQueue(db)
        found.users += 1
        return found


def close_queue(db: Path, q: WriterQueue) -> None:
    with _queues_lock:
        q.users -= 1
        if q.users > 0:
            return
        if _queues.get(db) is q:
            del _queues[db]
    q.close()


def _forked() -> None:
    # A forked child has none of the parent's threads (a lock held by one would never be
    # released, the helper is gone), and an inherited descriptor shares the parent's flock:
    # the child starts its own queues.
    global _queues_lock
    _queues_lock = threading.Lock()
    _queues.clear()


os.register_at_fork(after_in_child=_forked)
