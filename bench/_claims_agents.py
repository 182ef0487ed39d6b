"""claims.py's rows of agents in other OS processes: the spread latency and the file store.

A module, not a benchmark (``./dev bench`` skips it); it is also the agents' own script
(``python bench/_claims_agents.py redis|file ...``, run by ``Children``):

  - spread (``--only spread``): 64 working agents over 8 processes, as agents run in use
    (each its own CLI or MCP server), each claiming, working ~``work_ms`` (exponentially
    distributed) and completing; they join at random moments, with scripts loaded and
    connections open first (steady state). Claim latency p50/p99 and cycles/s.
  - the file store (``--only file``): 1 and ``--file-processes`` agent processes on one
    ``file://`` board in a temporary directory, claim then complete until it is empty; the
    rate is the tasks done over the span from the first claim to the last complete of any
    process, beside the agents' CPU per cycle.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _claims_throughput import MIN_TASKS, latency_rows, seed
from _harness import BenchRedis, ready_then_go, report, run_children
from _stats import Row, yes

from claimroom.core.redis.store import RedisStore
from claimroom.core.store import Store

# In the latency runs each agent holds its task ~this long (exponentially distributed):
# 100 ms is ~600 cycles/s from 64 agents, hundreds of times what 64 coding agents ask
# for, with room left on two cores; 20 ms (~2,500/s) nearly fills them, shown to say so.
WORK_MS = 100.0
BUSY_WORK_MS = 20.0
SPREAD_AGENTS = 64
SPREAD_PROCESSES = 8  # the latency run's 64 agents live in this many OS processes
FILE_TARGET_CYCLES = 1_000.0  # file backend, 8 processes
SCRIPT = Path(__file__).resolve()


# --- in the bench's process ------------------------------------------------------------------


async def spread(server: BenchRedis, args: argparse.Namespace, work_ms: float) -> tuple[float, list[float]]:
    """SPREAD_AGENTS working agents over SPREAD_PROCESSES processes: (cycles/s, claim
    latencies in ms)."""
    store = await server.fresh()
    try:
        offered = SPREAD_AGENTS / (work_ms / 1000)
        tasks = max(MIN_TASKS, int(offered * args.seconds))
        await seed(store, tasks)
        per = SPREAD_AGENTS // SPREAD_PROCESSES
        argvs = [
            ["redis", server.url, store.namespace, str(k * per), str(per), str(work_ms)]
            for k in range(SPREAD_PROCESSES)
        ]
        reports = await run_children(SCRIPT, argvs, "agent process")
    finally:
        await store.close()
    done = sum(r["cycles"] for r in reports)
    if done != tasks:
        raise RuntimeError(f"expected {tasks} cycles, got {done}")
    span = max(r["last"] for r in reports) - min(r["first"] for r in reports)
    return done / span, [v for r in reports for v in r["lat"]]


async def spread_rows(server: BenchRedis, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    for work_ms, target in ((BUSY_WORK_MS, False), (WORK_MS, True)):
        rate, lat = await spread(server, args, work_ms)
        label = f"{SPREAD_AGENTS} agents in {SPREAD_PROCESSES} processes, ~{work_ms:g} ms work per task"
        rows.append(Row(f"claim+complete, {label}", f"{rate:,.0f}", "cycles/s"))
        rows += latency_rows(label, lat, target)
    return rows


async def file_backend(processes: int, tasks: int) -> tuple[int, float, float]:
    """(cycles, seconds from the first claim to the last complete, CPU seconds the agents
    used meanwhile) over ``processes`` agents."""
    with tempfile.TemporaryDirectory(prefix="claimroom-bench-") as folder:
        url, ns = f"file://{folder}", "b" + uuid.uuid4().hex[:10]
        store = Store.from_url(url, ns)
        try:
            await seed(store, tasks)
        finally:
            await store.close()
        argvs = [["file", url, ns, f"agent{i}"] for i in range(processes)]
        reports = await run_children(SCRIPT, argvs, "file-store agent")
    done = sum(r["cycles"] for r in reports)
    if done != tasks:
        raise RuntimeError(f"expected {tasks} cycles on the file store, got {done}")
    active = [r for r in reports if r["cycles"]]
    span = max(r["last"] for r in active) - min(r["first"] for r in active)
    return done, span, sum(r["cpu_s"] for r in reports)


async def file_rows(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    for n in (1, args.file_processes):
        cycles, span, cpu_s = await file_backend(n, args.file_tasks)
        rate = cycles / span if span > 0 else float("inf")
        target = n == args.file_processes
        processes = f"{n} process{'es' if n > 1 else ''}"
        goal, ok = (
            (f">= {FILE_TARGET_CYCLES:,.0f}", yes(rate >= FILE_TARGET_CYCLES)) if target else ("-", "-")
        )
        rows.append(
            Row(
                f"file store: claim+complete, {processes} ({cycles:,} tasks)",
                f"{rate:,.0f}",
                "cycles/s",
                goal,
                ok,
            )
        )
        rows.append(
            Row(f"file store: agents' CPU per cycle, {processes}", f"{cpu_s / cycles * 1000:.2f}", "ms")
        )
    return rows


# --- in the agents' processes ------------------------------------------------------------------


async def wait_for_go(store: Store) -> None:
    await store.counts()  # the store opened and every module loaded before the start
    await ready_then_go()


async def redis_agents(url: str, namespace: str, first: int, count: int, work_ms: float) -> None:
    """``count`` agents in one process, each claiming, working ~``work_ms`` (exponential)
    and completing until the board is empty; reports its claim latencies."""
    store = RedisStore(url, namespace)
    rng = random.Random(first)
    lat: list[float] = []
    empty: list[float] = []
    cycles = 0
    names = [f"agent-{first + i}" for i in range(count)]
    try:
        # Steady state is what is measured: scripts loaded and the connections open before
        # the start (a process's first calls pay for both, once).
        await store.admin.load_scripts()
        await asyncio.gather(*(store.register(name) for name in names))
        await wait_for_go(store)

        async def agent(name: str) -> None:
            nonlocal cycles
            clock = time.perf_counter
            # Agents join at random moments, as in use: 64 first claims in the same
            # millisecond would queue behind each other and be most of the p99.
            await asyncio.sleep(rng.expovariate(1000 / work_ms))
            while True:
                t = clock()
                claim = await store.claim(name)
                if claim is None:  # the board is empty: a different call from a claim that wins work
                    empty.append((clock() - t) * 1000)
                    return
                lat.append((clock() - t) * 1000)
                await asyncio.sleep(rng.expovariate(1000 / work_ms))
                await store.complete(claim.task.id, claim.token)
                cycles += 1

        start = time.time()
        await asyncio.gather(*(agent(name) for name in names))
        last = time.time()
    finally:
        await store.close()
    report({"lat": lat, "empty": empty, "cycles": cycles, "first": start, "last": last})


async def file_agent(url: str, namespace: str, name: str) -> None:
    """One file-store agent: claim and complete until the board is empty; report on stdout."""
    store = Store.from_url(url, namespace)
    cycles, first, last = 0, 0.0, 0.0
    try:
        await wait_for_go(store)
        cpu = time.process_time()
        while (claim := await store.claim(name)) is not None:
            if not cycles:
                first = time.time()
            await store.complete(claim.task.id, claim.token)
            cycles += 1
        last = time.time()
        cpu = time.process_time() - cpu
    finally:
        await store.close()
    report({"cycles": cycles, "first": first, "last": last, "cpu_s": cpu})


if __name__ == "__main__":
    kind, *rest = sys.argv[1:]
    if kind == "redis":
        url, ns, first, count, work = rest
        asyncio.run(redis_agents(url, ns, int(first), int(count), float(work)))
    else:
        url, ns, name = rest
        asyncio.run(file_agent(url, ns, name))
