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
  bidding   plain tasks, while auctions open and close on the board: an adder keeps
            ``AUCTIONS_PER_S`` tasks a second coming in with a ``WINDOW_S`` bidding window and
            ``BIDDERS`` child processes (``_claims_bidding.py``'s bidder) bid on every open
            window they see. The windows close in the agents' own claims (a claim closes the
            due windows first), so the plain claims pay for the closing: that is what the
            rows measure. The auctions' winners hold their claims (not counted as cycles).

``MODES`` maps a mode's name to its function; a strategy added later is one more entry, and
its rows print beside the others.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import _claims_bidding
from _harness import BenchRedis, CpuMeter, run_children
from _stats import Row, ms_rows

from claimroom.core.store import Store, TaskSpec

AGENTS = 8
KEYS = 64
ADD_CHUNK = 10_000
BIDDERS = 3  # bidder processes in the bidding mode
AUCTIONS_PER_S = 100  # tasks a second added with a bidding window, in the bidding mode
WINDOW_S = 0.2  # their window


@dataclass
class Measured:
    """One mode's closed-loop run."""

    label: str
    cycles: int
    seconds: float
    latencies_ms: list[float]


async def closed_loop(
    store: Store, agents: list[str], n: int, *, exact: bool = True
) -> tuple[int, float, list[float]]:
    """Every agent claims and completes until it finds nothing: (cycles, seconds, claim ms).
    ``exact``: exactly ``n`` cycles (else at least: auctions left without a bid become plain
    work too)."""
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
    if done < n or (exact and done != n):
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


async def _auctioneer(store: Store, stop: asyncio.Event) -> int:
    """Add tasks with a bidding window, AUCTIONS_PER_S a second, until ``stop``."""
    n = 0
    every = 0.01
    per = max(1, round(AUCTIONS_PER_S * every))
    while not stop.is_set():
        await store.add_many([TaskSpec(f"auction {n + i}", bid_window_s=WINDOW_S) for i in range(per)])
        n += per
        await asyncio.sleep(every)
    return n


async def bidding(server: BenchRedis, n: int) -> Measured:
    """The plain closed loop while auctions open and close on the same board (see above)."""
    store = await server.fresh()
    try:
        agents = [f"agent-{i}" for i in range(AGENTS)]
        for a in agents:
            await store.register(a)
        for start in range(0, n, ADD_CHUNK):
            await store.add_many([TaskSpec(f"plain {i}") for i in range(start, min(n, start + ADD_CHUNK))])
        # Bidders bid for as long as the plain loop may take (at 1,000 cycles/s), then stop.
        seconds = max(2.0, n / 1_000)
        argvs = [[server.url, store.namespace, f"bidder-{i}", str(seconds)] for i in range(BIDDERS)]
        bidders = asyncio.create_task(run_children(Path(_claims_bidding.__file__), argvs, "bidder"))
        stop = asyncio.Event()
        adder = asyncio.create_task(_auctioneer(store, stop))
        await asyncio.sleep(0.3)  # the bidders start and the first windows open, outside the timing
        cycles, elapsed, lat = await closed_loop(store, agents, n, exact=False)
        stop.set()
        added = await adder
        bids = sum(int(r["bids"]) for r in await bidders)
        closed = sum(e.type == "auction-closed" for e in await store.events(count=1_000_000))
        label = f"{AGENTS} agents, {added} auctions ({closed} closed, {bids} bids, {BIDDERS} bidders)"
        return Measured(label, cycles, elapsed, lat)
    finally:
        await store.close()


Mode = Callable[[BenchRedis, int], Awaitable[Measured]]
MODES: dict[str, Mode] = {"plain": plain, "affinity": affinity, "bidding": bidding}


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
