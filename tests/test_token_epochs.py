"""Fencing tokens never go backwards when another Redis process takes over a board.

Replication is asynchronous: a promoted replica may have missed the last tokens its master
handed out. Here that is made to happen for certain, with the very step Sentinel takes to
promote a replica (REPLICAOF NO ONE) while the old master goes on alone: the token the old
master handed out after the cut is unknown to the new one. Without epochs the new master
would hand out that same number again, and the zombie holding it could complete another
agent's claim.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from claimroom.core import constants as C
from claimroom.core.errors import LeaseLost
from claimroom.core.local_redis import LocalRedis
from claimroom.core.store import Store, TaskSpec
from tests.waiting import until_sync


@pytest.fixture
def pair() -> Iterator[tuple[LocalRedis, LocalRedis]]:
    """A master and its replica, in sync."""
    master, replica = LocalRedis.start(), LocalRedis.start()
    try:
        r = redis.Redis(port=replica.port, decode_responses=True)
        r.replicaof("127.0.0.1", master.port)
        until_sync(lambda: r.info("replication")["master_link_status"] == "up", "the replica to sync")
        yield master, replica
    finally:
        master.stop()
        replica.stop()


def _offsets_equal(master: LocalRedis, replica: LocalRedis) -> bool:
    m = redis.Redis(port=master.port).info("replication")["master_repl_offset"]
    return bool(redis.Redis(port=replica.port).info("replication")["master_repl_offset"] == m)


async def test_a_zombie_token_the_promoted_replica_never_saw_is_refused(
    pair: tuple[LocalRedis, LocalRedis], namespace: str
) -> None:
    master, replica = pair
    old = Store.from_url(master.url, namespace)
    await old.add_many([TaskSpec(title="parse"), TaskSpec(title="lex")])
    ada = await old.claim("ada", ttl_s=60)
    assert ada is not None
    until_sync(lambda: _offsets_equal(master, replica), "the replica to hold ada's claim")

    # The cut: the replica is promoted while the old master still takes writes.
    redis.Redis(port=replica.port).replicaof("NO", "ONE")
    bob = await old.claim("bob", ttl_s=60)  # handed out by the old master alone: lost
    assert bob is not None and bob.token > ada.token
    await old.close()

    new = Store.from_url(replica.url, namespace)
    try:
        assert (await new.get(bob.task.id)).state == "queued"  # the new master never saw bob's claim
        carl = await new.claim("carl", ttl_s=60)
        assert carl is not None and carl.task.id == bob.task.id
        assert carl.token > bob.token, "a token went backwards across the promotion"
        with pytest.raises(LeaseLost):
            await new.complete(bob.task.id, bob.token)  # the zombie from before the cut
        await new.complete(carl.task.id, carl.token)
        # ada's claim made it across (it was replicated), so her token is still good.
        await new.complete(ada.task.id, ada.token)
        epoch = redis.Redis(port=replica.port, decode_responses=True).hgetall(C.epoch_key(namespace))
        assert epoch["n"] == "2"  # one epoch per serving process
    finally:
        await new.close()


async def test_a_restart_begins_an_epoch_and_tokens_only_grow(namespace: str, tmp_path: Path) -> None:
    server = LocalRedis.start(directory=tmp_path)
    port = server.port
    try:
        store = Store.from_url(server.url, namespace)
        before_ms = int(time.time() * 1000)
        await store.add_many([TaskSpec(title=f"t{i}") for i in range(3)])
        first = await store.claim("ada", ttl_s=60)
        second = await store.claim("ada2", ttl_s=60)
        assert first is not None and second is not None
        assert second.token == first.token + 1  # one epoch: tokens count up by one
        # The first token of a board is its epoch's floor: ms since 2025 times 64, plus one.
        assert first.token > (before_ms - 1_000 - C.epoch_base_ms) * C.epoch_tokens_per_ms
        assert first.token < 10**14  # exact in Lua's number formatting (%.14g) and cjson
        redis.Redis(port=port).save()  # the restart keeps the board; only the process changes
        await store.close()
        server.stop()
        server = LocalRedis.start(directory=tmp_path, port=port)
        store = Store.from_url(server.url, namespace)
        third = await store.claim("bob", ttl_s=60)
        assert third is not None and third.token > second.token + 1  # jumped to the new floor
        assert redis.Redis(port=port, decode_responses=True).hget(C.epoch_key(namespace), "n") == "2"
        await store.close()
    finally:
        server.stop()


async def test_tokens_only_grow_when_the_boards_keys_are_flushed_under_a_running_server(
    namespace: str,
) -> None:
    # The scripts check a board's epoch once per server process and then trust its counter
    # while it only goes up (lib.lua next_token); a counter that went back (FLUSHDB here, as
    # an operator might) must be checked again, or tokens would start over from 1.
    server = LocalRedis.start()
    try:
        store = Store.from_url(server.url, namespace)
        await store.add_many([TaskSpec(title=f"t{i}") for i in range(2)])
        first = await store.claim("ada", ttl_s=60)
        second = await store.claim("bob", ttl_s=60)
        assert first is not None and second is not None and second.token == first.token + 1
        redis.Redis(port=server.port).flushdb()
        await store.add("after the flush")
        third = await store.claim("cy", ttl_s=60)
        assert third is not None and third.token > second.token
        fourth_id = await store.add("and after a deleted counter alone")
        redis.Redis(port=server.port).delete(C.seq_key(namespace, "token"), C.epoch_key(namespace))
        fourth = await store.claim("dee", ttl_s=60)
        assert fourth is not None and fourth.task.id == fourth_id and fourth.token > third.token
        await store.close()
    finally:
        server.stop()
