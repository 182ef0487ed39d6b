"""The control room's read of a file board: how long a refresh takes, and how long it holds the event loop.

The control room reads a file board through ``Store.snapshot``: one read transaction on the
store's worker thread, counting with ``GROUP BY`` and reading only the rows it shows. What an
operator feels is the event loop being held (frames wait): measured here by a 5 ms ticker
running beside each read, as the app's own timers would.

    .venv/bin/python bench/file_board.py            # 20,000 tasks, 300 claimed, 10 reads
    .venv/bin/python bench/file_board.py --quick    # 2,000 tasks, 3 reads

No target of its own (the control room's targets are in bench/tui.py, on Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time

from _harness import LagTicker, header, load_avg, print_table
from _stats import Row, percentile  # bench/ is on sys.path when a script here runs

from claimroom.core.store import Store, TaskSpec
from claimroom.tui.board import Board

ADD_CHUNK = 1_000
TICK_S = 0.005
QUEUES = 5


async def seed(store: Store, tasks: int, claimed: int) -> None:
    for start in range(0, tasks, ADD_CHUNK):
        count = min(ADD_CHUNK, tasks - start)
        specs = [TaskSpec(title=f"task {start + i}", queue=f"q{i % QUEUES}") for i in range(count)]
        await store.add_many(specs)
    for i in range(claimed):
        await store.claim(f"agent-{i}")


async def timed_read(board: Board) -> tuple[float, float]:
    """(wall ms of one read, longest event-loop lag in ms while it ran)."""
    lag = LagTicker(TICK_S)
    lag.start()
    await asyncio.sleep(0)  # the ticker is running before the read starts
    start = time.perf_counter()
    await board.read()
    wall = time.perf_counter() - start
    await lag.stop()
    return wall * 1000, lag.max_ms


async def run(args: argparse.Namespace) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="claimroom-bench-") as folder:
        store = Store.from_url(f"file://{folder}", "bench")
        try:
            await seed(store, args.tasks, args.claimed)
            board = Board(store)
            await board.read()  # the first read opens the connection: not a refresh
            walls, lags = [], []
            for _ in range(args.reads):
                wall, lag = await timed_read(board)
                walls.append(wall)
                lags.append(lag)
        finally:
            await store.close()
    what = f"{args.tasks:,} tasks, {args.claimed} claimed, {args.reads} reads"
    return [
        Row(f"read a snapshot p50 ({what})", f"{percentile(walls, 50):.0f}", "ms"),
        Row("read a snapshot, max", f"{max(walls):.0f}", "ms"),
        Row(f"event-loop lag during a read, max ({TICK_S * 1000:g} ms ticker)", f"{max(lags):.1f}", "ms"),
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 2,000 tasks, 3 reads")
    p.add_argument("--tasks", type=int, default=20_000, help="tasks on the board (default 20,000)")
    p.add_argument("--claimed", type=int, default=300, help="of which claimed (default 300)")
    p.add_argument("--reads", type=int, default=10, help="reads measured (default 10)")
    args = p.parse_args()
    if args.quick:
        args.tasks, args.claimed, args.reads = min(args.tasks, 2_000), min(args.claimed, 100), 3
    load, start = load_avg(), time.perf_counter()
    rows = asyncio.run(run(args))
    print_table(header("file-board read", [], load), rows, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
