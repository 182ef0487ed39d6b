"""Recovery: expired leases (early work back to the queue, late work orphaned, the expiry
cap), rollback of claims that end other than by completion, fencing of zombies, the
store's clock, blocking claims, and the reaper loop's leader lease.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from waiting import Waits, clock_past, store_now_ms, until

from claimroom.core import constants
from claimroom.core.errors import LeaseLost
from claimroom.core.models import Event, State
from claimroom.core.store import Miss, Store, TaskSpec


async def events_of(store: Store, etype: str, task: str | None = None) -> list[Event]:
    return [e for e in await store.events(task=task, count=100_000) if e.type == etype]


async def queued(store: Store, task: str) -> bool:
    return (await store.get(task)).state is State.QUEUED


# --- the reaper's split -----------------------------------------------------------------


async def test_early_work_is_requeued_late_work_orphaned(store: Store) -> None:
    ids = await store.add_many([TaskSpec(f"t{i}") for i in range(4)])
    await store.register("w", max_claims=4)
    claims = await store.claim_many("w", 4, ttl_s=0.3)
    assert [c.task.id for c in claims] == ids
    progress = dict(zip(ids, [0.0, 0.49, 0.5, 0.9], strict=True))
    deadlines = [c.deadline_ms for c in claims]
    for c in claims:
        if progress[c.task.id]:
            deadlines.append(await store.heartbeat(c.task.id, c.token, progress=progress[c.task.id]))
    await clock_past(store, max(deadlines))

    report = await store.reap()
    assert sorted(report.requeued) == ids[:2]
    assert sorted(report.orphaned) == ids[2:]
    assert report.dead == ()
    for tid in ids:
        t = await store.get(tid)
        assert t.state is (State.QUEUED if progress[tid] < constants.late_stage_progress else State.ORPHANED)
        assert t.expiries == 1
    expired = {e.task: e for e in await events_of(store, "expired")}
    assert set(expired) == set(ids)
    assert expired[ids[1]].data["outcome"] == "queued" and expired[ids[1]].data["progress"] == 0.49
    assert expired[ids[2]].data["outcome"] == "orphaned"
    assert all(e.agent == "w" for e in expired.values())

    # Orphans wait for an operator: only the requeued work is claimable.
    got = []
    while (c := await store.claim("w3")) is not None:
        got.append(c.task.id)
        await store.complete(c.task.id, c.token)
    assert sorted(got) == ids[:2]
    # A second pass finds nothing more to do.
    second = await store.reap()
    assert (second.requeued, second.orphaned, second.dead) == ((), (), ())


async def test_orphan_is_requeued_by_an_operator(store: Store) -> None:
    tid = await store.add("late")
    c = await store.claim("w", ttl_s=0.2)
    assert c is not None
    await store.heartbeat(tid, c.token, progress=0.8, checkpoint="half-way")
    await clock_past(store, (await store.get(tid)).deadline_ms)
    assert (await store.reap()).orphaned == (tid,)
    assert await store.claim("w2") is None
    assert await store.act("requeue", tid, State.ORPHANED, c.token, "op") is State.QUEUED
    again = await store.claim("w2")
    assert again is not None and again.task.id == tid
    assert again.task.checkpoint == "half-way"  # the next agent resumes from the checkpoint


async def test_lease_expiry_cap_ends_the_task_dead(store: Store) -> None:
    tid = await store.add("poison", max_attempts=100)
    outcomes = []
    for n in range(1, constants.max_lease_expiries + 1):
        c = await store.claim(f"victim{n}", ttl_s=0.15)
        assert c is not None and c.task.id == tid
        await clock_past(store, c.deadline_ms)
        report = await store.reap()
        outcomes.append((report.requeued, report.dead))
        assert (await store.get(tid)).expiries == n
    assert outcomes[:-1] == [((tid,), ())] * (constants.max_lease_expiries - 1)
    assert outcomes[-1] == ((), (tid,))
    t = await store.get(tid)
    assert t.state is State.DEAD and t.reason == "lease-expired"
    assert t.failures == 0  # expiries are counted on their own cap
    last = (await events_of(store, "expired", tid))[-1]
    assert last.data["outcome"] == "dead" and last.data["expiries"] == constants.max_lease_expiries
    assert await store.claim("survivor") is None


# --- rollback ---------------------------------------------------------------------------


ENDINGS = ["fail", "fatal", "release", "expiry", "kill"]
END_EVENT = {
    "fail": "failed",
    "fatal": "failed",
    "release": "released",
    "expiry": "expired",
    "kill": "killed",
}


@pytest.mark.parametrize("ending", ENDINGS)
async def test_rollback_when_a_claim_ends_without_completion(store: Store, ending: str) -> None:
    parent = await store.add("parent", priority=100)
    before = await store.add("made before the claim", parent=parent)
    c = await store.claim("boss", ttl_s=1.0 if ending == "expiry" else 30)
    assert c is not None and c.task.id == parent
    await store.lock(["src/feature", "tests/test_feature.py"], "boss", task=parent)
    taken, idle, waiting = await store.add_many(
        [
            TaskSpec("sub taken", parent=parent, priority=50),
            TaskSpec("sub idle", parent=parent),
            TaskSpec("sub waiting", parent=parent, after=["$0"]),
        ]
    )
    helper = await store.claim("helper", ttl_s=30)
    assert helper is not None and helper.task.id == taken

    if ending in ("fail", "fatal"):
        await store.fail(parent, c.token, "gave up", fatal=ending == "fatal")
    elif ending == "release":
        await store.release(parent, c.token)
    elif ending == "kill":
        await store.act("kill", parent, State.CLAIMED, c.token, "op")
    else:
        await clock_past(store, c.deadline_ms)
        assert (await store.reap()).requeued == (parent,)

    assert (await store.get(idle)).state is State.CANCELLED
    assert (await store.get(waiting)).state is State.CANCELLED
    assert "rollback" in (await store.get(idle)).reason
    assert (await store.get(taken)).state is State.CLAIMED  # somebody claimed it: kept
    assert (await store.get(before)).state is State.QUEUED  # not made by this claim: kept
    assert await store.locks() == []

    (ev,) = await events_of(store, END_EVENT[ending], parent)
    assert sorted(ev.data["cancelled"]) == sorted([idle, waiting])
    assert sorted(ev.data["locks"]) == ["src/feature", "tests/test_feature.py"]
    cancelled = await events_of(store, "cancelled")
    assert sorted(e.task for e in cancelled) == sorted([idle, waiting])
    assert all(e.data == {"reason": "rollback", "parent": parent} for e in cancelled)
    # The helper's own claim is untouched.
    await store.complete(taken, helper.token)


async def test_completion_keeps_the_subtasks(store: Store) -> None:
    parent = await store.add("parent", priority=10)
    c = await store.claim("boss")
    assert c is not None
    sub = await store.add("sub", parent=parent)
    await store.complete(parent, c.token)
    assert (await store.get(sub)).state is State.QUEUED
    assert await events_of(store, "cancelled") == []


async def test_rollback_spares_subtasks_of_an_earlier_claim(store: Store) -> None:
    parent = await store.add("parent", priority=10)
    first = await store.claim("a")
    assert first is not None
    sub = await store.add("sub of the first claim", parent=parent)
    await store.release(parent, first.token)  # rolls back: sub cancelled
    assert (await store.get(sub)).state is State.CANCELLED
    second = await store.claim("b")
    assert second is not None and second.task.id == parent
    sub2 = await store.add("sub of the second claim", parent=parent)
    await store.fail(parent, second.token, "x")
    assert (await store.get(sub2)).state is State.CANCELLED
    (ev,) = await events_of(store, "failed", parent)
    assert ev.data["cancelled"] == [sub2]


# --- expiry by a waiting claimer, fencing --------------------------------------------------


async def test_waiting_claimer_takes_an_expired_lease_within_ttl_plus_1s(
    store: Store, store_url: str, namespace: str
) -> None:
    tid = await store.add("x")
    ttl = 1.0
    c = await store.claim("dying", ttl_s=ttl)
    assert c is not None
    start = time.monotonic()
    async with Store.from_url(store_url, namespace) as other:
        got = await other.claim("rescuer", wait_s=5)
    elapsed = time.monotonic() - start
    assert got is not None and got.task.id == tid and got.token > c.token
    assert ttl - 0.05 <= elapsed <= ttl + 1.0
    (ev,) = await events_of(store, "expired", tid)
    assert ev.agent == "dying" and ev.data["outcome"] == "queued"


async def test_zombie_is_fenced_off(store: Store) -> None:
    tid = await store.add("x")
    zombie = await store.claim("zombie", ttl_s=0.2)
    assert zombie is not None
    await store.heartbeat(tid, zombie.token, progress=0.1, stage="start")
    await clock_past(store, (await store.get(tid)).deadline_ms)
    fresh = await store.claim("fresh", ttl_s=30)
    assert fresh is not None and fresh.task.id == tid
    assert fresh.token > zombie.token

    with pytest.raises(LeaseLost) as exc:
        await store.heartbeat(tid, zombie.token, progress=0.9, stage="zombie", checkpoint="zzz")
    assert exc.value.exit_code == 4
    with pytest.raises(LeaseLost):
        await store.complete(tid, zombie.token, {"by": "zombie"})
    with pytest.raises(LeaseLost):
        await store.fail(tid, zombie.token, "zombie failure", fatal=True)
    with pytest.raises(LeaseLost):
        await store.release(tid, zombie.token)
    with pytest.raises(LeaseLost):
        await store.heartbeat(tid, zombie.token + 1_000)  # a made-up future token is no better

    t = await store.get(tid)
    assert (t.state, t.agent, t.token) == (State.CLAIMED, "fresh", fresh.token)
    assert t.result is None and t.stage == "start" and t.checkpoint == "" and t.failures == 0
    await store.complete(tid, fresh.token, {"by": "fresh"})
    assert (await store.get(tid)).result == {"by": "fresh"}
    done = await events_of(store, "completed", tid)
    assert [(e.agent, e.token) for e in done] == [("fresh", fresh.token)]
    assert not any(e.agent == "zombie" for e in await events_of(store, "failed"))


async def test_late_heartbeat_expires_the_lease_itself(store: Store) -> None:
    tid = await store.add("x")
    c = await store.claim("slow", ttl_s=0.2)
    assert c is not None
    await clock_past(store, c.deadline_ms)
    # Nobody reaped or claimed meanwhile: the heartbeat itself finds the lease over.
    with pytest.raises(LeaseLost):
        await store.heartbeat(tid, c.token)
    t = await store.get(tid)
    assert t.state is State.QUEUED and t.expiries == 1
    assert len(await events_of(store, "expired", tid)) == 1


# --- the store's clock ---------------------------------------------------------------------


@pytest.mark.parametrize("skew_s", [3600, -3600])
async def test_deadlines_follow_the_store_clock(
    store: Store, monkeypatch: pytest.MonkeyPatch, skew_s: int
) -> None:
    real_time, real_time_ns = time.time, time.time_ns
    monkeypatch.setattr(time, "time", lambda: real_time() + skew_s)
    monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() + skew_s * 1_000_000_000)
    assert abs(time.time() - real_time() - skew_s) < 1  # the client's clock is really off

    tid = await store.add("x")
    c = await store.claim("w", ttl_s=2.0)
    assert c is not None
    server_now = await store_now_ms(store)
    assert abs(c.deadline_ms - (server_now + 2000)) < 500
    assert abs(c.deadline_ms - time.time() * 1000) > 3_000_000

    await clock_past(store, c.task.claimed_ms + 1000)
    report = await store.reap()
    assert report.requeued == () and report.orphaned == ()
    assert await store.claim("thief") is None
    assert (await store.get(tid)).state is State.CLAIMED  # still held after 1 s

    # ... and it expires at its 2 s deadline on the store's clock.
    async def reaped() -> bool:
        return bool((await store.reap()).requeued)

    await until(reaped, "the lease expiring", timeout_s=3, every_s=0.05)
    expired_at = await store_now_ms(store)
    assert (await store.get(tid)).state is State.QUEUED
    assert c.deadline_ms <= expired_at < c.deadline_ms + 500
    (ev,) = await events_of(store, "expired", tid)
    assert ev.at_ms >= c.deadline_ms
    with pytest.raises(LeaseLost):
        await store.heartbeat(tid, c.token)


async def test_backoff_follows_the_store_clock(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 7200)
    tid = await store.add("x")
    c = await store.claim("w")
    assert c is not None
    _, ready = await store.fail(tid, c.token, "x")
    now = await store_now_ms(store)
    assert 0 < ready - now <= constants.backoff_base_ms


# --- blocking claims ------------------------------------------------------------------------


async def test_blocking_claim_wakes_when_a_task_is_added(
    store: Store, store_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "wait_recheck_s", 600.0)  # only the hint can end the wait in time
    waits = Waits(store, monkeypatch)
    waiting = asyncio.create_task(store.claim("waiter", wait_s=60))
    await waits.reach(1)  # subscribed, and its look found nothing
    async with Store.from_url(store_url, namespace) as other:  # another connection
        tid = await other.add("fresh work")
    try:
        got = await asyncio.wait_for(waiting, 5)
    except TimeoutError:
        pytest.fail("the hint of the new task did not wake the waiting claimer")
    assert got is not None and got.task.id == tid


async def test_blocking_claim_wakes_when_a_lease_expires(
    store: Store, store_url: str, namespace: str
) -> None:
    tid = await store.add("x")
    c = await store.claim("dying", ttl_s=0.6)
    assert c is not None
    async with Store.from_url(store_url, namespace) as other:
        got = await other.claim("waiter", wait_s=5)
        woke_ms = await store_now_ms(other)
    assert got is not None and got.task.id == tid
    assert 0 <= woke_ms - c.deadline_ms < 400


async def test_blocking_claim_wakes_when_a_backoff_ends(store: Store) -> None:
    tid = await store.add("x")
    c = await store.claim("w")
    assert c is not None
    _, ready = await store.fail(tid, c.token, "transient")
    got = await store.claim("waiter", wait_s=5)
    assert got is not None and got.task.id == tid
    assert 0 <= got.task.claimed_ms - ready < 400


async def test_blocking_claim_returns_none_after_its_wait(store: Store) -> None:
    await store.add("not for you", requires=["gpu"])
    miss = Miss()
    start = time.monotonic()
    assert await store.claim("waiter", wait_s=1.2, miss=miss) is None
    elapsed = time.monotonic() - start
    assert 1.2 <= elapsed < 2.0
    assert miss.last.reason == "empty"


async def test_blocking_claim_ignores_work_it_cannot_take(
    store: Store, store_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits = Waits(store, monkeypatch)
    waiting = asyncio.create_task(store.claim("waiter", queues=["default"], wait_s=1.0))
    await waits.reach(1)
    async with Store.from_url(store_url, namespace) as other:
        await other.add("gpu only", requires=["gpu"])
        await other.add("other queue", queue="elsewhere")
    assert await waiting is None
    assert (await store.counts())[State.QUEUED] == 2


# --- the reaper loop's leader lease -----------------------------------------------------------


async def test_one_reaper_leads_and_another_takes_over(
    store_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "reaper_lease_ms", 1000)
    url = store_url
    first, second, client = (Store.from_url(url, namespace) for _ in range(3))
    reaps = {"first": 0, "second": 0}

    def counting(name: str, s: Store) -> None:
        real = s._reap

        async def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            reaps[name] += 1
            return await real(*args, **kwargs)

        s._reap = wrapper  # type: ignore[method-assign]

    counting("first", first)
    counting("second", second)
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    try:
        loop1 = asyncio.create_task(first.run_reaper(stop_first, interval_s=0.05))
        await until(lambda: reaps["first"], "the first reaper leading")
        loop2 = asyncio.create_task(second.run_reaper(stop_second, interval_s=0.05))

        t1 = await client.add("a")
        c1 = await client.claim("w1", ttl_s=0.3)
        assert c1 is not None
        await until(lambda: queued(client, t1), "the first reaper requeueing t1")  # no claim in between
        assert reaps["first"] > 2 and reaps["second"] == 0
        assert not await client._lead("intruder", 1000)
        assert [e.task for e in await events_of(client, "expired")] == [t1]

        stop_first.set()
        await loop1
        stopped_at = reaps["first"]
        again = await client.claim("w1")
        assert again is not None and again.task.id == t1
        await client.complete(t1, again.token)
        t2 = await client.add("b")
        c2 = await client.claim("w2", ttl_s=0.3)
        assert c2 is not None and c2.task.id == t2
        await until(lambda: queued(client, t2), "the second reaper requeueing t2")
        assert reaps["second"] > 0 and reaps["first"] == stopped_at
        assert [e.task for e in await events_of(client, "expired")] == [t1, t2]
    finally:
        stop_first.set()
        stop_second.set()
        await asyncio.gather(loop1, loop2, return_exceptions=True)
        for s in (first, second, client):
            await s.close()
