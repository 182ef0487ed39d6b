"""Claimed tasks are indexed once, in `deadlines` (by the end of their lease): every read of
claimed tasks still gives them in creation order, counted, paged and exported (Redis)."""

from __future__ import annotations

import redis as redis_py

from claimroom.core import constants as C
from claimroom.core.models import State
from claimroom.core.store import Store, TaskSpec


async def _claims_out_of_deadline_order(store: Store) -> list[str]:
    """Four claimed tasks whose leases end in another order than they were created."""
    await store.register("ada", max_claims=4)
    ids = await store.add_many([TaskSpec(title=f"t{i}") for i in range(6)])
    for ttl in (40, 10, 30, 20):
        assert await store.claim("ada", ttl_s=ttl) is not None
    return ids


async def test_claimed_tasks_read_in_creation_order(redis_store: Store, redis_url: str) -> None:
    ids = await _claims_out_of_deadline_order(redis_store)
    claimed = ids[:4]
    assert [t.id for t in await redis_store.tasks(state=State.CLAIMED)] == claimed
    assert [t.id for t in await redis_store.tasks(state=State.CLAIMED, offset=1, limit=2)] == claimed[1:3]
    assert [t.id for t in await redis_store.tasks()] == ids  # every state merged by creation
    assert [t.id for t in await redis_store.tasks(offset=3, limit=2)] == ids[3:5]
    counts = await redis_store.counts()
    assert (counts[State.CLAIMED], counts[State.QUEUED]) == (4, 2)
    assert (await redis_store.reaper_status()).live_claims == 4
    raw = redis_py.Redis.from_url(redis_url)
    assert not raw.exists(C.state_key(redis_store.namespace, "claimed"))  # one index, not two
    deadlines = C.deadlines_key(redis_store.namespace)
    # The claims, and the member that keeps the index a skiplist (no claim: never read as one).
    assert raw.zcard(deadlines) == 5 and raw.zscore(deadlines, C.deadlines_keep) == float("inf")
    assert raw.object("encoding", deadlines) == b"skiplist"


async def test_an_exported_board_keeps_its_claims(redis_store: Store, redis_url: str) -> None:
    ids = await _claims_out_of_deadline_order(redis_store)
    board = await redis_store.export_board()
    assert [t["id"] for t in board["tasks"]] == ids  # in creation order
    async with Store.from_url(redis_url, redis_store.namespace + "-copy") as copy:
        await copy.import_board(board)
        assert [t.id for t in await copy.tasks(state=State.CLAIMED)] == ids[:4]
        assert {t.id for t in await copy.held("ada")} == set(ids[:4])
        assert (await copy.counts())[State.CLAIMED] == 4


async def test_the_reaper_drops_an_older_boards_second_claimed_index(
    redis_store: Store, redis_url: str
) -> None:
    ids = await _claims_out_of_deadline_order(redis_store)
    raw = redis_py.Redis.from_url(redis_url)
    old = C.state_key(redis_store.namespace, "claimed")
    raw.zadd(old, {tid: i for i, tid in enumerate(ids[:4], 1)})  # as an earlier claimroom kept it
    await redis_store.reap()
    assert not raw.exists(old)
    assert [t.id for t in await redis_store.tasks(state=State.CLAIMED)] == ids[:4]
