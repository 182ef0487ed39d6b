"""Waiting in tests: on a condition, with a deadline, failing with what did not happen.

No test sleeps a fixed time for something to happen: too short and it is flaky, too long
and the suite is slow, and a test that sleeps "long enough" may pass without the thing
having happened at all. Time that must pass (a lease running out, a retention horizon going
by) is waited for on the store's own clock, which is what the store judges it by. Textual
apps have their own: ``pilot_wait.until`` lets the app run while it waits.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from claimroom.core.file.store import FileStore
from claimroom.core.redis.store import RedisStore
from claimroom.core.store import Store

if TYPE_CHECKING:  # a claimer process imports this module too, without pytest's machinery
    import pytest

T = TypeVar("T")


async def until(
    check: Callable[[], T | Awaitable[T]], what: str, timeout_s: float = 10.0, every_s: float = 0.02
) -> T:
    """Poll ``check`` (sync or async) until it returns something true, and return that."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while True:
        got = check()
        if inspect.isawaitable(got):
            got = await got
        if got:
            return got  # type: ignore[return-value]  # an awaitable's result is a T
        if loop.time() > end:
            raise AssertionError(f"{what}: not within {timeout_s} s (last seen: {got!r})")
        await asyncio.sleep(every_s)


def until_sync(check: Callable[[], T], what: str, timeout_s: float = 10.0, every_s: float = 0.02) -> T:
    """``until`` outside an event loop."""
    end = time.monotonic() + timeout_s
    while not (got := check()):
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {timeout_s} s (last seen: {got!r})")
        time.sleep(every_s)
    return got


def until_logged(url: str, timeout_s: float = 10.0) -> None:
    """Until the Redis at ``url`` has written every change it answered to its append-only
    file, before a test kills it with SIGKILL and expects them back. With ``appendfsync
    everysec`` (what claimroom starts) Redis answers before it writes, and holds the writes
    back for up to 2 s while an earlier fsync is slow (a busy disk), so a change made just
    before the kill may be lost: the documented price of everysec, not a defect to test for.
    The kernel keeps what was written, so a write is enough; the fsync is not needed."""
    client: redis.Redis = redis.Redis.from_url(url)

    def all_written() -> bool:
        return int(client.info("persistence")["aof_buffer_length"]) == 0

    try:
        until_sync(all_written, "the store's writes in its append-only file", timeout_s)
    finally:
        client.close()


async def store_now_ms(store: Store) -> int:
    """The store's clock (Redis TIME, or the file store's): what deadlines are judged by."""
    return await store.now_ms()


async def clock_past(store: Store, at_ms: int, timeout_s: float = 10.0) -> int:
    """Wait until the store's clock is past ``at_ms`` (a lease's deadline, a horizon); its time then."""
    now = await store_now_ms(store)
    end = time.monotonic() + max(0, at_ms - now) / 1000 + timeout_s
    while now <= at_ms:
        if time.monotonic() > end:
            raise AssertionError(f"the store's clock did not pass {at_ms} (it says {now})")
        await asyncio.sleep((at_ms + 1 - now) / 1000)
        now = await store_now_ms(store)
    return now


# A store's own waits, by backend: a blocking claim that subscribed to its hints and found
# nothing (Redis; other waits there block in Redis itself), or any wait on the file store's
# change counter (blocking claims, ``follow``, ``wait_for_change``).
_WAITS: tuple[tuple[type[Store], str], ...] = (
    (RedisStore, "_until_claimable"),
    (FileStore, "_await_change"),
)


def _wait_method(store: Store) -> str:
    return next(name for kind, name in _WAITS if isinstance(store, kind))


class Waits:
    """How many times ``store`` has started waiting for a change, so that a test acts once a
    waiter is really waiting (subscribed, its last look missed) rather than after a sleep."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        name = _wait_method(store)
        real = getattr(store, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await real(*args, **kwargs)

        monkeypatch.setattr(store, name, counted)

    async def reach(self, n: int = 1, timeout_s: float = 10.0) -> None:
        """Until the store has started its ``n``-th wait."""
        await until(lambda: self.count >= n, f"the store starting its wait number {n}", timeout_s)


def announce_waits(marker: Path) -> None:
    """In a process of its own (a claimer a test starts): append a line to ``marker`` each
    time a store starts waiting for a change. Patches the classes: the process is the test's."""
    for kind, name in _WAITS:
        real = getattr(kind, name)

        async def announced(self: Store, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            with marker.open("a") as out:
                out.write("waiting\n")
            return await _real(self, *args, **kwargs)

        setattr(kind, name, announced)


def waits_announced(marker: Path) -> int:
    """How many waits ``announce_waits`` has written to ``marker`` so far."""
    return marker.read_text().count("waiting\n") if marker.exists() else 0
