"""claims.py's recovery rows (``--only redis``): an orphaned lease and a blocked claim's wake-up.

A module, not a benchmark (``./dev bench`` skips it); it is also the orphan agent's script
(``python bench/_claims_recovery.py URL NS TTL``):

  - orphan recovery: an agent in a separate OS process claims with a ``--ttl`` lease and is
    SIGKILLed right after (the worst case: the whole TTL has to run out); another agent is
    waiting in ``claim(wait_s=...)``. Reported: kill -> task held by the other agent, that
    minus the TTL, and lease deadline -> re-claim on the store's own clock.
  - wake-up latency: a claimer blocked in ``claim(wait_s=...)``, another connection adds a
    task; the time from just before ``add`` (and from ``add`` returning) to the claim returning.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from _harness import BenchRedis, report
from _stats import Row, ms_rows, yes

from claimroom.core.constants import claimable_channel
from claimroom.core.models import Claim
from claimroom.core.redis.store import RedisStore
from claimroom.core.store import Store, TaskSpec

WAKE_TARGET_MS = 10.0
ORPHAN_SLACK_S = 0.5
SCRIPT = Path(__file__).resolve()


async def orphan(server: BenchRedis, ttl_s: float) -> dict[str, float]:
    store = await server.fresh()
    try:
        (task_id,) = await store.add_many([TaskSpec(title="doomed work")])
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            server.url,
            store.namespace,
            str(ttl_s),
            stdout=asyncio.subprocess.PIPE,
        )
        killed = False
        try:
            line = await asyncio.wait_for(child.stdout.readline(), 30)  # type: ignore[union-attr]
            held = json.loads(line)
            if held.get("task") != task_id:
                raise RuntimeError(f"orphan child did not get the task: {held}")

            async def rescuer() -> tuple[float, Claim | None]:
                claim = await store.claim("rescuer", wait_s=ttl_s + 10)
                return time.perf_counter(), claim

            waiting = asyncio.create_task(rescuer())
            await asyncio.sleep(0)  # the rescuer sends its first claim; the task is still held
            t_kill = time.perf_counter()
            os.kill(child.pid, signal.SIGKILL)
            killed = True
        finally:
            if not killed:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
            await child.wait()
        t_held, claim = await waiting
        if claim is None or claim.task.id != task_id:
            raise RuntimeError(f"rescuer did not get the orphaned task: {claim}")
        return {
            "from_kill_s": t_held - t_kill,
            "past_deadline_ms": float(claim.task.claimed_ms - int(held["deadline_ms"])),
        }
    finally:
        await store.close()


async def wakeup(server: BenchRedis, trials: int) -> tuple[list[float], list[float]]:
    store = await server.fresh()
    adder = Store.from_url(server.url, store.namespace)  # a second client: its own connections
    assert isinstance(adder, RedisStore)
    from_before: list[float] = []
    from_after: list[float] = []
    try:
        for i in range(trials):

            async def sleeper() -> tuple[float, Claim | None]:
                claim = await store.claim("sleeper", wait_s=5)
                return time.perf_counter(), claim

            waiting = asyncio.create_task(sleeper())
            # Wait until the sleeper has subscribed (the store's private claimable
            # channel, read only to know that) and its first, empty attempt is done.
            while True:
                if await adder.admin.subscribers(claimable_channel(store.namespace)) >= 1:
                    break
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.01)
            t0 = time.perf_counter()
            await adder.add(f"wake {i}")
            t1 = time.perf_counter()
            t2, claim = await waiting
            if claim is None:
                raise RuntimeError("the sleeper was not woken")
            from_before.append((t2 - t0) * 1000)
            from_after.append((t2 - t1) * 1000)
            await store.complete(claim.task.id, claim.token)
    finally:
        await adder.close()
        await store.close()
    return from_before, from_after


async def recovery_rows(server: BenchRedis, args: argparse.Namespace) -> list[Row]:
    ttl = args.ttl
    runs = [await orphan(server, ttl) for _ in range(args.orphan_trials)]
    worst = max(runs, key=lambda d: d["from_kill_s"])
    limit = ttl + ORPHAN_SLACK_S
    slack_ms = ORPHAN_SLACK_S * 1000
    over = (worst["from_kill_s"] - ttl) * 1000
    past = worst["past_deadline_ms"]
    rows = [
        Row(f"orphan: SIGKILL -> held by another agent (TTL {ttl:g} s)", f"{worst['from_kill_s']:.3f}", "s",
            f"< {limit:g}", yes(worst["from_kill_s"] < limit)),
        Row("orphan: (SIGKILL -> held) - TTL", f"{over:.0f}", "ms", f"< {slack_ms:.0f}",
            yes(over < slack_ms)),
        Row("orphan: lease deadline -> re-claim (store clock)", f"{past:.0f}", "ms", f"< {slack_ms:.0f}",
            yes(past < slack_ms)),
    ]  # fmt: skip
    before, after = await wakeup(server, args.wake_trials)
    for label, values in (("before add", before), ("add returned", after)):
        template = f"wake-up p{{q}}: {label} -> claim returns ({len(values)} trials)"
        rows += ms_rows(template, values, WAKE_TARGET_MS, marked=(50, 99), digits=2)
    return rows


# --- the orphan agent (a separate OS process) ----------------------------------------------


async def orphan_agent(url: str, namespace: str, ttl_s: float) -> None:
    """Claim the one task, say so on stdout, then hang until SIGKILLed."""
    store = Store.from_url(url, namespace)
    claim = await store.claim("doomed-agent", ttl_s=ttl_s)
    if claim is None:
        report({"task": None})
        return
    report({"task": claim.task.id, "token": claim.token, "deadline_ms": claim.deadline_ms})
    await asyncio.sleep(3600)


if __name__ == "__main__":
    url, ns, ttl = sys.argv[1:]
    asyncio.run(orphan_agent(url, ns, float(ttl)))
