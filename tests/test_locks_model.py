"""Both backends against one small reference model of path locks.

Hypothesis drives random sequences of lock, brief lock (a hold that expires at once),
unlock, claim, and the ways a claim ends (complete, release, fatal failure, an operator's
kill, a lease that runs out and is reaped), for two agents over a small tree of paths
with parents and children. Each step runs on Redis and on the file store alike; every
answer (which task a claim gets, Conflict naming the path and holder, WrongState, what an
unlock released) and, after every step, the whole lock list must be what the model says.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from waiting import clock_past

from claimroom.core import constants
from claimroom.core.errors import Conflict, WrongState
from claimroom.core.store import Store

AGENTS = ("ada", "bob")
PATHS = ("src", "src/a.py", "src/lib", "src/lib/b.py", "srcs", "docs")
TASKS = tuple(f"t{i}" for i in range(1, 7))
MAX_CLAIMS = 2
paths = st.lists(st.sampled_from(PATHS), min_size=1, max_size=2)

Hold = tuple[str, str, str]  # path, agent, task ('' untied)


def overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


@dataclass
class Model:
    """What the stores should hold: live holds, who claims what, the queue, the breakers."""

    holds: dict[Hold, bool] = field(default_factory=dict)  # -> shared
    claimed: dict[str, str] = field(default_factory=dict)  # task -> agent
    queued: list[str] = field(default_factory=lambda: list(TASKS))
    expiries: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # consecutive, per agent
    breaker_open: set[str] = field(default_factory=set)

    def clash(self, agent: str, path: str, shared: bool) -> str | None:
        """The refusal a hold on ``path`` meets: the path itself, then its ancestors
        (shortest first), then its descendants in order; the first other agent there."""
        held = {p for p, _, _ in self.holds}
        ancestors = [path[:i] for i in range(1, len(path)) if path[i] == "/"]
        below = sorted(p for p in held if p.startswith(path + "/"))
        for c in [path, *ancestors, *below]:
            others = sorted(
                a for (p, a, _), sh in self.holds.items() if p == c and a != agent and not (shared and sh)
            )
            if others:
                return f"{c} is locked by {others[0]}"
        return None

    def lock(self, agent: str, wanted: list[str], shared: bool, task: str) -> str | None:
        """The expected refusal, or None after taking the holds."""
        if task and self.claimed.get(task) != agent:
            return f"agent does not hold task {task}"
        for path in sorted(set(wanted)):
            why = self.clash(agent, path, shared)
            if why:
                return why
        for path in set(wanted):
            self.holds[(path, agent, task)] = shared
        return None

    def end(self, task: str) -> None:
        del self.claimed[task]
        for hold in [h for h in self.holds if h[2] == task]:
            del self.holds[hold]

    def failed(self, agent: str) -> None:
        self.failures[agent] = self.failures.get(agent, 0) + 1
        if self.failures[agent] >= constants.breaker_threshold:
            self.breaker_open.add(agent)  # its cooldown outlasts any example

    def requeue(self, task: str) -> None:
        self.queued = sorted([*self.queued, task], key=lambda t: int(t[1:]))

    def locks(self) -> list[tuple[str, bool, list[tuple[str, str, bool]]]]:
        out = []
        for path in sorted({p for p, _, _ in self.holds}):
            holds = sorted((a, t, sh) for (p, a, t), sh in self.holds.items() if p == path)
            out.append((path, all(sh for _, _, sh in holds), holds))
        return out


class LockMachine(RuleBasedStateMachine):
    urls: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        namespace = "m" + uuid.uuid4().hex[:12]
        self.stores = [Store.from_url(url, namespace) for url in self.urls]
        self.tokens: list[dict[str, int]] = [{} for _ in self.stores]
        self.model = Model()
        for s in self.stores:
            for agent in AGENTS:
                self.run(s.register(agent, max_claims=MAX_CLAIMS))
            for _ in TASKS:
                self.run(s.add("work"))

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def outcome(self, coro: Any) -> Any:
        """What a store answered: its value, or the message of a refusal the model knows."""
        try:
            return ("ok", self.run(coro))
        except (Conflict, WrongState) as exc:
            return ("refused", str(exc))

    def teardown(self) -> None:
        for s in self.stores:
            self.run(s.close())
        self.loop.close()

    # --- claims ----------------------------------------------------------------------------

    @initialize()
    def start_with_a_claim_each(self) -> None:
        for agent in AGENTS:
            self.claim(agent)

    @rule(agent=st.sampled_from(AGENTS))
    def claim(self, agent: str) -> None:
        m = self.model
        mine = [t for t, a in m.claimed.items() if a == agent]
        expected = None
        if agent not in m.breaker_open and len(mine) < MAX_CLAIMS and m.queued:
            expected = m.queued.pop(0)
            m.claimed[expected] = agent
        for s, tokens in zip(self.stores, self.tokens, strict=True):
            c = self.run(s.claim(agent, ttl_s=600))
            assert (c.task.id if c else None) == expected, s.url
            if c:
                tokens[c.task.id] = c.token

    @precondition(lambda self: self.model.claimed)
    @rule(pick=st.integers(0, 10), how=st.sampled_from(["complete", "release", "fail", "kill", "expire"]))
    def end_claim(self, pick: int, how: str) -> None:
        m = self.model
        task = sorted(m.claimed)[pick % len(m.claimed)]
        agent = m.claimed[task]
        for s, tokens in zip(self.stores, self.tokens, strict=True):
            token = tokens[task]
            if how == "complete":
                self.run(s.complete(task, token))
            elif how == "release":
                self.run(s.release(task, token))
            elif how == "fail":
                self.run(s.fail(task, token, "broken", fatal=True))
            elif how == "kill":
                self.run(s.act("kill", task, "claimed", token, "lead"))
            else:
                self.run(clock_past(s, self.run(s.heartbeat(task, token, ttl_s=0.001))))
                report = self.run(s.reap())
                assert task in report.requeued + report.dead, s.url
        m.end(task)
        if how == "complete":
            m.failures[agent] = 0
        elif how in ("release", "kill"):
            m.requeue(task)
        elif how == "fail":
            m.failed(agent)
        else:
            m.failed(agent)
            m.expiries[task] = m.expiries.get(task, 0) + 1
            if m.expiries[task] < constants.max_lease_expiries:
                m.requeue(task)

    # --- locks -----------------------------------------------------------------------------

    @rule(agent=st.sampled_from(AGENTS), wanted=paths, shared=st.booleans(), pick=st.integers(-2, 8))
    def lock(self, agent: str, wanted: list[str], shared: bool, pick: int) -> None:
        """Untied (pick < 0), for one of the agent's claims (0-5, when it has one), or for
        any task (mostly one the agent does not hold: refused)."""
        mine = sorted(t for t, a in self.model.claimed.items() if a == agent)
        task = "" if pick < 0 else mine[pick % len(mine)] if mine and pick < 6 else TASKS[pick % len(TASKS)]
        why = self.model.lock(agent, wanted, shared, task)
        for s in self.stores:
            got = self.outcome(s.lock(wanted, agent, shared=shared, task=task))
            assert got[0] == ("refused" if why else "ok") and (not why or got[1] == why), (s.url, got, why)

    @rule(agent=st.sampled_from(AGENTS), path=st.sampled_from(PATHS), shared=st.booleans())
    def lock_briefly(self, agent: str, path: str, shared: bool) -> None:
        """An untied hold that expires at once: it refuses nothing after this step and
        replaces the agent's untied hold on that path."""
        why = self.model.lock(agent, [path], shared, "")
        if why is None:
            del self.model.holds[(path, agent, "")]
        for s in self.stores:
            got = self.outcome(s.lock([path], agent, shared=shared, ttl_s=0.001))
            assert got[0] == ("refused" if why else "ok") and (not why or got[1] == why), (s.url, got, why)
            if got[0] == "ok":
                self.run(clock_past(s, got[1]))  # expired on this store's clock

    @rule(agent=st.sampled_from(AGENTS), wanted=paths, which=st.sampled_from((None, "", *TASKS)))
    def unlock(self, agent: str, wanted: list[str], which: str | None) -> None:
        m = self.model
        gone = [h for h in m.holds if h[0] in wanted and h[1] == agent and which in (None, h[2])]
        for hold in gone:
            del m.holds[hold]
        expected = sorted({h[0] for h in gone})
        for s in self.stores:
            assert self.run(s.unlock(wanted, agent, task=which)) == expected, s.url

    # --- after every step --------------------------------------------------------------------

    @invariant()
    def locks_are_the_models(self) -> None:
        expected = self.model.locks()
        for s in self.stores:
            locks = self.run(s.locks())
            got = [(lk.path, lk.shared, [(h.agent, h.task, h.shared) for h in lk.holders]) for lk in locks]
            assert got == expected, s.url
            # A task-bound hold expires exactly when its claim does.
            for lk in locks:
                for h in lk.holders:
                    if h.task:
                        assert h.expires_ms == self.run(s.get(h.task)).deadline_ms, s.url


def test_both_backends_agree_with_the_lock_model(redis_url: str, tmp_path: Path) -> None:
    board = tmp_path / "board"
    board.mkdir()

    class Machine(LockMachine):
        urls = (redis_url, board.as_uri())

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=60,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
