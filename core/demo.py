"""``claimroom demo``: a short scripted run that shows the engine recovering lost work.

It starts a private redis-server, adds a small plan, and runs a few agents: they claim,
heartbeat and complete; one dies mid-task (it stops heartbeating, as a crashed process
would) and its work is recovered by another agent; one fails and is retried. What is
printed is the store's own audit trail, followed live, so the output is what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

from .local_redis import LocalRedis
from .output import Printer
from .store import Store, TaskSpec

PLAN = [
    TaskSpec("design the schema", priority=5, requires=["db"]),
    TaskSpec("write the migration", priority=4, after=["$0"], requires=["db"]),
    TaskSpec("build the API endpoints", priority=3, after=["$0"]),
    TaskSpec("write API tests", priority=2, after=["$2"]),
    TaskSpec("update the README", priority=1),
    TaskSpec("fix the flaky CI job", priority=3),
]


async def _agent(store: Store, name: str, say: Printer, *, dies: bool = False, flaky: bool = False) -> None:
    """One simulated coding agent: claim, work in steps with heartbeats, complete."""
    failed_once = False
    while True:
        claim = await store.claim(name, ttl_s=2.0, wait_s=3.0)
        if claim is None:
            return
        task, token = claim.task, claim.token
        for step in range(1, 5):
            await asyncio.sleep(random.uniform(0.25, 0.45))
            if dies and step == 2:
                # A crash: no more heartbeats, no completion. Only the lease speaks now.
                say.done({"crashed": name, "task": task.id}, f"   ** {name} crashes while holding {task.id}")
                return
            await store.heartbeat(task.id, token, progress=step / 5, stage=f"step {step}/4")
        if flaky and not failed_once:
            failed_once = True
            await store.fail(task.id, token, "tests failed (simulated)")
            continue
        await store.complete(task.id, token, {"by": name})


async def _demo(url: str, seconds: float, out: Printer) -> None:
    store = Store.from_url(url, "demo")
    printer_store = Store.from_url(url, "demo")
    try:
        await store.register("ada", ["db", "python"], 1)
        await store.register("grace", ["python"], 1)
        await store.register("linus", ["db", "python"], 1)
        await store.add_many(PLAN)

        async def show() -> None:
            async for event in printer_store.follow(after="0"):
                out.event(event)

        printer = asyncio.create_task(show())
        agents = [
            asyncio.create_task(_agent(store, "ada", out, dies=True)),
            asyncio.create_task(_agent(store, "grace", out, flaky=True)),
            asyncio.create_task(_agent(store, "linus", out)),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*agents), seconds)
        await asyncio.sleep(0.3)
        printer.cancel()
        counts = await store.counts()
        summary = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
        out.done({"counts": {s.value: n for s, n in counts.items()}}, f"-- end of demo: {summary}")
    finally:
        await store.close()
        await printer_store.close()


def run_demo(seconds: float, out: Printer) -> int:
    server = LocalRedis.start()
    try:
        out.done({"store": server.url}, f"-- demo store: redis-server at {server.url} (stopped at the end)")
        asyncio.run(_demo(server.url, seconds, out))
    finally:
        server.stop()
    return 0
