"""Boards on Redis Sentinel and Redis Cluster: real topologies, real failovers.

Each test starts its own topology (core/local_topology.py: redis-server processes on free
loopback ports, stopped by PID) because it kills a master. What they show is what the
README's "Failover" section promises: the same Store object follows the new master without
a restart, tokens never go backwards across the failover, and on Cluster many boards
spread over the masters while one board's failover leaves the others working.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from claimroom.core import constants as C
from claimroom.core.errors import StoreUnavailable
from claimroom.core.local_topology import LocalCluster, LocalSentinel
from claimroom.core.models import Claim
from claimroom.core.store import Store, TaskSpec

pytestmark = pytest.mark.heavy


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[LocalSentinel]:
    topo = LocalSentinel.start(tmp_path / "sentinel")
    yield topo
    topo.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    topo = LocalCluster.start(tmp_path / "cluster")
    yield topo
    topo.stop()


async def claim_through_failover(
    store: Store, agent: str, timeout_s: float = 30.0
) -> tuple[Claim, float, int]:
    """Claim until the store answers again: the claim, the seconds it took, the refusals met."""
    start, refused = time.monotonic(), 0
    while True:
        try:
            got = await store.claim(agent, ttl_s=60)
            assert got is not None
            return got, time.monotonic() - start, refused
        except StoreUnavailable:
            refused += 1
            assert time.monotonic() - start < timeout_s, "the store did not come back after the failover"
            await asyncio.sleep(0.05)


def epoch(port: int, namespace: str) -> dict[str, str]:
    return dict(redis.Redis(port=port, decode_responses=True).hgetall(C.epoch_key(namespace)))


async def test_a_sentinel_failover_is_followed_without_a_restart(
    sentinel: LocalSentinel, namespace: str
) -> None:
    # WAIT for both replicas: what was written before the kill is on whichever is promoted
    # (without it, the replica may not have the tasks yet: asynchronous replication).
    store = Store.from_url(sentinel.url + "?wait=2&wait_ms=1000", namespace)
    try:
        await store.add_many([TaskSpec(title=f"t{i}") for i in range(4)])
        before = await store.claim("ada", ttl_s=60)
        assert before is not None
        old = sentinel.master()
        assert epoch(old.port, namespace)["n"] == "1"

        sentinel.kill_master()
        new = sentinel.wait_failover(old.port)
        after, _, _ = await claim_through_failover(store, "bob")  # the same Store object

        assert new.port != old.port
        assert after.token > before.token  # a new epoch began on the new master
        assert epoch(new.port, namespace)["n"] == "2"
        await store.complete(after.task.id, after.token)
        assert (await store.get(after.task.id)).state == "done"
    finally:
        await store.close()


async def test_wait_makes_each_write_reach_a_replica_before_the_caller_hears(
    sentinel: LocalSentinel, namespace: str
) -> None:
    store = Store.from_url(sentinel.url + "?wait=2&wait_ms=2000", namespace)
    try:
        tid = await store.add("parse")
        got = await store.claim("ada", ttl_s=60)
        assert got is not None and got.task.id == tid
        assert store.admin.acked == 2
        # Both replicas hold the claim the moment the caller has its token.
        for node in sentinel.nodes:
            if node.port != sentinel.master().port:
                r = redis.Redis(port=node.port, decode_responses=True)
                assert r.hget(C.task_key(namespace, tid), "token") == str(got.token)
    finally:
        await store.close()


async def test_a_waiting_claimer_is_woken_through_sentinel(sentinel: LocalSentinel, namespace: str) -> None:
    store = Store.from_url(sentinel.url, namespace)
    adder = Store.from_url(sentinel.url, namespace)
    try:
        waiting = asyncio.create_task(store.claim("ada", ttl_s=60, wait_s=20))
        await asyncio.sleep(0)  # let it subscribe
        tid = await adder.add("arrives later")
        got = await asyncio.wait_for(waiting, 20)
        assert got is not None and got.task.id == tid
    finally:
        await store.close()
        await adder.close()


def namespaces_per_master(cluster: LocalCluster) -> dict[int, str]:
    """One namespace whose slot each master serves: boards spread over the cluster."""
    found: dict[int, str] = {}
    for i in range(1000):
        ns = f"team{i}"
        slot = key_slot(C.events_key(ns).encode())
        port = next(s.port for s in cluster.masters() if any(lo <= slot <= hi for lo, hi in s.slots))
        found.setdefault(port, ns)
        if len(found) == cluster.masters_count:
            return found
    raise AssertionError("no namespace spread found")


async def test_boards_spread_over_the_cluster_and_one_failover_leaves_the_others_working(
    cluster: LocalCluster,
) -> None:
    spread = namespaces_per_master(cluster)
    assert len(spread) == 3
    # WAIT for each master's replica, so the promoted one holds the board (see above).
    stores = {port: Store.from_url(cluster.url + "?wait=1&wait_ms=1000", ns) for port, ns in spread.items()}
    try:
        claims = {}
        for port, store in stores.items():
            await store.add_many([TaskSpec(title=f"t{i}") for i in range(3)])
            got = await store.claim("ada", ttl_s=60)
            assert got is not None
            claims[port] = got
            # The board lives on that master alone (its whole key set in one slot).
            slot = key_slot(C.events_key(spread[port]).encode())
            assert redis.Redis(port=port).exists(C.task_key(spread[port], got.task.id)) == 1
            for other in spread:
                held = redis.Redis(port=other).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)
                assert (held > 0) == (other == port)

        victim, *others = list(stores)
        cluster.kill_master(victim)
        # While the victim's slots fail over, the other boards keep working.
        for port in others:
            got = await stores[port].claim("bob", ttl_s=60)
            assert got is not None and got.token == claims[port].token + 1
        promoted = cluster.wait_failover(victim)
        after, _, _ = await claim_through_failover(stores[victim], "carl")
        assert after.token > claims[victim].token
        assert epoch(promoted.port, spread[victim])["n"] == "2"
        await stores[victim].complete(after.task.id, after.token)
    finally:
        for store in stores.values():
            await store.close()
