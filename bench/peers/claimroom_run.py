"""claimroom's driver for bench/_claims_peers.py, the same harness as the peers' (modes and
output: _peer_common.py). Runs in the project's own environment, through the public API.

The throughput mode is one process with ``--agents`` asyncio agents, each claiming and
completing no-op tasks until none is left: ``claim`` then ``complete`` (two calls a task);
``--per-call N``: ``claim_many(N)``, each task completed by its own call; ``--next``:
``complete_and_claim`` (one call a task, as BullMQ's worker finishes a job and fetches
the next in one script); both: ``complete_many`` of the N claiming the next N (one call a
batch). The other modes take one task at a time with a ``--lease`` s
lease, as a worker does. Every agent of a worker process is one claimroom agent name.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from importlib import metadata

from _peer_common import cpu_s, emit, job_body, parse, result, wait_go

from claimroom.core.constants import max_batch_add
from claimroom.core.errors import ClaimroomError
from claimroom.core.store import Store, TaskSpec

NAMESPACE = "peers"  # each run has a redis-server of its own


def own_options() -> tuple[int, bool]:
    """``--per-call N`` and ``--next``, claimroom's own options (taken out of argv before
    the shared parser, which does not know them)."""
    n, chained = 1, "--next" in sys.argv
    if chained:
        sys.argv.remove("--next")
    if "--per-call" in sys.argv:
        i = sys.argv.index("--per-call")
        n = int(sys.argv[i + 1])
        del sys.argv[i : i + 2]
    return n, chained


async def throughput(store: Store, n: int, agents: int, batch: int, chained: bool) -> None:
    for start in range(0, n, max_batch_add):
        await store.add_many(
            [TaskSpec(title=f"noop {start + i}") for i in range(min(max_batch_add, n - start))]
        )
    for i in range(agents):  # capacity for a whole batch each (registration is not timed)
        await store.register(f"agent-{i}", max_claims=batch)
    await asyncio.get_running_loop().run_in_executor(None, wait_go)
    t0, cpu0 = time.perf_counter(), cpu_s()
    done = 0

    async def chain(name: str) -> None:
        nonlocal done
        claims = await store.claim_many(name, batch)
        while claims:
            if batch == 1:
                _, claims = await store.complete_and_claim(claims[0].task.id, claims[0].token, agent=name)
                done += 1
            else:  # the whole batch finished and the next taken in one call
                finished = [(c.task.id, c.token) for c in claims]
                _, claims = await store.complete_many(finished, agent=name, claim_next=batch)
                done += len(finished)

    async def agent(name: str) -> None:
        nonlocal done
        while True:
            if batch == 1:
                one = await store.claim(name)
                claims = [] if one is None else [one]
            else:
                claims = await store.claim_many(name, batch)
            if not claims:
                return
            await asyncio.gather(*(store.complete(c.task.id, c.token) for c in claims))
            done += len(claims)

    await asyncio.gather(*((chain if chained else agent)(f"agent-{i}") for i in range(agents)))
    seconds, cpu = time.perf_counter() - t0, cpu_s() - cpu0
    if done != n:
        raise SystemExit(f"claimroom driver: {done} of {n} tasks done")
    if chained and batch > 1:
        how = f"claim_many({batch}), complete_many({batch}) claiming the next"
    else:
        how = "complete_and_claim" if chained else "claim, complete"
        how += f", claim_many({batch})" if batch > 1 else ""
    result(f"claimroom ({how})", VERSION, n, seconds, cpu, f"{agents} agents in one process")


async def worker(store: Store, role: str, lease_s: float) -> None:
    name = f"{role}-{os.getpid()}"
    emit(event="ready", role=role)
    while True:
        claim = await store.claim(name, ttl_s=lease_s, wait_s=30)
        if claim is None:
            continue
        value = job_body(claim.task.id)  # blocks, as a frozen worker would: no heartbeat
        try:
            await store.complete(claim.task.id, claim.token, value)
        except ClaimroomError as exc:  # the lease moved on: the fencing token is refused
            emit(event="error", job=claim.task.id, role=role, error=type(exc).__name__)
        else:
            emit(event="completed", job=claim.task.id, role=role, status="done")


async def main() -> None:
    batch, chained = own_options()
    args = parse()
    store = Store.from_url(args.url, NAMESPACE)
    try:
        if args.mode == "throughput":
            await throughput(store, args.tasks, args.agents, batch, chained)
        elif args.mode == "enqueue":
            emit(job=await store.add("held"))
        elif args.mode == "inspect":
            task = await store.get(args.job)
            done = [e for e in await store.events(task=args.job) if e.type == "completed"]
            emit(state=task.state.value, result=task.result, completions=len(done), attempts=task.attempts)
        else:
            await worker(store, args.role, args.lease)
    finally:
        await store.close()


VERSION = metadata.version("claimroom")

if __name__ == "__main__":
    asyncio.run(main())
