"""Store.complete_many: one agent finishes a batch and takes its next batch (both backends)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from claimroom.core.errors import BadInput, Forbidden, LeaseLost, NotFound
from claimroom.core.models import State
from claimroom.core.store import Miss, Store, TaskSpec


async def test_it_finishes_each_task_and_leases_the_next_batch(store: Store) -> None:
    await store.register("ada", max_claims=3)
    ids = await store.add_many([TaskSpec(title=f"t{i}", priority=9 - i) for i in range(7)])
    got = await store.claim_many("ada", 3)
    assert [c.task.id for c in got] == ids[:3]
    outcomes, nxt = await store.complete_many(
        [(c.task.id, c.token, {"n": i}) for i, c in enumerate(got)], agent="ada", claim_next=3, ttl_s=20
    )
    assert [(o.task, o.unblocked, o.error) for o in outcomes] == [(t, [], None) for t in ids[:3]]
    assert [c.task.id for c in nxt] == ids[3:6]  # best first, within ada's room
    assert all(c.task.agent == "ada" and c.token > got[-1].token for c in nxt)
    assert nxt[0].deadline_ms - (await store.get(ids[3])).claimed_ms == 20_000
    for i, tid in enumerate(ids[:3]):
        task = await store.get(tid)
        assert task.state is State.DONE and task.result == {"n": i}
    assert {t.id for t in await store.held("ada")} == set(ids[3:6])
    assert (await store.get(ids[6])).state is State.QUEUED


async def test_without_claim_next_it_only_completes(store: Store) -> None:
    await store.register("ada", max_claims=2)
    ids = await store.add_many([TaskSpec(title=f"t{i}") for i in range(4)])
    got = await store.claim_many("ada", 2)
    outcomes, nxt = await store.complete_many([(c.task.id, c.token) for c in got], agent="ada")
    assert nxt == [] and [o.error for o in outcomes] == [None, None]
    assert await store.held("ada") == []
    assert [(await store.get(t)).state for t in ids] == [State.DONE, State.DONE, State.QUEUED, State.QUEUED]
    assert (await store.get(ids[0])).result is None


async def test_a_refused_task_changes_nothing_for_it_and_stops_nothing_else(store: Store) -> None:
    await store.register("ada", max_claims=3)
    await store.register("bob", max_claims=1)
    a, b, c, d = await store.add_many([TaskSpec(title=t) for t in "abcd"])
    mine = await store.claim_many("ada", 2)
    bobs = await store.claim("bob")
    assert [x.task.id for x in mine] == [a, b] and bobs is not None and bobs.task.id == c
    outcomes, nxt = await store.complete_many(
        [(a, mine[0].token + 100), (c, bobs.token), ("t999", 1), (b, mine[1].token, "ok")],
        agent="ada",
        claim_next=1,
    )
    errors = [type(o.error) for o in outcomes]
    assert errors == [LeaseLost, Forbidden, NotFound, type(None)]
    assert [o.task for o in outcomes] == [a, c, "t999", b]
    assert (await store.get(a)).state is State.CLAIMED  # kept, with ada's lease as it was
    assert (await store.get(c)).agent == "bob" and (await store.get(c)).state is State.CLAIMED
    assert (await store.get(b)).state is State.DONE and (await store.get(b)).result == "ok"
    assert [x.task.id for x in nxt] == [d]  # the claim happens either way


async def test_dependents_unblocked_in_the_batch_are_claimable_in_the_same_call(store: Store) -> None:
    await store.register("ada", max_claims=2)
    a, b, c = await store.add_many(
        [TaskSpec(title="a"), TaskSpec(title="b"), TaskSpec(title="c", after=["$0", "$1"])]
    )
    got = await store.claim_many("ada", 2)
    outcomes, nxt = await store.complete_many([(x.task.id, x.token) for x in got], agent="ada", claim_next=2)
    assert outcomes[0].unblocked == [] and outcomes[1].unblocked == [c]  # c waited on both
    assert [x.task.id for x in nxt] == [c]
    assert (a, b) == (got[0].task.id, got[1].task.id)


async def test_each_completion_and_the_claims_are_audited(store: Store) -> None:
    await store.register("ada", max_claims=2)
    ids = await store.add_many([TaskSpec(title=f"t{i}") for i in range(4)])
    got = await store.claim_many("ada", 2)
    _, nxt = await store.complete_many([(x.task.id, x.token) for x in got], agent="ada", claim_next=2)
    events = [(e.type, e.task) for e in await store.events(count=100) if e.type in ("completed", "claimed")]
    want = [("completed", ids[0]), ("completed", ids[1]), ("claimed", ids[2]), ("claimed", ids[3])]
    assert events[-4:] == want
    done = [e for e in await store.events(task=ids[0]) if e.type == "completed"]
    assert done[0].agent == "ada" and done[0].token == got[0].token and not done[0].data.get("locks")
    claimed = [e for e in await store.events(task=ids[2]) if e.type == "claimed"]
    assert claimed[0].data["deadline_ms"] == nxt[0].deadline_ms and claimed[0].data["attempt"] == 1


async def test_a_completion_resets_the_agents_failure_count(store: Store) -> None:
    await store.register("ada", max_claims=2)
    ids = await store.add_many([TaskSpec(title=f"t{i}", max_attempts=5) for i in range(3)])
    first = await store.claim("ada")
    assert first is not None
    await store.fail(first.task.id, first.token, "flaky")
    assert (await _agent(store, "ada")).consecutive_failures == 1
    got = await store.claim_many("ada", 2)
    await store.complete_many([(x.task.id, x.token) for x in got], agent="ada", claim_next=1)
    assert (await _agent(store, "ada")).consecutive_failures == 0
    assert ids


async def _agent(store: Store, name: str) -> Any:
    return next(a for a in await store.agents() if a.name == name)


async def test_nothing_to_claim_next_says_why(store: Store) -> None:
    tid = await store.add("only")
    claim = await store.claim("ada")
    assert claim is not None
    miss = Miss()
    outcomes, nxt = await store.complete_many([(tid, claim.token)], agent="ada", claim_next=4, miss=miss)
    assert nxt == [] and outcomes[0].error is None and miss.last.reason == "empty"


@pytest.mark.parametrize(
    ("done", "kwargs", "says"),
    [
        (None, {"agent": ""}, "agent"),
        (None, {"agent": "ada", "claim_next": -1}, "claim_next"),
        (None, {"agent": "ada", "claim_next": 65}, "claim_next"),
        (None, {"agent": "ada", "queues": ["bad queue!"]}, "queue"),
        ("t1", {"agent": "ada"}, "list"),
        ([("t1",)], {"agent": "ada"}, "task, token"),
        ([("t1", "x")], {"agent": "ada"}, "token"),
        ([("../t1", 1)], {"agent": "ada"}, "task"),
        ([("t1", 1, float("nan"))], {"agent": "ada"}, "result"),
        ([("t1", 1)] * 65, {"agent": "ada"}, "at most 64"),
    ],
)
async def test_bad_input_is_refused_before_anything_happens(
    store: Store, done: Any, kwargs: dict[str, Any], says: str
) -> None:
    tid = await store.add("kept")
    claim = await store.claim("ada")
    assert claim is not None
    with pytest.raises(BadInput, match=says):
        await store.complete_many([(tid, claim.token)] if done is None else done, **kwargs)
    task = await store.get(tid)
    assert task.state is State.CLAIMED and json.dumps(task.result) == "null"
