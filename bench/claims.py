"""Claim benchmark: throughput, latency, the Redis ceiling, the file store, orphan recovery, wake-up.

A script, not a test. It starts its own redis-server (a free port, never 6379), runs every
measure against it, prints one table and stops the server:

    .venv/bin/python bench/claims.py            # full run, about two minutes
    .venv/bin/python bench/claims.py --quick    # smoke run, about 40 s
    .venv/bin/python bench/claims.py --only redis    # one part (see --help)

The parts, each in its own module (what they measure is said there):
  redis      claim+complete cycles/s with 1, 8 and 64 agents through the public API, one
             claim per call and ``claim_many(8)`` (the rows with the >= 5,000 cycles/s
             target), the 64 agents' closed-loop claim latency, and the ceiling of the
             scripts alone (``_claims_throughput.py``); orphan recovery after a SIGKILL and
             a blocked claim's wake-up latency (``_claims_recovery.py``)
  spread     claim latency of 64 working agents in 8 processes, ~20 and ~100 ms of work per
             task (the latter carries the < 5 ms target) (``_claims_agents.py``)
  file       the file store: 1 and ``--file-processes`` agent processes on one board
             (``_claims_agents.py``)
  scale      work per call on a board of many queues, both backends (``_scale.py``)
  strategies claim latency and cycles/s of plain claims, of affine tasks, and of plain
             claims while auctions open and close (bidder processes bidding), 8 agents,
             same run (``_claims_strategies.py``; one entry per strategy in MODES)
  retention  the store's size over long runs; only when asked for (``_claims_retention.py``)

``--vs-peers`` runs instead the side-by-side table (``_claims_peers.py``): claimroom and,
when ``bench/peers/setup`` has installed them, BullMQ, saq, arq and rq, each on its own
fresh redis-server, 20,000 no-op tasks then one worker process with 10 agents; cycles/s,
worker and Redis CPU per cycle, orphan recovery, the zombie outcome, and claimroom's ratios
to BullMQ (median of ``--peer-trials``, 3 by default; 1 with ``--quick``).

Every run but retention ends with the slowest single script call of the whole bench, from
the bench server's SLOWLOG. The "cpu/cycle" rows split where the time goes: CPU
microseconds per cycle spent in this Python process and in redis-server (from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from _claims_agents import file_rows, spread_rows
from _claims_peers import peer_rows, ratio_rows, run_peers
from _claims_recovery import recovery_rows
from _claims_retention import retention_rows
from _claims_strategies import strategy_rows
from _claims_throughput import redis_rows
from _harness import BenchRedis, header, load_avg, print_table, redis_client
from _scale import SLOWLOG_OVER_US, ScaleBench, worst_of, worst_row  # bench/ is on sys.path
from _stats import Row


class WorstScript:
    """The slowest single script call of the whole bench, from the server's SLOWLOG."""

    def __init__(self, server: BenchRedis) -> None:
        self.server = server
        self.worst: tuple[float, str, int] = (0.0, "none over 1 ms", 0)

    async def start(self) -> None:
        await self.server.admin.slowlog_start(SLOWLOG_OVER_US)

    async def look(self, part: str) -> tuple[float, str, int]:
        """The slowest script call since the last look; kept (with the part of the bench it
        came from) when the worst so far."""
        found = worst_of(await self.server.admin.slow_scripts())
        ms, what, n = self.worst
        if found[0] > ms:
            ms, what = found[0], f"{found[1]}, {part} rows"
        self.worst = (ms, what, n + found[2])
        return found


async def run(server: BenchRedis, args: argparse.Namespace) -> tuple[list[Row], str]:
    """The rows of the parts asked for, and the redis-server's version."""
    only = args.only
    rows: list[Row] = []
    slow = WorstScript(server)
    await slow.start()
    try:
        if only == "retention":  # minutes, not seconds: only when asked for
            return await retention_rows(server, args), await server.version()
        if only in (None, "redis"):
            rows += await redis_rows(server, args)
            await slow.look("throughput")
        if only in (None, "spread"):
            rows += await spread_rows(server, args)
            await slow.look("spread")
        if only in (None, "file"):
            rows += await file_rows(args)
        if only in (None, "redis"):
            rows += await recovery_rows(server, args)
            await slow.look("recovery")
        if only in (None, "strategies"):
            rows += await strategy_rows(server, args)
            await slow.look("strategies")
        if only in (None, "scale"):
            scale = ScaleBench(server, args)
            await scale.run_redis()
            worst = await slow.look("scale")
            scale.rows.append(worst_row("redis: worst single script call in the rows above", worst))
            await scale.run_file()
            rows += scale.rows
        rows.append(worst_row("worst single script call, whole bench", slow.worst))
        return rows, await server.version()
    finally:
        await server.close()


# --- entry point --------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes, a few seconds")
    p.add_argument(
        "--tasks", type=int, default=0, help="tasks per throughput run (default: sized by a pilot run)"
    )
    p.add_argument(
        "--seconds", type=float, default=2.5, help="target length of each throughput run (default 2.5)"
    )
    p.add_argument(
        "--batch", type=int, default=500, help="claims per pipeline in the ceiling run (default 500)"
    )
    p.add_argument("--ttl", type=float, default=2.0, help="lease TTL of the orphaned agent, s (default 2)")
    p.add_argument("--orphan-trials", type=int, default=1, help="orphan recovery trials; the worst is shown")
    p.add_argument("--wake-trials", type=int, default=50, help="wake-up trials (default 50)")
    p.add_argument("--file-processes", type=int, default=8, help="file-store agent processes (default 8)")
    p.add_argument("--file-tasks", type=int, default=8_000, help="tasks per file-store run (default 8000)")
    p.add_argument(
        "--only",
        choices=("redis", "spread", "file", "scale", "retention", "strategies"),
        help="run one part: redis (throughput, ceiling, orphan, wake-up), spread (latency of "
        "agents in several processes), file (the file store), scale (a board of many queues), "
        "strategies (claim latency with affinity and with bidding beside plain claims) or "
        "retention (store size over long runs; only when asked for)",
    )
    p.add_argument(
        "--scale-queues", type=int, default=10_000, help="queues on the scale board (default 10000)"
    )
    p.add_argument("--scale-claims", type=int, default=300, help="claims timed per scale board (default 300)")
    p.add_argument(
        "--scale-many", type=int, default=1_000, help="the scale claim_many's count (default 1000)"
    )
    p.add_argument(
        "--retention-tasks", type=int, default=100_000, help="tasks in the 1x retention run (default 100,000)"
    )
    p.add_argument(
        "--vs-peers", action="store_true", help="only the side-by-side table with BullMQ, saq, arq and rq"
    )
    p.add_argument(
        "--peer-tasks", type=int, default=20_000, help="tasks per side-by-side run (default 20,000)"
    )
    p.add_argument("--peer-trials", type=int, default=3, help="side-by-side runs per row, median (default 3)")
    p.add_argument(
        "--retention-file-tasks", type=int, default=0, help="on the file store (default: --retention-tasks)"
    )
    args = p.parse_args(argv)
    args.retention_file_tasks = args.retention_file_tasks or args.retention_tasks
    if args.quick:
        args.tasks = args.tasks or 1500
        args.wake_trials = min(args.wake_trials, 10)
        args.file_tasks = min(args.file_tasks, 1_000)
        args.scale_queues = min(args.scale_queues, 2_000)
        args.scale_claims = min(args.scale_claims, 100)
        args.peer_trials = 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    if args.vs_peers:
        load = load_avg()
        results = run_peers(args.peer_tasks, 10, args.peer_trials)
        title = header("claimroom and job-queue peers", [f"{args.peer_tasks:,} tasks, 10 agents"], load)
        print_table(title, peer_rows(results) + ratio_rows(results), time.perf_counter() - start)
        return 0
    with BenchRedis() as server:
        load = load_avg()
        rows, version = asyncio.run(run(server, args))
    title = header("claim", [f"redis-server {version}", redis_client()], load)
    print_table(title, rows, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
