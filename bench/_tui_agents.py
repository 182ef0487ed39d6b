"""bench/tui.py's agents, in other OS processes: the board's builder and the traffic.

A module, not a benchmark (``./dev bench`` skips it); it is also their script
(``python bench/_tui_agents.py board|traffic ...``, run by ``Children``):

  - board: ``tasks`` tasks (``add_many`` in batches of 10 000; ``probe_tasks`` of them on the
    probe queue), ``agents`` registered agents each holding ``held`` claims with a long
    lease (3600 s). A process of its own, so its memory never counts against the app's.
  - traffic: ``rate`` events/s for ``seconds`` from one generator of several: 20 % claims
    (probe queue, 120 s lease), 60 % heartbeats on those claims, each with a new stage,
    20 % completes (of claims older than ``lifetime_s``). Reports what it did, with the
    ids it claimed and when it called complete on which (``time.time()`` just before).
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from _harness import ready_then_go, report

from claimroom.core.store import Store, TaskSpec

ADD_CHUNK = 10_000  # constants.max_batch_add
CONCURRENCY = 64  # setup calls in flight (the store's pool holds 256 connections)
PROBE_QUEUE = "probe"
BULK_QUEUE = "default"
PROBE_TTL_S = 120.0  # far sooner than the held claims' deadline: probe claims sort first
HELD_TTL_S = 3600.0
KINDS = ("claim", "heartbeat", "complete")
STAGES = ("plan", "read code", "edit", "run tests", "lint", "fix tests", "review", "summary")


async def bounded(calls: list[Callable[[], Any]], limit: int = CONCURRENCY) -> list[Any]:
    """Run coroutine factories with at most ``limit`` in flight; results in order."""
    sem = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Any]) -> Any:
        async with sem:
            return await call()

    return await asyncio.gather(*(one(c) for c in calls))


# --- the board -------------------------------------------------------------------------------


def agent_name(i: int) -> str:
    return f"agent-{i:03d}"


async def build_board(
    url: str, ns: str, tasks: int, probe_tasks: int, agents: int, held: int
) -> dict[str, Any]:
    store = Store.from_url(url, ns)
    t0 = time.perf_counter()
    try:
        for start in range(0, probe_tasks, ADD_CHUNK):
            count = min(ADD_CHUNK, probe_tasks - start)
            await store.add_many(
                [
                    TaskSpec(title=f"probe {start + i}: rename the config loader", queue=PROBE_QUEUE)
                    for i in range(count)
                ]
            )
        bulk = tasks - probe_tasks
        for start in range(0, bulk, ADD_CHUNK):
            count = min(ADD_CHUNK, bulk - start)
            await store.add_many(
                [
                    TaskSpec(
                        title=f"task {start + i}: split the parser module and add tests",
                        queue=BULK_QUEUE,
                        priority=(start + i) % 7,
                    )
                    for i in range(count)
                ]
            )
        added_s = time.perf_counter() - t0
        names = [agent_name(i) for i in range(agents)]
        await bounded(
            [lambda n=n: store.register(n, ["python"], max_claims=held + 8) for n in names]  # type: ignore[misc]
        )
        got = await bounded(
            [
                lambda n=n: store.claim_many(n, held, queues=[BULK_QUEUE], ttl_s=HELD_TTL_S)  # type: ignore[misc]
                for n in names
            ]
        )
        return {"added_s": added_s, "total_s": time.perf_counter() - t0, "held": sum(len(g) for g in got)}
    finally:
        await store.close()


# --- the traffic -----------------------------------------------------------------------------


async def generate(
    url: str,
    ns: str,
    index: int,
    generators: int,
    agents: list[str],
    rate: float,
    seconds: float,
    lifetime_s: float,
) -> dict[str, Any]:
    """``rate`` events/s for ``seconds``: claims, heartbeats with a new stage, completes."""
    store = Store.from_url(url, ns)
    rng = random.Random(index)
    live: deque[list[Any]] = deque()  # [task id, token, claimed at, heartbeats], oldest first
    counts = dict.fromkeys((*KINDS, "empty", "error"), 0)
    completed: list[tuple[str, float]] = []  # (task id, time.time() just before the call)
    claimed: list[str] = []
    stage_no = 0
    turn = 0
    agent_turn = 0

    async def claim(agent: str) -> None:
        try:
            got = await store.claim_many(agent, 1, queues=[PROBE_QUEUE], ttl_s=PROBE_TTL_S)
        except Exception:
            counts["error"] += 1
            return
        if not got:
            counts["empty"] += 1
            return
        counts["claim"] += 1
        live.append([got[0].task.id, got[0].token, time.time(), 0])
        claimed.append(got[0].task.id)

    async def heartbeat(tid: str, token: int, stage: str, progress: float) -> None:
        try:
            await store.heartbeat(tid, token, ttl_s=PROBE_TTL_S, progress=progress, stage=stage)
        except Exception:
            counts["error"] += 1
            return
        counts["heartbeat"] += 1

    async def complete(tid: str, token: int) -> None:
        t = time.time()
        try:
            await store.complete(tid, token)
        except Exception:
            counts["error"] += 1
            return
        counts["complete"] += 1
        completed.append((tid, t))

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    issued = 0
    try:
        while (elapsed := time.perf_counter() - t0) < seconds:
            due = min(int(elapsed * rate) - issued, 200)
            issued += due
            ops = []
            busy: set[str] = set()
            now = time.time()
            for _ in range(due):
                kind, turn = turn % 5, turn + 1
                if kind == 1 and live and now - live[0][2] >= lifetime_s:
                    tid, token, *_ = live.popleft()
                    ops.append(complete(tid, token))
                    busy.add(tid)
                elif kind == 0 or not live:
                    ops.append(claim(agents[agent_turn % len(agents)]))
                    agent_turn += 1
                else:
                    entry = live[rng.randrange(len(live))]
                    if entry[0] in busy:
                        entry = live[-1]
                    busy.add(entry[0])
                    entry[3] += 1
                    stage_no += 1
                    # Stages like an agent's, of varying width; the number makes each one new.
                    stage = f"{STAGES[stage_no % len(STAGES)]} #{stage_no * generators + index}"
                    ops.append(heartbeat(entry[0], entry[1], stage, min(0.99, 0.08 * entry[3])))
            if ops:
                await asyncio.gather(*ops)
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - t0
    finally:
        await store.close()
    return {
        "counts": counts,
        "seconds": elapsed,
        "cpu_s": time.process_time() - cpu0,
        "claimed": claimed,
        "completed": completed,
        "live_at_end": len(live),
    }


async def traffic(
    url: str,
    ns: str,
    index: int,
    generators: int,
    agents: int,
    rate: float,
    seconds: float,
    lifetime_s: float,
) -> dict[str, Any]:
    """Generator ``index`` of ``generators``, for its share of the ``agents``, once told to go."""
    await ready_then_go()
    names = [agent_name(i) for i in range(agents)][index::generators]
    return await generate(url, ns, index, generators, names, rate, seconds, lifetime_s)


async def board(url: str, ns: str, tasks: int, probe_tasks: int, agents: int, held: int) -> dict[str, Any]:
    """The board's builder: told to go as soon as it is up, it builds while the traffic starts."""
    await ready_then_go()
    return await build_board(url, ns, tasks, probe_tasks, agents, held)


if __name__ == "__main__":
    kind, url, ns, *rest = sys.argv[1:]
    if kind == "board":
        tasks, probe_tasks, agents, held = (int(x) for x in rest)
        report(asyncio.run(board(url, ns, tasks, probe_tasks, agents, held)))
    else:
        index, generators, agents = (int(x) for x in rest[:3])
        rate, seconds, lifetime = (float(x) for x in rest[3:])
        report(asyncio.run(traffic(url, ns, index, generators, agents, rate, seconds, lifetime)))
