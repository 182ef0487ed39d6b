"""The async API every part of claimroom uses: one contract, a backend per URL scheme.

``Store.from_url`` picks the backend and imports it only when used. The public methods
validate their input (through ``validate``) and then call the backend's ``_op``; so both
backends refuse bad input identically and a backend only ever sees clean values.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import json
import random
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import constants, retention, validate
from .backends import BACKENDS
from .dump import Board, check
from .errors import BadInput, ClaimroomError, ErrorCode
from .identity import Role, TokenInfo
from .models import (
    Agent,
    Claim,
    ClaimMiss,
    Event,
    Lock,
    ReapReport,
    Retention,
    ServerInfo,
    State,
    Stuck,
    Task,
)
from .operator_actions import MOVES
from .reaper import Reaper, ReaperId, ReaperStatus
from .retention import UNSET, Unset
from .snapshot import MAX_ROWS, SECTIONS, Snapshot


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


def _acting_as(agent: str) -> str:
    """The agent a caller acts as (its claims only), or "" for direct store access."""
    return validate.agent(agent) if agent else ""


_DIGEST = re.compile(r"[0-9a-f]{64}")
_HINT = re.compile(r"[A-Za-z0-9_-]{1,16}")


def _digest(value: str) -> str:
    """A token's sha256 in hex, as the board keys it (core/tokens.py makes it)."""
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise BadInput("a token digest is 64 lower-case hex digits (sha256)")
    return value


def _ref_or_id(value: str) -> str:
    """A task id, or ``$k``: the k-th task of the same batch."""
    if value.startswith("$") and value[1:].isdigit():
        return value
    return validate.task_id(value)


ACTIONS = tuple(MOVES)  # what ``act`` runs: kill, kill-dead, requeue, cancel, retry, reassign

_EVENT_ID = re.compile(r"\d{1,16}(-\d{1,16})?")


def _event_id(value: str, *also: str) -> str:
    """An audit event id (``ms-seq``, or ``ms``), or one of the markers in ``also``."""
    if value in also:
        return value
    numbers = isinstance(value, str) and _EVENT_ID.fullmatch(value)
    if numbers and all(int(part) <= constants.max_counter for part in value.split("-")):
        return value
    raise BadInput(f"invalid event id {value!r}: use an id from the audit trail, like 1700000000000-0")


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
        }


@dataclass
class Miss:
    """Set by ``claim`` when nothing was claimed: why, for the CLI's message."""

    last: ClaimMiss = field(default_factory=lambda: ClaimMiss("empty"))


class Store(ABC):
    """A claimroom board (one namespace) on some backend."""

    url: str
    namespace: str

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
        sigs = sorted({s["requires"] for s in checked})
        found, known, in_use = await self._known(list(named), sigs)
        for ref in named:
            if ref not in found:
                raise ErrorCode.NOT_FOUND.exception([ref])
        total = in_use + len(set(sigs) - known)
        if total > constants.max_capsigs:
            raise ErrorCode.TOO_MANY_CAPSIGS.exception([str(total)])

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
        name = validate.agent(agent)
        qs = [validate.queue(q) for q in queues]
        if len(qs) > constants.max_claim_queues:
            raise BadInput(f"at most {constants.max_claim_queues} queues in one claim")
        ttl = validate.ttl_ms(ttl_s)
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

    async def complete(self, task: str, token: int, result: Any = None, *, agent: str = "") -> list[str]:
        """Finish a claimed task; returns the tasks this unblocked. ``agent``: as heartbeat."""
        stored = "" if result is None else validate.json_value("result", result)
        return await self._complete(validate.task_id(task), validate.token(token), stored, _acting_as(agent))

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
        return await self._events(tid, _event_id(after, "-"), n)

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
        async for event in self._follow(tid, _event_id(after, "$")):
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

    # --- retention ------------------------------------------------------------------

    async def set_retention(
        self,
        queue: str | None = None,
        *,
        done_s: float | Unset | None = UNSET,
        done_count: int | Unset | None = UNSET,
        failed_s: float | Unset | None = UNSET,
        failed_count: int | Unset | None = UNSET,
        events_s: float | Unset | None = UNSET,
        events_bytes: int | Unset | None = UNSET,
        agents_s: float | Unset | None = UNSET,
        reset: bool = False,
    ) -> Retention:
        """Change what retention keeps, for ``queue`` or (None) the whole board; returns the
        settings now in force there. Only the settings given change; None means no limit.

        Finished tasks of a queue are removed by the reaper pass once older than ``done_s``
        (done) or ``failed_s`` (dead, cancelled) seconds, or past the newest ``done_count``
        / ``failed_count``, whichever comes first. The board's settings apply to every queue
        without its own, and ``events_s``, ``events_bytes`` (the audit trail's horizon and
        size) and ``agents_s`` (idle agents a claim registered) are the board's alone.
        ``reset`` first drops the scope's own settings (a queue's: it follows the board's;
        the board's: the defaults)."""
        q = None if queue is None else validate.queue(queue)
        if not isinstance(reset, bool):
            raise BadInput(f"reset must be true or false, got {reset!r}")
        given = {
            "done_s": done_s, "done_count": done_count, "failed_s": failed_s,
            "failed_count": failed_count, "events_s": events_s, "events_bytes": events_bytes,
            "agents_s": agents_s,
        }  # fmt: skip
        stored = retention.changes(q, given)
        if stored or reset:
            await self._set_retention(retention.BOARD if q is None else q, stored, reset)
        return await self.retention(q)

    async def retention(self, queue: str | None = None) -> Retention:
        """The retention settings in force for ``queue`` (None: the board's)."""
        q = None if queue is None else validate.queue(queue)
        board, own = await self._retention_settings(q)
        return retention.effective(board, own)

    # --- bearer tokens (core/tokens.py makes and checks them; only digests come here) ---

    async def token_save(self, digest: str, agent: str, role: str, hint: str) -> int:
        """Keep a token's sha256 with its agent, role and hint; returns when (store clock)."""
        if not isinstance(hint, str) or not _HINT.fullmatch(hint):
            raise BadInput("a token hint is the token's first characters")
        return await self._token_save(_digest(digest), validate.agent(agent), Role.of(role).value, hint)

    async def token_find(self, digest: str) -> TokenInfo | None:
        """The token with this sha256, or None (unknown or revoked)."""
        return await self._token_find(_digest(digest))

    async def token_list(self) -> list[TokenInfo]:
        """Every token on the board (never the tokens themselves), by agent then age."""
        found = await self._token_list()
        return sorted(found, key=lambda t: (t.agent, t.created_ms, t.hint))

    async def token_revoke(self, agent: str) -> int:
        """Forget every token of ``agent``; returns how many there were."""
        return await self._token_revoke(validate.agent(agent))

    # --- operator actions: each a compare-and-set on what the operator saw -----------

    async def act(
        self,
        action: str,
        task: str,
        seen_state: State | str,
        seen_token: int,
        operator: str,
        agent: str = "",
        *,
        restore: bool = False,
    ) -> State:
        """Move a task as an operator: kill, kill-dead, requeue, cancel, retry, reassign.

        ``seen_state``/``seen_token`` are what the operator saw; if the task has moved
        since, ``Changed`` is raised and nothing happens; where the action does not apply
        (``operator_actions.MOVES`` says where each does), ``WrongState``. Returns the new
        state. A retry with ``restore`` also brings back, blocked on it again, the
        dependents that its end cancelled (and theirs); see ``dependents_cancelled``.
        """
        if action not in ACTIONS:
            raise BadInput(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
        if not isinstance(restore, bool):
            raise BadInput(f"restore must be true or false, got {restore!r}")
        if restore and action != "retry":
            raise BadInput("only a retry restores dependents")
        if action == "reassign":
            agent = validate.agent(agent)
        try:
            st = State(seen_state)
        except ValueError:
            names = ", ".join(s.value for s in State)
            raise BadInput(f"unknown state {seen_state!r}: one of {names}") from None
        token = validate.token(seen_token, minimum=0)  # 0: a task never claimed
        return await self._act(
            action, validate.task_id(task), st, token, validate.operator(operator), agent, restore
        )

    async def dependents_cancelled(self, task: str) -> int:
        """How many tasks a cascade cancelled because ``task`` ended (its direct dependents;
        theirs come back with them): what a retry with ``restore`` would bring back."""
        return await self._dependents_cancelled(validate.task_id(task))

    async def stuck(
        self, *, after_seq: int = 0, limit: int = 500, also: Sequence[str] = ()
    ) -> tuple[list[Stuck], int]:
        """Blocked tasks waiting on a dependency that can never finish, looked for among the
        ``limit`` blocked tasks created after ``after_seq`` (oldest first) and the tasks
        ``also`` names; returns them (oldest first) and the ``after_seq`` to look from
        next, 0 once the end was reached. Bounded: a view walks a big board a window at a time.
        """
        if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
            raise BadInput(f"after_seq must be a whole number, not negative, got {after_seq!r}")
        n = validate.positive_int("limit", limit, 10_000)
        ids = list(dict.fromkeys(validate.task_id(t) for t in also))
        if len(ids) > n:
            raise BadInput(f"at most {n} tasks in also")
        return await self._stuck(after_seq, n, ids)

    async def extend(self, task: str, seen_token: int, extra_s: float, operator: str) -> int:
        """Give a live claim ``extra_s`` more seconds; returns the new deadline. A task no
        longer claimed with ``seen_token`` raises ``Changed`` (the call carries no state)."""
        ms = validate.ttl_ms(extra_s, "extension")
        return await self._extend(
            validate.task_id(task), validate.token(seen_token), ms, validate.operator(operator)
        )

    async def pause(self, queue: str, operator: str, *, resume: bool = False) -> bool:
        """Pause (or resume) a queue; returns whether that changed anything."""
        return await self._queue_state(validate.queue(queue), not resume, validate.operator(operator))

    async def paused(self) -> set[str]:
        return await self._paused()

    async def reset_breaker(self, agent: str, operator: str) -> None:
        await self._reset_breaker(validate.agent(agent), validate.operator(operator))

    # --- MCP servers on the board (claimroom serve; shown in the control room) --------

    async def announce_server(self, info: ServerInfo, ttl_s: float = constants.server_ttl_s) -> ServerInfo:
        """Write or refresh an MCP server's record, live for ``ttl_s`` unless refreshed again;
        returns it as stored (``started_ms`` from its first refresh, ``seen_ms`` now, both on
        the store's clock)."""
        sid = validate.server_id(info.id)
        if info.transport not in ("http", "stdio"):
            raise BadInput(f"unknown server transport {info.transport!r}: http or stdio")
        validate.text("server address", info.address, 255)
        validate.text("server host", info.host, 255)
        counts = (info.pid, info.clients, info.calls, info.errors)
        if any(isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= constants.max_counter
               for n in counts):  # fmt: skip
            raise BadInput("server counts must be whole numbers, not negative")
        rate = info.calls_per_s
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < float("inf"):
            raise BadInput(f"server calls/s must be a number, not negative, got {rate!r}")
        record = json.dumps(info.record(), separators=(",", ":"))
        now, started = await self._server(sid, record, validate.ttl_ms(ttl_s))
        return dataclasses.replace(info, started_ms=started, seen_ms=now)

    async def retire_server(self, server_id: str) -> None:
        """Drop a server's record at once (a server stopping cleanly)."""
        await self._server(validate.server_id(server_id), "", 1)

    async def latest_events(self, count: int = 1000) -> list[Event]:
        """The newest ``count`` audit events of the whole trail, oldest first (what an
        agent's inbox is read from: one bounded read, however long the trail)."""
        return await self._latest_events(validate.positive_int("event count", count, constants.max_page))

    async def servers(self) -> list[ServerInfo]:
        """The MCP servers whose records are live, by id (at most ``max_servers``)."""
        return sorted(await self._servers(), key=lambda s: s.id)

    # --- views: what the control room and an operator read -----------------------------

    async def snapshot(
        self, *, sections: Iterable[str] = SECTIONS, rows: int = 200, events: int = 200
    ) -> Snapshot:
        """The board as one view shows it, read in one go: the counts per state and per
        queue (exact), the live MCP servers, and of ``sections`` (see ``snapshot.SECTIONS``)
        the ``rows`` most urgent rows each (soonest lease deadline first; newest orphans
        first; agents and locks by name) and the newest ``events`` audit events."""
        want = frozenset(sections)
        if not want <= SECTIONS:
            unknown = ", ".join(sorted(want - SECTIONS))
            raise BadInput(f"unknown snapshot section {unknown}: of {', '.join(sorted(SECTIONS))}")
        n = validate.positive_int("rows", rows, MAX_ROWS)
        e = validate.positive_int("events", events, MAX_ROWS)
        return await self._snapshot(want, n, e)

    async def server_facts(self) -> dict[str, str]:
        """A few facts about the server holding the board (name -> value, in the order to
        show them): a Redis server's version, memory, clients...; the file store's SQLite
        version, database size, journal mode..."""
        return await self._server_facts()

    async def key_events(self, *, switch: bool = False) -> bool | None:
        """Whether the store announces changes made behind claimroom's back (a key deleted
        by hand), which ``changes`` then reports too; with ``switch``, turned on when off
        (adding to, never removing, what the server already sends). None: the store has no
        such notifications (the file store; it sees every commit anyway). False when they
        are off and stay off (no ``switch``, or the server refused: a managed Redis)."""
        if not isinstance(switch, bool):
            raise BadInput(f"switch must be true or false, got {switch!r}")
        return await self._key_events(switch)

    def changes(self) -> AsyncGenerator[None, None]:
        """Yield once at once (the watch is live: anything before it may have changed),
        then whenever the board may have changed, until the link breaks
        (``StoreUnavailable``). Each call watches on its own (unlike ``wait_for_change``),
        so a view can drop a broken watch and start anew after an outage."""
        return self._change_feed()

    # --- whole-board export and import (core/migrate.py moves boards with them) ---------

    async def export_board(self) -> Board:
        """The whole board as a dump (the format is in ``dump``), read in one snapshot."""
        return await self._export()

    async def import_board(self, board: Board, *, merge: bool = False) -> dict[str, int]:
        """Write a whole board dump in one atomic step; returns what was written, by kind.
        ``Conflict`` (nothing written) into a non-empty namespace unless ``merge`` (see
        ``migrate.migrate``), or when a merged lock would clash with one held here."""
        check(board)
        if not isinstance(merge, bool):
            raise BadInput(f"merge must be true or false, got {merge!r}")
        return await self._import(board, merge)

    async def now_ms(self) -> int:
        """The store's clock (ms): every deadline on the board is on it."""
        return await self._now_ms()

    # --- what a backend provides ----------------------------------------------------

    @abstractmethod
    async def _add(self, specs: list[dict[str, Any]], by: str) -> list[str]: ...
    @abstractmethod
    async def _known(self, ids: list[str], capsigs: list[str]) -> tuple[set[str], set[str], int]:
        """Which of ``ids`` are tasks, which of ``capsigs`` are in use, how many are in use."""

    @abstractmethod
    async def _claim(
        self, agent: str, queues: list[str], ttl_ms: int, count: int
    ) -> tuple[list[Claim], ClaimMiss]: ...
    @abstractmethod
    async def _claim_waiting(
        self, agent: str, queues: list[str], ttl_ms: int, count: int, wait_s: float
    ) -> tuple[list[Claim], ClaimMiss]: ...
    # ``agent`` in the next four: "" anyone, else the claim must be that agent's (NOT_YOURS).
    @abstractmethod
    async def _heartbeat(
        self, task: str, token: int, ttl_ms: int | None, updates: dict[str, str], agent: str
    ) -> int: ...
    @abstractmethod
    async def _complete(self, task: str, token: int, result: str, agent: str) -> list[str]: ...
    @abstractmethod
    async def _fail(
        self, task: str, token: int, reason: str, fatal: bool, jitter: float, agent: str
    ) -> tuple[State, int]: ...
    @abstractmethod
    async def _release(self, task: str, token: int, agent: str) -> None: ...
    @abstractmethod
    async def _held(self, agent: str) -> list[Task]: ...
    @abstractmethod
    async def _get(self, task: str) -> Task: ...
    @abstractmethod
    async def _tasks(self, state: State | None, queue: str | None, limit: int, offset: int) -> list[Task]: ...
    @abstractmethod
    async def _counts(self) -> dict[State, int]: ...
    @abstractmethod
    async def _register(self, agent: str, caps: str, max_claims: int, session: str) -> None: ...
    @abstractmethod
    async def _alive(self, agent: str) -> int: ...
    @abstractmethod
    async def _agents(self) -> list[Agent]: ...
    @abstractmethod
    async def _lock(self, paths: list[str], agent: str, ttl_ms: int, shared: bool, task: str) -> int: ...
    @abstractmethod
    async def _unlock(self, paths: list[str], agent: str, task: str | None, own: bool) -> list[str]: ...
    @abstractmethod
    async def _locks(self) -> list[Lock]: ...
    @abstractmethod
    async def _events(self, task: str | None, after: str, count: int) -> list[Event]: ...
    @abstractmethod
    def _follow(self, task: str | None, after: str) -> AsyncIterator[Event]: ...
    @abstractmethod
    async def _reap(self, by: ReaperId | None) -> ReapReport: ...
    @abstractmethod
    async def _reaper_status(self) -> ReaperStatus: ...
    @abstractmethod
    async def _lead(self, holder: str, lease_ms: int) -> bool:
        """Take or keep the reaper's leader lease for ``holder``; 0 ms lets it go."""

    @abstractmethod
    async def _wait_for_change(self, timeout_s: float) -> bool: ...
    @abstractmethod
    async def _act(
        self, action: str, task: str, seen: State, token: int, operator: str, agent: str, restore: bool
    ) -> State: ...
    @abstractmethod
    async def _dependents_cancelled(self, task: str) -> int: ...
    @abstractmethod
    async def _stuck(self, after_seq: int, limit: int, also: list[str]) -> tuple[list[Stuck], int]: ...
    @abstractmethod
    async def _retain(self) -> tuple[int, int, int, bool]:
        """One retention step: (tasks removed, agents removed, events trimmed, more due now)."""

    @abstractmethod
    async def _set_retention(self, scope: str, changes: dict[str, int], reset: bool) -> None: ...
    @abstractmethod
    async def _retention_settings(self, queue: str | None) -> tuple[dict[str, int], dict[str, int]]:
        """The stored settings of the board and of ``queue`` ({} for none)."""

    @abstractmethod
    async def _audit(self, kind: str, task: str, agent: str, detail: str) -> None: ...
    @abstractmethod
    async def _token_save(self, digest: str, agent: str, role: str, hint: str) -> int: ...
    @abstractmethod
    async def _token_find(self, digest: str) -> TokenInfo | None: ...
    @abstractmethod
    async def _token_list(self) -> list[TokenInfo]: ...
    @abstractmethod
    async def _token_revoke(self, agent: str) -> int: ...
    @abstractmethod
    async def _extend(self, task: str, token: int, extra_ms: int, operator: str) -> int: ...
    @abstractmethod
    async def _queue_state(self, queue: str, pause: bool, operator: str) -> bool: ...
    @abstractmethod
    async def _paused(self) -> set[str]: ...
    @abstractmethod
    async def _reset_breaker(self, agent: str, operator: str) -> None: ...
    @abstractmethod
    async def _server(self, server_id: str, record: str, ttl_ms: int) -> tuple[int, int]:
        """Refresh a server's record (an empty ``record`` retires it): (now_ms, started_ms)."""

    @abstractmethod
    async def _servers(self) -> list[ServerInfo]: ...
    @abstractmethod
    async def _latest_events(self, count: int) -> list[Event]: ...
    @abstractmethod
    async def _snapshot(self, sections: frozenset[str], rows: int, events: int) -> Snapshot: ...
    @abstractmethod
    async def _server_facts(self) -> dict[str, str]: ...
    @abstractmethod
    async def _key_events(self, switch: bool) -> bool | None: ...
    @abstractmethod
    def _change_feed(self) -> AsyncGenerator[None, None]: ...
    @abstractmethod
    async def _export(self) -> Board: ...
    @abstractmethod
    async def _import(self, board: Board, merge: bool) -> dict[str, int]:
        """Write a checked dump (``dump.check``) atomically, refusing as ``import_board`` says."""

    @abstractmethod
    async def _now_ms(self) -> int: ...
    @abstractmethod
    async def ping(self) -> float:
        """Round trip to the store in ms; ``StoreUnavailable`` when it is down."""

    @abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
