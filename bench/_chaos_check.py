"""The chaos suite's invariants (a module, not a benchmark: ./dev bench skips it).

After a run, the whole board and the whole audit trail are read back through the ``Store``
API and held to what must hold whatever was injected:

- every task ended ``done``, or ``dead``/``cancelled`` with its reason;
- none done twice: at most one completion per task in the trail, and at most one that
  agents were told was accepted; and every completion an agent was told was accepted is in
  the store (a write the store acknowledged and then lost means the work is done again);
- no completion accepted from a stale token: each completion in the trail names the
  task's current claim, and no agent that could prove its lease gone had one accepted;
- every state change is in the audit trail, in order: each task's events replay from
  ``added`` through allowed moves to the state the task is in, on a non-decreasing store
  clock, with the tokens rising, and the task's counters (attempts, failures, expiries,
  token) agree with the events;
- no claim older than TTL + 1 s left on the board.

A failed invariant names its tasks; ``trail_text`` prints a task's audit trail.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from claimroom.core.models import Event, State, Task
from claimroom.core.store import Store

PAGE = 10_000
TASK_ID = re.compile(r"\bt\d+\b")  # reasons name tasks ("dependency t12 dead"): counted as one
FINAL = {State.DONE.value, State.DEAD.value, State.CANCELLED.value}
UNFINISHED = {s.value for s in State} - FINAL
# Operator moves (core/operator_actions.py): each event says the state it moved from and to.
OPERATOR_EVENTS = {"killed", "requeued", "cancelled", "retried", "reassigned"}
# Events on a task that change nothing of its state.
NO_CHANGE = {"stage", "extended", "cascade", "restore", "locked", "unlocked", "lock-expired", "bid"}


@dataclass
class Acks:
    """What the agents were told (the suite's ledger of their reports)."""

    done: list[tuple[str, int, str]] = field(default_factory=list)  # accepted: task, token, agent
    claims: list[tuple[str, int, str]] = field(default_factory=list)  # handed out: task, token, agent
    zombie_accepted: list[tuple[str, int]] = field(default_factory=list)  # stale, yet accepted
    stale_accepted: list[tuple[str, int]] = field(default_factory=list)  # sent past the lease, accepted


@dataclass
class Invariant:
    name: str
    ok: bool
    detail: str
    tasks: list[str] = field(default_factory=list)  # the tasks that break it (first ones)


async def read_tasks(store: Store) -> list[Task]:
    out: list[Task] = []
    while page := await store.tasks(limit=PAGE, offset=len(out)):
        out += page
    return out


async def read_trail(store: Store) -> list[Event]:
    out: list[Event] = []
    after = "-"
    while page := await store.events(after=after, count=PAGE):
        out += page
        after = page[-1].id
    return out


def _stream_id(eid: str) -> tuple[int, int]:
    ms, _, seq = eid.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class Replay:
    """One task's history as its events tell it."""

    state: str | None = None
    token: int = 0  # the current (latest) claim's token
    claims: int = 0
    holders: list[tuple[int, str]] = field(default_factory=list)  # every claim: token, agent
    failures: int = 0
    expiries: int = 0
    # Completions, as (token, agent holding the claim): from the current claim, or not.
    completions: list[tuple[int, str]] = field(default_factory=list)
    stale_completions: list[tuple[int, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    last_at: int = 0

    @property
    def all_done(self) -> list[tuple[int, str]]:
        """Every completion the trail shows, from a current token or not."""
        return self.completions + self.stale_completions

    @property
    def done_count(self) -> int:
        return len(self.all_done)

    def bad(self, event: Event, why: str) -> None:
        self.problems.append(f"{event.id} {event.type}: {why}")

    def move(self, event: Event, frm: set[str] | None, to: Any) -> None:
        if frm is not None and self.state not in frm:
            self.bad(event, f"from {self.state}, expected one of {sorted(frm)}")
        if not isinstance(to, str) or to not in FINAL | UNFINISHED:
            self.bad(event, f"to an unknown state {to!r}")
        self.state = str(to)

    def lease_event(self, event: Event) -> None:
        """An event that ends the current claim: it must name that claim's token."""
        if self.state != State.CLAIMED.value:
            self.bad(event, f"on a task in state {self.state}, not claimed")
        if event.token != self.token:
            self.bad(event, f"token {event.token}, the current claim's is {self.token}")

    def take(self, event: Event) -> None:
        if event.at_ms < self.last_at:
            self.bad(event, f"store time {event.at_ms} before the previous event's {self.last_at}")
        self.last_at = max(self.last_at, event.at_ms)
        kind, data = event.type, event.data
        if kind == "added":
            if self.state is not None:
                self.bad(event, "added twice")
            self.move(event, None, data.get("state"))
        elif self.state is None:
            self.bad(event, "before the task's 'added' event")
        elif kind == "ready":
            self.move(event, {State.BLOCKED.value, State.RETRYING.value}, State.QUEUED.value)
        elif kind == "claimed":
            if event.token <= self.token:
                self.bad(event, f"token {event.token} not above the earlier {self.token}")
            self.move(event, {State.QUEUED.value}, State.CLAIMED.value)
            self.token, self.claims = event.token, self.claims + 1
            self.holders.append((event.token, event.agent))
        elif kind == "completed":
            stale = self.state != State.CLAIMED.value or event.token != self.token
            (self.stale_completions if stale else self.completions).append((event.token, event.agent))
            self.lease_event(event)
            self.state = State.DONE.value
        elif kind == "failed":
            self.lease_event(event)
            self.failures += 1
            self.move(event, None, data.get("next"))
        elif kind == "expired":
            self.lease_event(event)
            self.expiries += 1
            self.move(event, None, data.get("outcome"))
        elif kind == "released":
            self.lease_event(event)
            self.state = State.QUEUED.value
        elif kind in OPERATOR_EVENTS and "from" in data:
            self.move(event, {str(data["from"])}, data.get("to"))
            if kind == "retried":
                self.failures = self.expiries = 0
        elif kind == "cancelled":  # a cascade: its dependency ended
            self.move(event, UNFINISHED, State.CANCELLED.value)
        elif kind == "delivered":
            self.lease_event(event)
            self.state = State.REVIEW.value
        elif kind == "accepted":
            self.move(event, {State.REVIEW.value}, State.DONE.value)
        elif kind == "returned":
            self.move(event, {State.REVIEW.value}, State.QUEUED.value)
        elif kind not in NO_CHANGE:
            self.bad(event, "an event the replay does not know")

    def against(self, task: Task) -> None:
        """The task as stored must be where its events left it."""
        if self.state != task.state.value:
            self.problems.append(f"the trail ends in {self.state}, the task is {task.state.value}")
        counters = {
            "attempts": (task.attempts, self.claims),
            "failures": (task.failures, self.failures),
            "expiries": (task.expiries, self.expiries),
        }
        if task.token:
            counters["token"] = (task.token, self.token)
        for name, (stored, seen) in counters.items():
            if stored != seen:
                self.problems.append(f"{name} {stored} on the task, {seen} by its events")


def replay(events: Iterable[Event]) -> dict[str, Replay]:
    out: dict[str, Replay] = {}
    for e in events:
        if e.task:
            out.setdefault(e.task, Replay()).take(e)
    return out


def _of(replays: dict[str, Replay], task: str) -> Replay:
    return replays.get(task) or Replay()


def check(
    tasks: list[Task],
    events: list[Event],
    acks: Acks,
    now_ms: int,
    slack_ms: int = 1000,
    *,
    writes_lost: bool = False,
) -> list[Invariant]:
    """Every invariant, held or not. ``writes_lost``: the run crashed the store losing its
    last writes on purpose (``--lose-writes``), so completions acknowledged to agents may be
    gone from it, and their tasks done again: counted, but no longer a failure."""
    replays = replay(events)
    return [
        _all_finished(tasks),
        *_done_once(replays, acks, writes_lost),
        _fenced(replays, acks),
        _in_the_trail(tasks, events, replays),
        _no_old_claim(tasks, now_ms, slack_ms),
    ]


def _all_finished(tasks: list[Task]) -> Invariant:
    states = Counter(t.state.value for t in tasks)
    unfinished = [t.id for t in tasks if t.state.value not in FINAL]
    ended = [t for t in tasks if t.state.value in ("dead", "cancelled")]
    no_reason = [t.id for t in ended if not t.reason.strip()]
    reasons = Counter(f"{t.state.value}: {TASK_ID.sub('t*', t.reason)}" for t in ended if t.reason)
    shown = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    if reasons:
        shown += " (" + "; ".join(f"{r} x{n}" for r, n in sorted(reasons.items())) + ")"
    return Invariant(
        "every task done, or dead/cancelled with its reason",
        not unfinished and not no_reason and bool(tasks),
        f"{len(tasks)} tasks: {shown}"
        + (f"; unfinished {len(unfinished)}" if unfinished else "")
        + (f"; no reason {len(no_reason)}" if no_reason else ""),
        unfinished + no_reason,
    )


def _done_once(replays: dict[str, Replay], acks: Acks, writes_lost: bool) -> list[Invariant]:
    acked: dict[str, set[int]] = defaultdict(set)
    for tid, token, _agent in acks.done:
        acked[tid].add(token)
    in_trail = sorted(tid for tid, r in replays.items() if r.done_count > 1)
    told = sorted(tid for tid, tokens in acked.items() if len(tokens) > 1)
    # A completion an agent was told of that the trail does not have (by token): lost.
    lost = sorted({tid for tid, tok, _ in acks.done if tok not in {c[0] for c in _of(replays, tid).all_done}})
    expected = (
        " (writes the store acknowledged may be lost in this run: counted, not failed)" if writes_lost else ""
    )
    return [
        Invariant(
            "none done twice",
            not in_trail and (writes_lost or not told),
            f"{sum(r.done_count for r in replays.values())} completions in the trail, "
            f"{len(acks.done)} acknowledged to agents; tasks done twice: {len(in_trail)} in the trail, "
            f"{len(told)} by what agents were told{expected if told else ''}",
            in_trail + ([] if writes_lost else told),
        ),
        Invariant(
            "every completion acknowledged to an agent is in the store",
            writes_lost or not lost,
            f"{len(lost)} acknowledged completions missing from the trail{expected if lost else ''}",
            [] if writes_lost else lost,
        ),
    ]


def _fenced(replays: dict[str, Replay], acks: Acks) -> Invariant:
    stale_trail = sorted(tid for tid, r in replays.items() if r.stale_completions)
    # An agent told its completion was accepted while the trail gives that token's claim,
    # and so that completion, to another agent: its token was handed out twice.
    reissued = sorted(
        {
            tid
            for tid, tok, agent in acks.done
            if any(t == tok and a != agent for t, a in _of(replays, tid).all_done)
        }
    )
    stale_agents = sorted({tid for tid, _ in acks.zombie_accepted + acks.stale_accepted})
    # A token of a task handed to two agents (claims they were told of, or the trail's):
    # after a store lost writes, a claim the store forgot must not come back with its token.
    holders: dict[tuple[str, int], set[str]] = defaultdict(set)
    for tid, tok, agent in acks.claims:
        holders[tid, tok].add(agent)
    for tid, r in replays.items():
        for tok, agent in r.holders:
            holders[tid, tok].add(agent)
    twice = sorted({tid for (tid, _), agents in holders.items() if len(agents) > 1})
    return Invariant(
        "no completion accepted from a stale token",
        not stale_trail and not stale_agents and not reissued and not twice,
        f"{len(stale_trail)} in the trail, {len(acks.zombie_accepted)} zombie and "
        f"{len(acks.stale_accepted)} other stale completions accepted, "
        f"{len(reissued)} accepted on a token another claim had; "
        f"{len(twice)} tasks whose token went to two agents",
        sorted(set(stale_trail + stale_agents + reissued + twice)),
    )


def _in_the_trail(tasks: list[Task], events: list[Event], replays: dict[str, Replay]) -> Invariant:
    ids = [_stream_id(e.id) for e in events]
    unordered = sum(1 for a, b in itertools.pairwise(ids) if b <= a)
    for task in tasks:
        replays.setdefault(task.id, Replay()).against(task)  # a task without events disagrees too
    known = {t.id for t in tasks}
    broken = sorted(tid for tid, r in replays.items() if r.problems)
    strays = sum(1 for tid in replays if tid not in known)
    return Invariant(
        "every state change in the audit trail, in order",
        not broken and not unordered,
        f"{len(events)} events replayed for {len(replays)} tasks; {len(broken)} tasks disagree"
        + (f"; {unordered} events out of order" if unordered else "")
        + (f" ({strays} with events but no task)" if strays else ""),
        broken,
    )


def _no_old_claim(tasks: list[Task], now_ms: int, slack_ms: int) -> Invariant:
    old = sorted(t.id for t in tasks if t.state == State.CLAIMED and now_ms - t.deadline_ms > slack_ms)
    live = sum(1 for t in tasks if t.state == State.CLAIMED)
    return Invariant(
        "no claim older than TTL + 1 s left",
        not old,
        f"{live} claims left, {len(old)} past their deadline by more than {slack_ms / 1000:g} s",
        old,
    )


def trail_text(events: list[Event], task: Task | None, task_id: str, acks: Acks | None = None) -> str:
    """A task's audit trail, one event a line, where the replay found it wrong, and what
    agents were told about it (claims and accepted completions, which a store that lost
    writes may have forgotten)."""
    mine = [e for e in events if e.task == task_id]
    head = (
        f"task {task_id}: not on the board"
        if task is None
        else f"task {task_id}: {task.state.value}"
        + (f" ({task.reason})" if task.reason else "")
        + f", token {task.token}, attempts {task.attempts}, failures {task.failures}"
        + f", expiries {task.expiries}"
    )
    lines = [head]
    for e in mine:
        who = f" agent={e.agent}" if e.agent else ""
        op = f" operator={e.operator}" if e.operator else ""
        tok = f" token={e.token}" if e.token else ""
        data = {k: v for k, v in e.data.items() if v not in ("", [], {}, None)}
        lines.append(f"    {e.id} {e.at_ms} {e.type}{who}{op}{tok} {data if data else ''}".rstrip())
    r = _of(replay(mine), task_id)
    if task is not None:
        r.against(task)
    lines += [f"    !! {p}" for p in r.problems]
    if acks is not None:
        told = [f"claimed token={tok} agent={a}" for t, tok, a in acks.claims if t == task_id]
        told += [f"completion accepted token={tok} agent={a}" for t, tok, a in acks.done if t == task_id]
        told += [f"zombie completion ACCEPTED token={tok}" for t, tok in acks.zombie_accepted if t == task_id]
        lines += ["  agents were told:", *(f"    {line}" for line in told)] if told else []
    return "\n".join(lines)
