"""A batch does on Redis exactly what the same work one task at a time does.

claim-1.lua with a count takes several tasks from the best ready set in one ZPOPMIN (those
that come before every other ready set's head) and complete_many asks once whether any of
its tasks has links. Two boards get the same random tasks; one is worked in batches, the
other one task per call; the tasks claimed, their order, and every index the scripts keep
must come out the same (deadlines and timestamps aside: the clock moved on).
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
import redis as redis_py
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claimroom.core import constants as C
from claimroom.core.models import State
from claimroom.core.store import Store, TaskSpec

QUEUES = ["q1", "q2", "q3"]
SIGS = [[], ["gpu"], ["py"], ["gpu", "py"]]
_NS = itertools.count()

tasks_st = st.lists(
    st.tuples(st.sampled_from(QUEUES), st.integers(0, 3), st.sampled_from(range(len(SIGS)))),
    min_size=1,
    max_size=30,
)


def _index_view(r: redis_py.Redis, ns: str) -> dict[str, Any]:
    """Every index the claim and complete paths write, as comparable values, by the key's
    name past the namespace's prefix (the same in both boards)."""
    p = C.prefix(ns)
    # Times, stream ids and tokens differ by the clock alone.
    skip = {
        C.events_key(ns),
        C.due_key(ns),
        C.epoch_key(ns),
        C.live_key(ns),
        C.ring_key(ns),
        C.seq_key(ns, "token"),
    }
    per_item = (C.task_key(ns, ""), C.task_events_key(ns, ""), C.agent_key(ns, ""))
    out: dict[str, Any] = {}
    for key in sorted(k.decode() for k in r.scan_iter(match=p.replace("{", "[{]") + "*", count=1000)):
        if key in skip or key.startswith(per_item):
            continue
        kind = r.type(key).decode()
        if kind == "zset":
            pairs = r.zrange(key, 0, -1, withscores=True)
            # A deadline is the claim's clock plus its lease: only who holds one compares. A
            # finished index is scored by the clock too: its order compares.
            value: Any = pairs
            if key == C.deadlines_key(ns):
                value = sorted(m.decode() for m, _ in pairs)
            elif key.startswith(C.finished_key(ns, "", "")[:-1]):
                value = [m.decode() for m, _ in pairs]
        elif kind == "set":
            value = sorted(r.smembers(key))
        elif kind == "hash":
            value = r.hgetall(key)
        else:
            value = r.get(key) if kind == "string" else kind
        out[key[len(p) :]] = value
    return out


def _titles(claims: list[Any]) -> list[str]:
    return [c.task.title for c in claims]


async def _one_by_one(s: Store, agent: str, n: int, queues: list[str]) -> list[Any]:
    got = []
    for _ in range(n):
        c = await s.claim(agent, queues=queues)
        if c is None:
            break
        got.append(c)
    return got


def test_batches_match_one_task_at_a_time(redis_server: Any) -> None:
    r = redis_py.Redis.from_url(redis_server.url)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        tasks_st,
        st.sampled_from(range(len(SIGS))),
        st.integers(2, 12),
        st.integers(0, 12),
        st.lists(st.sampled_from(QUEUES), max_size=2, unique=True),
        st.sampled_from([None, *QUEUES]),
    )
    def check(
        specs: list[tuple[str, int, int]], caps: int, k: int, k2: int, queues: list[str], paused: str | None
    ) -> None:
        asyncio.run(one(specs, SIGS[caps] + ["extra"], k, k2, queues, paused))

    async def one(
        specs: list[tuple[str, int, int]],
        caps: list[str],
        k: int,
        k2: int,
        queues: list[str],
        paused: str | None,
    ) -> None:
        n = next(_NS)
        ns_batch, ns_single = f"bat{n}", f"one{n}"
        stores = [Store.from_url(redis_server.url, ns) for ns in (ns_batch, ns_single)]
        try:
            for s in stores:
                await s.add_many(
                    [
                        TaskSpec(title=f"t{i}", queue=q, priority=pr, requires=SIGS[sig])
                        for i, (q, pr, sig) in enumerate(specs)
                    ]
                )
                await s.register("ada", caps, max_claims=64)
                if paused:
                    await s.pause(paused, "op")
            batch, single = stores
            first = await batch.claim_many("ada", k, queues=queues)
            taken = await _one_by_one(single, "ada", k, queues)
            assert _titles(first) == _titles(taken)
            assert _index_view(r, ns_batch) == _index_view(r, ns_single)
            # Finish them all and take the next ones: in one call, and one task per call.
            outcomes, nxt = await batch.complete_many(
                [(c.task.id, c.token) for c in first], agent="ada", claim_next=k2, queues=queues
            )
            assert all(o.error is None for o in outcomes)
            for c in taken:  # in the same order: retention's finished order is the same
                await single.complete(c.task.id, c.token)
            assert _titles(nxt) == _titles(await _one_by_one(single, "ada", k2, queues))
            assert _index_view(r, ns_batch) == _index_view(r, ns_single)
            assert await batch.counts() == await single.counts()
        finally:
            for s in stores:
                await s.close()

    check()


async def test_an_error_midway_leaves_what_came_before_it_whole(redis_store: Store, redis_url: str) -> None:
    """A Redis error in the middle of a batch (here a task record that is not a hash) ends
    the call, and the tasks finished before it have every index written with them."""
    ns = redis_store.namespace
    await redis_store.register("ada", max_claims=3)
    ids = await redis_store.add_many([TaskSpec(title=t) for t in "abc"])
    got = await redis_store.claim_many("ada", 3)
    raw = redis_py.Redis.from_url(redis_url)
    raw.delete(C.task_key(ns, ids[1]))
    raw.set(C.task_key(ns, ids[1]), "not a task")
    with pytest.raises(redis_py.ResponseError, match="WRONGTYPE"):
        await redis_store.complete_many([(c.task.id, c.token) for c in got], agent="ada")
    assert (await redis_store.get(ids[0])).state is State.DONE
    assert raw.zscore(C.state_key(ns, "done"), ids[0]) is not None
    assert raw.zscore(C.deadlines_key(ns), ids[0]) is None
    assert raw.smembers(C.held_key(ns, "ada")) == {ids[1].encode(), ids[2].encode()}  # a's left
    assert (await redis_store.get(ids[2])).state is State.CLAIMED  # after the error: untouched


async def test_an_error_midway_through_a_claim_of_several(redis_store: Store, redis_url: str) -> None:
    ns = redis_store.namespace
    await redis_store.register("ada", max_claims=3)
    ids = await redis_store.add_many([TaskSpec(title=t) for t in "abc"])
    raw = redis_py.Redis.from_url(redis_url)
    raw.delete(C.task_key(ns, ids[1]))
    raw.set(C.task_key(ns, ids[1]), "not a task")
    with pytest.raises(redis_py.ResponseError, match="WRONGTYPE"):
        await redis_store.claim_many("ada", 3)
    first = await redis_store.get(ids[0])
    assert first.state is State.CLAIMED and first.agent == "ada"
    assert raw.zscore(C.deadlines_key(ns), ids[0]) is not None
    assert raw.zscore(C.state_key(ns, "queued"), ids[0]) is None
    assert [t.id for t in await redis_store.held("ada")] == [ids[0]]
