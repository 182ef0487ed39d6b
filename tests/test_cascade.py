"""Cascades: a task that ends dead or cancelled takes what depends on it (and theirs) with it
in the same step; an operator's retry may restore them; what is stuck anyway is found.

Every test runs on both backends (the ``store`` fixture).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from oldboards import UNDO_SINCE_7
from waiting import clock_past

from claimroom.core import constants
from claimroom.core.errors import BadInput
from claimroom.core.file.schema import SCHEMA_VERSION
from claimroom.core.migrate import migrate
from claimroom.core.models import Event, State
from claimroom.core.redis.store import RedisStore
from claimroom.core.store import Store, TaskSpec

Ending = Callable[[Store, str], Awaitable[str]]


async def events_of(store: Store, etype: str, task: str | None = None) -> list[Event]:
    return [e for e in await store.events(task=task, count=100_000) if e.type == etype]


async def claimed(store: Store, tid: str, agent: str = "ada", ttl_s: float = 30) -> int:
    c = await store.claim(agent, ttl_s=ttl_s)
    assert c is not None and c.task.id == tid, f"expected to claim {tid}"
    return c.token


# --- every way a task ends dead or cancelled: (how, the end state's word, the event) --------


async def fatal(store: Store, tid: str) -> str:
    await store.fail(tid, await claimed(store, tid), "broken beyond repair", fatal=True)
    return "dead"


async def attempts_spent(store: Store, tid: str) -> str:
    await store.fail(tid, await claimed(store, tid), "flaky")  # max_attempts=1 (see below)
    return "dead"


async def expiry_cap(store: Store, tid: str) -> str:
    for n in range(constants.max_lease_expiries):
        await claimed(store, tid, agent=f"victim{n}", ttl_s=0.1)
        await clock_past(store, (await store.get(tid)).deadline_ms)
        report = await store.reap()
        assert tid in report.requeued + report.dead
    return "dead"


async def kill_dead(store: Store, tid: str) -> str:
    token = await claimed(store, tid)
    assert await store.act("kill-dead", tid, State.CLAIMED, token, "lead") is State.DEAD
    return "dead"


async def cancel(store: Store, tid: str) -> str:
    assert await store.act("cancel", tid, State.QUEUED, 0, "lead") is State.CANCELLED
    return "cancelled"


ENDINGS: dict[str, Ending] = {
    "fatal": fatal,
    "attempts": attempts_spent,
    "expiry-cap": expiry_cap,
    "kill-dead": kill_dead,
    "cancel": cancel,
}


@pytest.mark.parametrize("ending", list(ENDINGS))
async def test_an_ending_cancels_dependents_and_theirs_in_the_same_step(store: Store, ending: str) -> None:
    a = await store.add("A", max_attempts=1)
    other = await store.add("unrelated")
    b, c, both = await store.add_many(
        [
            TaskSpec("B", after=[a]),
            TaskSpec("C", after=["$0"]),
            TaskSpec("after A and unrelated", after=[a, other]),
        ]
    )

    word = await ENDINGS[ending](store, a)

    # Checked at once after the call: no window where B is still blocked.
    tb, tc, tboth = await store.get(b), await store.get(c), await store.get(both)
    assert tb.state is State.CANCELLED and tb.reason == f"dependency {a} {word}" and tb.cancelled_by == a
    assert tc.state is State.CANCELLED and tc.reason == f"dependency {b} cancelled ({a} {word})"
    assert tc.cancelled_by == b
    assert tboth.state is State.CANCELLED and tboth.cancelled_by == a
    assert (await store.get(other)).state is State.QUEUED

    # Each audited with its reason, in the same atomic step as the end of A.
    end = [e for e in await store.events(task=a) if e.type in ("failed", "expired", "killed", "cancelled")][
        -1
    ]
    for tid, dep, reason in ((b, a, tb.reason), (c, b, tc.reason), (both, a, tboth.reason)):
        (ev,) = await events_of(store, "cancelled", tid)
        assert ev.data == {"reason": reason, "after": dep}
        assert ev.at_ms == end.at_ms
    (summary,) = await events_of(store, "cascade", a)
    assert summary.data == {"cancelled": 3, "more": False}
    assert (await store.counts())[State.BLOCKED] == 0


async def test_a_rolled_back_subtask_takes_its_dependents_with_it(store: Store) -> None:
    parent = await store.add("parent", priority=10)
    token = await claimed(store, parent, "boss")
    sub, sub2, plain = await store.add_many(
        [
            TaskSpec("sub", parent=parent),
            TaskSpec("sub after sub", parent=parent, after=["$0"]),
            TaskSpec("after the sub, not a subtask", after=["$0"]),
        ]
    )
    await store.fail(parent, token, "gave up")
    # A subtask is rolled back as a subtask even when it also waits on another one.
    for tid in (sub, sub2):
        t = await store.get(tid)
        assert (t.state, t.reason, t.cancelled_by) == (State.CANCELLED, f"rollback of {parent}", "")
    (ev,) = await events_of(store, "failed", parent)
    assert sorted(ev.data["cancelled"]) == sorted([sub, sub2])
    t = await store.get(plain)
    assert t.state is State.CANCELLED and t.reason == f"dependency {sub} cancelled" and t.cancelled_by == sub
    (ev,) = await events_of(store, "cancelled", plain)
    assert ev.data == {"reason": t.reason, "after": sub}


async def test_cancelling_a_blocked_task_cascades(store: Store) -> None:
    a = await store.add("A")
    b, c = await store.add_many([TaskSpec("B", after=[a]), TaskSpec("C", after=["$0"])])
    await store.act("cancel", b, State.BLOCKED, 0, "lead")
    t = await store.get(c)
    assert t.state is State.CANCELLED and t.reason == f"dependency {b} cancelled"
    assert (await store.get(a)).state is State.QUEUED


async def test_adding_after_a_dead_task_adds_it_cancelled(store: Store) -> None:
    a = await store.add("A")
    await fatal(store, a)
    b, c = await store.add_many([TaskSpec("B", after=[a]), TaskSpec("C", after=["$0"])])
    tb, tc = await store.get(b), await store.get(c)
    assert tb.state is State.CANCELLED and tb.reason == f"dependency {a} dead" and tb.cancelled_by == a
    assert tc.state is State.CANCELLED and tc.reason == f"dependency {b} cancelled ({a} dead)"
    (ev,) = await events_of(store, "added", b)
    assert ev.data["state"] == "cancelled" and ev.data["reason"] == tb.reason
    assert await store.dependents_cancelled(a) == 1


# --- the batch bound (rule 10) ------------------------------------------------------------


async def test_a_huge_cascade_is_cut_into_batches_that_the_reaper_finishes(store: Store) -> None:
    batch = constants.cascade_batch
    n = 2 * batch + 200
    a = await store.add("A")
    deps = await store.add_many([TaskSpec(f"dep {i}", after=[a]) for i in range(n)])
    tail = await store.add("after the last one", after=[deps[-1]])
    await fatal(store, a)

    first = (await store.counts())[State.CANCELLED]
    assert 0 < first <= batch
    (summary,) = await events_of(store, "cascade", a)
    assert summary.data == {"cancelled": first, "more": True}

    passes = []
    while True:
        report = await store.reap()
        assert len(report.cancelled) <= batch
        passes.append(len(report.cancelled))
        if report.cascades_pending == 0:
            break
        assert len(passes) < 20
    assert first + sum(passes) == n + 1
    counts = await store.counts()
    assert counts[State.CANCELLED] == n + 1 and counts[State.BLOCKED] == 0
    assert (await store.get(tail)).reason == f"dependency {deps[-1]} cancelled ({a} dead)"
    # Every step said how many it cancelled, none more than the batch, and when it was the last.
    steps = await events_of(store, "cascade")
    assert all(e.data["cancelled"] <= batch for e in steps)
    assert sum(e.data["cancelled"] for e in steps) == n + 1
    assert steps[-1].data["more"] is False


async def test_a_claim_goes_on_with_a_cascade_left_over(store: Store) -> None:
    a = await store.add("A", priority=5)
    await store.add_many([TaskSpec(f"dep {i}", after=[a]) for i in range(constants.cascade_batch + 10)])
    await fatal(store, a)
    assert (await store.counts())[State.BLOCKED] > 0
    assert await store.claim("idle") is None
    assert (await store.counts())[State.BLOCKED] == 0


# --- restore on retry ---------------------------------------------------------------------


async def test_retry_with_restore_brings_the_cascade_back(store: Store) -> None:
    a = await store.add("A", priority=10)
    b, c, by_hand, after_by_hand = await store.add_many(
        [
            TaskSpec("B", after=[a]),
            TaskSpec("C", after=["$0"]),
            TaskSpec("cancelled by an operator", after=[a]),
            TaskSpec("after that one", after=["$2"]),
        ]
    )
    await store.act("cancel", by_hand, State.BLOCKED, 0, "lead")
    await fatal(store, a)
    assert await store.dependents_cancelled(a) == 1  # B; C follows it; by_hand was the operator's

    assert (
        await store.act("retry", a, State.DEAD, (await store.get(a)).token, "lead", restore=True)
        is State.QUEUED
    )
    tb, tc = await store.get(b), await store.get(c)
    assert (tb.state, tb.reason, tb.cancelled_by) == (State.BLOCKED, "", "")
    assert tc.state is State.BLOCKED
    assert (await store.get(by_hand)).reason == "cancelled by lead"  # never restored
    assert (await store.get(after_by_hand)).state is State.CANCELLED
    for tid, dep in ((b, a), (c, b)):
        (ev,) = await events_of(store, "restored", tid)
        assert ev.data == {"to": "blocked", "after": dep} and ev.operator == "lead"
    (summary,) = await events_of(store, "restore", a)
    assert summary.data == {"restored": 2, "kept": 0, "more": False} and summary.operator == "lead"
    assert await store.dependents_cancelled(a) == 0

    # Blocked on the retried task again: completing it unblocks them, in order.
    assert await store.complete(a, await claimed(store, a)) == [b]
    assert await store.complete(b, await claimed(store, b)) == [c]


async def test_retry_without_restore_leaves_them_cancelled(store: Store) -> None:
    a = await store.add("A")
    b = await store.add("B", after=[a])
    await fatal(store, a)
    await store.act("retry", a, State.DEAD, (await store.get(a)).token, "lead")
    assert (await store.get(b)).state is State.CANCELLED
    assert await store.dependents_cancelled(a) == 1
    assert await events_of(store, "restore") == []


async def test_restore_keeps_a_task_whose_other_dependency_is_dead(store: Store) -> None:
    a = await store.add("A", priority=10)
    g = await store.add("G", priority=5)
    f = await store.add("F", after=[a, g])
    await fatal(store, a)
    await fatal(store, g)
    assert (await store.get(f)).cancelled_by == a

    await store.act("retry", a, State.DEAD, (await store.get(a)).token, "lead", restore=True)
    t = await store.get(f)
    assert (t.state, t.cancelled_by, t.reason) == (State.CANCELLED, g, f"dependency {g} dead")
    (ev,) = await events_of(store, "not-restored", f)
    assert ev.data == {"reason": t.reason, "after": g}

    await store.act("retry", g, State.DEAD, (await store.get(g)).token, "lead", restore=True)
    assert (await store.get(f)).state is State.BLOCKED
    await store.complete(a, await claimed(store, a))
    assert (await store.get(f)).state is State.BLOCKED  # still waits on G
    assert await store.complete(g, await claimed(store, g)) == [f]


async def test_a_huge_restore_is_cut_into_batches_too(store: Store) -> None:
    batch = constants.cascade_batch
    n = batch + 300
    a = await store.add("A")
    await store.add_many([TaskSpec(f"dep {i}", after=[a]) for i in range(n)])
    await fatal(store, a)
    while (await store.reap()).cascades_pending:
        pass
    await store.act("retry", a, State.DEAD, (await store.get(a)).token, "lead", restore=True)
    assert 0 < (await store.counts())[State.BLOCKED] <= batch
    while True:
        report = await store.reap()
        assert len(report.restored) <= batch
        if report.cascades_pending == 0:
            break
    counts = await store.counts()
    assert counts[State.BLOCKED] == n and counts[State.CANCELLED] == 0


async def test_restore_goes_with_retry_only(store: Store) -> None:
    a = await store.add("A")
    with pytest.raises(BadInput, match="only a retry"):
        await store.act("cancel", a, State.QUEUED, 0, "lead", restore=True)
    with pytest.raises(BadInput):
        await store.act("retry", a, State.DEAD, 0, "lead", restore="yes")  # type: ignore[arg-type]
    assert (await store.get(a)).state is State.QUEUED


async def test_a_dead_task_retried_mid_cascade_keeps_the_rest_waiting(store: Store) -> None:
    a = await store.add("A")
    n = constants.cascade_batch + 100
    await store.add_many([TaskSpec(f"dep {i}", after=[a]) for i in range(n)])
    await fatal(store, a)
    left = (await store.counts())[State.BLOCKED]
    assert left > 0
    await store.act("retry", a, State.DEAD, (await store.get(a)).token, "lead")
    report = await store.reap()
    assert report.cancelled == () and report.cascades_pending == 0
    assert (await store.counts())[State.BLOCKED] == left


# --- stuck: blocked on something that can never finish -------------------------------------


async def hand_edit(store: Store, tid: str, state: str | None) -> None:
    """Change a task behind claimroom's back (as an older claimroom or a person would):
    set its state without any cascade, or delete it (None)."""
    if isinstance(store, RedisStore):
        key = constants.task_key(store.namespace, tid)
        if state is None:
            await store._redis.delete(key)  # raw keys: the hand edit no API would make
        else:
            await store._redis.hset(key, "state", state)
        return
    path = store._path  # type: ignore[attr-defined]  # the file store's database
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        if state is None:
            conn.execute("DELETE FROM tasks WHERE ns = ? AND id = ?", (store.namespace, tid))
        else:
            conn.execute("UPDATE tasks SET state = ? WHERE ns = ? AND id = ?", (state, store.namespace, tid))
    finally:
        conn.close()


async def test_stuck_finds_blocked_tasks_on_dead_or_missing_dependencies(store: Store) -> None:
    a, gone, fine = await store.add_many([TaskSpec("A"), TaskSpec("gone"), TaskSpec("fine")])
    b, c, d = await store.add_many(
        [TaskSpec("B", after=[a]), TaskSpec("C", after=[fine, gone]), TaskSpec("D", after=[fine])]
    )
    assert (await store.stuck())[0] == []
    await hand_edit(store, a, "dead")
    await hand_edit(store, gone, None)
    found, next_seq = await store.stuck()
    assert [(s.task.id, s.dependency, s.dependency_state) for s in found] == [
        (b, a, "dead"),
        (c, gone, "missing"),
    ]
    assert next_seq == 0
    assert found[0].task.title == "B"

    # A window at a time: two blocked tasks per look, then the rest, then from the start.
    first, at = await store.stuck(limit=2)
    assert [s.task.id for s in first] == [b, c] and at == (await store.get(c)).seq
    rest, at2 = await store.stuck(after_seq=at, limit=2)
    assert rest == [] and at2 == 0
    # ``also`` looks at named tasks outside the window.
    again, _ = await store.stuck(after_seq=at, limit=2, also=[b, d])
    assert [s.task.id for s in again] == [b]


async def test_stuck_refuses_bad_arguments(store: Store) -> None:
    for kwargs in ({"after_seq": -1}, {"limit": 0}, {"also": ["no such id!"]}):
        with pytest.raises(BadInput):
            await store.stuck(**kwargs)  # type: ignore[arg-type]


# --- a file board written before cascades --------------------------------------------------


@pytest.mark.parametrize("backend", ["file"], indirect=True)
async def test_a_file_board_of_schema_2_is_upgraded(store_url: str, namespace: str) -> None:
    """Schema 2 had no cancelled_by column and no cascades table: opening such a board adds
    them, and its stuck tasks are found (the older claimroom cascaded nothing)."""
    s = Store.from_url(store_url, namespace)
    a = await s.add("A")
    b = await s.add("B", after=[a])
    path = s._path  # type: ignore[attr-defined]
    await s.close()
    conn = sqlite3.connect(path, isolation_level=None)
    for sql in (
        "DROP INDEX tasks_cancelled_by",
        "ALTER TABLE tasks DROP COLUMN cancelled_by",
        "DROP TABLE cascades",
        "DROP TABLE reaper",
        # and what schema 5 added (retention)
        "ALTER TABLE agents DROP COLUMN auto",
        "DROP TABLE finished",
        "DROP TABLE retention_due",
        "DROP TABLE retention",
        "DROP TABLE cursors",
        # and what schema 7 added (tokens, sessions)
        "ALTER TABLE agents DROP COLUMN session",
        "DROP TABLE tokens",
        *UNDO_SINCE_7,  # and everything after 7
        "UPDATE tasks SET state = 'dead' WHERE id = 't1'",  # as an older claimroom left it
        "UPDATE meta SET value = '2' WHERE key = 'schema'",
    ):
        conn.execute(sql)
    conn.close()

    s = Store.from_url(store_url, namespace)
    try:
        found, _ = await s.stuck()
        assert [(x.task.id, x.dependency_state) for x in found] == [(b, "dead")]
        c = await s.add("C", after=[a])
        assert (await s.get(c)).cancelled_by == a
    finally:
        await s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (str(SCHEMA_VERSION),)
    conn.close()


async def test_a_migrated_board_keeps_what_a_restore_needs(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    folder = tmp_path / "board"
    folder.mkdir()
    async with (
        Store.from_url(redis_url, namespace) as red,
        Store.from_url(folder.as_uri(), namespace) as filed,
        Store.from_url(redis_url, namespace + "b") as back,
    ):
        a = await red.add("A")
        b, c = await red.add_many([TaskSpec("B", after=[a]), TaskSpec("C", after=["$0"])])
        await fatal(red, a)
        await migrate(red, filed)
        await migrate(filed, back)
        for s in (filed, back):
            assert (await s.get(c)).cancelled_by == b and await s.dependents_cancelled(a) == 1
            await s.act("retry", a, State.DEAD, (await s.get(a)).token, "lead", restore=True)
            assert [(await s.get(t)).state for t in (b, c)] == [State.BLOCKED, State.BLOCKED]
            assert await s.complete(a, await claimed(s, a)) == [b]
