"""What acting as an identity costs: claim+complete through ``Acting`` beside the same work
through the ``Store``, and how long ``resolve_token`` takes, on both backends.

A script, not a test. It starts its own redis-server (a free port, never 6379) and a file
board in a temporary directory:

    .venv/bin/python bench/acting.py

One agent in one process, claim then complete, ``--tasks`` tasks per run; direct and
Acting runs alternate (``--rounds`` of each) so that a busy machine slows both alike.
Acting adds no round trip to an allowed call (the ownership check is inside the store's
own script or transaction), so the two should be within noise of each other.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from _harness import BenchRedis  # bench/ is on sys.path when a script here runs

from claimroom.core.acting import Acting
from claimroom.core.identity import Identity, Role
from claimroom.core.store import Store, TaskSpec
from claimroom.core.tokens import create_token, resolve_token


async def cycles(url: str, ns: str, n: int, acting: bool) -> float:
    async with Store.from_url(url, ns) as s:
        await s.add_many([TaskSpec(f"t{i}") for i in range(n)])
        who = Acting(s, Identity("ada", Role.WORKER))
        start = time.perf_counter()
        for _ in range(n):
            if acting:
                c = await who.claim()
                assert c is not None
                await who.complete(c.task.id, c.token)
            else:
                c = await s.claim("ada")
                assert c is not None
                await s.complete(c.task.id, c.token)
        return n / (time.perf_counter() - start)


async def resolving(url: str, n: int) -> tuple[float, float]:
    async with Store.from_url(url, "resolve") as s:
        token = await create_token(s, "ada", "worker")
        took = []
        for _ in range(n):
            start = time.perf_counter()
            assert await resolve_token(s, token) is not None
            took.append((time.perf_counter() - start) * 1e6)
        took.sort()
        return statistics.median(took), took[int(len(took) * 0.99)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="a smoke run: 300 tasks, one round")
    a = p.parse_args()
    if a.quick:
        a.tasks, a.rounds = 300, 1
    with BenchRedis() as server, tempfile.TemporaryDirectory() as folder:
        for name, url in (("redis", server.url), ("file", Path(folder).as_uri())):
            direct, through = [], []
            for r in range(a.rounds):
                direct.append(asyncio.run(cycles(url, f"d{r}", a.tasks, False)))
                through.append(asyncio.run(cycles(url, f"a{r}", a.tasks, True)))
            med, p99 = asyncio.run(resolving(url, a.tasks))
            d, t = statistics.median(direct), statistics.median(through)
            print(
                f"{name:<5} claim+complete/s (median of {a.rounds}): direct {d:,.0f}, Acting {t:,.0f}"
                f"   resolve_token: median {med:,.0f} us, p99 {p99:,.0f} us"
            )


if __name__ == "__main__":
    main()
