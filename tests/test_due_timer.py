"""The board's `due` score (lib.lua due_at, sweep_due): a claim sweeps only once something
fell due, so `due` must never be later than the earliest thing that falls due (real Redis)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest
import redis as redis_py

from claimroom.core import constants as C
from claimroom.core.errors import ClaimroomError
from claimroom.core.models import State
from claimroom.core.redis.store import RedisStore
from claimroom.core.store import Store, TaskSpec

TIMERS = (
    C.deadlines_key,
    C.backoff_key,
    C.auctions_key,
    C.steal_key,
    C.cascades_cancel_key,
    C.cascades_restore_key,
)


def earliest_due(r: redis_py.Redis, ns: str) -> float | None:
    """What the indexes themselves say falls due first (None: nothing pending)."""
    found: list[float] = []
    for key in TIMERS:
        head = r.zrange(key(ns), 0, 0, withscores=True)
        found += [head[0][1]] if head else []
    live = r.zrange(C.live_key(ns), 0, 0, withscores=True)
    found += [live[0][1] + C.affinity_live_s * 1000] if live else []
    return min(found) if found else None


def due_score(r: redis_py.Redis, ns: str) -> float | None:
    got = r.get(C.due_key(ns))
    return None if got is None else float(got)


async def test_due_is_never_later_than_what_falls_due_under_random_operations(redis_store: Store) -> None:
    assert isinstance(redis_store, RedisStore)
    ns, rng = redis_store.namespace, random.Random(17)
    r = redis_py.Redis.from_url(redis_store.url, decode_responses=True)
    held: list[tuple[str, int]] = []
    specs = [
        TaskSpec(
            title=f"t{i}", affinity=f"k{i % 3}" if i % 4 == 0 else "", bid_window_s=0.5 if i % 9 == 0 else 0
        )
        for i in range(40)
    ]
    await redis_store.add_many(specs)
    try:
        for step in range(250):
            op = rng.choice(("claim", "claim", "heartbeat", "fail", "complete", "add", "reap"))
            try:
                if op == "claim":
                    c = await redis_store.claim(
                        f"a{rng.randrange(4)}", ttl_s=rng.choice((0.05, 30.0, 60.0, 60.0))
                    )
                    if c is not None:
                        held.append((c.task.id, c.token))
                elif op == "heartbeat" and held:
                    tid, tok = rng.choice(held)
                    await redis_store.heartbeat(tid, tok, ttl_s=rng.choice((0.05, 20.0, 90.0)))
                elif op == "fail" and held:
                    tid, tok = held.pop(rng.randrange(len(held)))
                    await redis_store.fail(tid, tok, "flaky")
                elif op == "complete" and held:
                    tid, tok = held.pop(rng.randrange(len(held)))
                    await redis_store.complete(tid, tok)
                elif op == "add":
                    await redis_store.add(f"late {step}", affinity=rng.choice(("", "k1")))
                else:
                    await redis_store.reap()
            except ClaimroomError:
                pass  # a lease lost meanwhile, a refused retry: the point is the timers
            first, due = earliest_due(r, ns), due_score(r, ns)
            if first is not None:
                assert due is not None and due <= first, f"step {step} ({op}): due {due}, first {first}"
    finally:
        r.close()


async def test_a_board_without_due_is_swept_by_the_next_claim(redis_store: Store) -> None:
    # As a board written before `due` existed, or just imported: its expired lease is found.
    assert isinstance(redis_store, RedisStore)
    tid = await redis_store.add("orphan")
    claim = await redis_store.claim("ada", ttl_s=0.05)
    assert claim is not None
    with redis_py.Redis.from_url(redis_store.url) as r:
        r.delete(C.due_key(redis_store.namespace))
    while (await redis_store.now_ms()) <= claim.deadline_ms:
        await asyncio.sleep(0.01)
    again = await redis_store.claim("bob")
    assert again is not None and again.task.id == tid and again.token > claim.token
    assert (await redis_store.get(tid)).state is State.CLAIMED


async def test_a_lease_shortened_by_a_heartbeat_expires_on_its_new_deadline(redis_store: Store) -> None:
    assert isinstance(redis_store, RedisStore)
    tid = await redis_store.add("shortened")
    claim = await redis_store.claim("ada", ttl_s=600)
    assert claim is not None
    await redis_store.add("keeps the board busy")
    assert await redis_store.claim("carol") is not None  # a sweep after the long lease: due ~600 s ahead
    await redis_store.heartbeat(tid, claim.token, ttl_s=0.05)
    deadline = (await redis_store.get(tid)).deadline_ms
    while (await redis_store.now_ms()) <= deadline:
        await asyncio.sleep(0.01)
    again = await redis_store.claim("bob")
    assert again is not None and again.task.id == tid


async def _backoff(s: Store) -> None:
    tid = await s.add("fails once")
    c = await s.claim("ada", ttl_s=600)
    assert c is not None and c.task.id == tid
    await s.fail(tid, c.token, "flaky")


async def _steal(s: Store) -> None:
    await s.claim("ada", ttl_s=600)  # ada is on the ring: the affine task waits for its owner
    await s.add("affine", affinity="k", steal_after_s=5)


async def _auction(s: Store) -> None:
    await s.add_many([TaskSpec(title="auctioned", bid_window_s=5)])


async def _new_agent(s: Store) -> None:
    await s.claim("newcomer")  # its sighting falls due a live window later


async def _short_lease(s: Store) -> None:
    await s.add("short")
    await s.claim("ada", ttl_s=5)


@pytest.mark.parametrize("make", [_backoff, _steal, _auction, _new_agent, _short_lease])
async def test_each_kind_of_timer_lowers_due(
    redis_store: Store, make: Callable[[Store], Awaitable[None]]
) -> None:
    # A sweep sets `due` from what is there (one lease of ten minutes, agents seen now);
    # then something falling due sooner is added: `due` must come down to it.
    assert isinstance(redis_store, RedisStore)
    if make is not _new_agent:  # (a board with no agent yet: nothing pending, due +inf)
        await redis_store.add("long")
        assert await redis_store.claim("keeper", ttl_s=600) is not None
    await redis_store.reap()
    with redis_py.Redis.from_url(redis_store.url, decode_responses=True) as r:
        before = due_score(r, redis_store.namespace)
        assert before is not None
        await make(redis_store)
        first, due = earliest_due(r, redis_store.namespace), due_score(r, redis_store.namespace)
    assert first is not None and first < before  # the case made something fall due sooner
    assert due is not None and due <= first


async def test_a_write_to_a_board_without_due_leaves_the_sweep_to_the_next_claim(redis_store: Store) -> None:
    # Without `due`, a later lease (bob's heartbeat) must not set it: that would hide ada's
    # lease, which ends first, until bob's ends.
    assert isinstance(redis_store, RedisStore)
    first, second = await redis_store.add("orphan"), await redis_store.add("kept")
    short = await redis_store.claim("ada", ttl_s=0.05)
    long = await redis_store.claim("bob", ttl_s=600)
    assert short is not None and long is not None and (short.task.id, long.task.id) == (first, second)
    with redis_py.Redis.from_url(redis_store.url) as r:
        r.delete(C.due_key(redis_store.namespace))
        await redis_store.heartbeat(second, long.token, ttl_s=600)
        assert r.get(C.due_key(redis_store.namespace)) is None
    while (await redis_store.now_ms()) <= short.deadline_ms:
        await asyncio.sleep(0.01)
    again = await redis_store.claim("cy")
    assert again is not None and again.task.id == first
