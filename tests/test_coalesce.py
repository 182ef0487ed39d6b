"""Script calls made together share round trips, and still behave one by one (real Redis)."""

from __future__ import annotations

import asyncio
import signal
import time
from functools import partial
from pathlib import Path

import pytest

from claimroom.core.errors import LeaseLost, StoreUnavailable
from claimroom.core.local_redis import LocalRedis
from claimroom.core.redis.store import RedisStore
from claimroom.core.store import Store, TaskSpec


async def test_concurrent_calls_share_pipelines_and_each_gets_its_own_answer(redis_store: Store) -> None:
    assert isinstance(redis_store, RedisStore)
    await redis_store.add_many([TaskSpec(title=f"job {i}") for i in range(64)])
    before = redis_store.admin.batches
    assert before is not None
    claims = await asyncio.gather(*(redis_store.claim(f"agent{i}") for i in range(64)))
    assert all(c is not None for c in claims)
    assert len({c.task.id for c in claims if c is not None}) == 64  # one task each
    after = redis_store.admin.batches
    assert after is not None and after - before < 64 / 4  # many calls per round trip
    # A refusal in the middle of a batch is that call's alone.
    first = claims[0]
    assert first is not None
    results = await asyncio.gather(
        redis_store.complete(first.task.id, first.token + 10_000),  # a stale token
        *(redis_store.complete(c.task.id, c.token) for c in claims[1:] if c is not None),
        return_exceptions=True,
    )
    assert isinstance(results[0], LeaseLost)
    assert not any(isinstance(r, Exception) for r in results[1:])


async def test_scripts_flushed_from_the_server_are_loaded_again(redis_store: Store) -> None:
    assert isinstance(redis_store, RedisStore)
    await redis_store.add("before the flush")
    await redis_store.admin.flush_scripts()  # as after a Redis restart: no script is cached
    ids = await asyncio.gather(*(redis_store.add(f"after {i}") for i in range(5)))
    assert len(set(ids)) == 5
    assert (await redis_store.claim("ada")) is not None


async def test_a_lost_server_fails_every_waiting_call_as_unavailable(namespace: str) -> None:
    server = LocalRedis.start()
    store = Store.from_url(server.url, namespace)
    try:
        await store.add("x")
        server.stop()
        results = await asyncio.gather(*(store.add(f"y{i}") for i in range(8)), return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results), results
    finally:
        await store.close()
        server.stop()


async def test_a_server_that_stops_answering_fails_the_waiting_calls_within_the_read_timeout(
    namespace: str,
) -> None:
    server = LocalRedis.start()
    # The URL's socket_timeout (redis-py's own option) is the read timeout: 0.5 s, not 5.
    store = Store.from_url(server.url + "?socket_timeout=0.5", namespace)
    try:
        await store.add("x")
        server.process.send_signal(signal.SIGSTOP)  # it holds the connections and says nothing
        try:
            started = time.monotonic()
            results = await asyncio.gather(*(store.add(f"y{i}") for i in range(8)), return_exceptions=True)
            waited = time.monotonic() - started
        finally:
            server.process.send_signal(signal.SIGCONT)
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        # A batch on an open connection: "no reply within 0.5 s"; one whose connection was
        # still being set up: redis-py's "Timeout reading from ...". Either way, one line.
        assert all("TimeoutError: " in str(r) and "\n" not in str(r) for r in results), results
        assert any("no reply within 0.5 s" in str(r) for r in results), results
        assert waited < 4.5  # the URL's timeout, not redis-py's default of 5 s
        # Answering again: the next calls go through on fresh connections.
        assert len(set(await asyncio.gather(*(store.add(f"z{i}") for i in range(4))))) == 4
    finally:
        await store.close()
        server.stop()


async def test_a_wait_longer_than_the_read_timeout_is_waited_for(namespace: str) -> None:
    server = LocalRedis.start()  # no replica: WAIT 1 takes its whole wait_ms
    store = Store.from_url(server.url + "?wait=1&wait_ms=600&socket_timeout=0.3", namespace)
    try:
        # The batch's WAIT answers after 0.6 s, past the 0.3 s read timeout: still an answer.
        assert await store.add("x") == "t1"
        assert store.admin.acked == 0
    finally:
        await store.close()
        server.stop()


@pytest.mark.parametrize("kept", [True, False], ids=["append-only", "nothing kept"])
async def test_calls_after_the_server_restarted_go_through_on_new_connections(
    namespace: str, tmp_path: Path, kept: bool
) -> None:
    """Every connection the old process held is stale: the coalescer's own, and the idle ones
    in redis-py's pool (plain reads; the library loaded again when it was not kept)."""
    fsync = "always" if kept else None
    server = LocalRedis.start(tmp_path / "redis", appendfsync=fsync)
    store = Store.from_url(server.url, namespace)
    assert isinstance(store, RedisStore)
    try:
        # Both flushers busy at once (each holds a connection of its own from now on), and
        # several reads at once (several idle connections in the pool).
        await asyncio.gather(*(store.add(f"before {i}") for i in range(16)))
        await asyncio.gather(*(store.counts() for _ in range(4)))
        # Restarted while this process's event loop runs, as an agent's would (it sees the
        # connections close): the same address, a new process.
        await asyncio.to_thread(server.stop)
        server = await asyncio.to_thread(
            partial(LocalRedis.start, server.directory, server.port, appendfsync=fsync)
        )
        # No call fails for the connections the old process closed.
        counts = await asyncio.gather(*(store.counts() for _ in range(4)))
        assert all(sum(c.values()) == (16 if kept else 0) for c in counts), counts
        ids = await asyncio.gather(*(store.add(f"after {i}") for i in range(16)))
        assert len(set(ids)) == 16
    finally:
        await store.close()
        server.stop()


@pytest.mark.parametrize("n", [1, 3])
async def test_a_cancelled_caller_does_not_break_the_others(redis_store: Store, n: int) -> None:
    await redis_store.add_many([TaskSpec(title=f"job {i}") for i in range(10)])
    doomed = [asyncio.ensure_future(redis_store.claim(f"gone{i}")) for i in range(n)]
    for f in doomed:
        f.cancel()
    survivors = await asyncio.gather(*(redis_store.claim(f"kept{i}") for i in range(3)))
    assert all(c is not None for c in survivors)
