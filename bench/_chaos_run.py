"""One chaos run on one target (a module, not a benchmark: ./dev bench skips it).

Agent processes (``_chaos_agent.py``, one or more agent loops each) work the tasks that a
producer adds over the fault phase, while two seeded fault loops inject: one SIGKILLs agent
processes (a new process, with new agent names, takes the slot) or freezes them with
SIGSTOP past their TTL and resumes them (zombies); the other injects the target's store
faults (``_chaos_targets``). A ``claimroom reap --loop`` process reaps; an operator loop
requeues orphaned tasks and cancels a few. A sampler watches for leases left past their
deadline. Then the faults stop, the board drains until every task is finished, the agents
stop, and the whole board and trail are checked (``_chaos_check``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _chaos_agent import QUEUE
from _chaos_check import Acks, Invariant, check, read_tasks, read_trail, trail_text
from _chaos_targets import Target

from claimroom.core.errors import ClaimroomError, StoreUnavailable
from claimroom.core.local_redis import die_with_parent
from claimroom.core.models import State
from claimroom.core.store import Store, TaskSpec

AGENT_SCRIPT = Path(__file__).resolve().parent / "_chaos_agent.py"
CLAIMROOM = str(Path(sys.executable).parent / "claimroom")
AGENT_GAP_S = (1.5, 3.5)  # between two agent faults
STORE_GAP_S = (3.0, 6.0)  # between two store faults (after the previous one ended)
FREEZE_PAST_TTL_S = (1.0, 2.0)  # a zombie stays frozen TTL + this
PRODUCE_SHARE = 0.9  # tasks are added over this share of the fault phase
DEPENDENT_SHARE = 0.1  # tasks that wait on an earlier task of their batch
CANCEL_SHARE = 0.01  # tasks the operator cancels
CONFIRM_S = 1.0  # how long a drained board must stay drained (execute)
TICK_S = 0.5  # the producer's, operator's and sampler's beat
OUTAGE_GRACE_S = 3.0  # after a store outage, the reaper's backoff may still be running
OPERATOR = "chaos-operator"
KILLED = "agent processes SIGKILLed"
FROZEN = "agent processes frozen past TTL (SIGSTOP, SIGCONT)"
# What the report lists of stale completions, each "...: refused" or "...: accepted".
ZOMBIE = "zombies (frozen past TTL), completions with the old token"
CUT_OFF = "agents cut off past TTL, completions with the old token"


@dataclass(frozen=True)
class Plan:
    tasks: int
    seconds: float  # the fault phase
    agents: int  # processes
    loops: int  # agent loops per process
    ttl_s: float
    seed: int
    drain_s: float  # at most this long for the board to finish after the faults


@dataclass
class Slot:
    """A place for one agent process; a killed process is replaced in its slot."""

    index: int
    gen: int = 0
    proc: asyncio.subprocess.Process | None = None
    names: list[str] = field(default_factory=list)
    frozen: bool = False
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None


@dataclass
class Outcome:
    """What a run injected, saw and found."""

    target: str
    facts: list[str]
    injected: Counter[str]
    seen: Counter[str]
    figures: dict[str, float]
    invariants: list[Invariant]
    trails: list[str]
    errors: list[str]

    @property
    def ok(self) -> bool:
        return all(i.ok for i in self.invariants)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "ok": self.ok,
            "injected": dict(self.injected),
            "seen": dict(self.seen),
            "figures": self.figures,
            "invariants": [{"name": i.name, "ok": i.ok, "detail": i.detail} for i in self.invariants],
            "errors": self.errors,
        }


async def retrying(call: Callable[[], Awaitable[Any]], deadline_s: float = 60.0) -> Any:
    """A call of the suite's own, tried again while the store is down (a restart, a failover)."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            return await call()
        except StoreUnavailable:
            if time.monotonic() > end:
                raise
            await asyncio.sleep(0.2)


class Run:
    def __init__(self, plan: Plan, target: Target, namespace: str, home: Path) -> None:
        self.plan = plan
        self.target = target
        self.namespace = namespace
        self.home = home
        self.store = Store.from_url(target.direct_url, namespace)
        # One generator per loop, so that each loop's choices (fault kinds and gaps, the
        # tasks' dependencies, the operator's picks) follow from the seed alone, however the
        # loops interleave.
        self.agent_rng, self.store_rng, self.task_rng, self.operator_rng = (
            random.Random(f"{plan.seed}:{what}") for what in ("agents", "store", "tasks", "operator")
        )
        self.slots = [Slot(i) for i in range(plan.agents)]
        self.seen: Counter[str] = Counter()
        self.acks = Acks()
        self.errors: list[str] = []
        self.injected = target.injected
        self.overdue_ms = 0.0
        self.samples = 0
        self.added = 0
        self.stopping = asyncio.Event()
        self.zombies: set[asyncio.Task[None]] = set()
        self.reaper_said: asyncio.Task[None] | None = None

    # --- agent processes -------------------------------------------------------------

    async def spawn(self, slot: Slot) -> None:
        slot.gen += 1
        slot.names = [f"a{slot.index}g{slot.gen}w{j}" for j in range(self.plan.loops)]
        slot.ready = asyncio.Event()
        slot.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(AGENT_SCRIPT),
            self.target.agent_url,
            self.namespace,
            ",".join(slot.names),
            str(self.plan.seed),
            str(self.plan.ttl_s),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            preexec_fn=die_with_parent,
        )
        slot.reader = asyncio.create_task(self.read(slot, slot.proc))

    async def read(self, slot: Slot, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            if line.strip() == b"ready":
                slot.ready.set()
                continue
            try:
                self.take(json.loads(line))
            except ValueError:
                self.errors.append(f"agent {slot.names[0]}: {line[:200]!r}")

    def take(self, said: dict[str, Any]) -> None:
        """One agent report into the counts and the acknowledgements."""
        kind = said["k"]
        if kind == "claimed":
            self.acks.claims.append((said["task"], said["token"], said["agent"]))
            self.seen["claims handed to agents"] += 1
        elif kind == "done":
            self.acks.done.append((said["task"], said["token"], said["agent"]))
            self.seen["completions accepted"] += 1
            if said.get("unsure"):
                self.seen["completions accepted on a retry (first try unanswered)"] += 1
            if said.get("stale"):
                self.acks.stale_accepted.append((said["task"], said["token"]))
        elif kind == "failed":
            self.seen[
                "failures reported (fatal)" if said["fatal"] else "failures reported (recoverable)"
            ] += 1
            if said.get("stale"):
                self.acks.stale_accepted.append((said["task"], said["token"]))
        elif kind == "lost":
            gone = " (the task gone: lost writes)" if said.get("gone") else ""
            self.seen[f"leases lost, found on {said['at']}{gone}"] += 1
        elif kind == "unavailable":
            self.seen["calls the store did not answer"] += 1
        elif kind == "zombie":
            who = ZOMBIE if said["frozen"] else CUT_OFF
            self.seen[f"{who}: {'accepted' if said['ok'] else 'refused'}"] += 1
            if said["ok"]:
                self.acks.zombie_accepted.append((said["task"], said["token"]))
        elif kind == "error":
            self.seen["agent errors"] += 1
            self.errors.append(f"{said['at']}: {said['what']}")

    async def end_agents(self) -> None:
        """Close every agent's stdin (its loops stop), then wait; kill what does not end."""
        for slot in self.slots:
            if slot.proc is not None and slot.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    slot.proc.stdin.close()
        for slot in self.slots:
            if slot.proc is None:
                continue
            try:
                await asyncio.wait_for(slot.proc.wait(), 15)
            except TimeoutError:
                slot.proc.kill()
                await slot.proc.wait()
            if slot.reader is not None:
                await slot.reader

    # --- the fault loops ---------------------------------------------------------------

    async def victim(self) -> Slot | None:
        """A slot to hit: one whose agents hold a claim (so the fault costs a lease), else any;
        never a frozen one."""
        live = [s for s in self.slots if not s.frozen and s.proc is not None and s.proc.returncode is None]
        if not live:
            return None
        try:
            held = {t.agent for t in await self.store.tasks(state=State.CLAIMED, limit=1000)}
        except StoreUnavailable:
            held = set()
        holding = [s for s in live if held & set(s.names)]
        return self.agent_rng.choice(holding or live)

    async def kill(self, slot: Slot) -> None:
        assert slot.proc is not None
        os.kill(slot.proc.pid, signal.SIGKILL)
        await slot.proc.wait()
        self.injected[KILLED] += 1
        await self.spawn(slot)

    async def freeze(self, slot: Slot, for_s: float) -> None:
        assert slot.proc is not None
        slot.frozen = True
        os.kill(slot.proc.pid, signal.SIGSTOP)
        self.injected[FROZEN] += 1
        try:
            await asyncio.sleep(for_s)
        finally:
            os.kill(slot.proc.pid, signal.SIGCONT)
            slot.frozen = False

    async def agent_faults(self, until: float) -> None:
        rng = self.agent_rng
        kinds = ["kill", "zombie"]
        rng.shuffle(kinds)  # both come at least once, in a seeded order
        while True:
            await asyncio.sleep(rng.uniform(*AGENT_GAP_S))
            if time.monotonic() >= until:
                return
            kind = kinds.pop(0) if kinds else rng.choice(["kill", "zombie"])
            freeze_s = self.plan.ttl_s + rng.uniform(*FREEZE_PAST_TTL_S)
            slot = await self.victim()
            if slot is None:
                continue
            if kind == "kill":
                await self.kill(slot)
            else:
                task = asyncio.create_task(self.freeze(slot, freeze_s))
                self.zombies.add(task)
                task.add_done_callback(self.zombies.discard)

    async def store_faults(self, until: float) -> None:
        rng = self.store_rng
        labels = list(self.target.faults)
        first = labels[:]
        rng.shuffle(first)  # each comes at least once, in a seeded order
        while True:
            await asyncio.sleep(rng.uniform(*STORE_GAP_S))
            if time.monotonic() >= until:
                return
            allowed = [x for x in labels if self.injected[x] < self.target.limits.get(x, math.inf)]
            if not allowed:
                return
            label = first.pop(0) if first else rng.choice(allowed)
            await self.target.faults[label](rng)

    # --- producer, operator, sampler -------------------------------------------------

    async def produce(self, seconds: float) -> None:
        """Add the plan's tasks in batches over ``seconds``; some wait on an earlier task of
        their batch. A batch the store did not answer is sent again: the first may have been
        added too, so the board, not this count, says which tasks exist."""
        ticks = max(1, int(seconds / TICK_S))
        per = math.ceil(self.plan.tasks / ticks)
        start = time.monotonic()
        for tick in range(ticks):
            n = min(per, self.plan.tasks - self.added)
            if n <= 0:
                return
            specs = []
            for j in range(n):
                rng = self.task_rng
                after = [f"${rng.randrange(j)}"] if j and rng.random() < DEPENDENT_SHARE else []
                specs.append(TaskSpec(title=f"chaos {self.added + j}", queue=QUEUE, after=after))
            while True:
                try:
                    await self.store.add_many(specs, by="chaos-producer")
                    break
                except StoreUnavailable:
                    self.seen["producer: adds the store did not answer (sent again)"] += 1
                    await asyncio.sleep(0.2)
            self.added += n
            await asyncio.sleep(max(0.0, start + (tick + 1) * TICK_S - time.monotonic()))

    async def operate(self) -> None:
        """An operator at the control room: requeues orphaned tasks (late-stage work whose
        lease ran out) and, now and then, cancels a waiting task."""
        budget = max(1, int(self.plan.tasks * CANCEL_SHARE))
        while not self.stopping.is_set():
            try:
                for t in await self.store.tasks(state=State.ORPHANED, limit=100):
                    with contextlib.suppress(ClaimroomError):
                        await self.store.act("requeue", t.id, t.state, t.token, OPERATOR)
                        self.seen["orphaned tasks requeued by the operator"] += 1
                if budget and self.operator_rng.random() < 0.2:
                    waiting = await self.store.tasks(state=State.QUEUED, limit=50)
                    if waiting:
                        t = self.operator_rng.choice(waiting)
                        with contextlib.suppress(ClaimroomError):
                            await self.store.act("cancel", t.id, t.state, t.token, OPERATOR)
                            self.seen["tasks cancelled by the operator"] += 1
                            budget -= 1
            except StoreUnavailable:
                pass
            await asyncio.sleep(TICK_S)

    async def sample(self) -> None:
        """How far past its deadline a lease is left, on the store's clock, outside outages."""
        while not self.stopping.is_set():
            began = time.monotonic()
            try:
                now = await self.store.now_ms()
                claimed = await self.store.tasks(state=State.CLAIMED, limit=1000)
            except StoreUnavailable:
                claimed = None
            if claimed is not None and not self.target.down_within(began, time.monotonic(), OUTAGE_GRACE_S):
                self.samples += 1
                late = [now - t.deadline_ms for t in claimed if t.deadline_ms < now]
                self.overdue_ms = max([self.overdue_ms, *late])
            await asyncio.sleep(TICK_S)

    async def unfinished(self) -> int:
        counts = await retrying(self.store.counts)
        return sum(n for s, n in counts.items() if not s.final)

    # --- the run ---------------------------------------------------------------------

    async def reaper(self) -> asyncio.subprocess.Process:
        """``claimroom reap --loop`` on the board, straight to the store (not through the
        proxy: it stands for a control room elsewhere); its outage reports are counted."""
        env = dict(
            os.environ,
            CLAIMROOM_URL=self.target.direct_url,
            CLAIMROOM_NAMESPACE=self.namespace,
            CLAIMROOM_HOME=str(self.home),
        )
        proc = await asyncio.create_subprocess_exec(
            CLAIMROOM,
            "reap",
            "--loop",
            env=env,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=die_with_parent,
        )
        self.reaper_said = asyncio.create_task(self.read_reaper(proc))
        return proc

    async def read_reaper(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while line := (await proc.stderr.readline()).decode(errors="replace"):
            if "a pass failed" in line:
                self.seen["reaper: passes the store did not answer"] += 1
            elif "answers again" in line:
                self.seen["reaper: back after an outage"] += 1
            else:
                self.errors.append(f"reaper: {line.strip()}")

    async def execute(self) -> Outcome:
        plan = self.plan
        reaper = await self.reaper()
        helpers: list[asyncio.Task[None]] = []
        try:
            for slot in self.slots:
                await self.spawn(slot)
            await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in self.slots)), 120)
            t0 = time.monotonic()
            until = t0 + plan.seconds
            helpers = [asyncio.create_task(self.operate()), asyncio.create_task(self.sample())]
            await asyncio.gather(
                self.produce(plan.seconds * PRODUCE_SHARE), self.agent_faults(until), self.store_faults(until)
            )
            if self.zombies:
                await asyncio.gather(*self.zombies)
            drain_from = time.monotonic()
            while time.monotonic() - drain_from < plan.drain_s:
                if not (left := await self.unfinished()):
                    # A zero is believed only when it holds a second later: one CI run read
                    # a zero soon after a Sentinel failover with 21 tasks unfinished and
                    # ended its drain there (why that read said zero is not known yet).
                    await asyncio.sleep(CONFIRM_S)
                    if not (left := await self.unfinished()):
                        break
                await asyncio.sleep(TICK_S)
            drained = time.monotonic() - drain_from
            run_s = time.monotonic() - t0
            self.stopping.set()
            await asyncio.gather(*helpers)
            await self.end_agents()
        finally:
            self.stopping.set()
            for h in helpers:
                h.cancel()
            for slot in self.slots:
                if slot.proc is not None and slot.proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(slot.proc.pid, signal.SIGCONT)
                    slot.proc.kill()
            if reaper.returncode is None:
                reaper.terminate()
            await reaper.wait()
            if self.reaper_said is not None:
                await self.reaper_said
        return await self.verdict(run_s, drained, left)

    async def verdict(self, run_s: float, drained_s: float, left: int) -> Outcome:
        tasks = await retrying(lambda: read_tasks(self.store))
        events = await retrying(lambda: read_trail(self.store))
        now = await retrying(self.store.now_ms)
        invariants = check(tasks, events, self.acks, now, writes_lost=self.target.writes_lost)
        by_id = {t.id: t for t in tasks}
        trails = [
            f"{inv.name}:\n{trail_text(events, by_id.get(tid), tid, self.acks)}"
            for inv in invariants
            if not inv.ok
            for tid in inv.tasks[:3]
        ]
        await self.store.close()
        figures = {
            "tasks added": float(len(tasks)),
            "audit events": float(len(events)),
            "run, faults then drain": run_s,
            "drain after the faults": drained_s,
            "tasks unfinished at the end": float(left),
            "lease overdue, max": self.overdue_ms,
            "lease samples": float(self.samples),
        }
        return Outcome(
            self.target.name,
            self.target.facts,
            self.injected,
            self.seen,
            figures,
            invariants,
            trails,
            self.errors,
        )
