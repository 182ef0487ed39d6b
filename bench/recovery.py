"""Recovery on a quiet board: from a lease's deadline to its recovery, with no one claiming.

A task is claimed by an agent that then goes silent; nobody else claims. The only thing
that can recover the lease is a long-lived claimroom process hosting the reaper: here the
control room (headless, the real app, default reaper interval), or a `claimroom claim
--wait` process waiting on another queue. The figure is the audit trail's "expired" event
time minus the lease deadline, both on the store's clock, over rounds started at random
moments against the reaper's beat. Beside it: the longest event-loop lag in the control
room while its reaper works (a 5 ms ticker, as the app's own timers would see it).

    .venv/bin/python bench/recovery.py            # 10 rounds per host and backend, about a minute
    .venv/bin/python bench/recovery.py --quick    # 3 rounds

Target (design rule 5): handled within TTL + 1 s, i.e. at most 1,000 ms after the deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _harness import BenchRedis, LagTicker, header, load_avg, print_table
from _stats import Row, percentile, yes  # bench/ is on sys.path when a script here runs

from claimroom.core.store import Store
from claimroom.tui.app import ControlRoom

TTL_S = 1.0
TICK_S = 0.005
CLAIMROOM = str(Path(sys.executable).parent / "claimroom")


async def expired_at(store: Store, tid: str) -> int:
    """When the task's lease was found expired (store clock), once it was."""
    while True:
        found = [e for e in await store.events(task=tid) if e.type == "expired"]
        if found:
            return found[0].at_ms
        await asyncio.sleep(0.01)


async def rounds(store: Store, n: int) -> list[float]:
    """Claim, go silent, measure deadline -> recovery; ``n`` times."""
    lags = []
    for i in range(n):
        await asyncio.sleep(random.uniform(0, 0.5))  # a random phase against the reaper's beat
        tid = await store.add(f"round {i}", queue=f"round-{i}")  # recovered rounds go back to their own queue
        claim = await store.claim(f"silent-{i}", queues=[f"round-{i}"], ttl_s=TTL_S)
        assert claim is not None and claim.task.id == tid
        lags.append(await asyncio.wait_for(expired_at(store, tid), TTL_S + 30) - claim.deadline_ms)
    return lags


async def with_control_room(url: str, n: int) -> tuple[list[float], float]:
    ns = "bench" + uuid.uuid4().hex[:8]
    agents = Store.from_url(url, ns)
    app = ControlRoom(Store.from_url(url, ns))
    lag = LagTicker(TICK_S)
    try:
        async with app.run_test(headless=True, size=(120, 40)):
            lag.start()
            lags = await rounds(agents, n)
            await lag.stop()
    finally:
        await agents.close()
    return lags, lag.max_ms


async def with_claim_wait(url: str, n: int) -> list[float]:
    ns = "bench" + uuid.uuid4().hex[:8]
    env = dict(os.environ, CLAIMROOM_URL=url, CLAIMROOM_NAMESPACE=ns)
    agents = Store.from_url(url, ns)
    with tempfile.TemporaryDirectory(prefix="claimroom-bench-") as home:
        env["CLAIMROOM_HOME"] = home
        waiter = subprocess.Popen(
            [CLAIMROOM, "claim", "--agent", "waiter", "--queue", "elsewhere", "--wait", "600"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while (await agents.reaper_status()).last is None:  # it waits, and leads the reaper
                await asyncio.sleep(0.02)
            return await rounds(agents, n)
        finally:
            waiter.terminate()
            waiter.wait()
            await agents.close()


def figures(what: str, lags: list[float]) -> list[Row]:
    ok = yes(max(lags) <= 1000)
    return [
        Row(f"{what}: deadline -> recovered p50", f"{percentile(lags, 50):.0f}", "ms"),
        Row(f"{what}: deadline -> recovered max", f"{max(lags):.0f}", "ms", "<= 1000", ok),
    ]


async def run(args: argparse.Namespace) -> list[Row]:
    rows = []
    with BenchRedis() as server, tempfile.TemporaryDirectory(prefix="claimroom-bench-") as folder:
        for backend, url in (("redis", server.url), ("file", Path(folder).as_uri())):
            lags, loop_lag = await with_control_room(url, args.rounds)
            rows += figures(f"{backend}, control room open", lags)
            label = f"{backend}, control room: event-loop lag, max (drawing too)"
            rows.append(Row(label, f"{loop_lag:.1f}", "ms"))
            rows += figures(f"{backend}, claim --wait running", await with_claim_wait(url, args.rounds))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 3 rounds")
    p.add_argument(
        "--rounds", type=int, default=10, help="leases recovered per host and backend (default 10)"
    )
    args = p.parse_args()
    if args.quick:
        args.rounds = min(args.rounds, 3)
    load, start = load_avg(), time.perf_counter()
    rows = asyncio.run(run(args))
    title = header("recovery", [f"lease TTL {TTL_S:g} s, {args.rounds} rounds each"], load)
    print_table(title, rows, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
