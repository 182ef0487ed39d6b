"""The queue the writers of one file store wait in, across threads and processes.

SQLite hands its write lock to whoever asks first after it is freed; a writer that finds it
taken has to sleep and ask again. With eight agent processes on two cores that polling cost
twice the CPU per claim+complete cycle of one process, and the lock sat idle while every
waiter slept (bench/claims.py). Here a writer first takes an ``flock`` on a side file
(``claimroom.db-lock``): a waiter sleeps in the kernel and wakes the moment the holder lets
go, so SQLite's lock is almost always free when asked for (the polling in
``runner.TxRunner._attempts`` stays, for writers that do not queue here, such as a ``sqlite3``
shell). Within a process a plain lock queues the threads first.

``flock`` has no timeout: the wait happens on the store's worker thread, and the caller
holds the timeout (``worker.Call``), so a holder that never lets go (a stopped
process) makes callers fail with "store busy", never hang.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path

from .. import private


class WriterQueue:
    """One database file's writers, in this process: ``acquire`` before ``BEGIN IMMEDIATE``,
    ``release`` after ``COMMIT``."""

    def __init__(self, db: Path) -> None:
        self._threads = threading.Lock()
        try:
            self._fd: int | None = private.open_lock(Path(f"{db}-lock"))
        except OSError:  # a read-only directory: no queue, SQLite's lock alone (and its error)
            self._fd = None
        self.users = 0  # open stores on this file in this process (see ``open_queue``)

    def acquire(self) -> None:
        """Sleep until this file's writer turn comes."""
        self._threads.acquire()
        if self._fd is not None:
            with contextlib.suppress(OSError):  # a file system without flock: SQLite's lock alone
                fcntl.flock(self._fd, fcntl.LOCK_EX)

    def try_acquire(self) -> bool:
        """Take the turn only if nobody holds it or waits for it here: never sleeps."""
        if not self._threads.acquire(blocking=False):
            return False
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._threads.release()
                return False
            except OSError:  # a file system without flock: SQLite's lock alone
                pass
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    def close(self) -> None:
        """Close the side file (the last store on this file in this process closed)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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
    # released), and an inherited descriptor shares the parent's flock: the child starts
    # its own queues.
    global _queues_lock
    _queues_lock = threading.Lock()
    _queues.clear()


os.register_at_fork(after_in_child=_forked)
