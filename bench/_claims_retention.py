"""claims.py's retention rows (``--only retention``, a few minutes, only when asked for).

A module, not a benchmark (``./dev bench`` skips it). ``--retention-tasks`` tasks (default
100,000; the file store's audit trail reaches its cap at ~67,000) go through claim+complete,
fed in chunks while a reaper loop runs as ``claimroom reap --loop`` does, with the default
retention (done tasks: a day or the newest 10,000 per queue; the audit trail: 200,000
events), then the same run twice as long: memory per task run and the store's size after
(Redis INFO used_memory; the file store's database + WAL), which must be the same at 1x and
2x. Redis also shows the run at 1x with retention off (what the board grew by before), and
``events --task`` on the trail the run left (~200,000 events), through the task's index and
through the whole trail (as it was read before the index).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import uuid
from pathlib import Path

from _claims_throughput import ADD_CHUNK, PER_CALL
from _harness import BenchRedis
from _stats import Row, percentile, yes

from claimroom.core.redis.store import RedisStore
from claimroom.core.store import Store, TaskSpec


def flat(ratio: float) -> str:
    """Whether a size stayed flat (within 10%) when the run doubled."""
    return yes(abs(ratio - 1) <= 0.1)


async def churn(store: Store, tasks: int, chunk: int = 2_000, agents: int = 16) -> float:
    """``tasks`` tasks through claim+complete, added ``chunk`` at a time, with a reaper loop
    beside (``reap --loop``: a pass every 0.5 s, at once while retention has more to do);
    ends with the reaper's backlog done. Returns the seconds it took."""
    stop = asyncio.Event()

    async def reaper() -> None:
        while not stop.is_set():
            if not (await store.reap()).retention_more:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)

    async def agent(name: str) -> None:
        while claims := await store.claim_many(name, PER_CALL):
            await asyncio.gather(*(store.complete(c.task.id, c.token) for c in claims))

    for i in range(agents):
        await store.register(f"agent-{i}", max_claims=PER_CALL)
    t0 = time.perf_counter()
    loop = asyncio.create_task(reaper())
    try:
        for start in range(0, tasks, chunk):
            n = min(chunk, tasks - start)
            for at in range(0, n, ADD_CHUNK):
                await store.add_many(
                    [TaskSpec(title=f"churn {start + at + i}") for i in range(min(ADD_CHUNK, n - at))]
                )
            await asyncio.gather(*(agent(f"agent-{i}") for i in range(agents)))
    finally:
        stop.set()
        await loop
    while (await store.reap()).retention_more:
        pass
    return time.perf_counter() - t0


async def used_memory(server: BenchRedis) -> int:
    return int((await server.admin.info("memory"))["used_memory"])


async def retention_redis(
    server: BenchRedis, tasks: int, *, keep: bool = True
) -> tuple[int, float, RedisStore]:
    """Store growth (bytes) of a run of ``tasks``, the run's seconds, and the store (open)."""
    store = await server.fresh()
    if not keep:
        await store.set_retention(done_s=None, done_count=None)
    base = await used_memory(server)
    seconds = await churn(store, tasks)
    return await used_memory(server) - base, seconds, store


async def events_task_ms(store: RedisStore) -> tuple[int, float, float, int]:
    """(trail length, ms for one task's history through its index, ms through the whole
    trail as before the index, events found): the median of 5 reads of the oldest task
    on the board (the whole trail is read either way before the index)."""
    length = await store.admin.stream_length()
    task = (await store.tasks(limit=1))[0].id
    via_index, via_scan = [], []
    found = 0
    for _ in range(5):
        t0 = time.perf_counter()
        found = len(await store.events(task=task))
        via_index.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        scanned = await store.admin.task_events_by_scan(task)
        via_scan.append((time.perf_counter() - t0) * 1000)
        if len(scanned) != found:
            raise RuntimeError(f"index and trail disagree on {task}: {found} vs {len(scanned)}")
    return length, percentile(via_index, 50), percentile(via_scan, 50), found


async def retention_file(tasks: int) -> tuple[int, float]:
    """The file store's size (database + WAL) after a run of ``tasks``, and its seconds."""
    with tempfile.TemporaryDirectory(prefix="claimroom-bench-") as folder:
        store = Store.from_url(f"file://{folder}", "b" + uuid.uuid4().hex[:10])
        try:
            seconds = await churn(store, tasks, chunk=1_000, agents=4)
        finally:
            await store.close()
        size = sum(f.stat().st_size for f in Path(folder).iterdir() if f.name.startswith("claimroom.db"))
    return size, seconds


async def retention_rows(server: BenchRedis, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    add = rows.append
    n = args.retention_tasks
    sizes: list[int] = []
    store: RedisStore | None = None
    for k in (1, 2):
        if store is not None:
            await store.close()
        grew, seconds, store = await retention_redis(server, n * k)
        sizes.append(grew)
        add(
            Row(
                f"retention, Redis: store size after {n * k:,} tasks ({seconds:.0f} s)",
                f"{grew / 1e6:,.1f}",
                "MB",
            )
        )
        add(
            Row(
                f"retention, Redis: memory per task run ({n * k:,} tasks)", f"{grew / (n * k):,.0f}", "B/task"
            )
        )
    ratio = sizes[1] / sizes[0]
    add(Row("retention, Redis: size at 2x / size at 1x", f"{ratio:.2f}", "x", "~ 1.00", flat(ratio)))
    assert store is not None
    try:
        length, index_ms, scan_ms, found = await events_task_ms(store)
    finally:
        await store.close()
    trail = f"events --task, {length:,}-event trail"
    add(Row(f"{trail}, through the task's index ({found} events)", f"{index_ms:.2f}", "ms"))
    add(Row(f"{trail}, through the whole trail (as before)", f"{scan_ms:.0f}", "ms"))
    grew, seconds, store = await retention_redis(server, n, keep=False)
    await store.close()
    add(
        Row(
            f"retention off, Redis: store size after {n:,} tasks ({seconds:.0f} s)",
            f"{grew / 1e6:,.1f}",
            "MB",
        )
    )
    add(Row(f"retention off, Redis: memory per task ({n:,} tasks)", f"{grew / n:,.0f}", "B/task"))
    m = args.retention_file_tasks
    sizes = []
    for k in (1, 2):
        size, seconds = await retention_file(m * k)
        sizes.append(size)
        add(
            Row(
                f"retention, file store: db + WAL after {m * k:,} tasks ({seconds:.0f} s)",
                f"{size / 1e6:,.1f}",
                "MB",
            )
        )
    ratio = sizes[1] / sizes[0]
    add(Row("retention, file store: size at 2x / size at 1x", f"{ratio:.2f}", "x", "~ 1.00", flat(ratio)))
    return rows
