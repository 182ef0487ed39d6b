"""rq's driver for bench/_claims_peers.py (modes and output: _peer_common.py). Runs in rq's venv.

rq runs one job at a time per worker process, and its default Worker forks a child per job;
so the 10 "agents" are 10 SimpleWorker processes (no fork per job), each in burst mode. A
child is this script again, in mode ``agent``; the throughput figure is the driver's.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import time
from typing import Any

from _peer_common import cpu_s, emit, job_body, parse, result, wait_go
from redis import Redis
from rq import Queue, Retry, SimpleWorker, get_current_job
from rq.job import Job

VERSION = importlib.metadata.version("rq")


# Jobs name their function as "rq_run.noop": rq refuses functions of __main__.
def noop() -> None:
    return None


def held() -> str:
    job = get_current_job()
    return job_body(job.id if job else "?")


class Reporting(SimpleWorker):
    """A SimpleWorker that says when its job started and whether rq recorded its end."""

    first: float = 0.0
    done = 0
    events = True  # off in the throughput run: 20,000 lines would cost it CPU

    def perform_job(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> bool:
        if not self.first:
            Reporting.first = time.time()
        return super().perform_job(job, queue, *args, **kwargs)

    def handle_job_success(self, job: Job, *args: Any, **kwargs: Any) -> None:
        try:
            super().handle_job_success(job, *args, **kwargs)
        except Exception as e:
            emit(event="error", job=job.id, error=repr(e))
            raise
        Reporting.done += 1
        if self.events:
            emit(event="completed", job=job.id)

    def handle_job_failure(self, job: Job, *args: Any, **kwargs: Any) -> None:
        super().handle_job_failure(job, *args, **kwargs)
        emit(event="error", job=job.id, error="handled as failed")


def agent(url: str) -> None:
    """One of the throughput run's worker processes: ready, go, work until the queue is empty."""
    redis = Redis.from_url(url)
    worker = Reporting([Queue("bench", connection=redis)], connection=redis)
    worker.events = False
    emit(event="ready")
    sys.stdin.readline()
    cpu0 = cpu_s()
    worker.work(burst=True, logging_level="WARNING")
    emit(first=Reporting.first, last=time.time(), cpu_s=cpu_s() - cpu0, jobs=Reporting.done)


def throughput(url: str, n: int, agents: int) -> None:
    redis = Redis.from_url(url)
    queue = Queue("bench", connection=redis)
    for start in range(0, n, 1000):
        queue.enqueue_many([Queue.prepare_data("rq_run.noop") for _ in range(min(1000, n - start))])
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "agent", url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(agents)
    ]
    for p in procs:
        assert p.stdout is not None and json.loads(p.stdout.readline())["event"] == "ready"
    wait_go()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    reports = [json.loads(p.communicate()[0].splitlines()[-1]) for p in procs]
    done = sum(r["jobs"] for r in reports)
    if done != n:
        raise SystemExit(f"rq: {done} jobs done of {n}")
    seconds = max(r["last"] for r in reports) - min(r["first"] for r in reports if r["first"])
    note = f"{agents} SimpleWorker processes (rq: one job at a time per process)"
    result("rq", VERSION, n, seconds, sum(r["cpu_s"] for r in reports), note)


def main() -> None:
    if sys.argv[1:2] == ["agent"]:
        return agent(sys.argv[2])
    args = parse()
    if args.mode == "throughput":
        return throughput(args.url, args.tasks, args.agents)
    redis = Redis.from_url(args.url)
    queue = Queue("rec", connection=redis)
    if args.mode == "enqueue":
        # The lease: the job's timeout (rq's default 180 s). rq keeps a started job's entry for
        # its heartbeat TTL (min(timeout left, job_monitoring_interval) + a fixed 60 s), and
        # a worker's maintenance (every maintenance_interval) retries the expired ones.
        job = queue.enqueue("rq_run.held", job_timeout=max(1, round(args.lease)), retry=Retry(max=3))
        emit(job=job.id)
    elif args.mode == "inspect":
        job = Job.fetch(args.job, connection=redis)
        emit(
            state=str(job.get_status()),
            result=job.return_value(),
            completions=len(job.results()),
            attempts=job.retries_left,
        )
    else:
        lease = max(1, round(args.lease))
        worker = Reporting(
            [queue], connection=redis, maintenance_interval=lease, job_monitoring_interval=lease
        )
        emit(event="ready", role=args.role)
        worker.work(logging_level="WARNING")


if __name__ == "__main__":
    main()
