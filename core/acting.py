"""Who may do what: the one place that decides, for an identity acting through claimroom.

The MCP server, the Claude Code hooks and the CLI under ``CLAIMROOM_TOKEN`` act through an
``Acting``; direct store access (the CLI with a store URL and no token) is for trusted
processes on a private store (design rule 11). Every method refuses with ``Forbidden``
before anything changes, and the refusal is written to the audit trail as a "refused"
event naming who tried what (``Store.audit``).

Rights (``identity.Role``): a worker claims, heartbeats, completes, fails and releases its
own claims, takes and drops its own locks, registers itself and reads the board; a planner
also adds tasks; an operator also runs the operator actions (act, extend, pause,
reset_breaker) on anyone's tasks. No role acts on another agent's claim or unlocks another
agent's lock: that is what the operator actions are for, and they name the operator in the
audit trail. Ownership is checked by the store inside the change's own atomic step (the
``agent`` argument of heartbeat, complete, fail and release; ``own`` of unlock), so no
claim can change hands between the check and the change.

Audit: each change made here is audited by the store with the caller's name: claimed,
completed, failed, released, locked, unlocked, registered (with the session) under the
agent; added under the agent that added it; operator actions under the operator. Heartbeats
are not audited (only a change of stage is), as everywhere: they are too frequent to be
worth a line each, and change no state but a deadline.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from . import constants, validate
from .errors import BadInput, Forbidden
from .identity import Identity, Role
from .models import Agent, Claim, Event, Lock, Retention, State, Task
from .store import Miss, Plan, Store, TaskSpec


class Acting:
    """``store`` as seen by ``who``: each call allowed, or refused and audited."""

    def __init__(self, store: Store, who: Identity) -> None:
        self.store = store
        self.who = who

    # --- refusals ------------------------------------------------------------------------

    async def refused(self, call: str, message: str, *, task: str = "", **detail: str) -> Forbidden:
        """A refusal of ``call`` for a reason of the caller's own (say, a CLI's ``--agent``
        contradicting its token): audited like every other; returns it, to be raised."""
        return await self._refused(call, Forbidden(message), task=task, **detail)

    async def _refused(self, call: str, exc: Forbidden, *, task: str = "", **detail: str) -> Forbidden:
        """Write the "refused" audit event of ``exc``; returns it, to be raised."""
        data = {"call": call, **detail, "reason": str(exc)}
        if exc.holder:
            data["holder"] = exc.holder
        if self.who.via:
            data["via"] = self.who.via
        try:
            named = validate.task_id(task) if task else ""
        except BadInput:  # a malformed id is not worth refusing the audit for
            named, data["task"] = "", str(task)[:64]
        await self.store.audit("refused", agent=self.who.agent, task=named, detail=data)
        return exc

    async def need(self, role: Role, call: str, *, task: str = "", **detail: str) -> None:
        """``Forbidden`` (audited) unless ``who`` has ``role``'s rights."""
        if self.who.role.allows(role):
            return
        exc = Forbidden(f"{self.who.agent} is a {self.who.role.value}: {call} needs the {role.value} role")
        raise await self._refused(call, exc, task=task, role=self.who.role.value, needs=role.value, **detail)

    # --- an agent's own work -----------------------------------------------------------------

    async def register(
        self, capabilities: Iterable[str] = (), max_claims: int = constants.default_max_claims
    ) -> None:
        """Register (or update) this agent, with its session."""
        await self.store.register(self.who.agent, capabilities, max_claims, session=self.who.session)

    async def alive(self) -> int:
        """This agent's liveness heartbeat; returns when it was seen (store clock)."""
        return await self.store.alive(self.who.agent)

    async def claim(
        self,
        *,
        queues: Sequence[str] = (),
        ttl_s: float | None = None,
        wait_s: float = 0.0,
        miss: Miss | None = None,
    ) -> Claim | None:
        ttl = constants.default_lease_ttl_s if ttl_s is None else ttl_s
        return await self.store.claim(self.who.agent, queues=queues, ttl_s=ttl, wait_s=wait_s, miss=miss)

    async def heartbeat(
        self,
        task: str,
        token: int,
        *,
        ttl_s: float | None = None,
        progress: float | None = None,
        stage: str | None = None,
        checkpoint: str | None = None,
    ) -> int:
        try:
            return await self.store.heartbeat(
                task, token, ttl_s=ttl_s, progress=progress, stage=stage, checkpoint=checkpoint,
                agent=self.who.agent,
            )  # fmt: skip
        except Forbidden as exc:
            raise await self._refused("heartbeat", exc, task=task) from None

    async def complete(
        self, task: str, token: int, result: Any = None, *, review: str | None = None
    ) -> list[str]:
        try:
            return await self.store.complete(task, token, result, agent=self.who.agent, review=review)
        except Forbidden as exc:
            raise await self._refused("complete", exc, task=task) from None

    async def complete_and_claim(
        self,
        task: str,
        token: int,
        result: Any = None,
        *,
        queues: Sequence[str] = (),
        ttl_s: float | None = None,
        miss: Miss | None = None,
    ) -> tuple[list[str], list[Claim]]:
        """``complete``, then this agent's next claim, in one step (``Store.complete_and_claim``)."""
        ttl = constants.default_lease_ttl_s if ttl_s is None else ttl_s
        try:
            return await self.store.complete_and_claim(
                task, token, result, agent=self.who.agent, queues=queues, ttl_s=ttl, miss=miss
            )
        except Forbidden as exc:
            raise await self._refused("complete", exc, task=task) from None

    async def fail(self, task: str, token: int, reason: str, *, fatal: bool = False) -> tuple[State, int]:
        try:
            return await self.store.fail(task, token, reason, fatal=fatal, agent=self.who.agent)
        except Forbidden as exc:
            raise await self._refused("fail", exc, task=task) from None

    async def release(self, task: str, token: int) -> None:
        try:
            await self.store.release(task, token, agent=self.who.agent)
        except Forbidden as exc:
            raise await self._refused("release", exc, task=task) from None

    async def current_claims(self) -> list[Task]:
        """The tasks this agent holds a claim of now."""
        return await self.store.held(self.who.agent)

    async def lock(
        self,
        paths: Iterable[str],
        *,
        ttl_s: float | None = None,
        shared: bool = False,
        task: str = "",
        root: str | Path | None = None,
    ) -> int:
        """Locks are always taken as this agent (``Conflict`` names another holder)."""
        return await self.store.lock(paths, self.who.agent, ttl_s=ttl_s, shared=shared, task=task, root=root)

    async def unlock(
        self, paths: Iterable[str], *, task: str | None = None, root: str | Path | None = None
    ) -> list[str]:
        """Drop this agent's holds; a path only another agent holds is refused (nothing dropped)."""
        try:
            return await self.store.unlock(paths, self.who.agent, task=task, root=root, own=True)
        except Forbidden as exc:
            raise await self._refused("unlock", exc, task=task or "") from None

    # --- planning ------------------------------------------------------------------------

    async def add(self, title: str, **fields: Any) -> str:
        """Add a task (planner or operator), named as added by this agent."""
        await self.need(Role.PLANNER, "add")
        return await self.store.add(title, by=self.who.agent, **fields)

    async def add_many(self, specs: Iterable[TaskSpec]) -> list[str]:
        """Add tasks (planner or operator), named as added by this agent."""
        await self.need(Role.PLANNER, "add")
        return await self.store.add_many(specs, by=self.who.agent)

    async def plan(self, plan: Plan, *, parent: str = "", token: int = 0) -> list[str]:
        """Add a plan (planner or operator), named as added by this agent; under ``parent``
        only on this agent's own live claim (``Store.plan``)."""
        await self.need(Role.PLANNER, "plan", task=parent)
        mine = self.who.agent if parent else ""
        try:
            return await self.store.plan(plan, by=self.who.agent, parent=parent, token=token, agent=mine)
        except Forbidden as exc:
            raise await self._refused("plan", exc, task=parent) from None

    # --- operator actions (the operator is this agent) ---------------------------------------

    async def act(
        self,
        action: str,
        task: str,
        seen_state: State | str,
        seen_token: int,
        agent: str = "",
        *,
        restore: bool = False,
    ) -> State:
        """An operator action (kill, kill-dead, requeue, cancel, retry, reassign); see ``Store.act``."""
        await self.need(Role.OPERATOR, "act", task=task, action=str(action)[:32])
        return await self.store.act(
            action, task, seen_state, seen_token, self.who.agent, agent, restore=restore
        )

    async def extend(self, task: str, seen_token: int, extra_s: float) -> int:
        await self.need(Role.OPERATOR, "extend", task=task)
        return await self.store.extend(task, seen_token, extra_s, self.who.agent)

    async def pause(self, queue: str, *, resume: bool = False) -> bool:
        await self.need(Role.OPERATOR, "resume" if resume else "pause")
        return await self.store.pause(queue, self.who.agent, resume=resume)

    async def set_retention(self, queue: str | None = None, **settings: Any) -> Retention:
        """Change what retention keeps (see ``Store.set_retention``)."""
        await self.need(Role.OPERATOR, "retention")
        return await self.store.set_retention(queue, **settings)

    async def reset_breaker(self, agent: str) -> None:
        await self.need(Role.OPERATOR, "reset_breaker")
        await self.store.reset_breaker(agent, self.who.agent)

    async def review(
        self, task: str, verdict: str, note: str = "", *, token: int = 0
    ) -> tuple[State, list[str]]:
        """Accept or return a task in review (``Store.review``): an operator reviews as the
        operator; any other role as this agent, which needs the review capability and may
        not review its own delivery (the store checks both in the same atomic step)."""
        if self.who.role.allows(Role.OPERATOR):
            return await self.store.review(task, verdict, note, operator=self.who.agent, token=token)
        return await self.store.review(task, verdict, note, agent=self.who.agent, token=token)

    # --- reads (any role) --------------------------------------------------------------------

    async def get(self, task: str) -> Task:
        return await self.store.get(task)

    async def tasks(
        self, *, state: State | str | None = None, queue: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Task]:
        return await self.store.tasks(state=state, queue=queue, limit=limit, offset=offset)

    async def agents(self) -> list[Agent]:
        return await self.store.agents()

    async def locks(self) -> list[Lock]:
        return await self.store.locks()

    async def events(self, *, task: str | None = None, after: str = "-", count: int = 1000) -> list[Event]:
        return await self.store.events(task=task, after=after, count=count)
