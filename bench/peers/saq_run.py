"""saq's driver for bench/_claims_peers.py (modes and output: _peer_common.py). Runs in saq's venv."""

from __future__ import annotations

import asyncio
import importlib.metadata
import time
from typing import Any

from _peer_common import cpu_s, emit, job_body, parse, result, wait_go
from saq import Queue, Worker
from saq.queue.redis import RedisQueue

VERSION = importlib.metadata.version("saq")


class SweepingQueue(RedisQueue):
    """saq's Redis queue, its sweep of stuck jobs allowed every LEASE s (its own lock is 60 s:
    one sweep a minute across all workers, whatever the worker's sweep timer says)."""

    lease = 2

    async def sweep(self, lock: int = 60, abort: float = 5.0) -> list[str]:
        return await super().sweep(lock=self.lease, abort=abort)


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def held(ctx: dict[str, Any]) -> str:
    return job_body(ctx["job"].key)


async def throughput(url: str, n: int, agents: int) -> None:
    queue = Queue.from_url(url)
    for start in range(0, n, 500):
        await asyncio.gather(*(queue.enqueue("noop") for _ in range(min(500, n - start))))
    await asyncio.get_running_loop().run_in_executor(None, wait_go)
    done, t0, cpu0 = 0, 0.0, 0.0
    all_done = asyncio.Event()

    async def before(ctx: dict[str, Any]) -> None:
        nonlocal t0, cpu0
        if not t0:
            t0, cpu0 = time.perf_counter(), cpu_s()

    async def after(ctx: dict[str, Any]) -> None:  # after the job's end is written
        nonlocal done
        done += 1
        if done == n:
            all_done.set()

    worker = Worker(queue, functions=[noop], concurrency=agents, before_process=before, after_process=after)
    task = asyncio.create_task(worker.start())
    await all_done.wait()
    seconds, cpu = time.perf_counter() - t0, cpu_s() - cpu0
    result("saq", VERSION, n, seconds, cpu, f"one Worker, concurrency {agents}")
    await worker.stop()
    task.cancel()


async def main() -> None:
    args = parse()
    if args.mode == "throughput":
        return await throughput(args.url, args.tasks, args.agents)
    SweepingQueue.lease = max(1, round(args.lease))
    queue = SweepingQueue.from_url(args.url)
    if args.mode == "enqueue":
        # The lease: the job's timeout (saq's default 10 s); retries 3 so a swept job runs again.
        job = await queue.enqueue("held", timeout=round(args.lease), retries=3)
        assert job is not None
        emit(job=job.key)
    elif args.mode == "inspect":
        job = await queue.job(args.job)
        emit(
            state=None if job is None else str(job.status),
            result=None if job is None else job.result,
            completions=None,
            attempts=None if job is None else job.attempts,
        )
    else:

        async def after(ctx: dict[str, Any]) -> None:
            job = ctx["job"]
            emit(event="completed", job=job.key, role=args.role, status=str(job.status))

        worker = Worker(
            queue,
            functions=[held],
            concurrency=1,
            after_process=after,
            timers={"sweep": max(1, round(args.lease))},
        )
        # A sweep at start (as the worker's own would be) before saying ready: a sweep racing
        # the first dequeue finds the job in the active list still marked queued and aborts it.
        await queue.sweep()
        emit(event="ready", role=args.role)
        await worker.start()


if __name__ == "__main__":
    asyncio.run(main())
