"""The scripts as one Redis function library: loaded once, found again, state kept per call."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest
import redis as redis_py

from claimroom.core.errors import StoreUnavailable
from claimroom.core.local_redis import LocalRedis, free_port, redis_binary
from claimroom.core.redis.scripts import SCRIPTS, library
from claimroom.core.redis.store import RedisStore
from claimroom.core.store import Store, TaskSpec


def libraries(url: str) -> dict[str, set[str]]:
    with redis_py.Redis.from_url(url, decode_responses=True) as r:
        found = r.execute_command("FUNCTION", "LIST")

    def as_dict(x: object) -> dict:  # type: ignore[type-arg]
        return x if isinstance(x, dict) else dict(zip(x[::2], x[1::2], strict=True))  # type: ignore[index]

    out: dict[str, set[str]] = {}
    for entry in map(as_dict, found):
        out[entry["library_name"]] = {as_dict(f)["name"] for f in entry["functions"]}
    return out


async def test_the_first_call_loads_one_library_with_every_script(namespace: str) -> None:
    server = LocalRedis.start()
    store = Store.from_url(server.url, namespace)
    try:
        assert libraries(server.url) == {}
        await store.add("first")
        lib = library()
        assert libraries(server.url) == {lib.name: set(lib.functions.values())}
        assert set(lib.functions) == set(SCRIPTS)
        # A second client of the same version finds it there and loads nothing new.
        other = Store.from_url(server.url, namespace + "b")
        try:
            await other.add("second")
        finally:
            await other.close()
        assert list(libraries(server.url)) == [lib.name]
    finally:
        await store.close()
        server.stop()


@pytest.mark.parametrize("coalesce", [True, False])
async def test_a_server_that_lost_the_library_gets_it_again(
    redis_url: str, namespace: str, coalesce: bool
) -> None:
    store = RedisStore(redis_url, namespace, coalesce=coalesce)
    try:
        await store.add("before")
        await store.admin.flush_scripts()  # as a restart of a server that keeps nothing on disk
        ids = await asyncio.gather(*(store.add(f"after {i}") for i in range(4)))
        assert len(set(ids)) == 4
        claim = await store.claim("ada")
        assert claim is not None
        await store.complete(claim.task.id, claim.token)
    finally:
        await store.close()


async def test_what_one_call_gathers_does_not_carry_into_the_next(redis_store: Store) -> None:
    # lib.lua announces each message once per call; its record of what it announced is a
    # library local, which outlives calls: every call must start with it empty.
    assert isinstance(redis_store, RedisStore)
    channel = f"{{claimroom:{redis_store.namespace}}}:claimable"
    with redis_py.Redis.from_url(redis_store.url, decode_responses=True) as r:
        sub = r.pubsub()
        sub.subscribe(channel)
        assert sub.get_message(timeout=2) is not None  # the subscribe confirmation
        for i in range(3):
            await redis_store.add_many([TaskSpec(title=f"a{i}"), TaskSpec(title=f"b{i}")])
        got: list[str] = []
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            msg = sub.get_message(timeout=0.5)
            if msg and msg["type"] == "message":
                got.append(msg["data"])
        sub.close()
    assert got == ["default "] * 3  # once per call, and in every call


async def test_a_server_without_functions_is_named_in_one_line(namespace: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--rename-command",
            "FUNCTION",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis_py.Redis.from_url(url).ping()
                break
            except redis_py.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        store = Store.from_url(url, namespace)
        try:
            with pytest.raises(StoreUnavailable) as caught:
                await store.add("x")
        finally:
            await store.close()
        message = str(caught.value)
        assert "Redis 7.0 or newer" in message and "\n" not in message
    finally:
        proc.terminate()
        proc.wait(10)
