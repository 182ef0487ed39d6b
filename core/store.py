"""The async API every part of claimroom uses: one contract, a backend per URL scheme.

``Store.from_url`` picks the backend and imports it only when used. The public methods
validate their input (through ``validate``) and then call the backend's ``_op``; so both
backends refuse bad input identically and a backend only ever sees clean values.

The contract is ``Store``, in three parts: here what agents use (tasks, claims, agents,
locks, the audit trail, recovery); in ``store_admin.py`` what manages the board (retention,
tokens, operator actions, servers, views, export and import), which ``Store`` inherits; and
in ``store_ops.py`` the abstract ``_op``s each backend provides.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import random
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import bidding, constants, validate
from . import review as review_checks
from .backends import BACKENDS
from .errors import BadInput, ClaimroomError, ErrorCode
from .messages import Messaging
from .models import Agent, Claim, ClaimMiss, Completion, Event, Lock, ReapReport, State, Task
from .reaper import Reaper, ReaperId, ReaperStatus
from .store_admin import StoreAdmin


def _rebased(spec: dict[str, Any], start: int, ids: list[str]) -> dict[str, Any]:
    """A spec of a chunk starting at ``start`` of its batch: ``$k`` references to tasks of
    earlier chunks become their ids, the others count from the chunk's start."""

    def ref(value: str) -> str:
        if not value.startswith("$"):
            return value
        k = int(value[1:])
        return ids[k] if k < start else f"${k - start}"

    after = list(dict.fromkeys(ref(a) for a in spec["after"]))  # "$k" may now name a listed id
    return {**spec, "after": after, "parent": ref(spec["parent"])}


# What a plan's parent passes on to its subtasks (their own values win): not title, after
# (added to theirs), parent (the plan's) nor payload (a parent's data is its own).
_NOT_INHERITED = ("title", "after", "parent", "payload")


def _inherited(parent: TaskSpec) -> dict[str, Any]:
    """The parent's fields its subtasks take where they leave theirs at the default."""
    return {
        f.name: getattr(parent, f.name)
        for f in dataclasses.fields(parent)
        if f.name not in _NOT_INHERITED and not _unset(parent, f.name)
    }


def _unset(spec: TaskSpec, name: str) -> bool:
    """Whether ``spec`` leaves field ``name`` at its default."""
    f = next(f for f in dataclasses.fields(spec) if f.name == name)
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return bool(getattr(spec, name) == default)


def _acting_as(agent: str) -> str:
    """The agent a caller acts as (its claims only), or "" for direct store access."""
    return validate.agent(agent) if agent else ""


def _ref_or_id(value: str) -> str:
    """A task id, or ``$k``: the k-th task of the same batch."""
    if value.startswith("$") and value[1:].isdigit():
        return value
    return validate.task_id(value)


def affinity_steal_after_ms(value: float | None) -> int:
    """A task's steal delay in the stored form: -1 the default, else ms (0: no preference)."""
    if value is None:
        return -1
    return round(validate.seconds("steal after", value, 0, constants.max_steal_after_s) * 1000)


@dataclass(frozen=True)
class TaskSpec:
    """What ``add`` takes for one task. ``after``/``parent`` may name an earlier spec of
    the same batch as ``$k`` (0-based)."""

    title: str
    queue: str = "default"
    priority: int = 0
    requires: Sequence[str] = ()
    after: Sequence[str] = ()
    parent: str = ""
    affinity: str = ""
    payload: Any = None
    max_attempts: int = constants.default_max_attempts
    bid_window_s: float = 0.0  # > 0: a bidding window of this long opens when it is ready
    # Affinity: how long the key's owner has the task to itself (None: the default delay;
    # 0: no owner preference at all).
    steal_after_s: float | None = None
    paths: Sequence[str] = ()  # project paths the task will touch (informational)

    def checked(self) -> dict[str, Any]:
        """The spec in the stored form, or ``BadInput``."""
        return {
            "title": validate.title(self.title),
            "queue": validate.queue(self.queue),
            "priority": validate.priority(self.priority),
            "requires": validate.capabilities(self.requires),
            # Unique, in order: a dependency named twice must not be waited for twice.
            "after": list(dict.fromkeys(_ref_or_id(a) for a in self.after)),
            "parent": _ref_or_id(self.parent) if self.parent else "",
            "affinity": validate.text("affinity", self.affinity, 256),
            "payload": "" if self.payload is None else validate.json_value("payload", self.payload),
            "max_attempts": validate.positive_int("max attempts", self.max_attempts, 1000),
            "bid_window_ms": bidding.window_ms(self.bid_window_s) if self.bid_window_s else 0,
            "steal_after_ms": affinity_steal_after_ms(self.steal_after_s),
            "paths": validate.paths(self.paths),
        }


@dataclass(frozen=True)
class Plan:
    """What ``Store.plan`` adds (``core/plan.py`` reads one from a plan file): a parent,
    or None under a planner's claim, and its subtasks, whose ``after`` may name an
    earlier subtask as ``$k`` (0-based among the subtasks) beside existing task ids."""

    subtasks: Sequence[TaskSpec]
    parent: TaskSpec | None = None


def _claim_request(agent: str, queues: Sequence[str], ttl_s: float) -> tuple[str, list[str], int]:
    """A claim's agent, queues and lease (ms), checked: what claim_many and
    complete_and_claim ask of the store alike."""
    name = validate.agent(agent)
    qs = [validate.queue(q) for q in queues]
    if len(qs) > constants.max_claim_queues:
        raise BadInput(f"at most {constants.max_claim_queues} queues in one claim")
    return name, qs, validate.ttl_ms(ttl_s)


def _result_text(result: Any) -> str:
    """A completion's result as stored: its JSON text, "" for none."""
    return "" if result is None else validate.json_value("result", result)


@dataclass
class Miss:
    """Set by ``claim`` when nothing was claimed: why, for the CLI's message."""

    last: ClaimMiss = field(default_factory=lambda: ClaimMiss("empty"))


class Store(StoreAdmin, Messaging):
    """A claimroom board (one namespace) on some backend."""

    @staticmethod
    def from_url(url: str, namespace: str = "default") -> Store:
        """The store for a URL: ``redis://``, ``rediss://``, ``unix://`` or ``file:///dir``."""
        validate.namespace(namespace)
        validate.store_url(url)
        module, _, name = BACKENDS[url.split("://", 1)[0].lower()].partition(":")
        backend: Callable[[str, str], Store] = getattr(importlib.import_module(module, __package__), name)
        return backend(url, namespace)

    # --- tasks -----------------------------------------------------------------------

    async def add(self, title: str, *, by: str = "", **fields: Any) -> str:
        """Add one task; returns its id. ``by``: the agent adding it (named in the audit)."""
        return (await self.add_many([TaskSpec(title=title, **fields)], by=by))[0]

    async def add_many(self, specs: Iterable[TaskSpec], *, by: str = "") -> list[str]:
        """Add tasks; returns their ids in order. ``by``: the agent adding them, named in
        their 'added' audit events ("": not named, as direct store access).

        Up to ``add_chunk`` tasks are added atomically (all or none). A larger batch is
        checked whole first (its ``$k`` references, every task it names, the limit on
        capability sets), so a batch that would be refused writes nothing; then it is
        written ``add_chunk`` tasks per script call, so that no call holds the store for
        long. Only a store failure, or a concurrent add taking the last capability sets,
        can then stop it midway: the error says which tasks were added.
        """
        checked = [s.checked() for s in specs]
        who = validate.agent(by) if by else ""
        if not checked:
            return []
        if len(checked) > constants.max_batch_add:
            raise BadInput(f"at most {constants.max_batch_add} tasks in one add")
        if len(checked) <= constants.add_chunk:
            return await self._add(checked, who)
        await self._check_batch(checked)
        ids: list[str] = []
        for start in range(0, len(checked), constants.add_chunk):
            part = [_rebased(s, start, ids) for s in checked[start : start + constants.add_chunk]]
            try:
                ids += await self._add(part, who)
            except ClaimroomError as exc:
                if not ids:
                    raise
                added = f"the first {len(ids)} tasks of the batch were added: {ids[0]} to {ids[-1]}"
                raise type(exc)(f"{exc} ({added})") from None
        return ids

    async def _check_batch(self, checked: list[dict[str, Any]]) -> None:
        """Refuse a batch as its chunks would, before any is written."""
        for i, spec in enumerate(checked):
            for kind, refs in (("after", spec["after"]), ("parent", [spec["parent"]])):
                for ref in refs:
                    if ref.startswith("$") and int(ref[1:]) >= i:
                        raise BadInput(f"{kind} {ref} must name an earlier task of the batch")
        named = {r: None for s in checked for r in (*s["after"], s["parent"]) if r and not r.startswith("$")}
        sigs = sorted({s["requires"] for s in checked} - {""})  # the empty set is not capped
        found, known, in_use = await self._known(list(named), sigs)
        for ref in named:
            if ref not in found:
                raise ErrorCode.NOT_FOUND.exception([ref])
        total = in_use + len(set(sigs) - known)
        if total > constants.max_capsigs:
            raise ErrorCode.TOO_MANY_CAPSIGS.exception([str(total)])

    async def plan(
        self, plan: Plan, *, by: str = "", parent: str = "", token: int = 0, agent: str = ""
    ) -> list[str]:
        """Add a plan whole, atomically (one script call or transaction: at most
        ``max_plan_tasks`` tasks); returns the ids: the parent's first (``parent``'s under
        a claim), then the subtasks' in the plan's order. ``by``: as ``add_many``.

        Without ``parent``, ``plan.parent`` is added too, as no work itself: it waits
        ``blocked`` until its subtasks end, then is ``done``, or ``dead`` when one of them
        ended dead or cancelled ("subtask t5 died: <reason>"). Its ``after`` goes to each
        subtask (the parent never waits on dependencies) and its other fields are the
        subtasks' defaults where they leave them unset. With ``parent`` and ``token``
        (the live claim of a planner, ``agent``'s when given), the subtasks go under that
        claim (rule 7: its rollback cancels those nobody claimed) and ``plan.parent`` is
        ignored; completing the claim with subtasks unfinished makes the parent wait."""
        who = validate.agent(by) if by else ""
        subs = list(plan.subtasks)
        if not subs:
            raise BadInput("a plan needs at least one subtask")
        head: dict[str, Any] | None = None
        claim: list[Any] | None = None
        if parent:
            claim = [validate.task_id(parent), str(validate.token(token)), _acting_as(agent)]
            root = claim[0]
        else:
            if plan.parent is None:
                raise BadInput("a plan needs a parent: a title, or --parent under a claim")
            if token or agent:
                raise BadInput("token and agent go with a parent under a claim")
            head = plan.parent.checked()
            inherited = _inherited(plan.parent)
            subs = [
                dataclasses.replace(s, **{k: v for k, v in inherited.items() if _unset(s, k)}) for s in subs
            ]
            subs = [dataclasses.replace(s, after=[*s.after, *plan.parent.after]) for s in subs]
            root = "$0"
        if len(subs) + (head is not None) > constants.max_plan_tasks:
            raise BadInput(f"at most {constants.max_plan_tasks} tasks in one plan")
        shift = 0 if head is None else 1
        # The parent is no work: its bid window is its subtasks' (inherited above), never its
        # own (one opened on it would hand the waiting parent out when it closed).
        checked: list[dict[str, Any]] = (
            [] if head is None else [{**head, "after": [], "hold": True, "bid_window_ms": 0}]
        )
        for i, spec in enumerate(subs):
            c = spec.checked()
            after = []
            for a in c["after"]:
                if a.startswith("$"):
                    if int(a[1:]) >= i:
                        raise BadInput(f"subtask {i}: after {a} must name an earlier subtask of the plan")
                    a = f"${int(a[1:]) + shift}"
                after.append(a)
            checked.append({**c, "after": list(dict.fromkeys(after)), "parent": root, "plan": root})
        ids = await self._plan(checked, who, claim)
        return ids if claim is None else [claim[0], *ids]

    async def claim(
        self,
        agent: str,
        *,
        queues: Sequence[str] = (),
        ttl_s: float = constants.default_lease_ttl_s,
        wait_s: float = 0.0,
        miss: Miss | None = None,
    ) -> Claim | None:
        """Lease the best claimable task to ``agent``; wait up to ``wait_s`` for one."""
        claims = await self.claim_many(agent, 1, queues=queues, ttl_s=ttl_s, wait_s=wait_s, miss=miss)
        return claims[0] if claims else None

    async def claim_many(
        self,
        agent: str,
        count: int,
        *,
        queues: Sequence[str] = (),
        ttl_s: float = constants.default_lease_ttl_s,
        wait_s: float = 0.0,
        miss: Miss | None = None,
    ) -> list[Claim]:
        """Lease up to ``count`` tasks (bounded by the agent's free capacity).

        At most ``claim_batch_max`` are leased per script call (rule 10: bounded work per
        call); a larger count takes several calls, each atomic, until the count or a miss.
        ``wait_s`` waits for the first task only."""
        name, qs, ttl = _claim_request(agent, queues, ttl_s)
        n = validate.positive_int("count", count, 1000)
        wait = validate.wait_s(wait_s)
        batch = min(n, constants.claim_batch_max)
        got, why = await self._claim(name, qs, ttl, batch)
        if not got and wait > 0:
            got, why = await self._claim_waiting(name, qs, ttl, batch, wait)
        out = list(got)
        while len(got) == batch and len(out) < n:  # a full batch: there may be more
            batch = min(n - len(out), constants.claim_batch_max)
            got, why = await self._claim(name, qs, ttl, batch)
            out += got
        if miss is not None:
            miss.last = why if not out else ClaimMiss("")
        return out

    async def heartbeat(
        self,
        task: str,
        token: int,
        *,
        ttl_s: float | None = None,
        progress: float | None = None,
        stage: str | None = None,
        checkpoint: str | None = None,
        agent: str = "",
    ) -> int:
        """Extend a live lease; returns the new deadline (ms, store clock). With ``agent``,
        the claim must be that agent's (``Forbidden`` otherwise, nothing changed)."""
        updates: dict[str, str] = {}
        if progress is not None:
            updates["progress"] = repr(validate.progress(progress))
        if stage is not None:
            updates["stage"] = validate.text("stage", stage)
        if checkpoint is not None:
            updates["checkpoint"] = validate.text(
                "checkpoint", checkpoint, constants.max_checkpoint_bytes, multiline=True
            )
        ttl = None if ttl_s is None else validate.ttl_ms(ttl_s)
        return await self._heartbeat(
            validate.task_id(task), validate.token(token), ttl, updates, _acting_as(agent)
        )

    async def complete(
        self, task: str, token: int, result: Any = None, *, agent: str = "", review: str | None = None
    ) -> list[str]:
        """Finish a claimed task; returns the tasks this unblocked. ``agent``: as heartbeat.
        With ``review`` (a branch, commit or PR), the claim ends the same way but the task
        waits in review (its dependents still blocked) for ``review``'s verdict; returns []."""
        stored = _result_text(result)
        delivered = "" if review is None else review_checks.ref(review)
        return await self._complete(
            validate.task_id(task), validate.token(token), stored, _acting_as(agent), delivered
        )

    async def complete_and_claim(
        self,
        task: str,
        token: int,
        result: Any = None,
        *,
        agent: str,
        queues: Sequence[str] = (),
        ttl_s: float = constants.default_lease_ttl_s,
        count: int = 1,
        miss: Miss | None = None,
    ) -> tuple[list[str], list[Claim]]:
        """Finish ``agent``'s claimed task and lease it up to ``count`` next tasks (at most
        ``claim_batch_max``), as ``complete`` then ``claim_many`` would; on Redis in one
        script call, so a busy agent pays one round trip per task. The claim must be
        ``agent``'s own; when the completion is refused nothing is claimed. Returns the
        tasks the completion unblocked and the new claims (none when nothing is claimable:
        ``miss`` says why, as for ``claim``)."""
        stored = _result_text(result)
        name, qs, ttl = _claim_request(agent, queues, ttl_s)
        n = validate.positive_int("count", count, constants.claim_batch_max)
        unblocked, got, why = await self._complete_and_claim(
            validate.task_id(task), validate.token(token), stored, name, qs, ttl, n
        )
        if miss is not None:
            miss.last = why if not got else ClaimMiss("")
        return unblocked, got

    async def complete_many(
        self,
        done: Sequence[tuple[str, int] | tuple[str, int, Any]],
        *,
        agent: str,
        claim_next: int = 0,
        queues: Sequence[str] = (),
        ttl_s: float = constants.default_lease_ttl_s,
        miss: Miss | None = None,
    ) -> tuple[list[Completion], list[Claim]]:
        """Finish several of ``agent``'s claimed tasks, each given as (task, token) or (task,
        token, result), at most ``claim_batch_max``; then, with ``claim_next``, lease it up
        to that many next tasks, as ``claim_many`` would. On Redis in one script call: an
        agent working through a batch pays one round trip per batch. Each task stands
        alone: a refused one (lease lost, no such task, another agent's claim) is reported
        in its ``Completion.error``, changes nothing for it and stops nothing else; the
        claim happens either way. Returns one ``Completion`` per task, in order, and the
        new claims (``miss`` says why none, as for ``claim``)."""
        name, qs, ttl = _claim_request(agent, queues, ttl_s)
        if not isinstance(done, Sequence) or isinstance(done, str):
            raise BadInput("complete_many takes a list of (task, token) or (task, token, result)")
        if len(done) > constants.claim_batch_max:
            raise BadInput(f"at most {constants.claim_batch_max} tasks in one complete_many")
        items = []
        for entry in done:
            if not isinstance(entry, tuple | list) or len(entry) not in (2, 3):
                raise BadInput(
                    f"complete_many takes (task, token) or (task, token, result), not {entry!r:.40}"
                )
            result = entry[2] if len(entry) == 3 else None
            stored = _result_text(result)
            items.append((validate.task_id(entry[0]), validate.token(entry[1]), stored))
        n = validate.positive_int("claim_next", claim_next, constants.claim_batch_max, minimum=0)
        outcomes, got, why = await self._complete_many(items, name, qs, ttl, n)
        if miss is not None:
            miss.last = why if not got else ClaimMiss("")
        return outcomes, got

    async def fail(
        self, task: str, token: int, reason: str, *, fatal: bool = False, agent: str = ""
    ) -> tuple[State, int]:
        """End a claim with a failure; returns the next state and when a retry may run.
        ``agent``: as heartbeat."""
        if not isinstance(reason, str) or not reason.strip():
            raise BadInput("reason is empty")
        text = validate.text("reason", reason, multiline=True)
        return await self._fail(
            validate.task_id(task), validate.token(token), text, fatal, random.random(), _acting_as(agent)
        )

    async def release(self, task: str, token: int, *, agent: str = "") -> None:
        """Give a claimed task back to its queue without counting an attempt. ``agent``: as
        heartbeat."""
        await self._release(validate.task_id(task), validate.token(token), _acting_as(agent))

    async def review(
        self,
        task: str,
        verdict: str,
        note: str = "",
        *,
        agent: str = "",
        operator: str = "",
        token: int = 0,
    ) -> tuple[State, list[str]]:
        """Decide on a task in review: "accept" (done, as a completion: returns the tasks it
        unblocked) or "return" with a ``note`` (queued, the note in its checkpoint). The
        reviewer is ``agent`` (holding the review capability, not the one that delivered it)
        or ``operator``. ``token``: the delivery seen (0 any; another raises ``Changed``).
        Refused with ``WrongState`` (nothing changed) when the task is not in review."""
        v = review_checks.verdict(verdict)
        text = review_checks.note(note, v)
        reviewer, op = review_checks.reviewer(agent, operator)
        seen = validate.token(token, minimum=0)
        return await self._review(validate.task_id(task), v, text, reviewer, op, seen)

    async def held(self, agent: str) -> list[Task]:
        """The tasks ``agent`` holds a claim of now (at most its capacity: a bounded read)."""
        return await self._held(validate.agent(agent))

    async def get(self, task: str) -> Task:
        """One task; ``NotFound`` when there is none."""
        return await self._get(validate.task_id(task))

    async def tasks(
        self, *, state: State | str | None = None, queue: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Task]:
        """Tasks in creation order, optionally of one state and queue; paged."""
        st = None
        if state is not None:
            try:
                st = State(state)
            except ValueError:
                names = ", ".join(s.value for s in State)
                raise BadInput(f"unknown state {state!r}: one of {names}") from None
        q = None if queue is None else validate.queue(queue)
        n = validate.positive_int("limit", limit, constants.max_page)
        skip = validate.positive_int("offset", offset, constants.max_offset, minimum=0)
        return await self._tasks(st, q, n, skip)

    async def counts(self) -> dict[State, int]:
        """How many tasks are in each state."""
        return await self._counts()

    # --- agents ----------------------------------------------------------------------

    async def register(
        self,
        agent: str,
        capabilities: Iterable[str] = (),
        max_claims: int = constants.default_max_claims,
        *,
        session: str = "",
    ) -> None:
        """Create or update an agent; ``session`` says which session it is (e.g. a Claude
        Code session id, shown in the control room; "" none). Each call sets all three."""
        caps = validate.capabilities(capabilities)
        n = validate.positive_int("max claims", max_claims, constants.max_max_claims)
        await self._register(validate.agent(agent), caps, n, validate.session(session))

    async def alive(self, agent: str) -> int:
        """The agent's own liveness heartbeat; returns the store time it was seen."""
        return await self._alive(validate.agent(agent))

    async def agents(self) -> list[Agent]:
        return await self._agents()

    # --- locks -----------------------------------------------------------------------

    async def lock(
        self,
        paths: Iterable[str],
        agent: str,
        *,
        ttl_s: float | None = None,
        shared: bool = False,
        task: str = "",
        root: str | Path | None = None,
    ) -> int:
        """Give ``agent`` a hold on each path, all or none; returns when the holds expire.

        A hold belongs to (agent, task) and has its own mode. Untied holds last ``ttl_s``
        (default 300 s); holds for ``task`` (the agent's live claim) last as long as that
        claim, so a ttl with a task is refused. Paths are from the project root; absolute
        ones are taken inside ``root`` (see ``lockpath``)."""
        normal = sorted({validate.path(p, root) for p in paths})
        if not normal:
            raise BadInput("no path to lock")
        tid = validate.task_id(task) if task else ""
        if tid and ttl_s is not None:
            raise BadInput("a lock for a task lasts as long as the claim: it takes no ttl")
        ttl_ms = validate.ttl_ms(constants.default_lock_ttl_s if ttl_s is None else ttl_s)
        return await self._lock(normal, validate.agent(agent), ttl_ms, shared, tid)

    async def unlock(
        self,
        paths: Iterable[str],
        agent: str,
        *,
        task: str | None = None,
        root: str | Path | None = None,
        own: bool = False,
    ) -> list[str]:
        """Drop ``agent``'s holds on paths: all of them, or only those for ``task`` (``""``:
        only the untied ones); returns the paths where a hold was dropped. A path ``agent``
        does not hold is passed over, unless ``own`` (the caller acts as ``agent``) and
        another agent holds it: then ``Forbidden``, and nothing is dropped."""
        normal = sorted({validate.path(p, root) for p in paths})
        if not normal:
            raise BadInput("no path to unlock")
        tid = validate.task_id(task) if task else task
        if not isinstance(own, bool):
            raise BadInput(f"own must be true or false, got {own!r}")
        return await self._unlock(normal, validate.agent(agent), tid, own)

    async def locks(self) -> list[Lock]:
        return await self._locks()

    # --- audit and recovery ----------------------------------------------------------

    async def events(self, *, task: str | None = None, after: str = "-", count: int = 1000) -> list[Event]:
        """Audit events oldest first, after the event id ``after`` (exclusive). With ``task``,
        that task's, read through its own index; a task retention removed has none (its
        events stay in the whole trail until the trail's own horizon)."""
        tid = None if task is None else validate.task_id(task)
        n = validate.positive_int("event count", count, constants.max_page)
        return await self._events(tid, validate.event_id(after, "-"), n)

    async def latest_events(self, count: int = 1000) -> list[Event]:
        """The newest ``count`` audit events of the whole trail, oldest first (what an
        agent's inbox is read from: one bounded read, however long the trail)."""
        return await self._latest_events(validate.positive_int("event count", count, constants.max_page))

    async def audit(self, kind: str, *, agent: str, task: str = "", detail: dict[str, Any]) -> None:
        """Write an audit event that is no state change (kind "refused": an attempt that
        was refused), into the trail ``events`` reads, trimmed by retention like any other.
        A ``task`` not on the board is recorded in the detail instead (as ``task``)."""
        etype = validate.kind("audit event kind", kind)
        tid = validate.task_id(task) if task else ""
        if not isinstance(detail, dict):
            raise BadInput("audit detail must be a JSON object")
        data = validate.json_value("audit detail", detail, constants.max_text_chars)
        await self._audit(etype, tid, validate.agent(agent), data)

    async def follow(self, *, task: str | None = None, after: str = "$") -> AsyncIterator[Event]:
        """New audit events as they are written, forever."""
        tid = None if task is None else validate.task_id(task)
        async for event in self._follow(tid, validate.event_id(after, "$")):
            yield event

    async def reap(self, *, by: ReaperId | None = None) -> ReapReport:
        """One recovery pass now (any process may run it; it is idempotent), then retention:
        finished tasks, idle auto-registered agents and audit events past their horizon go
        (a few capped batches; ``retention_more`` says whether more is due at once). With
        ``by``, the pass is recorded as the board's reaper heartbeat (see ``reaper_status``)."""
        report = await self._reap(None if by is None else by.checked())
        removed = agents = trimmed = 0
        more = False
        for _ in range(constants.retention_calls_per_reap):
            r, a, t, more = await self._retain()
            removed, agents, trimmed = removed + r, agents + a, trimmed + t
            if not more:
                break
        return dataclasses.replace(
            report, removed=removed, agents_removed=agents, events_trimmed=trimmed, retention_more=more
        )

    def reaping(
        self,
        kind: str,
        *,
        interval_s: float = constants.reap_interval_s,
        report: Callable[[str], None] | None = None,
    ) -> Reaper:
        """The leader-elected reaper for a long-lived process of this ``kind`` ("tui",
        "claim-wait", "reap-loop", "mcp"): ``async with store.reaping("mcp"): ...`` reaps
        beside the body whenever this process leads, and hands over on the way out."""
        return Reaper(self, kind, interval_s=interval_s, report=report)

    async def run_reaper(
        self,
        stop: asyncio.Event,
        interval_s: float = constants.reap_interval_s,
        *,
        kind: str = "reap-loop",
        report: Callable[[str], None] | None = None,
    ) -> None:
        """Reap every ``interval_s`` while this process holds the leader lease, until ``stop``."""
        await self.reaping(kind, interval_s=interval_s, report=report).run(stop)

    async def reaper_status(self) -> ReaperStatus:
        """Whether recovery runs on this board: the reaper heartbeat and the live claims."""
        return await self._reaper_status()

    async def wait_for_change(self, timeout_s: float) -> bool:
        """Return when the board may have changed (True) or after ``timeout_s`` (False)."""
        return await self._wait_for_change(timeout_s)

    async def now_ms(self) -> int:
        """The store's clock (ms): every deadline on the board is on it."""
        return await self._now_ms()

    # --- bidding (core/bidding.py) ------------------------------------------------------

    async def bid(
        self, task: str, agent: str, cost: float, *, ttl_s: float = constants.default_lease_ttl_s
    ) -> bidding.Bid:
        """Bid ``cost`` (lower wins) for ``task``'s open bidding window as ``agent``; the
        claim it wins lasts ``ttl_s``. A second bid replaces the agent's first (cost, ttl
        and time). ``Conflict`` when the window is not open or the agent may not bid (not
        registered, lacking a capability, breaker open), nothing changed."""
        tid, name = validate.task_id(task), validate.agent(agent)
        placed, _close = await self._bid(tid, name, bidding.cost(cost), validate.ttl_ms(ttl_s))
        return placed

    async def bid_outcome(self, task: str, agent: str) -> bidding.Outcome:
        """What ``task``'s window came to for ``agent``; a won claim it still holds is
        handed over (its next claim does not return it again)."""
        return await self._bid_outcome(validate.task_id(task), validate.agent(agent))

    async def wait_bid(self, task: str, agent: str, *, wait_s: float) -> bidding.Outcome:
        """``bid_outcome`` once the window has closed, or as it is after ``wait_s``. Past the
        close time this process closes it itself (a reaper pass): no reaper need run."""
        return await bidding.wait_outcome(
            self, validate.task_id(task), validate.agent(agent), validate.wait_s(wait_s)
        )

    async def auctions(self, limit: int = constants.auctions_view_max) -> list[bidding.Auction]:
        """The open bidding windows, closing first, with their bids best first."""
        return await self._auctions(validate.positive_int("limit", limit, constants.auctions_view_max))

    async def bids(self, task: str) -> list[bidding.Bid]:
        """The bids in ``task``'s window while it is open (at most ``max_bids_per_task``),
        best first; [] otherwise."""
        return await self._bids(validate.task_id(task))

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
