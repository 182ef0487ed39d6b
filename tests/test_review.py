"""Review on both backends: delivery (complete --review) ends the claim like a completion but
leaves the task in review; a reviewer (an agent with the review capability, never the one
that delivered it, or an operator) accepts it (done, dependents unblocked) or returns it with
a note (queued again, claimable with a new token). Each assertion reads the store back.
"""

from __future__ import annotations

import asyncio

import pytest

from claimroom.core import constants
from claimroom.core.dump import shifted
from claimroom.core.errors import BadInput, Changed, LeaseLost, NotFound, WrongState
from claimroom.core.models import State, Task
from claimroom.core.store import Store

REF = "feature/login@3f2a9c1"


async def delivered(store: Store, *, lock: bool = True) -> tuple[str, str, int]:
    """A task ``t`` delivered for review by ``w``, with a dependent ``d``; (t, d, token)."""
    await store.register("w")
    await store.register("rev", [constants.review_capability])
    tid = await store.add("login page", queue="web")
    dep = await store.add("ship it", queue="web", after=[tid])
    claim = await store.claim("w", queues=["web"])
    assert claim is not None and claim.task.id == tid
    if lock:
        await store.lock(["src/login.py"], "w", task=tid)
    await store.heartbeat(tid, claim.token, progress=0.4, checkpoint="half way")
    assert await store.complete(tid, claim.token, {"pr": 7}, review=REF) == []
    return tid, dep, claim.token


async def test_delivery_ends_the_claim_and_waits_in_review(store: Store) -> None:
    tid, dep, token = await delivered(store)
    t = await store.get(tid)
    assert t.state is State.REVIEW and not t.state.final
    assert (t.review_ref, t.agent, t.result, t.progress) == (REF, "w", {"pr": 7}, 1.0)
    now = await store.now_ms()
    assert 0 < t.review_ms <= now
    assert (await store.get(dep)).state is State.BLOCKED  # dependents wait for the verdict
    assert await store.locks() == []  # task-bound locks went with the claim
    assert await store.held("w") == []
    counts = await store.counts()
    assert (counts[State.REVIEW], counts[State.CLAIMED], counts[State.DONE]) == (1, 0, 0)
    assert [x.id for x in await store.tasks(state="review")] == [tid]
    ev = [e for e in await store.events(task=tid) if e.type == "delivered"]
    assert len(ev) == 1 and (ev[0].agent, ev[0].token, ev[0].data["ref"]) == ("w", token, REF)
    assert ev[0].data["locks"] == ["src/login.py"]
    # The token is fenced: every agent action with it is refused, nothing changed.
    with pytest.raises(LeaseLost):
        await store.heartbeat(tid, token, progress=0.9)
    with pytest.raises(LeaseLost):
        await store.complete(tid, token)
    with pytest.raises(LeaseLost):
        await store.complete(tid, token, review="other")
    with pytest.raises(LeaseLost):
        await store.release(tid, token)
    assert await store.get(tid) == t
    assert await store.claim("w2", queues=["web"]) is None  # nobody redoes delivered work


async def test_accept_is_done_and_unblocks_like_a_completion(store: Store) -> None:
    tid, dep, token = await delivered(store)
    state, unblocked = await store.review(tid, "accept", agent="rev")
    assert (state, unblocked) == (State.DONE, [dep])
    t = await store.get(tid)
    assert (t.state, t.review_ref, t.result) == (State.DONE, REF, {"pr": 7})
    assert (await store.get(dep)).state is State.QUEUED
    types = [(e.type, e.task, e.agent) for e in await store.events()][-2:]
    assert types == [("ready", dep, ""), ("accepted", tid, "rev")]
    accepted = (await store.events(task=tid))[-1]
    assert (accepted.token, accepted.data) == (token, {"ref": REF, "delivered_by": "w"})
    nxt = await store.claim("w", queues=["web"])
    assert nxt is not None and nxt.task.id == dep


async def test_accept_by_an_operator(store: Store) -> None:
    tid, dep, _ = await delivered(store, lock=False)
    assert await store.review(tid, "accept", operator="alice") == (State.DONE, [dep])
    e = (await store.events(task=tid))[-1]
    assert (e.type, e.agent, e.operator) == ("accepted", "", "alice")


async def test_return_requeues_with_the_note_and_counts_no_attempt(store: Store) -> None:
    tid, dep, token = await delivered(store)
    before = await store.get(tid)
    state, unblocked = await store.review(tid, "return", "tests fail on\nSafari", agent="rev")
    assert (state, unblocked) == (State.QUEUED, [])
    t = await store.get(tid)
    assert t.state is State.QUEUED
    assert t.checkpoint == constants.review_note_prefix + "tests fail on\nSafari"
    assert (t.failures, t.attempts, t.progress, t.review_ref) == (before.failures, before.attempts, 0.0, REF)
    assert (await store.get(dep)).state is State.BLOCKED
    e = (await store.events(task=tid))[-1]
    assert (e.type, e.agent, e.data["note"], e.data["ref"]) == (
        "returned",
        "rev",
        "tests fail on\nSafari",
        REF,
    )
    again = await store.claim("w2", queues=["web"])
    assert again is not None and again.task.id == tid and again.token > token
    assert again.task.checkpoint.startswith(constants.review_note_prefix)
    with pytest.raises(LeaseLost):  # the old delivery's token stays fenced
        await store.heartbeat(tid, token)
    # Delivered again and accepted this time.
    await store.complete(tid, again.token, review=REF + "-2")
    assert (await store.get(tid)).review_ref == REF + "-2"
    assert (await store.review(tid, "accept", operator="op"))[0] is State.DONE


async def test_a_reviewer_needs_the_capability_and_not_its_own_delivery(store: Store) -> None:
    tid, _, _ = await delivered(store)
    await store.register("plain")
    await store.register("w", [constants.review_capability])  # the deliverer, now a reviewer too
    seen = await store.get(tid)
    n = len(await store.events(count=10_000))
    with pytest.raises(WrongState, match="lacks the review capability") as e1:
        await store.review(tid, "accept", agent="plain")
    with pytest.raises(WrongState, match="its own delivery") as e2:
        await store.review(tid, "return", "no", agent="w")
    with pytest.raises(NotFound):
        await store.review(tid, "accept", agent="nobody")
    assert e1.value.exit_code == e2.value.exit_code == 6
    assert await store.get(tid) == seen
    assert len(await store.events(count=10_000)) == n


@pytest.mark.parametrize("state", [State.QUEUED, State.CLAIMED, State.DONE])
async def test_a_task_not_in_review_is_refused_and_unchanged(store: Store, state: State) -> None:
    await store.register("rev", [constants.review_capability])
    tid = await store.add("x")
    if state is not State.QUEUED:
        c = await store.claim("w")
        assert c is not None
        if state is State.DONE:
            await store.complete(tid, c.token)
    seen = await store.get(tid)
    n = len(await store.events(count=10_000))
    for verdict, note in (("accept", ""), ("return", "redo")):
        with pytest.raises(WrongState, match=f"does not apply to a {state.value} task"):
            await store.review(tid, verdict, note, agent="rev")
        with pytest.raises(WrongState):
            await store.review(tid, verdict, note, operator="op")
    assert await store.get(tid) == seen
    assert len(await store.events(count=10_000)) == n


async def test_bad_input_is_refused_before_anything(store: Store) -> None:
    tid, _, _ = await delivered(store, lock=False)
    c_tid = await store.add("other")
    c = await store.claim("w2")
    assert c is not None and c.task.id == c_tid
    for bad in ("", "   ", "two\nlines", "x" * (constants.max_review_ref_chars + 1), "esc\x1b[31m"):
        with pytest.raises(BadInput):
            await store.complete(c_tid, c.token, review=bad)
    assert (await store.get(c_tid)).state is State.CLAIMED
    with pytest.raises(BadInput, match="needs a note"):
        await store.review(tid, "return", "  ", agent="rev")
    with pytest.raises(BadInput, match="no note"):
        await store.review(tid, "accept", "why", agent="rev")
    with pytest.raises(BadInput, match="accept or return"):
        await store.review(tid, "maybe", agent="rev")
    with pytest.raises(BadInput, match="one reviewer"):
        await store.review(tid, "accept")
    with pytest.raises(BadInput, match="one reviewer"):
        await store.review(tid, "accept", agent="rev", operator="op")
    assert (await store.get(tid)).state is State.REVIEW


async def test_a_verdict_on_a_later_delivery_than_seen_is_changed(store: Store) -> None:
    tid, _, token = await delivered(store, lock=False)
    await store.review(tid, "return", "again", agent="rev")
    c = await store.claim("w", queues=["web"])
    assert c is not None
    await store.complete(tid, c.token, review=REF)
    with pytest.raises(Changed):
        await store.review(tid, "accept", agent="rev", token=token)  # saw the first delivery
    assert (await store.get(tid)).state is State.REVIEW
    assert (await store.review(tid, "accept", agent="rev", token=c.token))[0] is State.DONE


async def test_two_reviewers_racing_exactly_one_wins(store: Store) -> None:
    tid, dep, _ = await delivered(store, lock=False)
    await store.register("rev2", [constants.review_capability])
    results = await asyncio.gather(
        store.review(tid, "accept", agent="rev"),
        store.review(tid, "return", "no", agent="rev2"),
        return_exceptions=True,
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    losses = [r for r in results if isinstance(r, BaseException)]
    assert len(wins) == 1 and len(losses) == 1 and isinstance(losses[0], WrongState)
    t = await store.get(tid)
    assert t.state is wins[0][0]
    verdicts = [e.type for e in await store.events(task=tid) if e.type in ("accepted", "returned")]
    assert len(verdicts) == 1
    assert (await store.get(dep)).state is (State.QUEUED if t.state is State.DONE else State.BLOCKED)


async def test_cancel_in_review_cancels_its_dependents(store: Store) -> None:
    tid, dep, token = await delivered(store, lock=False)
    assert await store.act("cancel", tid, State.REVIEW, token, "op") is State.CANCELLED
    assert (await store.get(tid)).state is State.CANCELLED
    assert (await store.get(dep)).state is State.CANCELLED
    with pytest.raises(WrongState):
        await store.review(tid, "accept", operator="op")


async def test_review_is_never_removed_by_retention(store: Store) -> None:
    tid, _, _ = await delivered(store, lock=False)
    await store.set_retention(done_s=0, done_count=0, failed_s=0, failed_count=0)
    report = await store.reap()
    assert report.removed == 0
    assert (await store.get(tid)).state is State.REVIEW


async def test_a_board_with_a_task_in_review_round_trips(store: Store) -> None:
    tid, _, _ = await delivered(store, lock=False)
    board = await store.export_board()
    dst = Store.from_url(store.url, store.namespace + "-copy")
    try:
        await dst.import_board(board)
        got: Task = await dst.get(tid)
        assert got == await store.get(tid)
        assert (await dst.counts())[State.REVIEW] == 1
        assert [t.id for t in await dst.tasks(state=State.REVIEW)] == [tid]
        assert (await dst.review(tid, "accept", operator="op"))[0] is State.DONE
    finally:
        await dst.close()
    # Moved to a store whose clock differs, the time in review stays what it was.
    moved = shifted(board, 5_000)
    [t] = [t for t in moved["tasks"] if t["id"] == tid]
    [before] = [t for t in board["tasks"] if t["id"] == tid]
    assert int(t["review_ms"]) == int(before["review_ms"]) + 5_000
