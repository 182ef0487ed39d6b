"""Claim+complete cycles/s on one Redis, on Sentinel (with and without WAIT) and on a
3-master Redis Cluster, in one run; then the time from a master's death to the first
successful claim after the failover, on Sentinel and on Cluster.

A script, not a test. Every topology is started here (core/local_topology.py, free
loopback ports, stopped by PID) and gone when it ends:

    .venv/bin/python bench/topologies.py            # about two minutes
    .venv/bin/python bench/topologies.py --quick    # about 40 s

Each row runs ``--processes`` agent processes, each on its own board (namespace), each with
``--agents`` agents looping claim -> complete over tasks added beforehand, for
``--seconds``. On Cluster the boards are picked so that each lands on another master. The
machine's cores are shared by the clients and every server, so compare rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from redis.crc import key_slot

from claimroom.core import constants as C
from claimroom.core.errors import StoreUnavailable
from claimroom.core.local_redis import LocalRedis
from claimroom.core.local_topology import LocalCluster, LocalSentinel
from claimroom.core.store import Store, TaskSpec


async def _agents(url: str, ns: str, agents: int, tasks: int, seconds: float) -> int:
    store = Store.from_url(url, ns)
    try:
        for start in range(0, tasks, 1000):
            await store.add_many([TaskSpec(title=f"t{i}") for i in range(start, min(tasks, start + 1000))])
        done = 0
        stop = time.monotonic() + seconds

        async def agent(name: str) -> None:
            nonlocal done
            while time.monotonic() < stop:
                got = await store.claim(name, ttl_s=60)
                if got is None:
                    return
                await store.complete(got.task.id, got.token)
                done += 1

        await asyncio.gather(*(agent(f"a{i}") for i in range(agents)))
        return done
    finally:
        await store.close()


def _process(url: str, ns: str, agents: int, tasks: int, seconds: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    out.put(asyncio.run(_agents(url, ns, agents, tasks, seconds)))


def cycles(url: str, namespaces: list[str], args: argparse.Namespace) -> float:
    """Cycles/s of all the processes together."""
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    tasks = int(args.seconds * 4000)  # more than one board can finish in the time
    procs = [
        mp.Process(target=_process, args=(url, ns, args.agents, tasks, args.seconds, out))
        for ns in namespaces
    ]
    start = time.monotonic()
    for p in procs:
        p.start()
    total = sum(out.get(timeout=args.seconds + 120) for _ in procs)
    for p in procs:
        p.join()
    return total / (time.monotonic() - start)


def spread(cluster: LocalCluster, count: int) -> list[str]:
    """``count`` namespaces, as many masters apart as there are masters."""
    masters = cluster.masters()
    picked: list[str] = []
    for i in range(10_000):
        ns = f"bench{i}"
        slot = key_slot(C.events_key(ns).encode())
        owner = next(s.port for s in masters if any(lo <= slot <= hi for lo, hi in s.slots))
        wanted = masters[len(picked) % len(masters)].port
        if owner == wanted:
            picked.append(ns)
            if len(picked) == count:
                return picked
    raise RuntimeError("no spread of namespaces found")


async def failover_to_claim(url: str, ns: str, kill: callable) -> tuple[float, int]:  # type: ignore[valid-type]
    """Seconds from the kill to the first claim that succeeds, and the calls refused meanwhile."""
    store = Store.from_url(url, ns)
    try:
        await store.add_many([TaskSpec(title=f"t{i}") for i in range(20)])
        assert await store.claim("ada", ttl_s=60) is not None
        kill()
        start, refused = time.monotonic(), 0
        while True:
            try:
                if await store.claim("bob", ttl_s=60) is not None:
                    return time.monotonic() - start, refused
            except StoreUnavailable:
                refused += 1
                await asyncio.sleep(0.02)
    finally:
        await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter rows")
    parser.add_argument("--processes", type=int, default=3, help="agent processes, one board each")
    parser.add_argument("--agents", type=int, default=8, help="agents per process")
    parser.add_argument("--seconds", type=float, default=0.0, help="length of each row")
    args = parser.parse_args()
    args.seconds = args.seconds or (4.0 if args.quick else 12.0)
    mp.set_start_method("spawn")
    folder = Path(tempfile.mkdtemp(prefix="claimroom-bench-topo-"))
    print(f"# topologies: {args.processes} processes x {args.agents} agents, {args.seconds:.0f} s a row, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")  # fmt: skip
    rows: list[tuple[str, str]] = []
    names = [f"bench{i}" for i in range(args.processes)]
    single = LocalRedis.start()
    try:
        rows.append(("single Redis", f"{cycles(single.url, names, args):,.0f} cycles/s"))
    finally:
        single.stop()
    sentinel = LocalSentinel.start(folder / "sentinel")
    try:
        rows.append(("Sentinel (1 master, 2 replicas)", f"{cycles(sentinel.url, names, args):,.0f} cycles/s"))
        for n in (1, 2):
            got = cycles(sentinel.url + f"?wait={n}&wait_ms=1000", names, args)
            rows.append((f"Sentinel, WAIT for {n} replica(s)", f"{got:,.0f} cycles/s"))
        took, refused = asyncio.run(failover_to_claim(sentinel.url, "fo", lambda: sentinel.kill_master()))
        rows.append(("Sentinel: master killed -> first claim", f"{took:.2f} s ({refused} calls refused)"))
    finally:
        sentinel.stop()
    cluster = LocalCluster.start(folder / "cluster")
    try:
        boards = spread(cluster, max(3, args.processes))
        rows.append(
            (
                f"Cluster (3 masters), {len(boards)} boards",
                f"{cycles(cluster.url, boards, args):,.0f} cycles/s",
            )
        )
        victim = boards[0]
        slot = key_slot(C.events_key(victim).encode())
        port = next(s.port for s in cluster.masters() if any(lo <= slot <= hi for lo, hi in s.slots))
        took, refused = asyncio.run(failover_to_claim(cluster.url, victim, lambda: cluster.kill_master(port)))
        rows.append(("Cluster: master killed -> first claim", f"{took:.2f} s ({refused} calls refused)"))
    finally:
        cluster.stop()
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
