"""Operator actions: what each applies to, what the operator saw, and running them.

A ``Target`` is captured from the snapshot on screen when the dialog opens; the Store call
then carries that state and token, so the engine refuses (``Changed``) if the task moved on
while the dialog was open. Nothing here re-reads the task before acting: that would turn the
compare-and-set into a check-then-act race.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from claimroom.core.errors import Changed, ClaimroomError
from claimroom.core.models import State, Task
from claimroom.core.operator_actions import OPERATOR_ACTIONS
from claimroom.core.store import Store

from .tables import clip

Kind = Literal["task", "queue", "agent"]


@dataclass(frozen=True)
class ActionSpec:
    """One operator action: its key, its words, and what it applies to."""

    name: str
    key: str
    label: str
    help: str
    kind: Kind
    states: frozenset[State] = frozenset()  # for task actions: where the engine allows it
    runs: tuple[str, ...] = ()  # for task actions: the engine's actions its dialog can run


def _task(name: str, key: str, label: str, help: str, *runs: str) -> ActionSpec:
    """A task action; it applies where every action its dialog offers does (the table in
    core/operator_actions.py), so a refusal is explained before the dialog opens."""
    runs = runs or (name,)
    states = frozenset.intersection(*(OPERATOR_ACTIONS[r].states for r in runs))
    return ActionSpec(name, key, label, help, "task", states, runs)


ACTIONS: dict[str, ActionSpec] = {
    a.name: a
    for a in (
        _task("reassign", "a", "Reassign", "reassign tasks to an agent (it gets them on its next claim)"),
        _task("kill", "x", "Kill claim", "end a live claim: back to its queue, or dead", "kill", "kill-dead"),
        _task("requeue", "r", "Requeue", "put tasks back in their queue"),
        _task("retry", "t", "Retry dead task", "requeue a dead task with its failure counts reset"),
        _task("extend", "e", "Extend lease", "give a live claim more time"),
        _task("cancel", "c", "Cancel task", "cancel tasks that are not finished"),
        ActionSpec("pause", "P", "Pause/resume queue", "stop (or restart) claims from a queue", "queue"),
        ActionSpec("reset-breaker", "b", "Reset breaker", "close an agent's circuit breaker", "agent"),
        ActionSpec("message", "m", "Send message", "message the selected agents, or every agent", "agent"),
    )
}

# Which panes hold the rows each kind of action works on.
KIND_PANES: dict[Kind, tuple[str, ...]] = {
    "task": ("claims", "orphans"),
    "queue": ("queues",),
    "agent": ("agents",),
}


@dataclass(frozen=True)
class Target:
    """A task as the operator saw it when the dialog opened: the compare-and-set inputs."""

    task: str
    state: State
    token: int
    agent: str
    title: str

    @classmethod
    def of(cls, t: Task) -> Target:
        return cls(t.id, t.state, t.token, t.agent, t.title)

    def describe(self) -> str:
        who = f" · {self.agent}" if self.agent else ""
        return f"{self.task}  {self.state.value} · token {self.token}{who} · {clip(self.title, 36)}"


def split_targets(spec: ActionSpec, tasks: Sequence[Task]) -> tuple[list[Target], list[Task]]:
    """The tasks ``spec`` applies to (as targets), and those it does not."""
    ok = [Target.of(t) for t in tasks if t.state in spec.states]
    return ok, [t for t in tasks if t.state not in spec.states]


def not_applicable(spec: ActionSpec, skipped: Sequence[Task]) -> str:
    """Why nothing was selected that ``spec`` applies to: the states the selection is in."""
    states = ", ".join(sorted({t.state.value for t in skipped})) or "unknown"
    return f"{spec.label} does not apply to {states} tasks"


@dataclass
class Outcome:
    """What one confirmed action did, target by target."""

    done: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = list(self.done)
        out += [f"{x} changed since you selected it; nothing done" for x in self.changed]
        out += self.failed
        return out

    @property
    def severity(self) -> Literal["information", "warning", "error"]:
        if self.failed or (self.changed and not self.done):
            return "error"
        return "warning" if self.changed else "information"


async def _one(out: Outcome, label: str, call: Awaitable[str]) -> None:
    try:
        result = await call
    except Changed:
        out.changed.append(label)
    except ClaimroomError as exc:
        out.failed.append(f"{label}: {exc}")
    except Exception as exc:  # an unexpected store reply must not take the control room down
        out.failed.append(f"{label}: {type(exc).__name__}: {exc}")
    else:
        out.done.append(f"{label}: {result}")


async def run_task_action(
    store: Store,
    action: str,
    targets: Sequence[Target],
    operator: str,
    *,
    agent: str = "",
    extra_s: float = 0,
    restore: bool = False,
) -> Outcome:
    """Apply a task action to each target with the state and token captured for it."""
    out = Outcome()
    for t in targets:
        if action == "extend":
            await _one(out, t.task, _extended(store, t, extra_s, operator))
        else:
            await _one(out, t.task, _moved(store, action, t, operator, agent, restore))
    return out


async def _moved(store: Store, action: str, t: Target, operator: str, agent: str, restore: bool) -> str:
    new = await store.act(action, t.task, t.state, t.token, operator, agent, restore=restore)
    move = OPERATOR_ACTIONS[action]  # act refused any other
    verb = f"{move.event} to {agent}" if move.assigns else move.event
    also = ", its dependents restored" if restore else ""
    return f"{verb}, now {new.value}{also}"


async def cancelled_dependents(store: Store, targets: Sequence[Target]) -> int:
    """How many tasks cascades cancelled because the targets ended: what a retry with
    restore would bring back (their own dependents follow them). 0 when the store cannot
    say: the dialog then offers the plain retry only."""
    total = 0
    for t in targets:
        try:
            total += await store.dependents_cancelled(t.task)
        except ClaimroomError:
            return 0
    return total


async def _extended(store: Store, t: Target, extra_s: float, operator: str) -> str:
    await store.extend(t.task, t.token, extra_s, operator)
    return f"lease extended by {extra_s:g} s"


async def run_pause(store: Store, queues: Sequence[str], operator: str, *, resume: bool) -> Outcome:
    out = Outcome()
    for q in queues:
        await _one(out, f"queue {q}", _paused(store, q, operator, resume))
    return out


async def _paused(store: Store, queue: str, operator: str, resume: bool) -> str:
    changed = await store.pause(queue, operator, resume=resume)
    word = "resumed" if resume else "paused"
    return word if changed else f"already {word}"


async def run_reset(store: Store, agents: Sequence[str], operator: str) -> Outcome:
    out = Outcome()
    for a in agents:
        await _one(out, f"agent {a}", _reset(store, a, operator))
    return out


async def _reset(store: Store, agent: str, operator: str) -> str:
    await store.reset_breaker(agent, operator)
    return "breaker reset"
