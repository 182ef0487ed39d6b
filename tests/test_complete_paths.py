"""The lean paths of a completion and a claim leave the board exactly as the general path does.

Most completions (no dependents, locks, plan nor earlier outcome; not for review) and most
claims (a queued task out of its ready set, not assigned, not routed to an owner) skip the
general walk through leave and enter in lib.lua (complete_task, claim_tasks). Here two
private redis-servers run the same random programs of adds, claims, completions (alone and
with the next claim), failures, dependencies and affinity keys: one with the library as
shipped, one with the lean paths switched off (the library's own text, their conditions
made false, loaded under the same names). Every key of the namespace, with times, tokens,
event ids and the server's run id made alike, must then hold the same on both.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_py
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claimroom.core import constants as C
from claimroom.core.local_redis import LocalRedis
from claimroom.core.models import event_fields
from claimroom.core.redis.scripts import library
from claimroom.core.redis.store import RedisStore

# Each lean path's condition, and the same made false.
LEAN = {
    "if plain and plain ~= '1' and ref == ''": "if false and plain and plain ~= '1' and ref == ''",
    "if ref == '' and (t.plain or not linked": "if false and ref == '' and (t.plain or not linked",
    "local t = from and #raw > 0 and lean_read": "local t = false and from and #raw > 0 and lean_read",
    "if count == 1 and a_caps == '' and qtext == '' and not personal then": "if false then",
}
_NS = itertools.count()


def general_only_library() -> str:
    """The shipped library with the lean paths never taken."""
    text = library().text
    for lean, off in LEAN.items():
        assert text.count(lean) == 1, f"a lean path's condition moved: update LEAN ({lean})"
        text = text.replace(lean, off)
    return text


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str]]:
    shipped, general = LocalRedis.start(), LocalRedis.start()
    try:
        redis_py.Redis.from_url(general.url).function_load(general_only_library())
        yield shipped.url, general.url
    finally:
        shipped.stop()
        general.stop()


# Times, tokens (an epoch's floor comes from the clock), event ids and run ids differ
# between two servers whatever the paths do. A run id first: one that begins with ten
# digits (about 1 in 100) would otherwise lose them alone to the time pattern.
_VARYING = re.compile(r"[0-9a-f]{40}|\d{10,}(?:-\d+)?")


def _alike(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        return _VARYING.sub("N", value)
    if isinstance(value, float):
        return "N" if value >= 1e9 else value
    return value


# Where the two paths index a task's events differently: the lean ones in its hash
# (C.task_event_fields), the general ones in its list. board compares what is indexed.
_INDEX_FIELDS = {f.encode() for f in C.task_event_fields}


def indexed_events(r: redis_py.Redis, namespace: str, task: str) -> list[str]:
    """The types of the events a task's index holds (its list and its hash's event
    fields, as core/redis/reads.py task_events reads them), in the trail's order."""
    listed = r.lrange(C.task_events_key(namespace, task), 0, -1)
    held = r.hmget(C.task_key(namespace, task), *C.task_event_fields)
    ids = sorted({*listed, *(e for e in held if e)}, key=lambda e: tuple(map(int, e.split(b"-"))))
    assert len(ids) == len(listed) + sum(1 for e in held if e), "an event indexed twice"
    entries = [r.xrange(C.events_key(namespace), e, e)[0][1] for e in ids]
    return [event_fields({k.decode(): v.decode() for k, v in f.items()})["type"] for f in entries]


def board(url: str, namespace: str) -> dict[str, Any]:
    """Every key of ``namespace``, its type and contents made comparable; each task's
    index of its events as the types of the events it holds."""
    r = redis_py.Redis.from_url(url)
    out: dict[str, Any] = {}
    for key in r.scan_iter(match=f"{{claimroom:{namespace}}}:*"):
        name, kind = _alike(key), r.type(key).decode()
        if name.startswith(C.task_events_key(namespace, "")):
            continue  # in the task's entry below
        if kind == "string":
            got: Any = _alike(r.get(key))
        elif kind == "hash":
            # A task's `plain` mark ends with any general step: the paths differ there alone
            # (plain_marks_hold checks what the mark promises).
            fields = r.hgetall(key)
            got = sorted(
                (_alike(k), _alike(v)) for k, v in fields.items() if k != b"plain" and k not in _INDEX_FIELDS
            )
            task = C.task_key(namespace, "")
            if name.startswith(task):
                got.append(("events", indexed_events(r, namespace, name[len(task) :])))
        elif kind == "set":
            got = sorted(_alike(m) for m in r.smembers(key))
        elif kind == "zset":
            got = sorted((_alike(m), _alike(s)) for m, s in r.zrange(key, 0, -1, withscores=True))
        elif kind == "list":
            got = [_alike(v) for v in r.lrange(key, 0, -1)]
        elif kind == "stream":
            got = [sorted((_alike(k), _alike(v)) for k, v in f.items()) for _, f in r.xrange(key)]
        else:
            got = kind
        out[name] = (kind, got)
    return out


# An affinity key routes a task to a live agent's own index (claimed through the general
# path), or to its ready set when no agent is live yet.
adds = st.tuples(
    st.just("add"), st.sampled_from(["q1", "q2"]), st.booleans(), st.sampled_from(["", "", "k1"]),
    st.sampled_from(["", "", "gpu"]),
)  # fmt: skip
claims = st.tuples(st.just("claim"), st.sampled_from(["a1", "a2"]))
ends = st.tuples(
    st.just("end"),
    st.sampled_from(["complete", "complete", "result", "next", "fail"]),
    st.integers(0, 5),
)
programs = st.lists(st.one_of(adds, claims, ends, ends), min_size=5, max_size=30)


async def run(url: str, namespace: str, program: list[tuple[Any, ...]]) -> list[str]:
    """The program on one server; what each step answered, for the two runs to match."""
    store = RedisStore(url, namespace)
    said: list[str] = []
    try:
        added: list[str] = []
        held: list[tuple[str, int, str]] = []  # (task, token, agent) in claim order
        await store.register("a2", ["gpu"])  # a1 takes only tasks that need nothing
        for step in program:
            if step[0] == "add":
                _, queue, depends, key, needs = step
                after = [added[-1]] if depends and added else []
                requires = [needs] if needs else []
                added.append(
                    await store.add(
                        f"t{len(added)}", queue=queue, after=after, affinity=key, requires=requires
                    )
                )
                said.append(added[-1])
            elif step[0] == "claim":
                got = await store.claim(step[1])
                if got is not None:
                    held.append((got.task.id, got.token, step[1]))
                    # The reply is built apart from what is written: it must read as stored.
                    assert got.task == await store.get(got.task.id)
                said.append("-" if got is None else got.task.id)
            elif held:
                _, how, pick = step
                task, token, agent = held.pop(pick % len(held))
                if how == "fail":
                    state, _ = await store.fail(task, token, "broke", agent=agent)
                    said.append(str(state))
                elif how == "next":
                    unblocked, nxt = await store.complete_and_claim(task, token, {"ok": 1}, agent=agent)
                    held += [(c.task.id, c.token, agent) for c in nxt]
                    assert [c.task for c in nxt] == [await store.get(c.task.id) for c in nxt]
                    said.append(f"{sorted(unblocked)} {[c.task.id for c in nxt]}")
                else:
                    result = {"n": pick} if how == "result" else None
                    said.append(str(sorted(await store.complete(task, token, result, agent=agent))))
    finally:
        await store.close()
    return said


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=programs)
def test_lean_and_general_completions_leave_one_board(servers: tuple[str, str], program: list[Any]) -> None:
    shipped, general = servers
    namespace = f"paths{next(_NS)}"
    said = asyncio.run(run(shipped, namespace, program))
    assert asyncio.run(run(general, namespace, program)) == said
    assert board(shipped, namespace) == board(general, namespace)
    plain_marks_hold(shipped, namespace)


def plain_marks_hold(url: str, namespace: str) -> None:
    """Every task marked `plain` (lib.lua end_plain) holds '=' and its `requires` there; an
    unfinished one has no dependents, no path locks, no plan fields, no result and no
    reason (a done one keeps the mark)."""
    r = redis_py.Redis.from_url(url, decode_responses=True)
    for key in r.scan_iter(match=C.task_key(namespace, "*")):
        t = r.hgetall(key)
        if "plain" in t:
            assert t["plain"] == "=" + t.get("requires", ""), t
        if "plain" in t and t["state"] != "done":
            tid = key[len(C.task_key(namespace, "")) :]
            assert not r.exists(C.dependents_key(namespace, tid), C.tasklocks_key(namespace, tid)), tid
            assert not {"plan", "plan_left", "plan_failed", "plan_total", "result", "reason"} & set(t), t


def test_the_switched_off_library_differs_only_there() -> None:
    """The comparison is between two paths: the general-only text is the shipped one but
    for the conditions, so a change elsewhere cannot pass unseen on one side."""
    shipped, general = library().text, general_only_library()
    for lean, off in LEAN.items():
        assert lean in shipped and off not in shipped
        shipped = shipped.replace(lean, off)
    assert shipped == general
