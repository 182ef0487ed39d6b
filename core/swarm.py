"""Simulated coding agents for ``claimroom demo``: each a real client of the store.

``python -m claimroom.core.swarm URL NAMESPACE AGENT BEHAVIOUR`` runs one agent as its own
process, the way real agents run; the demo starts several and restarts the ones that
crash. Behaviours: ``steady`` works and completes; ``crashy`` sometimes dies mid-task
(early or late, so both recovery paths show); ``flaky`` sometimes fails (recoverable or
fatal); ``slow`` takes long steps on a long lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ClaimroomError
from .store import Store

FILES = ["core/parser.py", "core/lexer.py", "api/routes.py", "api/auth.py", "docs/guide.md", "web/app.tsx"]
STAGES = ["reading code", "planning", "editing", "running tests", "fixing tests", "writing docs"]


@dataclass(frozen=True)
class Behaviour:
    steps: tuple[int, int] = (3, 6)  # how many heartbeats a task takes
    step_s: tuple[float, float] = (0.6, 1.4)
    ttl_s: float = 4.0
    crash_chance: float = 0.0  # per task: the process dies at a random step
    fail_chance: float = 0.0  # per task: a recoverable failure (a tenth of them fatal)


BEHAVIOURS = {
    "steady": Behaviour(),
    "crashy": Behaviour(crash_chance=0.35),
    "flaky": Behaviour(fail_chance=0.3),
    "slow": Behaviour(steps=(4, 8), step_s=(2.0, 3.5), ttl_s=10.0),
}


async def work(
    store: Store,
    name: str,
    how: Behaviour,
    *,
    crash: Callable[[str], None],
    tasks: int | None = None,
    wait_s: float = 5.0,
) -> None:
    """Claim, heartbeat with progress and a stage, lock a file, then complete or fail.

    ``crash`` is what dying means: the process exits (``os._exit``) or, in the scripted
    demo, the coroutine just stops; either way no heartbeat or completion follows.
    """
    done = 0
    while tasks is None or done < tasks:
        claim = await store.claim(name, ttl_s=how.ttl_s, wait_s=wait_s)
        if claim is None:
            if tasks is not None:
                return
            continue
        task, token = claim.task, claim.token
        steps = random.randint(*how.steps)
        dies_at = random.randint(1, steps) if random.random() < how.crash_chance else 0
        try:
            path = random.choice(FILES)
            await store.lock([path], name, task=task.id)  # lasts as long as the claim
        except ClaimroomError:
            pass  # someone else edits that file; a real agent would pick other work in it
        try:
            for step in range(1, steps + 1):
                await asyncio.sleep(random.uniform(*how.step_s))
                if step == dies_at:
                    crash(task.id)
                    return
                stage = STAGES[min(len(STAGES) - 1, step * len(STAGES) // (steps + 1))]
                await store.heartbeat(task.id, token, progress=round(step / (steps + 1), 2), stage=stage)
            if random.random() < how.fail_chance:
                fatal = random.random() < 0.1
                await store.fail(task.id, token, "tests failed" if not fatal else "cannot build", fatal=fatal)
            else:
                await store.complete(task.id, token, {"by": name, "steps": steps})
        except ClaimroomError:
            pass  # lease lost (an operator killed or reassigned it): take the next task
        done += 1


QUEUES = {"backend": ["python"], "frontend": ["web"], "docs": []}
TITLES = [
    "fix the flaky login test",
    "add pagination to /tasks",
    "port the parser to the new AST",
    "write the migration guide",
    "speed up the CI cache",
    "tidy the error messages",
    "add dark mode to the dashboard",
    "review the auth middleware",
    "split the settings module",
]


async def feed(store: Store, *, every_s: float = 1.5, keep: int = 25) -> None:
    """Keep work arriving: a few tasks at a time, some with dependencies and priorities."""
    while True:
        counts = await store.counts()
        waiting = sum(n for s, n in counts.items() if s.value in ("queued", "blocked", "retrying"))
        if waiting < keep:
            queue = random.choice(list(QUEUES))
            first = await store.add(
                random.choice(TITLES),
                queue=queue,
                priority=random.choice([0, 0, 1, 2, 5]),
                requires=QUEUES[queue],
                payload={"ticket": random.randint(100, 999)},
            )
            if random.random() < 0.3:
                await store.add(f"verify: {first}", queue=queue, after=[first], requires=QUEUES[queue])
        await asyncio.sleep(every_s)


def _die(task: str) -> None:
    os._exit(17)  # a crash: no cleanup, no goodbye; the lease has to tell the story


async def _main(url: str, namespace: str, name: str, behaviour: str) -> None:
    store = Store.from_url(url, namespace)
    try:
        if behaviour == "feeder":
            await feed(store)
        else:
            await work(store, name, BEHAVIOURS[behaviour], crash=_die)
    finally:
        await store.close()


if __name__ == "__main__":
    url, namespace, name, behaviour = sys.argv[1:5]
    with contextlib.suppress(KeyboardInterrupt, ClaimroomError):
        asyncio.run(_main(url, namespace, name, behaviour))
