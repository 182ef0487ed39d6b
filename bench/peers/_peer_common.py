"""What the Python peers' drivers share (stdlib only: each driver runs in its peer's own venv).

A driver is run by bench/_claims_peers.py as ``python DRIVER MODE URL [options]``, in one of modes:
  throughput  enqueue ``--tasks`` no-op jobs, say {"event": "ready"}, wait for "go" on stdin,
              run one worker with ``--agents`` concurrent jobs until all are done, print the result
  enqueue     add one job (with the recovery settings, ``--lease``), print {"job": ID}
  worker      a worker taking one job at a time; its job says {"event": "started"}, sleeps ``--hold``
              s (blocking: a frozen worker cannot heartbeat either), returns its ``--role``
              ("victim" -> "zombie", "rescuer" -> "fresh"); the worker says "completed" or "error"
              once the peer has (or has not) recorded the job's end
  inspect     the job's final state in the store: {"state", "result", "completions"}
Every line on stdout is one JSON object; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from typing import Any

ROLE_ENV = "CLAIMROOM_PEER_ROLE"
HOLD_ENV = "CLAIMROOM_PEER_HOLD"
RESULTS = {"victim": "zombie", "rescuer": "fresh"}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["throughput", "enqueue", "worker", "inspect"])
    p.add_argument("url")
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--agents", type=int, default=10)
    p.add_argument("--lease", type=float, default=2.0)
    p.add_argument("--role", choices=sorted(RESULTS), default="rescuer")
    p.add_argument("--hold", type=float, default=0.0)
    p.add_argument("--job", default="")
    p.add_argument("--poll", type=float, default=None, help="arq's poll_delay (its default: 0.5 s)")
    args = p.parse_args()
    # The job function reads its role from the environment: some peers (rq) import it afresh.
    os.environ[ROLE_ENV], os.environ[HOLD_ENV] = args.role, str(args.hold)
    return args


def emit(**data: Any) -> None:
    print(json.dumps(data), flush=True)


def wait_go() -> None:
    """Say ready (the jobs are in), then wait for the parent's "go" (it samples Redis CPU between)."""
    emit(event="ready")
    sys.stdin.readline()


def cpu_s() -> float:
    """This process's own CPU seconds (user + system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def job_body(job: str) -> str:
    """The recovery runs' job: say it started, hold it (blocking), return the worker's result."""
    role = os.environ.get(ROLE_ENV, "rescuer")
    emit(event="started", job=job, role=role, t=time.time())
    time.sleep(float(os.environ.get(HOLD_ENV, "0")))
    return RESULTS[role]


def result(peer: str, version: str, tasks: int, seconds: float, worker_cpu_s: float, note: str = "") -> None:
    emit(
        peer=peer,
        version=version,
        tasks=tasks,
        seconds=seconds,
        cycles_per_s=tasks / seconds if seconds > 0 else 0.0,
        worker_cpu_s=worker_cpu_s,
        note=note,
    )
