"""Plan files: a parent and its subtasks, read, checked whole and added atomically.

A plan file is JSON (YAML is not read: no YAML library is among claimroom's dependencies)::

    {"title": "port the CLI to click", "queue": "backend",
     "subtasks": [{"ref": "parse", "title": "parser", "requires": ["python"]},
                  {"ref": "docs", "title": "docs", "after": ["parse"]}]}

The parent and each subtask take any field of ``store.TaskSpec`` (read from the dataclass,
so a field added there works in plans at once) except ``parent``, which the plan sets. A
subtask's ``after`` names other subtasks by ``ref``, or existing tasks by id (``t12``); a
ref shadows a task id of the same spelling. A plan with invalid JSON, an unknown or bad
field, a duplicate ref, a dangling reference or a cycle is refused whole (``BadInput``,
naming the line or item), before anything is written. Subtasks are added in dependency
order, so each ``$k`` reference points back in the one atomic batch (``Store.plan``).
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import constants
from .acting import Acting
from .errors import BadInput, NotFound
from .store import Plan, Store, TaskSpec

_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}")
_TASK_ID = re.compile(r"t\d{1,15}")  # the ids a store gives ("t" and its sequence number)
_FIELDS = {f.name: f for f in dataclasses.fields(TaskSpec) if f.name != "parent"}


@dataclass(frozen=True)
class PlanFile:
    """A checked plan: the store's ``Plan`` (subtasks in dependency order) and, per
    position in it, the subtask's place in the file and its ref."""

    plan: Plan
    refs: tuple[str, ...]  # in file order
    order: tuple[int, ...]  # order[k]: the file index of the plan's k-th subtask
    existing: tuple[str, ...]  # task ids the subtasks wait on (not refs of the file)


def parse(text: str) -> PlanFile:
    """A plan file's text, checked whole; ``BadInput`` naming the problem."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"plan: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise BadInput("plan: JSON nested too deep") from None
    return load(data, text)


def load(data: Any, text: str = "") -> PlanFile:
    """A plan from its decoded JSON (``text``, when there is one, for line numbers)."""
    if not isinstance(data, Mapping):
        raise BadInput("plan: must be a JSON object with a title and subtasks")
    items = data.get("subtasks")
    if not isinstance(items, list) or not items:
        raise BadInput("plan: subtasks must be a non-empty list")
    if len(items) + 1 > constants.max_plan_tasks:
        raise BadInput(f"plan: at most {constants.max_plan_tasks} tasks in one plan")
    top = {k: v for k, v in data.items() if k != "subtasks"}
    parent = _spec("plan", top, text, 0, require_title=False)
    refs: list[str] = []
    where: dict[str, int] = {}
    for i, item in enumerate(items):
        name = f"subtasks[{i}]"
        if not isinstance(item, Mapping):
            raise BadInput(f"plan: {name} must be an object")
        ref = item.get("ref")
        if not isinstance(ref, str) or not _REF.fullmatch(ref):
            raise BadInput(f"plan: {name}: ref must be a name of letters, digits and _ . : / - (got {ref!r})")
        if ref in where:
            first = where[ref]
            raise BadInput(
                f"plan: {name}: duplicate ref {ref!r} (also subtasks[{first}]){_line(text, ref, 1)}"
            )
        where[ref] = i
        refs.append(ref)
    specs: list[TaskSpec] = []
    deps: list[list[int]] = []
    existing: dict[str, None] = {}
    for i, item in enumerate(items):
        name = f'subtasks[{i}] ("{refs[i]}")'
        fields = {k: v for k, v in item.items() if k != "ref"}
        spec = _spec(name, fields, text, _ref_pos(text, refs[i]))
        mine: list[int] = []
        for a in spec.after:
            if a in where:
                mine.append(where[a])
            elif _TASK_ID.fullmatch(a):
                existing[a] = None
            else:
                raise BadInput(f"plan: {name}: after names {a!r}, no ref of this plan{_line(text, refs[i])}")
        specs.append(spec)
        deps.append(mine)
    for a in parent.after:
        if a in where:
            raise BadInput(
                f"plan: the parent's after names subtask {a!r}: a parent waits for its subtasks anyway"
            )
        if not _TASK_ID.fullmatch(a):
            raise BadInput(f"plan: the parent's after names {a!r}, not a task id")
        existing[a] = None
    order = _topological(refs, deps)
    pos = {file_index: k for k, file_index in enumerate(order)}
    subtasks = []
    for file_index in order:
        spec = specs[file_index]
        after = [f"${pos[where[a]]}" if a in where else a for a in spec.after]
        subtasks.append(dataclasses.replace(spec, after=after))
    return PlanFile(Plan(subtasks=subtasks, parent=parent), tuple(refs), tuple(order), tuple(existing))


def _spec(
    name: str, fields: Mapping[str, Any], text: str, at: int, *, require_title: bool = True
) -> TaskSpec:
    """One task of the plan as a ``TaskSpec``, every field checked as ``add`` checks it."""
    for key, value in fields.items():
        f = _FIELDS.get(key)
        if f is None:
            known = ", ".join(sorted(_FIELDS))
            raise BadInput(
                f"plan: {name}: unknown field {key!r}{_line(text, key, at)} (fields: ref, {known})"
            )
        problem = _type_problem(f, value)
        if problem:
            raise BadInput(f"plan: {name}: field {key!r} {problem}{_line(text, key, at)}")
    if require_title and "title" not in fields:
        raise BadInput(f"plan: {name}: no title{_line(text, '', at)}")
    spec = TaskSpec(**{"title": "", **fields})
    try:
        # after is checked against the plan's refs by the caller; the rest as add would.
        dataclasses.replace(spec, title=spec.title or "plan", after=[]).checked()
    except BadInput as exc:
        raise BadInput(f"plan: {name}: {exc}{_line(text, '', at)}") from None
    return spec


def _type_problem(f: dataclasses.Field[Any], value: Any) -> str:
    """What is wrong with ``value``'s JSON type for field ``f`` ("" when it fits)."""
    default = f.default
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return "must be a list of strings"
    elif isinstance(default, bool):
        if not isinstance(value, bool):
            return "must be true or false"
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be a whole number"
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number"
    elif isinstance(default, str) and not isinstance(value, str):
        return "must be a string"
    return ""


def _ref_pos(text: str, ref: str) -> int:
    """Where the item with ``ref`` is in the text (0 when it cannot be found cheaply)."""
    m = re.search(r'"ref"\s*:\s*' + re.escape(json.dumps(ref)), text)
    return m.start() if m else 0


def _line(text: str, key: str, at: int = 0) -> str:
    """ " (line N)" for the first ``"key"`` at or after ``at`` in the text ('' key: ``at``)."""
    if not text:
        return ""
    pos = at
    if key:
        found = text.find(json.dumps(key), at)
        if found < 0:
            return ""
        pos = found
    return f" (line {text.count(chr(10), 0, pos) + 1})"


def _topological(refs: list[str], deps: list[list[int]]) -> list[int]:
    """File indexes in dependency order (file order among the free ones); a cycle is refused
    naming its refs."""
    n = len(refs)
    waiting = [len(set(d)) for d in deps]
    users: list[list[int]] = [[] for _ in range(n)]
    for i, d in enumerate(deps):
        for j in set(d):
            users[j].append(i)
    ready = [i for i in range(n) if waiting[i] == 0]
    heapq.heapify(ready)
    out: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        out.append(i)
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(out) < n:
        raise BadInput(f"plan: cycle: {' -> '.join(refs[i] for i in _cycle(deps, set(out)))}")
    return out


def _cycle(deps: list[list[int]], placed: set[int]) -> list[int]:
    """One cycle among the items not placed: each of them waits on another unplaced one,
    so walking back from any of them must come round."""
    start = min(i for i in range(len(deps)) if i not in placed)
    seen: dict[int, int] = {}
    path: list[int] = []
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = min(j for j in deps[node] if j not in placed)
    loop = path[seen[node] :]
    loop.reverse()  # dependency first: "a -> b" reads "b runs after a"
    return [*loop, loop[0]]


async def add(
    store: Store,
    pf: PlanFile,
    *,
    by: str = "",
    parent: str = "",
    token: int = 0,
    agent: str = "",
    acting: Acting | None = None,
) -> dict[str, Any]:
    """Add a checked plan (``Store.plan``); returns ``{"parent": id, "subtasks": {ref: id}}``
    with the subtasks in file order. Under ``parent`` (a planner's claim) the file's own
    parent fields other than its title are refused: nothing would take them. Through
    ``acting``, as that identity (``Acting.plan``: a planner's or an operator's).
    Task ids the subtasks wait on are looked up first, so a missing one is bad input
    naming it (the atomic add checks them again)."""
    if not parent and (pf.plan.parent is None or not pf.plan.parent.title):
        raise BadInput("plan: the parent needs a title (or use --parent under a claim)")
    if parent and pf.plan.parent is not None:
        extra = [
            f.name
            for f in dataclasses.fields(TaskSpec)
            if f.name != "title" and not _default(pf.plan.parent, f)
        ]
        if extra:
            raise BadInput(
                f"plan: under --parent the file's parent takes only a title, not {', '.join(extra)}"
            )
    for tid in pf.existing:
        try:
            await store.get(tid)
        except NotFound:
            raise BadInput(f"plan: after names {tid!r}: no such task and no ref of this plan") from None
    plan = pf.plan if not parent else dataclasses.replace(pf.plan, parent=None)
    if acting is not None:
        ids = await acting.plan(plan, parent=parent, token=token)
    else:
        ids = await store.plan(plan, by=by, parent=parent, token=token, agent=agent)
    by_file = {pf.order[k]: ids[k + 1] for k in range(len(pf.order))}
    return {"parent": ids[0], "subtasks": {pf.refs[i]: by_file[i] for i in range(len(pf.refs))}}


def _default(spec: TaskSpec, f: dataclasses.Field[Any]) -> bool:
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return bool(getattr(spec, f.name) == default)
