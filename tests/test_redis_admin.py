"""RedisStore.admin, the server tools the benchmarks read through (real Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from claimroom.core.local_redis import LocalRedis
from claimroom.core.redis.store import RedisStore
from claimroom.core.store import TaskSpec


@pytest.fixture
async def private() -> AsyncIterator[RedisStore]:
    """A store on a server of its own: these tools change the whole server."""
    server = LocalRedis.start()
    store = RedisStore(server.url, "admin")
    try:
        yield store
    finally:
        await store.close()
        server.stop()


async def test_batches_count_the_coalescers_pipelines(redis_url: str, namespace: str) -> None:
    store = RedisStore(redis_url, namespace)
    alone = RedisStore(redis_url, namespace, coalesce=False)
    try:
        await store.add_many([TaskSpec(title=f"job {i}") for i in range(64)])
        before = store.admin.batches
        assert before is not None
        claims = await asyncio.gather(*(store.claim(f"agent{i}") for i in range(64)))
        assert all(c is not None for c in claims)
        after = store.admin.batches
        assert after is not None and 0 < after - before < 64 / 4  # many calls per round trip
        assert alone.admin.batches is None  # each call on its own: no batches to count
    finally:
        await alone.close()
        await store.close()


async def test_task_events_by_scan_finds_what_the_index_does(redis_url: str, namespace: str) -> None:
    store = RedisStore(redis_url, namespace)
    try:
        ids = await store.add_many([TaskSpec(title=f"job {i}") for i in range(3)])
        for _ in range(3):  # the three tasks' events interleave in the trail
            claims = [await store.claim(f"agent{i}") for i in range(3)]
            for c in claims:
                assert c is not None
                await store.release(c.task.id, c.token)
        for task in ids:
            indexed = await store.events(task=task)
            scanned = await store.admin.task_events_by_scan(task)
            assert [e.id for e in scanned] == [e.id for e in indexed]
            assert len(scanned) == 7  # added, then claimed and released three times
        assert len(await store.admin.task_events_by_scan(ids[0], count=2)) == 2
    finally:
        await store.close()


async def test_slow_scripts_name_the_scripts_and_empty_the_log(private: RedisStore) -> None:
    await private.admin.slowlog_start(0)  # every command
    await private.add("logged")
    assert await private.claim("ada") is not None
    names = {name for _, name in await private.admin.slow_scripts()}
    assert {"add", "claim"} <= names
    assert "?" not in names
    assert await private.admin.slow_scripts() == []  # the last look emptied the log


async def test_flush_server_empties_every_namespace(private: RedisStore) -> None:
    other = RedisStore(private.url, "other")
    try:
        await private.add("mine")
        await other.add("theirs")
        await private.admin.flush_server()
        assert await private.tasks() == []
        assert await other.tasks() == []
    finally:
        await other.close()
