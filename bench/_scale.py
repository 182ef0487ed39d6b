"""The scale part of bench/claims.py (``--only scale``): work per call on a board of many queues.

A module, not a benchmark (``./dev bench`` skips it). Rule 10 of the design: no script call
does work that grows with the board. Measured here, through the public API only:

  - claim latency p50/p99 (one claim, then its complete, in a loop) on a board of 1 queue
    and on one of ``--scale-queues`` queues (default 10,000), each with a few tasks of
    varied priorities and required capabilities;
  - one ``claim_many(--scale-many)`` call (default 1,000) on the many-queue board;
  - one ``add_many(10,000)`` call;
  - the same claim and add rows on the file store, with its longest write transaction;
  - claims per second by 10 idle claimers (``claim(wait_s=...)``, nothing they can take)
    beside a task heartbeating 5 times a second: only their once-a-second re-checks.

Redis's SLOWLOG (on the bench's own server) records every command over 1 ms; the worst
single script call of the whole bench is printed at the end (target: under 10 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from _harness import BenchRedis
from _stats import Row, percentile, yes

from claimroom.core.file import claim as file_claim
from claimroom.core.file import ops as file_ops
from claimroom.core.file import tx as file_tx
from claimroom.core.store import Store, TaskSpec

CLAIM_P99_TARGET_MS = 5.0
SCRIPT_TARGET_MS = 10.0
SLOWLOG_OVER_US = 1_000  # SLOWLOG records commands slower than this
ADD_CHUNK = 10_000  # constants.max_batch_add: the largest add_many
TASKS_PER_QUEUE = 3
# Required capabilities of the tasks, in turn: a few signatures, as a real board has.
SIGNATURES: tuple[tuple[str, ...], ...] = ((), ("py",), ("db",), ("db", "py"), ("gpu",), ("gpu", "py"))
CAPS = ("db", "gpu", "py")  # the claiming agent can take every signature above
IDLE_CLAIMERS = 10
IDLE_SECONDS = 5.0
HEARTBEAT_HZ = 5.0


def specs(queues: int, per_queue: int) -> list[TaskSpec]:
    """``per_queue`` tasks in each of ``queues`` queues, varied priority and signature."""
    out = []
    for i in range(queues * per_queue):
        q = i % queues
        out.append(
            TaskSpec(
                title=f"scale {i}",
                queue=f"q{q}",
                priority=i % 7,
                requires=SIGNATURES[i % len(SIGNATURES)],
            )
        )
    return out


async def seed(store: Store, all_specs: list[TaskSpec]) -> None:
    for start in range(0, len(all_specs), ADD_CHUNK):
        await store.add_many(all_specs[start : start + ADD_CHUNK])


async def claim_loop(store: Store, agent: str, n: int) -> list[float]:
    """``n`` single claims, each completed before the next: ms per claim call."""
    lat = []
    clock = time.perf_counter
    for _ in range(n):
        t = clock()
        claim = await store.claim(agent)
        lat.append((clock() - t) * 1000)
        if claim is None:
            raise RuntimeError("the scale board ran out of tasks")
        await store.complete(claim.task.id, claim.token)
    return lat


@contextlib.contextmanager
def counted_file_claims() -> Iterator[list[int]]:
    """How many file-store claim transactions ran meanwhile."""
    count = [0]
    real = file_claim.claim

    def claim(*args: Any) -> Any:
        count[0] += 1
        return real(*args)

    file_claim.claim = claim  # type: ignore[assignment]  # the bench's own probe, undone below
    try:
        yield count
    finally:
        file_claim.claim = real  # type: ignore[assignment]


async def idle_claims(store: Store, make: Callable[[], Store]) -> int:
    """IDLE_CLAIMERS wait (each on a store from ``make``) beside a task heartbeating
    HEARTBEAT_HZ times a second; returns the heartbeats. The caller counts the claims."""
    await store.add("busy")
    held = await store.claim("worker", ttl_s=60)
    assert held is not None
    others = [make() for _ in range(IDLE_CLAIMERS)]
    beats = 0

    async def beat() -> None:
        nonlocal beats
        end = time.monotonic() + IDLE_SECONDS
        while time.monotonic() < end:
            await store.heartbeat(held.task.id, held.token, progress=0.1)
            beats += 1
            await asyncio.sleep(1 / HEARTBEAT_HZ)

    try:
        idle = (s.claim(f"idle{i}", wait_s=IDLE_SECONDS) for i, s in enumerate(others))
        await asyncio.gather(*idle, beat())
    finally:
        for s in others:
            await s.close()
    return beats


@contextlib.contextmanager
def timed_adds() -> Iterator[list[float]]:
    """The duration (ms) of every file-store add transaction run meanwhile."""
    spans: list[float] = []
    real = file_ops.add

    def add(tx: file_tx.Tx, specs: list[dict[str, Any]], by: str = "") -> list[str]:
        t = time.perf_counter()
        try:
            return real(tx, specs, by)
        finally:
            spans.append((time.perf_counter() - t) * 1000)

    file_ops.add = add  # type: ignore[assignment]  # the bench's own probe, undone below
    try:
        yield spans
    finally:
        file_ops.add = real  # type: ignore[assignment]


Make = Callable[[], Awaitable[Store]]  # a new, empty board


class ScaleBench:
    """The scale rows, on the bench's own redis-server and on file boards."""

    def __init__(self, server: BenchRedis, args: Any) -> None:
        self.server = server
        self.args = args
        self.rows: list[Row] = []

    async def fresh(self) -> Store:
        return await self.server.fresh()

    # --- one board -------------------------------------------------------------------------

    async def claims_on(self, store: Store, queues: int, claims: int) -> list[float]:
        warm_up = min(20, claims)
        per_queue = max(TASKS_PER_QUEUE, -(-(claims + warm_up) // queues))
        await seed(store, specs(queues, per_queue))
        await store.register("scaler", CAPS)
        await claim_loop(store, "scaler", warm_up)  # connections, scripts
        gc.collect()  # the board's build left garbage: its collection is not a claim's cost
        return await claim_loop(store, "scaler", claims)

    async def claim_rows(self, backend: str, make: Make) -> None:
        a = self.args
        for queues in (1, a.scale_queues):
            store = await make()
            try:
                lat = await self.claims_on(store, queues, a.scale_claims)
            finally:
                await store.close()
            plural = "s" if queues > 1 else ""
            label = f"{backend}: claim, {queues:,} queue{plural} x {TASKS_PER_QUEUE}+ tasks"
            self.rows.append(Row(f"{label} p50 ({len(lat)} claims)", f"{percentile(lat, 50):.2f}", "ms"))
            p99 = percentile(lat, 99)
            ok = yes(p99 < CLAIM_P99_TARGET_MS)
            self.rows.append(Row(f"{label} p99", f"{p99:.2f}", "ms", f"< {CLAIM_P99_TARGET_MS:g}", ok))

    async def claim_many_row(self, backend: str, make: Make) -> None:
        a = self.args
        store = await make()
        try:
            await seed(store, specs(a.scale_queues, TASKS_PER_QUEUE))
            await store.register("bulk", CAPS, max_claims=a.scale_many)
            gc.collect()
            t = time.perf_counter()
            got = await store.claim_many("bulk", a.scale_many)
            ms = (time.perf_counter() - t) * 1000
        finally:
            await store.close()
        self.rows.append(
            Row(f"{backend}: claim_many({a.scale_many:,}) on {a.scale_queues:,} queues ({len(got):,} got)",
                f"{ms:,.0f}", "ms")
        )  # fmt: skip

    async def add_row(self, backend: str, make: Make) -> list[float]:
        store = await make()
        try:
            batch = specs(ADD_CHUNK // TASKS_PER_QUEUE + 1, TASKS_PER_QUEUE)[:ADD_CHUNK]
            with timed_adds() as spans:
                t = time.perf_counter()
                await store.add_many(batch)
                ms = (time.perf_counter() - t) * 1000
        finally:
            await store.close()
        self.rows.append(Row(f"{backend}: add_many({ADD_CHUNK:,})", f"{ms:,.0f}", "ms"))
        return spans

    def idle_row(self, backend: str, claims: int) -> None:
        label = (
            f"{backend}: claims/s by {IDLE_CLAIMERS} idle claimers beside a task heartbeating "
            f"{HEARTBEAT_HZ:g}/s ({IDLE_SECONDS:g} s)"
        )
        self.rows.append(Row(label, f"{claims / IDLE_SECONDS:.1f}", "claims/s"))

    # --- the run ---------------------------------------------------------------------------

    async def run_redis(self) -> None:
        await self.claim_rows("redis", self.fresh)
        await self.claim_many_row("redis", self.fresh)
        await self.add_row("redis", self.fresh)
        store = await self.server.fresh()
        url, ns = store.url, store.namespace
        try:
            # INFO commandstats: every script call; less the heartbeats, the claims.
            before = await self.script_calls()
            beats = await idle_claims(store, lambda: Store.from_url(url, ns))
            calls = await self.script_calls() - before
        finally:
            await store.close()
        self.idle_row("redis", calls - beats - 2)  # and the worker's add and claim

    async def script_calls(self) -> int:
        """Script calls the server has run so far (INFO commandstats, FCALL)."""
        return int((await self.server.admin.info("commandstats"))["cmdstat_fcall"]["calls"])

    async def run_file(self) -> None:
        with tempfile.TemporaryDirectory(prefix="claimroom-scale-") as folder:

            def board(ns: str = "") -> Store:
                return Store.from_url(f"file://{folder}", ns or "s" + uuid.uuid4().hex[:10])

            async def make() -> Store:
                return board()

            await self.claim_rows("file", make)
            await self.claim_many_row("file", make)
            spans = await self.add_row("file", make)
            self.rows.append(
                Row(f"file: add_many({ADD_CHUNK:,}) longest write transaction ({len(spans)} in all)",
                    f"{max(spans):,.0f}", "ms")
            )  # fmt: skip
            store = board()
            try:
                with counted_file_claims() as claims:
                    await idle_claims(store, lambda: board(store.namespace))
            finally:
                await store.close()
            self.idle_row("file", claims[0] - 1)  # less the worker's claim


# --- SLOWLOG: the worst single script call --------------------------------------------------


def worst_of(slow: list[tuple[float, str]]) -> tuple[float, str, int]:
    """(ms, which script, how many) of script calls over 1 ms (``RedisAdmin.slow_scripts``):
    the slowest, and how many there were."""
    ms, name = max(slow, default=(0.0, "none over 1 ms"))
    return ms, name, len(slow)


def worst_row(label: str, worst: tuple[float, str, int]) -> Row:
    ms, what, n = worst
    return Row(
        f"{label} ({what}; {n} over 1 ms)",
        f"{ms:.2f}",
        "ms",
        f"< {SCRIPT_TARGET_MS:g}",
        yes(ms < SCRIPT_TARGET_MS),
    )
