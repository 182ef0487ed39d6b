"""The whole-board dump both backends write and read (``Board``), and its checks.

A board travels as one backend-neutral dump, ``Board`` (``Store.export_board`` on the
source, ``Store.import_board`` on the destination): tasks with every field, live claims
with their tokens and deadlines, agents, path locks, the audit trail, paused queues and the
counters, so tokens handed out later stay greater than every earlier one. Each backend
reads its dump in one snapshot and writes one in one atomic step (``redis/dump.py``,
``file/dump.py``). Stop the agents first: work done on the source after the export is not
carried over.

The dump (all scalar values as strings, the form Redis hashes hold)::

    {"format": "claimroom-board", "version": 2, "namespace": ..., "now_ms": source clock,
     "counters": {"task": n, "token": n},
     "tasks": [task fields...] (creation order), "agents": [agent fields...],
     "locks": [{"path", "holds": [{"agent", "task", "mode", "expires_ms"}]}] (a mode per hold
     since version 2),
     "events": [{"type", "at_ms", "task", "agent", "token", "operator", "data"}] (oldest first),
     "paused": [queue...], "queues": [queue...],
     "retention": {scope: {setting: value}} (optional; scope "*" the board, else a queue;
     as stored: durations in ms, -1 for no limit; a destination's own settings win),
     "messages": [{"id", "sender", "to", "text", "at_ms"}], "reads": [{"agent", "id"}]
     (optional; counters["message"] too)}
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from typing import NotRequired, TypedDict

from .errors import BadInput, Conflict
from .models import LockHold
from .safetext import first_control, shown

FORMAT = "claimroom-board"
VERSION = 2


class HoldDump(TypedDict):
    """One hold on a locked path, as a dump carries it."""

    agent: str
    task: str  # "" when untied
    mode: str  # "shared" or "exclusive"
    expires_ms: str


class LockDump(TypedDict):
    path: str
    holds: list[HoldDump]


class Board(TypedDict):
    """A whole board, as ``Store.export_board`` gives it and ``Store.import_board`` takes it."""

    format: str
    version: int
    namespace: str
    now_ms: str
    counters: dict[str, str]  # "task", "token"
    tasks: list[dict[str, str]]  # every field, as a Redis task hash holds them
    agents: list[dict[str, str]]
    locks: list[LockDump]
    events: list[dict[str, str]]  # oldest first
    paused: list[str]
    queues: list[str]
    retention: NotRequired[dict[str, dict[str, int]]]  # scope -> settings as stored
    # Messages (core/messages.py), oldest first: id, sender, to ("" a broadcast), text,
    # at_ms; and the read marks, {agent, id}. Imported ids are shifted past the
    # destination's (counters["message"]), so a merge keeps both boards' messages.
    messages: NotRequired[list[dict[str, str]]]
    reads: NotRequired[list[dict[str, str]]]
    # The bids of open bidding windows (optional): {"task", "agent", "cost", "at_ms", "ttl_ms"}.
    # A window's own close time is its task's bid_close_ms (open: blocked, waiting on nothing).
    bids: NotRequired[list[dict[str, str]]]


def in_auction(t: Mapping[str, str]) -> bool:
    """Whether a dumped task's bidding window is open (the auctions index follows this)."""
    return (
        t.get("state") == "blocked"
        and int(t.get("bid_close_ms") or 0) > 0
        and int(t.get("waiting") or 0) <= 0
        and not t.get("bid_winner")
    )


def waits_for_owner(t: Mapping[str, str], owners: set[str]) -> bool:
    """Whether a dumped task keeps waiting for its affinity owner in an import: queued,
    unassigned, before its steal time, its owner among ``owners`` (the board's agents, who
    arrive on the ring as last seen). Otherwise it arrives anyone's, as after its steal time."""
    return (
        t.get("state") == "queued"
        and not t.get("assigned")
        and int(t.get("steal_ms") or 0) > 0
        and t.get("owner", "") in owners
    )


# The task fields a person reads that claimroom now refuses control characters in (the
# names, ids and operator names never could hold any), and whether newlines may stay.
_TEXT_FIELDS = {"title": False, "stage": False, "affinity": False, "reason": True, "checkpoint": True}


def without_controls(board: Board) -> tuple[Board, int]:
    """The board with control characters in its texts escaped (``safetext.shown``), and how
    many texts that changed.

    A board from an older claimroom may hold text that this one refuses (an ESC in a
    title): refusing the whole migration would strand that board, so those texts arrive
    escaped, as every view would show them anyway. The audit trail is carried as it was
    recorded (it is history, and escaped wherever it is shown)."""
    out = copy.deepcopy(board)
    changed = 0
    for t in out["tasks"]:
        for name, multiline in _TEXT_FIELDS.items():
            value = t.get(name)
            if isinstance(value, str) and first_control(value, multiline=multiline):
                t[name] = shown(value, multiline=multiline)
                changed += 1
    for lk in out["locks"]:
        if first_control(lk["path"]):
            lk["path"] = shown(lk["path"])
            changed += 1
    return out, changed


_ID = re.compile(r"t(\d+)")  # a task id: t<seq>


def check(board: Mapping[str, object]) -> None:
    """``BadInput`` unless ``board`` is a dump this version understands. Every task's id
    is ``t<seq>``, as every store names them: a Redis board stores neither and reads the
    seq from the id (lib.lua seq_of)."""
    if board.get("format") != FORMAT or board.get("version") != VERSION:
        raise BadInput("not a claimroom board dump of a version this claimroom reads")
    tasks = board.get("tasks")
    for t in tasks if isinstance(tasks, list) else []:
        tid = t.get("id") if isinstance(t, dict) else None
        if not isinstance(tid, str) or _ID.fullmatch(tid) is None or tid != f"t{t.get('seq')}":
            raise BadInput(f"task {tid!r} in the dump: a task's id must be t<seq> (t1, t2, ...)")


def not_empty(namespace: str, url: str, tasks: int, agents: int, events: int) -> Conflict:
    return Conflict(
        f"namespace {namespace!r} at {url} is not empty ({tasks} tasks, {agents} agents, "
        f"{events} events); migrate into an empty namespace, or add --merge to combine the boards"
    )


def shifted(board: Board, ms: int) -> Board:
    """The board with its live deadlines moved by ``ms``: the destination's clock differs."""
    out = copy.deepcopy(board)
    for t in out["tasks"]:
        if t.get("state") == "claimed" and t.get("deadline_ms"):
            t["deadline_ms"] = str(int(t["deadline_ms"]) + ms)
        if t.get("state") == "retrying" and t.get("ready_ms"):
            t["ready_ms"] = str(int(t["ready_ms"]) + ms)
        if in_auction(t):
            t["bid_close_ms"] = str(int(t["bid_close_ms"]) + ms)
        if t.get("state") == "review" and t.get("review_ms"):  # time in review is shown live
            t["review_ms"] = str(int(t["review_ms"]) + ms)
        if t.get("state") == "queued" and int(t.get("steal_ms") or 0) > 0:  # an owner's time to itself
            t["steal_ms"] = str(int(t["steal_ms"]) + ms)
    for b in out.get("bids", []):
        b["at_ms"] = str(int(b["at_ms"]) + ms)
    for a in out["agents"]:
        if int(a.get("breaker_open_until_ms") or 0):
            a["breaker_open_until_ms"] = str(int(a["breaker_open_until_ms"]) + ms)
    for lk in out["locks"]:
        for h in lk["holds"]:
            h["expires_ms"] = str(int(h["expires_ms"]) + ms)
    return out


def renumbered(board: Board, top: int) -> Board:
    """The board with task ``tN`` renamed ``t(N + top)`` everywhere it is named."""
    if top == 0:
        return board
    out = copy.deepcopy(board)
    names: dict[str, str] = {}
    for t in out["tasks"]:
        m = _ID.fullmatch(t["id"])
        seq = int(m.group(1)) if m else int(t["seq"])
        names[t["id"]] = f"t{seq + top}"
        t["seq"] = str(seq + top)

    def one(x: str) -> str:
        return names.get(x, x)

    def many(x: str) -> str:
        return ",".join(one(v) for v in x.split(",") if v)

    for t in out["tasks"]:
        t["id"] = one(t["id"])
        t["after"] = many(t.get("after", ""))
        t["parent"] = one(t.get("parent", ""))
        if t.get("plan"):  # the plan parent a subtask rolls up to
            t["plan"] = one(t["plan"])
    for lk in out["locks"]:
        for h in lk["holds"]:
            h["task"] = one(h.get("task", ""))
    for b in out.get("bids", []):
        b["task"] = one(b["task"])
    for e in out["events"]:
        e["task"] = one(e.get("task", ""))
        if e.get("data"):
            data = json.loads(e["data"])
            if isinstance(data, dict):
                for key in ("after", "parent"):
                    if isinstance(data.get(key), str):
                        data[key] = one(data[key])
                if isinstance(data.get("cancelled"), list):
                    data["cancelled"] = [one(x) for x in data["cancelled"]]
                e["data"] = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    out["counters"] = {**out["counters"], "task": str(int(out["counters"]["task"]) + top)}
    return out


_MODES = {True: "shared", False: "exclusive"}


def dumped_holds(holds: Iterable[LockHold]) -> list[HoldDump]:
    """Holds in the dump's form (every one, live or not: the destination's reaper ends them)."""
    return [
        {"agent": h.agent, "task": h.task, "mode": _MODES[h.shared], "expires_ms": str(h.expires_ms)}
        for h in holds
    ]


def _covers(a: str, b: str) -> bool:
    return a == b or b.startswith(a + "/") or a.startswith(b + "/")


def lock_clash(incoming: list[LockDump], present: list[LockDump], now_ms: int) -> str | None:
    """A message naming the first incoming lock that clashes with a present one, or None:
    live holds of two agents on overlapping paths, not both shared."""
    for new in incoming:
        for old in present:
            if not _covers(new["path"], old["path"]):
                continue
            for h in _live(old, now_ms):
                for n in _live(new, now_ms):
                    if n["agent"] != h["agent"] and not n["mode"] == h["mode"] == "shared":
                        where = f"(at {old['path']}) in the destination"
                        return f"{new['path']} is locked by {h['agent']} {where}"
    return None


def _live(lock: LockDump, now_ms: int) -> list[HoldDump]:
    return [h for h in lock["holds"] if int(h["expires_ms"]) > now_ms]
