"""An agent's `solo` mark (lib.lua claim_tasks): a claim that found none of the agent's won,
assigned or owned tasks marks its record so, and the next claims skip looking for them. Every
write that gives the agent such a task takes the mark away (give_personal; dump.py's import
does the same): each test here marks an agent by a claim first, then gives it a task one of
those ways and checks that its next claim returns it.
"""

from __future__ import annotations

from claimroom.core import affinity
from claimroom.core import constants as C
from claimroom.core.models import State
from claimroom.core.redis.store import RedisStore
from claimroom.core.store import Store

LONG_S = 3600.0  # a steal delay no test waits out


async def marked(store: RedisStore, agent: str) -> bool:
    return await store._redis.hget(C.agent_key(store.namespace, agent), "solo") == "1"


async def solo_after_a_claim(store: RedisStore, agent: str) -> None:
    """``agent`` claims and completes a plain task: its record is marked."""
    tid = await store.add("plain")
    got = await store.claim(agent)
    assert got is not None and got.task.id == tid
    await store.complete(tid, got.token)
    assert await marked(store, agent)


async def test_a_claim_marks_an_agent_without_personal_tasks_and_only_then(redis_store: Store) -> None:
    assert isinstance(redis_store, RedisStore)
    await redis_store.register("bob")
    assert not await marked(redis_store, "bob")
    assert await redis_store.claim("bob") is None  # nothing to claim still looks
    assert await marked(redis_store, "bob")
    # An agent first seen by its claim is registered by it, and marked by the next one.
    assert await redis_store.claim("cy") is None
    assert await redis_store.claim("cy") is None
    assert await marked(redis_store, "cy")


async def test_a_task_routed_to_a_marked_owner_is_its_next_claim(redis_store: Store) -> None:
    assert isinstance(redis_store, RedisStore)
    for a in ("ada", "bob"):
        await redis_store.register(a)
    await solo_after_a_claim(redis_store, "bob")
    ring = affinity.Ring(["ada", "bob"])
    key = next(k for k in (f"key{i}" for i in range(10_000)) if ring.owner(k, "") == "bob")
    own = await redis_store.add("own", affinity=key, steal_after_s=LONG_S)
    assert not await marked(redis_store, "bob")
    got = await redis_store.claim("bob")
    assert got is not None and got.task.id == own


async def test_a_task_reassigned_to_a_marked_agent_is_its_next_claim(redis_store: Store) -> None:
    assert isinstance(redis_store, RedisStore)
    await redis_store.register("bob")
    await solo_after_a_claim(redis_store, "bob")
    later = await redis_store.add("later", priority=0)
    first = await redis_store.add("first", priority=5)  # ahead of `later` for anyone else
    assert await redis_store.act("reassign", later, State.QUEUED, 0, "op", "bob") is State.QUEUED
    assert not await marked(redis_store, "bob")
    got = await redis_store.claim("bob")
    assert got is not None and got.task.id == later  # its assigned task comes first
    other = await redis_store.claim("ada")
    assert other is not None and other.task.id == first


async def test_an_import_merging_a_task_assigned_to_a_marked_agent_unmarks_it(
    redis_store: Store, redis_url: str
) -> None:
    assert isinstance(redis_store, RedisStore)
    await redis_store.register("bob")
    await solo_after_a_claim(redis_store, "bob")
    async with Store.from_url(redis_url, redis_store.namespace + "-src") as src:
        assert isinstance(src, RedisStore)
        await src.register("bob")
        assert await src.claim("bob") is None
        assert await marked(src, "bob")
        tid = await src.add("for bob")
        await src.act("reassign", tid, State.QUEUED, 0, "op", "bob")
        board = await src.export_board()
        assert all("solo" not in a for a in board["agents"])  # the mark stays with its board
        await redis_store.import_board(board, merge=True)
    got = await redis_store.claim("bob")
    assert got is not None and got.task.title == "for bob"
