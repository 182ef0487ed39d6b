"""The engine's value types: tasks, claims, agents, locks, audit events.

They are plain frozen dataclasses built from what a store returns; the store's own
encoding (Redis hash fields, SQLite rows) never leaks past ``from_fields``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from .constants import stored_ttl_ms
from .lockhash import holds_in


class State(StrEnum):
    """A task's state; see the design note's state diagram."""

    BLOCKED = "blocked"
    QUEUED = "queued"
    CLAIMED = "claimed"
    REVIEW = "review"  # delivered (complete --review), waiting for a reviewer: not finished
    RETRYING = "retrying"
    ORPHANED = "orphaned"
    DONE = "done"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (State.DONE, State.DEAD, State.CANCELLED)


def _int(value: str | None, default: int = 0) -> int:
    return int(value) if value not in (None, "") else default


def _float(value: str | None, default: float = 0.0) -> float:
    return float(value) if value not in (None, "") else default


def _list(value: str | None) -> tuple[str, ...]:
    return tuple(v for v in (value or "").split(",") if v)


@dataclass(frozen=True)
class Task:
    """A unit of work and, while it is claimed, its lease."""

    id: str
    title: str
    state: State
    queue: str = "default"
    priority: int = 0
    requires: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    parent: str = ""
    affinity: str = ""
    payload: Any = None
    max_attempts: int = 3
    attempts: int = 0
    failures: int = 0
    expiries: int = 0
    agent: str = ""
    token: int = 0
    deadline_ms: int = 0
    claimed_ms: int = 0
    ttl_ms: int = 0
    progress: float = 0.0
    stage: str = ""
    checkpoint: str = ""
    result: Any = None
    reason: str = ""
    ready_ms: int = 0
    created_ms: int = 0
    updated_ms: int = 0
    seq: int = 0
    cancelled_by: str = ""  # the dependency whose end cancelled it (a cascade); "" otherwise
    bid_window_ms: int = 0  # add --bid-window: the bidding window it opens once ready; 0 none
    bid_close_ms: int = 0  # when its window closes (or closed); 0 never opened
    bid_winner: str = ""  # the agent that won its window; "" none (yet)
    # Affinity: the agent owning its key when it last became ready ("" none), until when
    # only that agent may claim it (0: anyone capable may), its own steal delay (-1 default).
    owner: str = ""
    steal_ms: int = 0
    steal_after_ms: int = -1
    review_ref: str = ""  # what was delivered for review (a branch, commit or PR); "" none
    review_ms: int = 0  # when it last entered review (store clock); the deliverer stays in agent
    # The project paths the task will touch (informational: agents lock them themselves).
    paths: tuple[str, ...] = ()
    plan: str = ""  # the plan parent this subtask rolls up to (core/plan.py); "" none
    plan_left: int = 0  # a plan parent's unfinished subtasks
    plan_total: int = 0  # a plan parent's subtasks (0: not a plan parent)
    plan_wait: bool = False  # a plan parent waiting (blocked) for its subtasks to end

    @classmethod
    def from_fields(cls, f: dict[str, str], tid: str = "") -> Task:
        """Build from a store's flat string fields (a missing or empty one reads as its
        default). ``tid``: the task's id when the fields may lack it: a Redis task hash
        holds neither its id (its key) nor its seq (the number in its id, ``t<seq>``; lib.lua
        seq_of), which an older one holds too. Every claimed task passes here: the frozen
        dataclass's ``__init__`` sets its 45 fields one ``object.__setattr__`` at a time and
        each reads through a helper, ~24 us a task; filling a copy of the defaults from the
        fields present and setting them at once takes a fifth of that (the client's CPU per
        claim, bench/claims.py)."""
        values = dict(_TASK_DEFAULTS)
        values["id"] = tid = tid or f["id"]
        values["state"] = State(f["state"])
        for name, value in f.items():
            read = _TASK_READERS.get(name, _SKIP)
            if read is not _SKIP:
                values[name] = value if read is None else read(value)
        values["seq"] = values["seq"] or seq_of(tid)  # a seq is never 0
        for name, value in unstored_fields(f).items():
            values[name] = _TASK_READERS[name](value)
        task = object.__new__(cls)
        task.__dict__.update(values)
        return task

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.value
        d["requires"] = list(self.requires)
        d["after"] = list(self.after)
        d["paths"] = list(self.paths)
        return d


def _json_or_none(value: str) -> Any:
    return json.loads(value) if value else None


def seq_of(tid: str) -> int:
    """The creation number in a task's id ``t<seq>`` (0 for an id of another shape)."""
    digits = tid[1:]
    return int(digits) if digits.isdigit() else 0


def unstored_fields(f: dict[str, Any]) -> dict[str, str]:
    """The values a Redis task hash leaves unstored (lib.lua) that its other fields imply, as
    text: a done task's progress is whole, and a lease at the stored default has no ttl_ms."""
    out: dict[str, str] = {}
    if f.get("state") == "done":
        out["progress"] = "1"
    if _int(f.get("claimed_ms")) and f.get("ttl_ms") in (None, ""):
        out["ttl_ms"] = str(stored_ttl_ms)
    return out


_SKIP = object()
# How Task.from_fields reads each field it knows (None: the text as it is); other fields of
# the store's record (spawn_token, waiting, plan_failed, ...) are not the Task's.
_TASK_READERS: dict[str, Any] = {
    "id": None, "title": None, "state": State, "queue": None, "priority": _int,
    "requires": _list, "after": _list, "parent": None, "affinity": None, "payload": _json_or_none,
    "max_attempts": lambda v: _int(v, 3), "attempts": _int, "failures": _int, "expiries": _int,
    "agent": None, "token": _int, "deadline_ms": _int, "claimed_ms": _int, "ttl_ms": _int,
    "progress": _float, "stage": None, "checkpoint": None, "result": _json_or_none, "reason": None,
    "ready_ms": _int, "created_ms": _int, "updated_ms": _int, "seq": _int, "cancelled_by": None,
    "bid_window_ms": _int, "bid_close_ms": _int, "bid_winner": None, "owner": None,
    "steal_ms": _int, "steal_after_ms": lambda v: _int(v, -1), "review_ref": None,
    "review_ms": _int, "paths": lambda v: tuple(json.loads(v)) if v else (), "plan": None,
    "plan_left": _int, "plan_total": _int, "plan_wait": lambda v: v not in ("", "0"),
}  # fmt: skip
# Every field's value when the record lacks it (title too, which the dataclass requires).
_TASK_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Task) if f.default is not MISSING} | {
    "title": ""
}


@dataclass(frozen=True)
class Claim:
    """A task leased to an agent: what ``claim`` returns."""

    task: Task
    token: int
    deadline_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task.to_json(), "token": self.token, "deadline_ms": self.deadline_ms}


@dataclass(frozen=True)
class Completion:
    """One task of ``complete_many``: the tasks its completion unblocked, or why it was
    refused (``LeaseLost``, ``NotFound``, ``Forbidden``; nothing changed for that task)."""

    task: str
    unblocked: list[str]
    error: Exception | None = None


@dataclass(frozen=True)
class Agent:
    """A registered worker, its capacity, liveness and circuit breaker."""

    name: str
    capabilities: tuple[str, ...] = ()
    max_claims: int = 1
    last_seen_ms: int = 0
    registered_ms: int = 0
    consecutive_failures: int = 0
    breaker_open_until_ms: int = 0
    held: tuple[str, ...] = ()
    session: str = ""  # which session the agent is (e.g. a Claude Code session id); "" unknown
    owned: int = 0  # affine tasks waiting for it as their key's owner

    @classmethod
    def from_fields(cls, f: dict[str, str], held: tuple[str, ...] = ()) -> Agent:
        return cls(
            name=f["name"],
            capabilities=_list(f.get("caps")),
            max_claims=_int(f.get("max_claims"), 1),
            last_seen_ms=_int(f.get("last_seen_ms")),
            registered_ms=_int(f.get("registered_ms")),
            consecutive_failures=_int(f.get("consecutive_failures")),
            breaker_open_until_ms=_int(f.get("breaker_open_until_ms")),
            held=held,
            session=f.get("session", ""),
            owned=_int(f.get("owned")),
        )

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["capabilities"] = list(self.capabilities)
        d["held"] = list(self.held)
        return d


@dataclass(frozen=True)
class LockHold:
    """One hold on a path: an agent's, for one task ('' when untied), with its own mode
    and expiry (a task-bound hold's expiry is its claim's deadline)."""

    agent: str
    expires_ms: int
    task: str = ""
    shared: bool = False

    @staticmethod
    def all_in(f: dict[str, str]) -> list[LockHold]:
        """Every hold in a Redis lock hash, live or not, ordered by agent then task
        (the hash's layout: ``lockhash``)."""
        return [LockHold(agent, expires, task, shared) for agent, task, expires, shared in holds_in(f)]


@dataclass(frozen=True)
class Lock:
    """A locked path and its live holds. ``shared`` when every hold is shared: another
    agent may then share it, while one exclusive hold keeps every other agent out."""

    path: str
    shared: bool
    holders: tuple[LockHold, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "shared": self.shared, "holders": [asdict(h) for h in self.holders]}

    @classmethod
    def of(cls, path: str, holds: Iterable[LockHold], now_ms: int) -> Lock | None:
        """The lock on ``path`` made of the holds still live at ``now_ms``; None when none is."""
        live = tuple(sorted((h for h in holds if h.expires_ms > now_ms), key=lambda h: (h.agent, h.task)))
        return cls(path=path, shared=all(h.shared for h in live), holders=live) if live else None

    @classmethod
    def from_fields(cls, path: str, f: dict[str, str], now_ms: int) -> Lock | None:
        """The lock stored in a Redis lock hash (see ``LockHold.all_in``), keeping only
        holds still live at ``now_ms``; None when none is."""
        return cls.of(path, LockHold.all_in(f), now_ms)


# The parts of a one-field audit entry's value, in order (core/redis/lua/lib.lua audit_entry).
_ENTRY_PARTS = ("task", "agent", "token", "at_ms", "data")


def event_fields(entry: dict[str, str]) -> dict[str, str]:
    """An audit stream entry as named fields (type, at_ms, and task, agent, token, operator,
    data where set). The scripts write most events as one field, the type, whose value holds
    "<task> <agent> <token> <at_ms> <data>" (ids, names and tokens hold no spaces; data is
    last); an operator's event, and every event written before, has named fields."""
    if len(entry) != 1:
        return entry
    ((etype, rest),) = entry.items()
    parts = rest.split(" ", len(_ENTRY_PARTS) - 1)
    return {"type": etype} | {k: v for k, v in zip(_ENTRY_PARTS, parts, strict=False) if v}


@dataclass(frozen=True)
class Event:
    """One entry of the audit trail."""

    id: str
    type: str
    at_ms: int
    task: str = ""
    agent: str = ""
    token: int = 0
    operator: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_fields(cls, event_id: str, entry: dict[str, str]) -> Event:
        """Build from an audit stream entry (Redis), in either form ``event_fields`` reads."""
        f = event_fields(entry)
        return cls(
            id=event_id,
            type=f.get("type", ""),
            at_ms=_int(f.get("at_ms")),
            task=f.get("task", ""),
            agent=f.get("agent", ""),
            token=_int(f.get("token")),
            operator=f.get("operator", ""),
            data=json.loads(f["data"]) if f.get("data") else {},
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ClaimMiss:
    """Why a claim found nothing, and when something may next become claimable."""

    reason: str  # empty | at-capacity | breaker-open
    next_change_in_ms: int = -1  # until a lease or backoff ends or the breaker closes; -1: none due


@dataclass(frozen=True)
class ReapReport:
    """What one reaper pass did."""

    requeued: tuple[str, ...] = ()
    orphaned: tuple[str, ...] = ()
    dead: tuple[str, ...] = ()
    promoted: tuple[str, ...] = ()
    locks_expired: int = 0
    cancelled: tuple[str, ...] = ()  # dependents cancelled by cascades
    restored: tuple[str, ...] = ()  # dependents an operator's retry restored
    cascades_pending: int = 0  # tasks whose cascade or restore waits for the next pass
    removed: int = 0  # finished tasks removed by retention
    agents_removed: int = 0  # idle auto-registered agents removed by retention
    events_trimmed: int = 0  # audit events past the trail's horizon or size, trimmed
    retention_more: bool = False  # retention left work for the next pass (a capped batch)
    auctions_closed: tuple[str, ...] = ()  # tasks whose bidding window this pass closed

    def to_json(self) -> dict[str, Any]:
        return {
            "requeued": list(self.requeued),
            "orphaned": list(self.orphaned),
            "dead": list(self.dead),
            "promoted": list(self.promoted),
            "locks_expired": self.locks_expired,
            "cancelled": list(self.cancelled),
            "restored": list(self.restored),
            "cascades_pending": self.cascades_pending,
            "removed": self.removed,
            "agents_removed": self.agents_removed,
            "events_trimmed": self.events_trimmed,
            "retention_more": self.retention_more,
            "auctions_closed": list(self.auctions_closed),
        }


@dataclass(frozen=True)
class Stuck:
    """A blocked task waiting on a dependency that can never finish (dead, cancelled, or
    gone): left by a cascade still under way, an older claimroom, or a hand edit."""

    task: Task
    dependency: str
    dependency_state: str  # dead | cancelled | missing


@dataclass(frozen=True)
class Retention:
    """What retention keeps, for one queue or the whole board; None: no limit.

    Finished tasks go when they are older than the time or past the count (the newest are
    kept), whichever comes first: done ones by ``done_*``, dead and cancelled ones by
    ``failed_*``. ``events_*`` and ``agents_s`` are the board's (the audit trail's horizon
    and size, and how long an auto-registered agent may sit idle)."""

    done_s: float | None
    done_count: int | None
    failed_s: float | None
    failed_count: int | None
    events_s: float | None
    events_bytes: int | None
    agents_s: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


RETENTION_FIELDS = (
    "done_s",
    "done_count",
    "failed_s",
    "failed_count",
    "events_s",
    "events_bytes",
    "agents_s",
)
BOARD_ONLY = ("events_s", "events_bytes", "agents_s")  # the board's alone, never a queue's


@dataclass(frozen=True)
class ServerInfo:
    """An MCP server on the board (``claimroom serve``), as it last said it was.

    The server refreshes its record every few seconds; the store drops a record that was not
    refreshed within its time to live, so a server that died leaves the list on its own."""

    id: str
    transport: str  # "http" | "stdio"
    address: str  # where it listens: "127.0.0.1:8765", or "stdio"
    host: str = ""
    pid: int = 0
    clients: int = 0  # distinct agents that made a call recently (constants.server_clients_window_s)
    calls: int = 0  # tool calls and resource reads since it started
    calls_per_s: float = 0.0  # over the last refresh interval
    errors: int = 0  # calls that ended in an error (refusals included)
    started_ms: int = 0  # store clock
    seen_ms: int = 0  # store clock: its last refresh

    # The fields the server itself says; started_ms and seen_ms are the store's to write.
    OWN = ("id", "transport", "address", "host", "pid", "clients", "calls", "calls_per_s", "errors")

    def record(self) -> dict[str, Any]:
        """What the server writes (the store adds the times)."""
        return {k: getattr(self, k) for k in self.OWN}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServerInfo:
        """From a stored record; unknown keys (a newer claimroom's) are ignored."""
        known = {k: data[k] for k in (*cls.OWN, "started_ms", "seen_ms") if k in data}
        return cls(**known)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Message:
    """A message between agents (core/messages.py): ``to`` is the recipient, "" a broadcast
    to every agent; ``sender`` an agent, or "operator:NAME" for an operator; ``read`` whether
    the agent reading its inbox had read it before this read."""

    id: int
    sender: str
    to: str
    text: str
    at_ms: int
    read: bool = False

    @property
    def broadcast(self) -> bool:
        return self.to == ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
