"""claims.py's bidding rows: plain claim latency with auctions opening and closing on the
same board, beside plain claims without auctions, in the same run (a module, not a
benchmark: ``./dev bench`` skips it; ``python bench/_claims_bidding.py`` runs it alone).

On the bench's own redis-server, each part on a fresh namespace:

  - plain: ``CLAIMERS`` asyncio claimers (one agent each) claim and complete plain tasks
    through the public API for ``seconds``; every claim's latency is recorded;
  - auctions: the same, while an adder keeps ``AUCTION_SHARE`` of the tasks coming in as
    auctions with a ``WINDOW_S`` window, and ``BIDDERS`` child processes bid on every open
    window they see (``Store.auctions`` then ``Store.bid``). The windows close in the
    claimers' own claims (and the claim hands each winner its won claim), so the plain
    claims pay for the closing: that is what the rows measure.

``bidding_rows(server, seconds=...)`` returns this table's rows (for the run alone);
``claims.py --only strategies`` runs its ``bidding`` mode with this module's bidder processes
(``_claims_strategies.py``), beside plain and affinity claims.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

from _harness import BenchRedis, header, print_table, ready_then_go, report, run_children
from _stats import Row, fmt, ms_rows

from claimroom.core.errors import ClaimroomError
from claimroom.core.store import Store, TaskSpec

CLAIMERS = 8
BIDDERS = 3
AUCTION_SHARE = 0.10  # of the tasks added while claims run
WINDOW_S = 0.2
PLAIN_TASKS = 20_000  # enough plain work that no claimer runs dry in the time given
FEED_EVERY_S = 0.01  # the adder adds one batch this often
FEED_BATCH = 10  # tasks per batch: AUCTION_SHARE of them auctioned


async def _claimer(store: Store, agent: str, stop: asyncio.Event, lat: list[float]) -> int:
    done = 0
    while not stop.is_set():
        start = time.perf_counter()
        got = await store.claim(agent, ttl_s=30)
        lat.append((time.perf_counter() - start) * 1000)
        if got is None:
            await asyncio.sleep(0.001)
            continue
        await store.complete(got.task.id, got.token)
        done += 1
    return done


async def _adder(store: Store, stop: asyncio.Event, auctioned: bool) -> int:
    """Keep work coming: FEED_BATCH tasks every FEED_EVERY_S, some auctioned."""
    n = 0
    per = round(FEED_BATCH * AUCTION_SHARE) if auctioned else 0
    while not stop.is_set():
        specs = [TaskSpec(title=f"auction {n + i}", bid_window_s=WINDOW_S) for i in range(per)]
        specs += [TaskSpec(title=f"plain {n + i}") for i in range(FEED_BATCH - per)]
        await store.add_many(specs)
        n += len(specs)
        await asyncio.sleep(FEED_EVERY_S)
    return n


async def _part(server: BenchRedis, seconds: float, auctions: bool) -> dict[str, object]:
    store = await server.fresh()
    try:
        await store.add_many([TaskSpec(title=f"seed {i}") for i in range(min(PLAIN_TASKS, 10_000))])
        for i in range(CLAIMERS):
            await store.register(f"c{i}", [], 4)
        stop = asyncio.Event()
        lat: list[float] = []
        bidders = None
        if auctions:
            argvs = [[server.url, store.namespace, f"b{i}", str(seconds)] for i in range(BIDDERS)]
            bidders = asyncio.create_task(run_children(Path(__file__), argvs, "bidder"))
            await asyncio.sleep(0.3)  # the bidders start (outside the timing below)
        work = [asyncio.create_task(_claimer(store, f"c{i}", stop, lat)) for i in range(CLAIMERS)]
        adder = asyncio.create_task(_adder(store, stop, auctions))
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        stop.set()
        cycles = sum(await asyncio.gather(*work))
        added = await adder
        elapsed = time.perf_counter() - start
        bids = closed = 0
        if bidders is not None:
            reports = await bidders
            bids = sum(int(r["bids"]) for r in reports)
        if auctions:
            closed = len([e for e in await store.events(count=1_000_000) if e.type == "auction-closed"])
        return {"lat": lat, "rate": cycles / elapsed, "added": added, "bids": bids, "closed": closed}
    finally:
        await store.close()


async def bidding_rows(server: BenchRedis, seconds: float = 5.0) -> list[Row]:
    """Plain claims p50/p99 without and with auctions on the board, same run."""
    plain = await _part(server, seconds, auctions=False)
    mixed = await _part(server, seconds, auctions=True)
    rows = ms_rows(f"redis: claim p{{q}}, {CLAIMERS} claimers, no auctions", plain["lat"])  # type: ignore[arg-type]
    rows += ms_rows(
        f"redis: claim p{{q}}, {CLAIMERS} claimers, {AUCTION_SHARE:.0%} auctioned ({WINDOW_S:g} s windows, "
        f"{BIDDERS} bidder processes)",
        mixed["lat"],  # type: ignore[arg-type]
    )
    rows.append(Row("redis: claim+complete/s, no auctions", fmt(float(plain["rate"]), 0), "/s"))  # type: ignore[arg-type]
    rows.append(Row("redis: claim+complete/s, with auctions", fmt(float(mixed["rate"]), 0), "/s"))  # type: ignore[arg-type]
    rows.append(
        Row("redis: auctions closed / bids placed meanwhile", f"{mixed['closed']}/{mixed['bids']}", "")
    )
    return rows


# --- a bidder process -------------------------------------------------------------------


async def bidder(url: str, namespace: str, agent: str, seconds: float) -> None:
    """Bid a random cost on every open window seen, until ``seconds`` after "go"."""
    async with Store.from_url(url, namespace) as store:
        await store.register(agent, [], 1000)
        await ready_then_go()
        end = time.monotonic() + seconds
        bids = refused = 0
        seen: set[str] = set()
        while time.monotonic() < end:
            for a in await store.auctions(20):
                if a.task in seen:
                    continue
                seen.add(a.task)
                try:
                    await store.bid(a.task, agent, random.uniform(1, 100), ttl_s=30)
                    bids += 1
                except ClaimroomError:
                    refused += 1
            await asyncio.sleep(0.01)
        report({"bids": bids, "refused": refused})


def main(argv: list[str]) -> int:
    if len(argv) == 4:  # a bidder child: URL NAMESPACE AGENT SECONDS
        asyncio.run(bidder(argv[0], argv[1], argv[2], float(argv[3])))
        return 0
    p = argparse.ArgumentParser(description="plain claim latency with and without auctions on the board")
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args(argv)

    async def go(server: BenchRedis) -> tuple[list[Row], str]:
        try:
            return await bidding_rows(server, args.seconds), await server.version()
        finally:
            await server.close()

    start = time.perf_counter()
    with BenchRedis() as server:
        rows, version = asyncio.run(go(server))
    print(header("claims (bidding)", [f"Redis {version}"], None))
    print_table("plain claims beside auctions", rows, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
