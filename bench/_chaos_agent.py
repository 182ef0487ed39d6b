"""The chaos suite's agent process (a module, not a benchmark: ./dev bench skips it).

    python bench/_chaos_agent.py URL NAMESPACE NAME[,NAME...] SEED TTL_S

One OS process (so the suite's SIGKILL and SIGSTOP are real) running one agent loop per
NAME on one store: claim (waiting up to a second), work a few short steps with a heartbeat
after each, then complete, or now and then fail (recoverable, rarely fatal). It prints
"ready" once its store answers, then one JSON line per thing the suite counts (``say``),
and ends when its standard input closes.

A lease this process can prove is gone (longer than the TTL since the store last confirmed
it, measured from the reply, so the store's deadline is surely past) makes the loop a zombie:
it tries to complete with its old token all the same, as an agent waking up would, and says
whether the store refused ("lease lost", as it must) or accepted. ``frozen`` says whether a
SIGCONT arrived while the claim was held: the suite's SIGSTOP, rather than an outage, made it
stale.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from claimroom.core.errors import ClaimroomError, LeaseLost, NotFound, StoreUnavailable
from claimroom.core.models import Claim
from claimroom.core.store import Store

QUEUE = "chaos"
CLAIM_WAIT_S = 1.0
STALE_MARGIN_S = 0.3  # past TTL + this since the last confirmation, the store's deadline has passed
FAIL_RATE = 0.05  # recoverable failures (retried with backoff)
FATAL_RATE = 0.01  # fatal failures (dead at once)
LATE_RATE = 0.15  # tasks that report late-stage progress: an expiry then orphans them
RETRY_S = 0.2  # between tries of a call the store did not answer
ZOMBIE_PATIENCE_S = 30.0  # a zombie tries its old token until the store answers, this long


def say(kind: str, **data: Any) -> None:
    """One line for the suite (short: a pipe write this small is never split)."""
    print(json.dumps({"k": kind, **data}, separators=(",", ":")), flush=True)


class Resumes:
    """Counts SIGCONTs: a loop compares the count before and after to know it was frozen."""

    def __init__(self) -> None:
        self.count = 0
        asyncio.get_running_loop().add_signal_handler(signal.SIGCONT, self._resumed)

    def _resumed(self) -> None:
        self.count += 1


@dataclass
class Held:
    """A claim in hand and when the store last confirmed it (this process's monotonic clock,
    taken after the reply: the store's deadline is at most that plus the TTL)."""

    claim: Claim
    confirmed: float
    resumes: int

    @property
    def task(self) -> str:
        return self.claim.task.id

    @property
    def token(self) -> int:
        return self.claim.token


class Worker:
    """One agent loop."""

    def __init__(self, store: Store, name: str, seed: int, ttl_s: float, resumes: Resumes) -> None:
        self.store = store
        self.name = name
        self.rng = random.Random(f"{seed}:{name}")
        self.ttl_s = ttl_s
        self.resumes = resumes

    def stale(self, held: Held) -> bool:
        return time.monotonic() - held.confirmed > self.ttl_s + STALE_MARGIN_S

    async def run(self, stop: asyncio.Event) -> None:
        pause = RETRY_S
        while not stop.is_set():
            try:
                claim = await self.store.claim(
                    self.name, queues=[QUEUE], ttl_s=self.ttl_s, wait_s=CLAIM_WAIT_S
                )
            except StoreUnavailable:
                say("unavailable", at="claim")
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            except Exception as exc:  # anything else is a finding: reported, and the loop goes on
                say("error", at="claim", what=repr(exc)[:300])
                await asyncio.sleep(pause)
                continue
            pause = RETRY_S
            if claim is None:
                continue
            say("claimed", task=claim.task.id, token=claim.token, agent=self.name)
            try:
                await self.work(Held(claim, time.monotonic(), self.resumes.count))
            except Exception as exc:
                say("error", at="work", what=repr(exc)[:300])

    async def work(self, held: Held) -> None:
        late = self.rng.random() < LATE_RATE
        steps = self.rng.randint(0, 3)
        for i in range(steps):
            await asyncio.sleep(self.rng.uniform(0.05, self.ttl_s * 0.3))
            if self.stale(held):
                return await self.zombie(held)
            progress = (0.6 if late else 0.1) + 0.1 * i / max(steps, 1)
            try:
                await self.store.heartbeat(held.task, held.token, ttl_s=self.ttl_s, progress=progress)
                held.confirmed = time.monotonic()
            except (LeaseLost, NotFound) as exc:  # NotFound: a store that lost writes lost the task
                say("lost", at="heartbeat", gone=isinstance(exc, NotFound))
                return
            except StoreUnavailable:
                # It may have reached the store before the answer was lost, and moved the
                # deadline up to now + TTL: only past that is the lease surely gone.
                held.confirmed = time.monotonic()
                say("unavailable", at="heartbeat")  # the lease runs on; the next step sees if it ran out
        await asyncio.sleep(self.rng.uniform(0.02, 0.2))
        if self.stale(held):
            return await self.zombie(held)
        roll = self.rng.random()
        if roll < FATAL_RATE:
            await self.finish(held, "fail", fatal=True)
        elif roll < FATAL_RATE + FAIL_RATE:
            await self.finish(held, "fail", fatal=False)
        else:
            await self.finish(held, "complete")

    async def finish(self, held: Held, how: str, *, fatal: bool = False) -> None:
        """Complete or fail, trying again while the store does not answer (and the lease may
        still be live). A call the store did not answer may have been done: ``unsure``."""
        unsure = False
        while True:
            sent_stale = self.stale(held)
            try:
                if how == "complete":
                    await self.store.complete(held.task, held.token, {"by": self.name})
                    say(
                        "done",
                        task=held.task,
                        token=held.token,
                        agent=self.name,
                        unsure=unsure,
                        stale=sent_stale,
                    )
                else:
                    reason = "chaos: fatal" if fatal else "chaos: flaky"
                    await self.store.fail(held.task, held.token, reason, fatal=fatal)
                    say("failed", task=held.task, token=held.token, fatal=fatal, stale=sent_stale)
                return
            except (LeaseLost, NotFound) as exc:
                say("lost", at=how, unsure=unsure, gone=isinstance(exc, NotFound))
                return
            except StoreUnavailable:
                unsure = True
                say("unavailable", at=how)
                await asyncio.sleep(RETRY_S)
                if self.stale(held):  # the outage outlasted the lease: back as a zombie
                    return await self.zombie(held)

    async def zombie(self, held: Held) -> None:
        """Back after the lease surely ran out: complete with the old token, as a frozen agent
        that wakes up would. The store must refuse ("lease lost")."""
        gap_s = round(time.monotonic() - held.confirmed, 3)
        end = time.monotonic() + ZOMBIE_PATIENCE_S
        while time.monotonic() < end:
            try:
                await self.store.complete(held.task, held.token, {"by": self.name, "zombie": True})
                ok = True
            except (LeaseLost, NotFound):
                ok = False
            except StoreUnavailable:
                await asyncio.sleep(RETRY_S)
                continue
            # Read after the call: the SIGCONT handler runs a loop turn after the wake-up.
            frozen = self.resumes.count != held.resumes
            say("zombie", task=held.task, token=held.token, ok=ok, frozen=frozen, gap_s=gap_s)
            return


async def answering(store: Store, within_s: float = 60.0) -> None:
    """Once the store answers: a process started during an outage waits it out."""
    end = time.monotonic() + within_s
    while True:
        try:
            await store.now_ms()
            return
        except StoreUnavailable:
            if time.monotonic() > end:
                raise
            await asyncio.sleep(RETRY_S)


async def main(argv: list[str]) -> int:
    url, namespace, names, seed, ttl = argv[0], argv[1], argv[2].split(","), int(argv[3]), float(argv[4])
    store = Store.from_url(url, namespace)
    resumes = Resumes()
    loop = asyncio.get_running_loop()
    try:
        await answering(store)
        print("ready", flush=True)
        stop = asyncio.Event()
        workers = [asyncio.create_task(Worker(store, n, seed, ttl, resumes).run(stop)) for n in names]
        await loop.run_in_executor(None, sys.stdin.read)  # until the suite closes it
        stop.set()
        await asyncio.wait(workers, timeout=CLAIM_WAIT_S + 5)
        for w in workers:
            w.cancel()
    except ClaimroomError as exc:
        print(f"chaos agent: {exc}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
