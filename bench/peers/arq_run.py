"""arq's driver for bench/_claims_peers.py (modes and output: _peer_common.py). Runs in arq's venv."""

from __future__ import annotations

import asyncio
import importlib.metadata
import time
from typing import Any

from _peer_common import cpu_s, emit, job_body, parse, result, wait_go
from arq import create_pool
from arq.connections import RedisSettings
from arq.jobs import Job
from arq.worker import Worker, func

VERSION = importlib.metadata.version("arq")


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def held(ctx: dict[str, Any]) -> str:
    return job_body(ctx["job_id"])


async def throughput(settings: RedisSettings, n: int, agents: int, poll: float | None) -> None:
    pool = await create_pool(settings)
    for start in range(0, n, 500):
        await asyncio.gather(*(pool.enqueue_job("noop") for _ in range(min(500, n - start))))
    await asyncio.get_running_loop().run_in_executor(None, wait_go)
    done, t0, cpu0 = 0, 0.0, 0.0
    all_done = asyncio.Event()

    async def started(ctx: dict[str, Any]) -> None:
        nonlocal t0, cpu0
        if not t0:
            t0, cpu0 = time.perf_counter(), cpu_s()

    async def ended(ctx: dict[str, Any]) -> None:  # after arq has recorded the result
        nonlocal done
        done += 1
        if done == n:
            all_done.set()

    worker = Worker(
        functions=[noop],
        redis_settings=settings,
        max_jobs=agents,
        on_job_start=started,
        after_job_end=ended,
        handle_signals=False,
        **({} if poll is None else {"poll_delay": poll}),
    )
    task = asyncio.create_task(worker.main())
    await all_done.wait()
    seconds, cpu = time.perf_counter() - t0, cpu_s() - cpu0
    # arq polls its queue (a sorted set) every poll_delay s rather than blocking on it.
    delay = f"poll_delay {worker.poll_delay_s:g} s" + (" (default)" if poll is None else "")
    result("arq", VERSION, n, seconds, cpu, f"one Worker, max_jobs {agents}, {delay}")
    task.cancel()
    await worker.close()
    await pool.aclose()


async def main() -> None:
    args = parse()
    settings = RedisSettings.from_dsn(args.url)
    if args.mode == "throughput":
        return await throughput(settings, args.tasks, args.agents, args.poll)
    pool = await create_pool(settings)
    if args.mode == "enqueue":
        job = await pool.enqueue_job("held")
        assert job is not None
        emit(job=job.job_id)
    elif args.mode == "inspect":
        info = await Job(args.job, pool).result_info()
        emit(
            state=None if info is None else ("complete" if info.success else "failed"),
            result=None if info is None else info.result,
            completions=None,
            attempts=None if info is None else info.job_try,
        )
    else:

        async def ended(ctx: dict[str, Any]) -> None:
            emit(event="completed", job=ctx["job_id"], role=args.role)

        # The lease: arq's job timeout (default 300 s); arq keeps a job's in-progress key for
        # the timeout + 10 s, and another worker may take the job once that key is gone.
        worker = Worker(
            functions=[func(held, timeout=args.lease, max_tries=3)],
            redis_settings=settings,
            max_jobs=1,
            after_job_end=ended,
            handle_signals=False,
        )
        emit(event="ready", role=args.role)
        await worker.main()


if __name__ == "__main__":
    asyncio.run(main())
