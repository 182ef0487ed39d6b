"""Store.complete_and_claim: finish a task and take the next in one step (both backends)."""

from __future__ import annotations

import pytest

from claimroom.core.errors import BadInput, Forbidden, LeaseLost
from claimroom.core.models import State
from claimroom.core.store import Miss, Store, TaskSpec


async def test_it_finishes_the_task_and_leases_the_best_next_one(store: Store) -> None:
    first = await store.add("first", priority=9)
    low = await store.add("low", priority=1)
    high = await store.add("high", priority=5)
    claim = await store.claim("ada")
    assert claim is not None and claim.task.id == first
    unblocked, nxt = await store.complete_and_claim(first, claim.token, {"ok": 1}, agent="ada", ttl_s=30)
    assert unblocked == [] and [c.task.id for c in nxt] == [high]
    assert nxt[0].token > claim.token and nxt[0].task.agent == "ada"
    assert nxt[0].deadline_ms - (await store.get(high)).claimed_ms == 30_000
    done = await store.get(first)
    assert done.state is State.DONE and done.result == {"ok": 1}
    assert {t.id for t in await store.held("ada")} == {high}
    assert (await store.get(low)).state is State.QUEUED


async def test_a_dependent_unblocked_by_the_completion_is_claimable_in_the_same_call(store: Store) -> None:
    a, b = await store.add_many([TaskSpec(title="a"), TaskSpec(title="b", after=["$0"])])
    claim = await store.claim("ada")
    assert claim is not None and claim.task.id == a
    unblocked, nxt = await store.complete_and_claim(a, claim.token, agent="ada")
    assert unblocked == [b] and [c.task.id for c in nxt] == [b]


async def test_a_refused_completion_claims_nothing(store: Store) -> None:
    tid = await store.add("mine")
    other = await store.add("waiting")
    claim = await store.claim("ada")
    assert claim is not None and claim.task.id == tid
    with pytest.raises(LeaseLost):
        await store.complete_and_claim(tid, claim.token + 1, agent="ada")
    with pytest.raises(Forbidden):  # bob may not finish ada's claim, nor take work that way
        await store.complete_and_claim(tid, claim.token, agent="bob")
    assert (await store.get(other)).state is State.QUEUED
    assert (await store.get(tid)).state is State.CLAIMED
    assert await store.held("bob") == []


async def test_nothing_left_to_claim_says_why(store: Store) -> None:
    await store.register("ada", max_claims=4)
    tid = await store.add("only")
    claim = await store.claim("ada")
    assert claim is not None
    miss = Miss()
    unblocked, nxt = await store.complete_and_claim(tid, claim.token, agent="ada", miss=miss)
    assert (unblocked, nxt) == ([], [])
    assert miss.last.reason == "empty"


async def test_it_takes_up_to_count_within_the_agents_room(store: Store) -> None:
    await store.register("ada", max_claims=3)
    ids = await store.add_many([TaskSpec(title=f"t{i}") for i in range(6)])
    claim = await store.claim("ada")
    assert claim is not None and claim.task.id == ids[0]
    _, nxt = await store.complete_and_claim(ids[0], claim.token, agent="ada", count=5)
    assert [c.task.id for c in nxt] == ids[1:4]  # room for three


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"agent": ""}, "agent"),
        ({"agent": "ada", "count": 0}, "count"),
        ({"agent": "ada", "queues": ["bad queue!"]}, "queue"),
    ],
)
async def test_bad_input_is_refused_before_anything_happens(store: Store, kwargs: dict, says: str) -> None:  # type: ignore[type-arg]
    tid = await store.add("kept")
    claim = await store.claim("ada")
    assert claim is not None
    with pytest.raises(BadInput, match=says):
        await store.complete_and_claim(tid, claim.token, **kwargs)
    assert (await store.get(tid)).state is State.CLAIMED
