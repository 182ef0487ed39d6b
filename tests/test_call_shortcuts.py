"""What the Lua scripts skip or remember to spare Redis work on every cycle (lib.lua), held to
the behaviour they stand for (Redis): an agent claiming in a loop is written down once a
second, a process's memo of small integer arguments forgets and still answers right, and
times compared as text agree with the same times as numbers, hand-written ones too."""

from __future__ import annotations

import time

import pytest

from claimroom.core import constants as C
from claimroom.core.errors import LeaseLost
from claimroom.core.models import State
from claimroom.core.redis.store import RedisStore
from claimroom.core.store import Store, TaskSpec


def _raw(store: Store) -> RedisStore:
    assert isinstance(store, RedisStore)
    return store


async def test_an_agent_claiming_in_a_loop_is_written_down_once_a_second(redis_store: Store) -> None:
    s = _raw(redis_store)
    seen: list[int] = []
    last = ""  # the last task claimed
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        c = await s.claim("looper")
        if c is None:
            await s.add_many([TaskSpec(title=f"t{i}") for i in range(200)])
            continue
        last = c.task.id
        await s.complete(c.task.id, c.token)
        # Its sighting on the affinity ring: a claim's alone (a completion writes last_seen_ms).
        seen.append(int(await s._redis.zscore(C.live_key(s.namespace), "looper")))
    written = sorted(set(seen))
    assert len(seen) > 3 * len(written)  # many claims, few writes
    assert len(written) >= 2  # and written again as the seconds pass
    assert len({ms // 1000 for ms in written}) == len(written)  # at most one a second
    claimed = (await s.get(last)).claimed_ms
    assert 0 <= claimed - written[-1] < 1000  # never more than a second behind


async def test_lease_lengths_past_what_a_process_remembers_are_still_right(redis_store: Store) -> None:
    s = _raw(redis_store)
    n = C.small_ints_kept + 20  # the memo of argument texts is forgotten on the way
    await s.add_many([TaskSpec(title=f"t{i}") for i in range(n)])
    await s.register("w", max_claims=n)
    for i in range(n):
        ttl_ms = 30_000 + i
        c = await s.claim("w", ttl_s=ttl_ms / 1000)
        assert c is not None
        assert (c.task.ttl_ms, c.task.deadline_ms - c.task.claimed_ms) == (ttl_ms, ttl_ms)
        stored = await s._redis.hget(C.task_key(s.namespace, c.task.id), "ttl_ms")
        assert stored == str(ttl_ms)  # spelled as an integer, as before
    assert len(await s.tasks(state=State.CLAIMED, limit=n)) == n


async def test_times_compared_as_text_agree_with_numbers(redis_store: Store) -> None:
    s = _raw(redis_store)
    ns, r = s.namespace, s._redis
    a, b, c = await s.add_many([TaskSpec(title="a"), TaskSpec(title="b"), TaskSpec(title="c")])
    await s.register("w", max_claims=3)
    ca = await s.claim("w", ttl_s=60)
    cb = await s.claim("w", ttl_s=60)
    cc = await s.claim("w", ttl_s=60)
    assert ca is not None and cb is not None and cc is not None and ca.task.id == a
    # The clock's length, a second behind: passed, though no sweep has seen it yet (a plain
    # task's completion checks the lease on the fields it read: lib.lua complete_task).
    await r.hset(C.task_key(ns, c), "deadline_ms", str(int(time.time() * 1000) - 1000))
    with pytest.raises(LeaseLost):
        await s.complete(c, cc.token)
    assert (await s.get(c)).state is State.QUEUED  # expired there and then: claimable again
    # A deadline of another length (written by hand) is compared as a number: long past.
    await r.hset(C.task_key(ns, a), "deadline_ms", "5000")
    with pytest.raises(LeaseLost):
        await s.complete(a, ca.token)
    assert (await s.get(a)).state is not State.CLAIMED  # expired there and then
    # The same length as the clock, a second ahead: compared as text, not passed.
    await r.hset(C.task_key(ns, b), "deadline_ms", str(int(time.time() * 1000) + 1000))
    assert await s.complete(b, cb.token) == []
    # A due time no one can read counts as due: the next claim sweeps and writes it anew.
    await r.set(C.due_key(ns), "not a time")
    await s.claim("w")
    assert await r.get(C.due_key(ns)) != "not a time"
