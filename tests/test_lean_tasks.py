"""Lean task hashes (Redis): a task's hash stores no field at its default, so that a claim's
HGETALL, its reply and every HSET into the hash work on fewer fields. A missing field reads
as its default everywhere (lib.lua task_defaults, Task.from_fields), and a hash in the full
shape an older claimroom wrote (every field, defaults included) works all the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from claimroom.core import constants as C
from claimroom.core.models import State, Task
from claimroom.core.redis.store import RedisStore
from claimroom.core.store import Store, TaskSpec

# Neither id nor seq: the key names the task, and its seq is the number in its id.
ALWAYS = {"title", "queue", "created_ms", "state", "updated_ms"}

# What an older add-1.lua wrote beside ALWAYS (and an older claim's assigned ''): a full hash.
OLD_DEFAULTS = {
    "priority": "0", "max_attempts": "3",
    "requires": "", "after": "", "parent": "", "affinity": "", "payload": "", "steal_after_ms": "-1",
    "attempts": "0", "failures": "0", "expiries": "0", "waiting": "0", "spawn_token": "",
    "paths": "", "plan": "", "plan_depth": "0", "plan_wait": "0", "assigned": "", "reason": "",
}  # fmt: skip


def raw(store: Store) -> Any:
    assert isinstance(store, RedisStore)
    return store._redis  # the hash itself, not what a reader makes of it


async def fields(store: Store, tid: str) -> dict[str, str]:
    return dict(await raw(store).hgetall(C.task_key(store.namespace, tid)))


async def make_old(store: Store, tid: str) -> None:
    """Give a task the full hash an older claimroom wrote (its indexes are the same)."""
    old = {"id": tid, "seq": tid[1:], **OLD_DEFAULTS}
    await raw(store).hset(C.task_key(store.namespace, tid), mapping=old)


async def hgets(store: Store) -> int:
    """HGET calls the server has run, scripts' own included (INFO commandstats)."""
    stats = await raw(store).info("commandstats")
    return int(stats.get("cmdstat_hget", {}).get("calls", 0))


async def test_a_fresh_task_stores_only_what_is_not_a_default(redis_store: Store) -> None:
    tid = await redis_store.add("plain")
    # and lib.lua's `plain` mark: a queued task outside any plan (its completion reads less)
    assert set(await fields(redis_store, tid)) == ALWAYS | {"plain"}
    t = await redis_store.get(tid)
    assert (t.attempts, t.failures, t.expiries, t.steal_after_ms, t.plan_wait) == (0, 0, 0, -1, False)
    assert (t.priority, t.max_attempts) == (0, 3)
    assert (t.id, t.seq) == (tid, int(tid[1:]))  # the key names it; its seq is in its id


async def test_what_differs_from_a_default_is_stored(redis_store: Store) -> None:
    a = await redis_store.add("a")
    spec = TaskSpec(
        "b", requires=["py"], after=[a], affinity="k", payload={"x": 1}, steal_after_s=0, paths=["src/x.py"],
        priority=2, max_attempts=5,
    )  # fmt: skip
    (b,) = await redis_store.add_many([spec])
    got = await fields(redis_store, b)
    stored = {
        "requires",
        "after",
        "affinity",
        "payload",
        "steal_after_ms",
        "paths",
        "waiting",
        "priority",
        "max_attempts",
    }
    assert set(got) == ALWAYS | stored  # blocked: not plain
    assert (got["steal_after_ms"], got["waiting"], got["requires"]) == ("0", "1", "py")
    assert (got["priority"], got["max_attempts"]) == ("2", "5")
    assert set(await fields(redis_store, a)) == ALWAYS  # nor `a`, which has a dependent now


async def test_a_claimed_then_completed_task_holds_no_empty_field(redis_store: Store) -> None:
    tid = await redis_store.add("x")
    c = await redis_store.claim("ada")
    assert c is not None and c.task.id == tid
    claimed = await fields(redis_store, tid)
    assert "" not in claimed.values() and "assigned" not in claimed
    await redis_store.complete(tid, c.token)
    done = await fields(redis_store, tid)
    assert "" not in done.values()
    assert not {"assigned", "reason", "result"} & set(done)
    assert (await redis_store.get(tid)).state == State.DONE


async def test_a_default_lease_length_and_a_done_tasks_progress_are_not_stored(redis_store: Store) -> None:
    s = redis_store
    x, y = await s.add_many([TaskSpec("x"), TaskSpec("y")])
    await s.register("ada", max_claims=2)
    cx = await s.claim("ada")  # the default lease: 60 s, the stored format's own default
    cy = await s.claim("ada", ttl_s=30)
    assert cx is not None and cy is not None and (cx.task.id, cy.task.id) == (x, y)
    assert "ttl_ms" not in await fields(s, x) and (await fields(s, y))["ttl_ms"] == "30000"
    assert cx.task.ttl_ms == (await s.get(x)).ttl_ms == C.stored_ttl_ms == 60_000
    assert (await s.get(y)).ttl_ms == 30_000
    # A renewal without a length takes the lease's own, stored or not.
    renewed = await s.heartbeat(x, cx.token, progress=0.4)
    assert renewed - (await s.get(x)).updated_ms == C.stored_ttl_ms
    # Claimed again at the default, a task that holds another length gets the default written.
    await s.release(y, cy.token)
    cy = await s.claim("ada")
    assert cy is not None and cy.task.id == y and (await fields(s, y))["ttl_ms"] == "60000"
    # Done: its progress is whole, whatever a heartbeat left in the hash.
    await s.complete(x, cx.token)
    await s.complete(y, cy.token)
    assert (await fields(s, x))["progress"] == "0.4" and "progress" not in await fields(s, y)
    assert [(await s.get(t)).progress for t in (x, y)] == [1.0, 1.0]
    exported = {t["id"]: t for t in (await s.export_board())["tasks"]}
    assert exported[x]["progress"] == exported[y]["progress"] == "1"
    assert exported[y]["ttl_ms"] == "60000"


async def test_a_retry_after_a_failure_clears_its_reason_and_result(redis_store: Store) -> None:
    tid = await redis_store.add("x")
    c = await redis_store.claim("ada")
    assert c is not None
    assert (await redis_store.fail(tid, c.token, "flaky"))[0] == State.RETRYING
    assert (await fields(redis_store, tid))["reason"] == "flaky"
    await redis_store.act("requeue", tid, State.RETRYING, c.token, "lead")
    c = await redis_store.claim("ada")
    assert c is not None and c.task.reason == "flaky"
    await redis_store.complete(tid, c.token, {"ok": 1}, review="pr-1")  # a result, then returned
    await redis_store.review(tid, "return", "again", operator="lead")
    c = await redis_store.claim("ada")
    assert c is not None
    await redis_store.complete(tid, c.token)  # no result this time: the earlier one goes
    got = await fields(redis_store, tid)
    assert "reason" not in got and "result" not in got and "" not in got.values()
    t = await redis_store.get(tid)
    assert (t.state, t.reason, t.result, t.failures, t.attempts) == (State.DONE, "", None, 1, 3)


async def test_a_dead_task_stores_no_ready_time_and_a_retry_resets_its_counts(redis_store: Store) -> None:
    tid = await redis_store.add("x")
    c = await redis_store.claim("ada")
    assert c is not None
    await redis_store.fail(tid, c.token, "broken", fatal=True)
    got = await fields(redis_store, tid)
    assert got["state"] == "dead" and got["failures"] == "1" and "ready_ms" not in got
    await redis_store.act("retry", tid, State.DEAD, c.token, "lead")
    got = await fields(redis_store, tid)
    assert "failures" not in got and "expiries" not in got
    assert (await redis_store.get(tid)).failures == 0


async def test_a_reassigned_task_loses_its_assignment_when_claimed(redis_store: Store) -> None:
    tid = await redis_store.add("x")
    await redis_store.register("bob")
    c = await redis_store.claim("ada")
    assert c is not None
    await redis_store.act("reassign", tid, State.CLAIMED, c.token, "lead", "bob")
    assert (await fields(redis_store, tid))["assigned"] == "bob"
    c = await redis_store.claim("bob")
    assert c is not None and c.task.id == tid
    assert "assigned" not in await fields(redis_store, tid)


async def test_a_full_hash_of_an_older_claimroom_works_all_the_same(redis_store: Store) -> None:
    """Claimed, failed, retried, completed: either shape of the hash gives the same task."""
    lean, old = await redis_store.add_many([TaskSpec("lean"), TaskSpec("old")])
    await make_old(redis_store, old)
    ends: dict[str, Task] = {}
    for tid in (lean, old):
        c = await redis_store.claim("ada")
        assert c is not None and c.task.id == tid
        assert (c.task.attempts, c.task.failures, c.task.steal_after_ms) == (1, 0, -1)
        await redis_store.fail(tid, c.token, "flaky")
        await redis_store.act("requeue", tid, State.RETRYING, c.token, "lead")
        c = await redis_store.claim("ada")
        assert c is not None and c.task.id == tid and c.task.attempts == 2
        assert await redis_store.complete(tid, c.token) == []
        ends[tid] = await redis_store.get(tid)
        assert "reason" not in await fields(redis_store, tid)
    a, b = ends[lean], ends[old]
    assert (a.state, a.attempts, a.failures, a.reason) == (b.state, b.attempts, b.failures, b.reason)
    assert (a.state, a.attempts, a.failures, a.reason) == (State.DONE, 2, 1, "")
    # complete_and_claim: from an old hash to a lean one and back.
    x, y, z = await redis_store.add_many([TaskSpec("x"), TaskSpec("y"), TaskSpec("z")])
    for tid in (x, z):
        await make_old(redis_store, tid)
    c = await redis_store.claim("ada")
    for tid, then in ((x, y), (y, z), (z, None)):
        assert c is not None and c.task.id == tid and c.task.attempts == 1
        _unblocked, got = await redis_store.complete_and_claim(tid, c.token, agent="ada")
        assert [n.task.id for n in got] == ([then] if then else [])
        assert (await redis_store.get(tid)).state == State.DONE
        c = got[0] if got else None


async def test_a_claim_reads_a_lean_task_whole_with_no_extra_command(redis_store: Store) -> None:
    """A task read whole has its defaults (lib.lua task_defaults): no HGET of an absent
    field (field_of) on the claim's way, as for a full hash."""
    _first, lean, old = await redis_store.add_many([TaskSpec("first"), TaskSpec("lean"), TaskSpec("old")])
    await make_old(redis_store, old)
    await redis_store.register("ada", max_claims=5)
    await redis_store.claim("ada")  # the first: its token's epoch, the sweep's first look
    used = []
    for tid in (lean, old):
        before = await hgets(redis_store)
        c = await redis_store.claim("ada")
        assert c is not None and c.task.id == tid
        used.append(await hgets(redis_store) - before)
    assert used[0] == used[1]


async def test_a_lean_board_and_an_old_full_one_round_trip_through_export_and_import(
    redis_store: Store, redis_url: str, tmp_path: Path
) -> None:
    a, b, c = await redis_store.add_many([TaskSpec("a"), TaskSpec("b", after=["$0"]), TaskSpec("c")])
    await make_old(redis_store, c)
    got = await redis_store.claim("ada")
    assert got is not None
    await redis_store.complete(a, got.token)
    board = await redis_store.export_board()
    assert "plain" in await fields(redis_store, c) and not any("plain" in t for t in board["tasks"])
    for url in (redis_url, f"file://{tmp_path}"):
        async with Store.from_url(url, redis_store.namespace + "copy") as copy:
            await copy.import_board(board)
            for tid in (a, b, c):
                assert await copy.get(tid) == await redis_store.get(tid)
            if isinstance(copy, RedisStore):  # the old full hash arrives lean
                assert set(await fields(copy, c)) == ALWAYS
            claimed = await copy.claim("ada")
            assert claimed is not None and claimed.task.id == b


async def test_a_plain_mark_from_before_says_nothing_of_what_the_task_needs(redis_store: Store) -> None:
    """A plain task's mark holds what it needs ('=gpu'); claimroom before marked it '1', so
    its completion reads `requires` instead, and counts the task off the right set."""
    tid = await redis_store.add("gpu work", requires=["gpu"])
    assert (await fields(redis_store, tid))["plain"] == "=gpu"
    await raw(redis_store).hset(C.task_key(redis_store.namespace, tid), "plain", "1")
    await redis_store.register("w", ["gpu"])
    c = await redis_store.claim("w")
    assert c is not None and c.task.id == tid
    await redis_store.complete(tid, c.token)
    assert await raw(redis_store).hgetall(C.sigs_key(redis_store.namespace)) == {}
