"""Upkeep the Lua scripts do on one call in ``upkeep_every`` per board and Redis process
(lib.lua every_nth) rather than on each: the audit trail's cap and the deadline index's keeper
still hold, within the bounds core/constants.py gives (Redis)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis as redis_py

from claimroom.core import constants as C
from claimroom.core.models import event_fields
from claimroom.core.redis import scripts
from claimroom.core.store import Store, TaskSpec

CAP = 300
NODE = 100  # stream-node-max-entries: XADD MAXLEN ~ removes whole nodes only


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A library whose audit trail is capped at CAP events (a new library: its name is a hash
    of its text), and the usual one again afterwards."""
    monkeypatch.setitem(C.LUA_CONSTANTS, "audit_max_len", CAP)
    scripts.library.cache_clear()
    yield
    monkeypatch.undo()
    scripts.library.cache_clear()


def _trail(raw: redis_py.Redis, ns: str) -> tuple[int, list[str]]:
    """How many events the trail holds, and the types of its newest three."""
    newest = raw.xrevrange(C.events_key(ns), "+", "-", count=3)
    return raw.xlen(C.events_key(ns)), [event_fields(f)["type"] for _, f in newest]


async def test_the_audit_trail_stays_capped_when_trimmed_on_one_append_in_n(
    small_cap: None, redis_url: str, namespace: str
) -> None:
    raw = redis_py.Redis.from_url(redis_url, decode_responses=True)
    bound = CAP + NODE + C.upkeep_every
    async with Store.from_url(redis_url, namespace) as s:
        await s.add_many([TaskSpec(f"t{i}") for i in range(1_000)])  # 1,000 `added` events
        length, newest = _trail(raw, namespace)
        assert CAP <= length < bound and newest == ["added"] * 3
        for _ in range(200):  # the claim's and the completion's own append (lease_event)
            c = await s.claim("ada")
            assert c is not None
            await s.complete(c.task.id, c.token)
            length, _ = _trail(raw, namespace)
            assert length < bound
        length, newest = _trail(raw, namespace)
        assert length >= CAP and newest == ["completed", "claimed", "completed"]
        # What it kept is the newest: the last completion is the trail's last event.
        ((_, last),) = raw.xrevrange(C.events_key(namespace), "+", "-", count=1)
        assert event_fields(last)["type"] == "completed" and event_fields(last)["task"] == c.task.id


async def test_a_deadline_index_made_anew_gets_its_keeper_within_n_claims(
    redis_store: Store, redis_url: str
) -> None:
    raw = redis_py.Redis.from_url(redis_url)
    deadlines = C.deadlines_key(redis_store.namespace)
    await redis_store.add_many([TaskSpec(f"t{i}") for i in range(2 * C.upkeep_every + 2)])
    c = await redis_store.claim("ada")
    assert c is not None
    assert raw.zscore(deadlines, C.deadlines_keep) == float("inf")  # the first claim on this board
    await redis_store.complete(c.task.id, c.token)
    raw.delete(deadlines)  # as after a FLUSHDB: this process's count goes on
    for _ in range(C.upkeep_every):
        c = await redis_store.claim("ada")
        assert c is not None
        await redis_store.complete(c.task.id, c.token)
    assert raw.zscore(deadlines, C.deadlines_keep) == float("inf")
    assert raw.object("encoding", deadlines) == b"skiplist"
    assert [t.id for t in await redis_store.tasks(state="claimed")] == []  # never read as a claim
