"""claims.py's coordination-strategy rows (``--only strategies``): claim latency and cycles/s
of plain claims beside claims under a coordination strategy, in the same run, on the bench's
own redis-server.

A module, not a benchmark (``./dev bench`` skips it). Each mode seeds a fresh board for
``AGENTS`` registered agents and runs the same closed loop (each agent claims one task, then
completes it, until it finds nothing), through the public API:

  plain     tasks with no affinity key
  affinity  tasks spread over ``KEYS`` affinity keys: each waits for its key's owner on the
            hash ring (the default steal delay outlasts the run, so every claim takes the
            owner path: lib.lua's owner index beside the ready sets)

``MODES`` maps a mode's name to its function; a strategy added later (bidding) is one more
entry, and its rows print beside the others.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from _harness import BenchRedis, CpuMeter
from _stats import Row, ms_rows

from claimroom.core.store import Store, TaskSpec

AGENTS = 8
KEYS = 64
ADD_CHUNK = 10_000


@dataclass
class Measured:
    """One mode's closed-loop run."""

    label: str
    cycles: int
    seconds: float
    latencies_ms: list[float]


async def closed_loop(store: Store, agents: list[str], n: int) -> tuple[int, float, list[float]]:
    """Every agent claims and completes until it finds nothing: (cycles, seconds, claim ms)."""
    lat: list[float] = []
    done = 0

    async def agent(name: str) -> None:
        nonlocal done
        clock = time.perf_counter
        while True:
            t = clock()
            c = await store.claim(name)
            lat.append((clock() - t) * 1000)
            if c is None:
                return
            await store.complete(c.task.id, c.token)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(agent(a) for a in agents))
    seconds = time.perf_counter() - start
    if done != n:
        raise RuntimeError(f"expected {n} cycles, got {done}")
    return done, seconds, lat


async def _run(server: BenchRedis, n: int, spec: Callable[[int], TaskSpec], label: str) -> Measured:
    store = await server.fresh()
    try:
        agents = [f"agent-{i}" for i in range(AGENTS)]
        for a in agents:
            await store.register(a)
        for start in range(0, n, ADD_CHUNK):
            await store.add_many([spec(i) for i in range(start, min(n, start + ADD_CHUNK))])
        cycles, seconds, lat = await closed_loop(store, agents, n)
        return Measured(label, cycles, seconds, lat)
    finally:
        await store.close()


async def plain(server: BenchRedis, n: int) -> Measured:
    return await _run(server, n, lambda i: TaskSpec(f"plain {i}"), f"plain, {AGENTS} agents")


async def affinity(server: BenchRedis, n: int) -> Measured:
    return await _run(
        server,
        n,
        lambda i: TaskSpec(f"affine {i}", affinity=f"src/module{i % KEYS}/"),
        f"affinity, {KEYS} keys over {AGENTS} agents",
    )


Mode = Callable[[BenchRedis, int], Awaitable[Measured]]
MODES: dict[str, Mode] = {"plain": plain, "affinity": affinity}


async def strategy_rows(server: BenchRedis, args: argparse.Namespace) -> list[Row]:
    n = int(args.tasks) or 5_000
    meter = CpuMeter({"redis": server.pid})
    rows: list[Row] = []
    for name, mode in MODES.items():
        await mode(server, min(n, 500))  # warm-up: connections, scripts cached
        before = meter.sample()
        m = await mode(server, n)
        span = CpuMeter.between(before, meter.sample())
        redis_us = span.pids_s["redis"]
        per = "?" if redis_us is None else f"{redis_us / m.cycles * 1e6:.0f}"
        rows.append(Row(f"[{name}] claim+complete, {m.label}", f"{m.cycles / m.seconds:,.0f}", "cycles/s"))
        rows += ms_rows(f"[{name}] claim latency p{{q}}, {m.label}", m.latencies_ms, None, digits=2)
        rows.append(Row(f"[{name}]   redis cpu/cycle ({m.cycles:,} cycles)", per, "us"))
    return rows
