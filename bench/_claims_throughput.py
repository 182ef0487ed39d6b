"""claims.py's throughput rows (``--only redis``): claim+complete cycles/s and the ceiling.

A module, not a benchmark (``./dev bench`` skips it). In this process, on the bench's own
redis-server:

  - ``agents`` asyncio tasks through the public API (``Store.claim``, or ``claim_many`` of
    ``PER_CALL``, and ``Store.complete``), each claiming then completing until the tasks
    run out: a closed loop at full speed, with the store's coalescing on (calls made in
    one event-loop turn share a pipeline) or off (one round trip per call);
  - the ceiling: the claim and complete scripts alone, pipelined through
    ``RedisStore.admin.run_scripts``, on one connection and on two side by side.

Each run is sized by an untimed pilot run so that it lasts about ``--seconds`` (or exactly
``--tasks`` tasks); its "cpu/cycle" row splits where the time went (this process, redis-server).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from _harness import BenchRedis, CpuMeter
from _stats import Row, ms_rows, yes

from claimroom.core.redis.store import claimed_fields
from claimroom.core.store import Store, TaskSpec

ADD_CHUNK = 10_000  # constants.max_batch_add
MIN_TASKS = 1_000
MAX_TASKS = 150_000
TARGET_CYCLES = 5_000.0
LATENCY_TARGET_MS = 5.0  # claim p99 at 64 agents
PER_CALL = 8  # tasks per claim_many call in the batched runs

Drive = Callable[[], Awaitable[tuple[int, list[float], int]]]  # -> (cycles, latencies ms, batches)


@dataclass
class RunResult:
    cycles: int
    seconds: float
    py_cpu_s: float
    redis_cpu_s: float | None
    others_cores: float | None
    latencies_ms: list[float] = field(default_factory=list)
    batches: int = 0

    @property
    def rate(self) -> float:
        return self.cycles / self.seconds if self.seconds > 0 else 0.0


async def seed(store: Store, n: int) -> None:
    """Add n plain tasks (outside any timing)."""
    for start in range(0, n, ADD_CHUNK):
        count = min(ADD_CHUNK, n - start)
        await store.add_many([TaskSpec(title=f"bench {start + i}") for i in range(count)])


def latency_rows(label: str, latencies_ms: list[float], target: bool) -> list[Row]:
    """Claim latency p50 and p99; the p99 held to LATENCY_TARGET_MS when ``target``."""
    return ms_rows(
        f"claim latency p{{q}}, {label}", latencies_ms, LATENCY_TARGET_MS if target else None, digits=2
    )


def throughput_rows(label: str, r: RunResult, target: bool) -> list[Row]:
    """Cycles/s (held to TARGET_CYCLES when ``target``), then where the CPU went per cycle."""
    goal, ok = (f">= {TARGET_CYCLES:,.0f}", yes(r.rate >= TARGET_CYCLES)) if target else ("-", "-")
    rate = Row(label, f"{r.rate:,.0f}", "cycles/s", goal, ok)
    py_us = r.py_cpu_s / r.cycles * 1e6
    redis_us = "?" if r.redis_cpu_s is None else f"{r.redis_cpu_s / r.cycles * 1e6:.0f}"
    extra = f", {2 * r.cycles / r.batches:.0f} calls/batch" if r.batches and "public" in label else ""
    if r.others_cores is not None and r.others_cores >= 0.05:
        extra += f", other load {r.others_cores:.1f} cores"
    cpu = Row(f"  cpu/cycle: python / redis ({r.cycles:,} cycles{extra})", f"{py_us:.0f} / {redis_us}", "us")
    return [rate, cpu]


class Runs:
    """Timed closed-loop runs on the bench's server, each sized by a pilot run."""

    def __init__(self, server: BenchRedis, args: argparse.Namespace) -> None:
        self.server = server
        self.args = args
        self.meter = CpuMeter({"redis": server.pid})

    def pilot_size(self, sizing: int, agents: int) -> int:
        """Tasks for the untimed pilot run: enough to size the real run, or with ``--tasks``
        just a warm-up (every agent's connection opened, scripts cached)."""
        return sizing if not self.args.tasks else max(2 * agents, 100)

    def size(self, pilot: RunResult) -> int:
        """Tasks for the measured run: ``--tasks``, or what lasts ``--seconds`` at the pilot's rate."""
        if self.args.tasks:
            return int(self.args.tasks)
        return int(min(MAX_TASKS, max(MIN_TASKS, pilot.rate * self.args.seconds)))

    async def timed(self, n: int, store: Store, drive: Drive) -> RunResult:
        await seed(store, n)
        before = self.meter.sample()
        cycles, lat, batches = await drive()
        span = CpuMeter.between(before, self.meter.sample())
        if cycles != n:
            raise RuntimeError(f"expected {n} cycles, got {cycles}")
        return RunResult(
            cycles, span.wall_s, span.own_s, span.pids_s["redis"], span.others_cores, lat, batches
        )

    async def public(self, agents: int, *, coalesce: bool = True, per_call: int = 1) -> RunResult:
        """``agents`` asyncio tasks, each claiming (``per_call`` tasks per ``claim_many``
        when above 1, with that much capacity registered) and completing what it got, until
        the tasks run out: a closed loop at full speed."""
        store = await self.server.fresh(coalesce=coalesce)
        try:
            for i in range(agents):
                await store.register(f"agent-{i}", max_claims=per_call)

            async def drive() -> tuple[int, list[float], int]:
                lat: list[float] = []
                done = 0

                async def agent(name: str) -> None:
                    nonlocal done
                    clock = time.perf_counter
                    while True:
                        t = clock()
                        if per_call == 1:
                            one = await store.claim(name)
                            claims = [] if one is None else [one]
                        else:
                            claims = await store.claim_many(name, per_call)
                        lat.append((clock() - t) * 1000)
                        if not claims:
                            return
                        await asyncio.gather(*(store.complete(c.task.id, c.token) for c in claims))
                        done += len(claims)

                b0 = store.admin.batches
                await asyncio.gather(*(agent(f"agent-{i}") for i in range(agents)))
                b1 = store.admin.batches
                return done, lat, 0 if b0 is None or b1 is None else b1 - b0

            pilot = await self.timed(self.pilot_size(max(20 * agents, 500), agents), store, drive)
            return await self.timed(self.size(pilot), store, drive)
        finally:
            await store.close()

    async def ceiling(self, batch: int, conns: int) -> RunResult:
        """The scripts alone: ``batch`` claims (distinct agents) in one pipeline, then their
        completes in one, repeated; ``conns`` such lanes run side by side on their own
        connections (with 1, Redis idles while Python builds and reads each batch).

        Runs the scripts through ``store.admin.run_scripts`` (not the public API): this
        measures what the scripts cost Redis, with as little client work per call as
        possible (no Claim objects, no validation).
        """
        store = await self.server.fresh()
        await store.admin.load_scripts()  # FCALL below: the library is loaded
        try:

            async def lane(agents: list[str]) -> tuple[int, int]:
                done = rounds = 0
                while True:
                    held = []
                    for reply in await store.admin.run_scripts(
                        "claim", [[name, 60_000, "", 1] for name in agents]
                    ):
                        if reply[0] == 0:
                            held += [(tid, f["token"]) for tid, f in claimed_fields(reply) if f]
                    rounds += 1
                    if not held:
                        return done, rounds
                    for reply in await store.admin.run_scripts(
                        "complete", [[tid, token, ""] for tid, token in held]
                    ):
                        if reply[0] != 0:
                            raise RuntimeError(f"complete refused: {reply}")
                    done += len(held)
                    rounds += 1

            async def drive() -> tuple[int, list[float], int]:
                lanes = [[f"agent-{k}-{i}" for i in range(batch)] for k in range(conns)]
                results = await asyncio.gather(*(lane(agents) for agents in lanes))
                return sum(d for d, _ in results), [], sum(r for _, r in results)

            pilot = await self.timed(
                self.pilot_size(max(10 * batch * conns, 5000), batch * conns), store, drive
            )
            return await self.timed(self.size(pilot), store, drive)
        finally:
            await store.close()


async def redis_rows(server: BenchRedis, args: argparse.Namespace) -> list[Row]:
    runs = Runs(server, args)
    rows: list[Row] = []
    # One claim per call: the plain agent loop. Not held to the target: the target asks
    # for batching where it helps, which the claim_many rows below do.
    for n in (1, 8, 64):
        r = await runs.public(n)
        rows += throughput_rows(f"claim+complete, {n} agent{'s' if n > 1 else ''} (public API)", r, False)
    # A closed loop with no work between calls measures the queue, not the claim: by
    # Little's law each of 64 agents waits about 64 / rate per cycle (12 ms at 5,000/s).
    rows += latency_rows("64 agents, closed loop", r.latencies_ms, False)
    for n in (8, 64):
        r = await runs.public(n, per_call=PER_CALL)
        rows += throughput_rows(f"claim+complete, {n} agents, claim_many({PER_CALL}) (public API)", r, True)
    r = await runs.public(64, coalesce=False)
    rows += throughput_rows("claim+complete, 64 agents (one round trip per call)", r, False)
    rows += latency_rows("64 agents (one round trip per call)", r.latencies_ms, False)

    for conns in (1, 2):
        r = await runs.ceiling(args.batch, conns)
        label = f"ceiling: scripts pipelined, {args.batch}/batch, {conns} conn{'s' if conns > 1 else ''}"
        rows += throughput_rows(label, r, False)
    if r.redis_cpu_s:
        rows.append(
            Row("ceiling: Redis-bound (cycles per redis-server CPU s)", f"{r.cycles / r.redis_cpu_s:,.0f}",
                "cycles/s")
        )  # fmt: skip
    return rows
