"""How the Redis audit trail stores an event: one field, value pair (the type, then
"<task> <agent> <token> <at_ms> <data>"), or named fields for an operator's event and for
every event written before; every reader gives the same events either way (Redis)."""

from __future__ import annotations

import json

import redis as redis_py

from claimroom.core import constants as C
from claimroom.core.models import State, event_fields
from claimroom.core.store import Store


def _raw(url: str, ns: str) -> list[dict[str, str]]:
    r = redis_py.Redis.from_url(url, decode_responses=True)
    return [fields for _eid, fields in r.xrange(C.events_key(ns), "-", "+")]


async def test_an_agents_events_are_one_field_and_read_back_whole(redis_store: Store, redis_url: str) -> None:
    s = redis_store
    await s.register("ada")
    broken = await s.add("a title with spaces")
    tid = await s.add("second")
    c = await s.claim("ada")
    assert c is not None and c.task.id == broken
    await s.fail(broken, c.token, "it broke: disk full, twice")  # data with spaces
    c = await s.claim("ada")
    assert c is not None and c.task.id == tid
    await s.complete(tid, c.token, {"note": "done at last"})
    raw = _raw(redis_url, s.namespace)
    kinds = ["registered", "added", "added", "claimed", "failed", "claimed", "completed"]
    assert [list(f) for f in raw] == [[k] for k in kinds]
    task, agent, token, at_ms, _data = raw[6]["completed"].split(" ", 4)
    assert (task, agent, token) == (tid, "ada", str(c.token)) and at_ms.isdigit()

    (failed,) = [e for e in await s.events(task=broken) if e.type == "failed"]
    assert failed.data["reason"] == "it broke: disk full, twice" and failed.agent == "ada"
    events = await s.events(task=tid)
    assert [e.type for e in events] == ["added", "claimed", "completed"]
    assert all(e.task == tid and e.at_ms > 0 for e in events)
    assert events[0].agent == "" and events[0].token == 0  # empty parts read as their defaults
    assert events[2].agent == "ada" and events[2].token == c.token
    assert [e.type for e in await s.events()] == [next(iter(f)) for f in raw]  # the whole trail alike


async def test_an_operators_event_keeps_named_fields(redis_store: Store, redis_url: str) -> None:
    s = redis_store
    tid = await s.add("x")
    await s.act("cancel", tid, State.QUEUED, 0, "night shift ops")  # a name with spaces
    raw = _raw(redis_url, s.namespace)
    assert raw[-1]["operator"] == "night shift ops" and raw[-1]["type"] == "cancelled"
    (event,) = [e for e in await s.events(task=tid) if e.type == "cancelled"]
    assert event.operator == "night shift ops" and event.task == tid


async def test_entries_in_the_earlier_form_read_and_export_alike(redis_store: Store, redis_url: str) -> None:
    s = redis_store
    tid = await s.add("x")
    r = redis_py.Redis.from_url(redis_url, decode_responses=True)
    # As a claimroom before wrote a claim's event: six named fields.
    older = {"type": "claimed", "at_ms": "1700000000000", "task": tid, "agent": "bo", "token": "7"}
    r.xadd(C.events_key(s.namespace), {**older, "data": json.dumps({"attempt": 1})})
    newer = await s.events()
    assert [(e.type, e.task, e.agent, e.token, e.at_ms) for e in newer] == [
        ("added", tid, "", 0, newer[0].at_ms),
        ("claimed", tid, "bo", 7, 1_700_000_000_000),
    ]
    assert newer[1].data == {"attempt": 1}
    # An export holds named fields whichever form the trail holds.
    exported = (await s.export_board())["events"]
    assert [e["type"] for e in exported] == ["added", "claimed"]
    assert exported[0]["task"] == tid and "agent" not in exported[0]
    assert all(event_fields(e) == e for e in exported)
