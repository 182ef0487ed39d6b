"""``claimroom demo``: a simulated swarm in the control room, or (``--plain``) a short
scripted run that prints the engine recovering lost work.

The live demo runs each simulated agent as its own process (``core/swarm.py``) on a
private redis-server, some steady, some crashing mid-task, some failing, some slow, so
every pane has life; the demo restarts crashed agents and stops everything on exit.

The scripted run starts a private redis-server, adds a small plan, and runs a few agents: they claim,
heartbeat and complete; one dies mid-task (it stops heartbeating, as a crashed process
would) and its work is recovered by another agent; one fails and is retried. What is
printed is the store's own audit trail, followed live, so the output is what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time

from .local_redis import LocalRedis, die_with_parent
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


# name -> (behaviour, capabilities); the queues' required capabilities are in swarm.QUEUES.
SWARM = {
    "ada": ("steady", ["python", "web"]),
    "grace": ("flaky", ["python"]),
    "linus": ("crashy", ["python"]),
    "margaret": ("slow", ["python", "web"]),
    "ken": ("crashy", ["web"]),
    "barbara": ("steady", []),
}


def _spawn(url: str, name: str, behaviour: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "claimroom.core.swarm", url, "demo", name, behaviour]
    return subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,  # no simulated agent outlives its demo
    )


class Swarm:
    """The agent processes of the live demo; crashed ones come back after a pause."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="swarm", daemon=True)

    def start(self) -> None:
        for name, (behaviour, _caps) in {**SWARM, "feeder": ("feeder", [])}.items():
            self.procs[name] = _spawn(self.url, name, behaviour)
        self._thread.start()

    def _supervise(self) -> None:
        down_since: dict[str, float] = {}
        while not self.stop.wait(0.5):
            for name, proc in list(self.procs.items()):
                if proc.poll() is None:
                    continue
                first = down_since.setdefault(name, time.monotonic())
                if time.monotonic() - first > 4.0:  # long enough for its lease to run out on screen
                    behaviour = "feeder" if name == "feeder" else SWARM[name][0]
                    self.procs[name] = _spawn(self.url, name, behaviour)
                    del down_since[name]

    def close(self) -> None:
        self.stop.set()
        self._thread.join(2)
        for proc in self.procs.values():  # only the processes this demo started, by PID
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _register(url: str) -> None:
    async with Store.from_url(url, "demo") as store:
        for name, (_behaviour, caps) in SWARM.items():
            await store.register(name, caps, 1)


def run_live_demo(*, theme: str | None = None, readonly: bool = False) -> int:
    """The control room over a simulated swarm of agent processes on a private store."""
    from claimroom.tui.app import run as run_tui

    server = LocalRedis.start()
    swarm = Swarm(server.url)

    def hang_up(*_: object) -> None:
        # The terminal is gone, so nobody is watching: stop what the demo started and leave
        # now. (An exception raised from here lands wherever the app's loop happens to be,
        # possibly inside code that swallows it, and the process would linger.)
        swarm.close()
        server.stop()
        os._exit(129)

    signal.signal(signal.SIGHUP, hang_up)
    try:
        asyncio.run(_register(server.url))
        swarm.start()
        return int(run_tui(server.url, "demo", readonly=readonly, theme=theme, operator=None))
    finally:
        swarm.close()
        server.stop()


def run_demo(seconds: float, out: Printer) -> int:
    server = LocalRedis.start()
    try:
        out.done({"store": server.url}, f"-- demo store: redis-server at {server.url} (stopped at the end)")
        asyncio.run(_demo(server.url, seconds, out))
    finally:
        server.stop()
    return 0
