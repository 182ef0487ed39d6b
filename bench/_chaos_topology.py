"""The chaos suite's Sentinel and Cluster targets (a module, not a benchmark: ./dev bench
skips it). Imported only for ``--target sentinel|cluster|all``.

They run the same agents, kills and zombies as the standalone target, on the topologies of
``core/local_topology.py`` (``LocalSentinel``, ``LocalCluster``: each ``start()``s, has a
``url`` the store opens, ``kill_master`` and ``wait_failover``, ``stop()``), and add the
topology's own fault: on Sentinel the master killed (a failover), on Cluster the master of
the board's slot killed and its replica promoted. Agents, reaper and suite all use the
topology's URL (a proxy in front would hide the topology from the client).
"""

from __future__ import annotations

import asyncio
import inspect
import random
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis as redis_py
from _chaos_targets import Target
from redis.crc import key_slot

from claimroom.core import constants as C

FAILOVER = "masters killed (Sentinel failover)"
# Redis replicates asynchronously: without WAIT a failover loses the writes the old master
# acknowledged but had not yet sent on (under load, seconds of them), and the suite would
# rightly count acknowledged completions missing. Every batch waits for every replica: the
# sentinels choose the replica to promote from INFO up to seconds old, so waiting for one of
# two still lost acknowledged writes here (the other one was promoted). While a killed node
# is away its WAIT times out (wait_ms) and the batch goes on; the next kill comes only once
# it is back and synced, so no acknowledged write lives on a single node when a master dies.
WAIT_SENTINEL = "wait=2&wait_ms=500"  # a master and two replicas
WAIT_CLUSTER = "wait=1&wait_ms=500"  # each master has one replica


def waiting(url: str, wait: str) -> str:
    return url + ("&" if "?" in url else "?") + wait


PROMOTION = "masters killed (Cluster replica promoted)"


async def _call(fn: Any, *args: Any) -> Any:
    """Call a topology method whether it is sync (run off the event loop) or async."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)
    got = await asyncio.to_thread(fn, *args)
    return await got if inspect.isawaitable(got) else got


class SentinelTarget(Target):
    name = "sentinel"

    def __init__(self, topology: Any) -> None:
        super().__init__(waiting(topology.url, WAIT_SENTINEL), waiting(topology.url, WAIT_SENTINEL))
        self.topology = topology
        # Even so, a failover here has lost acknowledged writes under load (the promoted
        # replica had not all of them): counted and printed, not failed; tokens, the trail
        # and leases stay exact (README, "Sentinel, Cluster and failover").
        self.writes_lost = True
        self.faults = {FAILOVER: self.failover}
        self.limits = {FAILOVER: 3}  # the killed master comes back as a replica for the next
        self.facts = ["Sentinel: a master, two replicas, three sentinels; WAIT for both replicas"]

    async def failover(self, rng: random.Random) -> None:
        with self.outage():
            killed = await _call(self.topology.kill_master)
            self.injected[FAILOVER] += 1
            await _call(self.topology.wait_failover, killed.port)
        # Started on this thread: a process started from a worker thread would die with it
        # (core/local_redis.py die_with_parent).
        self.topology.restart(killed)

    async def stop(self) -> None:
        await _call(self.topology.stop)


class ClusterTarget(Target):
    name = "cluster"

    def __init__(self, topology: Any, namespace: str) -> None:
        super().__init__(waiting(topology.url, WAIT_CLUSTER), waiting(topology.url, WAIT_CLUSTER))
        self.topology = topology
        self.namespace = namespace
        self.faults = {PROMOTION: self.promote}
        self.limits = {PROMOTION: 3}
        self.facts = ["Cluster: 3 masters with a replica each, the board's master killed; WAIT for 1"]

    async def promote(self, rng: random.Random) -> None:
        port = await asyncio.to_thread(slot_master_port, self.topology.url, self.namespace)
        with self.outage():
            killed = await _call(self.topology.kill_master, port)
            self.injected[PROMOTION] += 1
            await _call(self.topology.wait_failover, port)
        self.topology.restart(killed)  # back as the new master's replica (on this thread)

    async def stop(self) -> None:
        await _call(self.topology.stop)


def slot_master_port(url: str, namespace: str) -> int:
    """The port of the master serving the board's slot (its keys share one hash tag),
    asked of the first node the cluster URL names (CLUSTER SLOTS)."""
    first = urlsplit(url).netloc.rsplit("@", 1)[-1].split(",")[0]
    host, _, port = first.rpartition(":")
    slot = key_slot(C.prefix(namespace).encode())
    client = redis_py.Redis(host=host or "127.0.0.1", port=int(port), decode_responses=True)
    try:
        for start, end, master, *_replicas in client.execute_command("CLUSTER SLOTS"):
            if int(start) <= slot <= int(end):
                return int(master[1])
    finally:
        client.close()
    raise RuntimeError(f"no master serves slot {slot} of namespace {namespace}")


async def start_topology(name: str, folder: Path, namespace: str) -> Target:
    try:
        from claimroom.core import local_topology
    except ImportError:
        raise SystemExit(
            f"chaos: --target {name} needs core/local_topology.py (LocalSentinel, LocalCluster), "
            "which this checkout does not have"
        ) from None
    # Started on this thread, not a worker thread (see SentinelTarget.failover).
    if name == "sentinel":
        return SentinelTarget(local_topology.LocalSentinel.start(folder / "sentinel"))
    if name == "cluster":
        return ClusterTarget(local_topology.LocalCluster.start(folder / "cluster"), namespace)
    raise SystemExit(f"chaos: unknown target {name!r}: standalone, sentinel or cluster")
