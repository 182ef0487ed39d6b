"""Retention (issue 12): finished tasks, idle auto-registered agents and the audit trail are
kept for a time and a count, then removed by the reaper pass with every index entry; one
task's history is one read of its own index. Every test runs on both backends (``store``).

Horizons are made tiny through the API (``set_retention``), and the tests read the store
back: on Redis every key of the namespace, on the file store every table.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from oldboards import undo_since_7
from waiting import clock_past, store_now_ms

from claimroom.core import constants as C
from claimroom.core.errors import BadInput
from claimroom.core.migrate import migrate
from claimroom.core.models import Event, ReapReport, State
from claimroom.core.store import Store, TaskSpec

# --- helpers -------------------------------------------------------------------------------


async def settle(store: Store) -> ReapReport:
    """Reap until retention has nothing more to do now; what all the passes removed."""
    removed = agents = trimmed = 0
    for _ in range(50):
        report = await store.reap()
        removed, agents = removed + report.removed, agents + report.agents_removed
        trimmed += report.events_trimmed
        if not report.retention_more and not report.removed:
            return dataclasses.replace(report, removed=removed, agents_removed=agents, events_trimmed=trimmed)
    raise AssertionError("retention kept finding work")


async def horizon_passes(store: Store, horizon_s: float) -> None:
    """Wait until a horizon of ``horizon_s`` counted from now has gone by on the store's
    clock, the one retention judges by (time passing is what these tests are about)."""
    await clock_past(store, await store_now_ms(store) + int(horizon_s * 1000))


async def finish(store: Store, agent: str = "w", **claim: Any) -> str:
    """Claim the next task and complete it; its id."""
    c = await store.claim(agent, **claim)
    assert c is not None
    await store.complete(c.task.id, c.token)
    return c.task.id


async def kill(store: Store, agent: str = "w") -> str:
    """Claim the next task and fail it for good; its id."""
    c = await store.claim(agent)
    assert c is not None
    await store.fail(c.task.id, c.token, "broken", fatal=True)
    return c.task.id


_TOKEN = re.compile(r"[,|:]")


def _names(text: str, ids: set[str]) -> bool:
    return text in ids or bool(set(_TOKEN.split(text)) & ids)


async def mentions(store: Store, ids: set[str]) -> list[str]:
    """Every place outside the audit trail that names one of ``ids``: on Redis each key of
    the namespace (its name, members, fields and values), on the file store each row."""
    found: list[str] = []
    if store.url.startswith("file:"):
        conn = sqlite3.connect(store._path)  # type: ignore[attr-defined]
        try:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                if table in ("events", "meta", "counters"):
                    continue
                for row in conn.execute(
                    f"SELECT * FROM {table} WHERE ns = ?", (store.namespace,)
                ):  # (a table name from sqlite_master)
                    if any(isinstance(v, str) and _names(v, ids) for v in row):
                        found.append(f"{table}: {tuple(row)}")
        finally:
            conn.close()
        return found
    r = store._redis  # type: ignore[attr-defined]  # raw keys: any key still naming the tasks
    prefix = C.prefix(store.namespace)
    async for key in r.scan_iter(match=prefix + "*", count=1000):
        if key == C.events_key(store.namespace):
            continue
        if _names(key[len(prefix) :], ids):
            found.append(f"key {key}")
            continue
        kind = await r.type(key)
        values: list[str] = []
        if kind == "hash":
            h = await r.hgetall(key)
            values = [*h, *h.values()]
        elif kind == "set":
            values = list(await r.smembers(key))
        elif kind == "zset":
            values = list(await r.zrange(key, 0, -1))
        elif kind == "list":
            values = list(await r.lrange(key, 0, -1))
        elif kind == "string":
            values = [await r.get(key)]
        found += [f"{key}: {v}" for v in values if _names(v, ids)]
    return found


# --- removal with every index entry -----------------------------------------------------------


async def test_finished_tasks_are_removed_with_every_index_entry(store: Store) -> None:
    await store.set_retention(done_s=0, failed_s=0)
    parent = await store.add("parent")
    c = await store.claim("ada")
    assert c is not None and c.task.id == parent
    child = await store.add("child", parent=parent)  # made under the parent's claim
    await store.lock(["src"], "ada", task=parent)
    after = await store.add("after the parent", after=[parent])
    await store.complete(parent, c.token)
    assert {await finish(store), await finish(store)} == {child, after}
    doomed = await store.add("doomed")
    follower = await store.add("follows the doomed", after=[doomed])
    assert await kill(store) == doomed
    assert (await store.get(follower)).state is State.CANCELLED  # its cascade
    dropped = await store.add("dropped")
    await store.act("cancel", dropped, State.QUEUED, 0, "op")
    ids = {parent, child, after, doomed, follower, dropped}
    assert await mentions(store, ids)  # the check sees them while they are there

    report = await settle(store)
    assert report.retention_more is False
    assert await store.tasks() == []
    assert sum((await store.counts()).values()) == 0
    assert await mentions(store, ids) == []
    # The trail keeps the history (its own horizon); the task's own index went with it.
    assert any(e.task == parent for e in await store.events(count=10_000))
    assert await store.events(task=parent) == []


async def test_finished_tasks_go_after_their_horizon_and_not_before(store: Store) -> None:
    await store.set_retention("q", done_s=0.4)
    first = await store.add("first", queue="q")
    second = await store.add("second", queue="q")
    other = await store.add("elsewhere", queue="other")  # the board's 24 h
    await finish(store, queues=["q"])
    await finish(store, queues=["other"])
    await store.reap()
    assert {t.id for t in await store.tasks(state=State.DONE)} == {first, other}  # too young
    await horizon_passes(store, 0.4)
    await finish(store, queues=["q"])
    assert (await store.reap()).removed == 1
    assert {t.id for t in await store.tasks(state=State.DONE)} == {second, other}
    await horizon_passes(store, 0.4)
    await settle(store)
    assert {t.id for t in await store.tasks(state=State.DONE)} == {other}


async def test_count_caps_keep_exactly_the_newest(store: Store) -> None:
    await store.set_retention("q", done_s=None, done_count=3, failed_s=None, failed_count=2)
    await store.add_many([TaskSpec(title=f"t{i}", queue="q") for i in range(7)])
    keep = await store.add_many([TaskSpec(title=f"o{i}", queue="other") for i in range(5)])
    await store.register("w", max_claims=20)
    claims = await store.claim_many("w", 7, queues=["q"])
    random.Random(7).shuffle(claims)  # finishing order differs from creation order
    for c in claims:
        await store.complete(c.task.id, c.token)
    for _ in keep:
        await finish(store, queues=["other"])
    dead = await store.add_many([TaskSpec(title=f"d{i}", queue="q") for i in range(4)])
    died = [await kill(store) for _ in dead]

    report = await settle(store)
    assert report.removed == 4 + 2
    assert [t.id for t in await store.tasks(state=State.DONE, queue="q")] == sorted(
        [c.task.id for c in claims[-3:]], key=lambda t: int(t[1:])
    )
    assert {t.id for t in await store.tasks(state=State.DEAD)} == set(died[-2:])
    assert len(await store.tasks(state=State.DONE, queue="other")) == 5
    await store.set_retention("q", done_count=1)  # a queue's change: from the next pass
    await settle(store)
    assert [t.id for t in await store.tasks(state=State.DONE, queue="q")] == [claims[-1].task.id]


async def test_each_pass_sees_the_tasks_finished_since_the_last(store: Store) -> None:
    """A queue is due for a look as a task finishes there (on Redis marked once per
    retention call and process, lib.lua retention_enter): whatever finished after a pass,
    the next pass holds the count cap again, round after round."""
    await store.set_retention("q", done_s=None, done_count=2)
    await store.add_many([TaskSpec(title=f"t{i}", queue="q") for i in range(12)])
    newest: list[str] = []
    for _ in range(4):
        newest += [await finish(store, queues=["q"]) for _ in range(3)]
        await settle(store)
        assert {t.id for t in await store.tasks(state=State.DONE)} == set(newest[-2:])


async def test_a_dead_task_is_kept_longer_than_a_done_one(store: Store) -> None:
    await store.set_retention(done_s=0.2)  # failures keep the default: a week
    ok = await store.add("works")
    bad = await store.add("breaks")
    dropped = await store.add("dropped")
    assert await finish(store) == ok
    assert await kill(store) == bad
    await store.act("cancel", dropped, State.QUEUED, 0, "op")
    await horizon_passes(store, 0.2)
    await settle(store)
    assert [t.id for t in await store.tasks()] == [bad, dropped]
    await store.set_retention(failed_s=0)  # the board's change reaches every queue at the next pass
    await settle(store)
    assert await store.tasks() == []


async def test_retention_never_removes_what_a_task_on_the_board_still_needs(store: Store) -> None:
    await store.set_retention(done_s=0, failed_s=None)
    x = await store.add("x")
    y = await store.add("y")
    waits = await store.add("waits on x and y", after=[x, y])
    assert await finish(store) == x
    late = await store.add("added after x was done", after=[x])  # queued at once
    parent = await store.add("parent")
    c = await store.claim("p")
    assert c is not None and c.task.id == y
    await store.release(y, c.token)
    # x is done but two tasks on the board name it: kept, and nothing looks stuck.
    await settle(store)
    assert (await store.get(x)).state is State.DONE
    assert (await store.stuck())[0] == []

    # A dead dependency that an operator retries with restore: the restored task waits on
    # x again, as blocked, never "kept" for a missing dependency.
    c = await store.claim("w")
    assert c is not None and c.task.id == y
    await store.fail(y, c.token, "broken", fatal=True)
    assert (await store.get(waits)).state is State.CANCELLED
    await settle(store)
    assert (await store.get(x)).state is State.DONE
    await store.act("retry", y, State.DEAD, c.token, "op", restore=True)
    assert (await store.get(waits)).state is State.BLOCKED

    assert await finish(store) == y
    assert await finish(store) == waits
    assert await finish(store) == late

    # A parent goes while its subtask lives; the subtask still runs.
    c = await store.claim("w")
    assert c is not None and c.task.id == parent
    sub = await store.add("subtask", parent=parent)
    await store.complete(parent, c.token)
    await settle(store)  # x goes with the last task that named it
    assert [t.id for t in await store.tasks()] == [sub]
    assert await finish(store) == sub
    await settle(store)
    assert await store.tasks() == []


async def test_a_removed_dead_task_frees_its_capability_set(store: Store) -> None:
    """Dead tasks count among the unfinished ones whose capability sets are capped
    (``max_capsigs``): retention removing them makes room again."""
    caps = [f"c{i}" for i in range(C.max_capsigs)]
    await store.register("w", caps, max_claims=len(caps))
    await store.add_many([TaskSpec(title=c, requires=[c]) for c in caps])
    for c in await store.claim_many("w", len(caps)):
        await store.fail(c.task.id, c.token, "broken", fatal=True)
    with pytest.raises(BadInput, match="capabilit"):
        await store.add("one set too many", requires=["new"])
    await store.set_retention(failed_s=0)
    await settle(store)
    assert await store.tasks() == []
    await store.add("room again", requires=["new"])


async def test_each_step_is_bounded_and_the_reaper_goes_on(store: Store) -> None:
    await store.set_retention(done_s=0)
    n = C.retention_batch * 2 + 50
    await store.add_many([TaskSpec(title=f"t{i}") for i in range(n)])
    await store.register("w", max_claims=n)
    for c in await store.claim_many("w", n):
        await store.complete(c.task.id, c.token)
    steps = []
    while True:
        removed, _agents, _trimmed, more = await store._retain()
        steps.append(removed)
        if not more:
            break
    assert steps[:2] == [C.retention_batch, C.retention_batch]
    assert sum(steps) == n
    assert await store.tasks() == []


async def test_listing_the_board_pages_past_removed_tasks(store: Store) -> None:
    await store.set_retention("gone", done_s=0)
    ids = await store.add_many(
        [TaskSpec(title=f"t{i}", queue="gone" if i % 3 else "kept") for i in range(30)]
    )
    await store.register("w", max_claims=30)
    for c in await store.claim_many("w", 30):
        await store.complete(c.task.id, c.token)
    await settle(store)
    kept = ids[::3]
    assert [t.id for t in await store.tasks()] == kept
    assert [t.id for t in await store.tasks(limit=3, offset=4)] == kept[4:7]
    assert [t.id for t in await store.tasks(limit=100, offset=9)] == kept[9:]


# --- agents ----------------------------------------------------------------------------------


async def test_idle_agents_a_claim_registered_are_removed(store: Store) -> None:
    await store.set_retention(agents_s=0.2)
    await store.add_many([TaskSpec(title="a"), TaskSpec(title="b"), TaskSpec(title="c")])
    await finish(store, "passer-by")  # registered by its claim
    await finish(store, "came-back")  # registered by its claim, then on purpose
    await store.register("came-back")
    await store.register("named")  # registered on purpose
    held = await store.claim("busy")  # registered by its claim, and holds a task
    assert held is not None
    await horizon_passes(store, 0.2)
    report = await settle(store)
    assert report.agents_removed == 1
    assert sorted(a.name for a in await store.agents()) == ["busy", "came-back", "named"]
    # Gone but for the done task that remembers who did it.
    left = await mentions(store, {"passer-by"})
    on_redis = f"{C.task_key(store.namespace, 't1')}: passer-by"  # the done task's own hash
    assert len(left) == 1 and (left[0] == on_redis or re.match(r"tasks: \('\w+', 't1'", left[0])), left


# --- the audit trail ---------------------------------------------------------------------------


async def test_the_audit_trail_keeps_its_own_horizon(store: Store) -> None:
    await store.set_retention(events_s=0.3)
    await store.add_many([TaskSpec(title=f"old {i}") for i in range(20)])
    await horizon_passes(store, 0.3)
    new = await store.add("new")
    report = await settle(store)
    assert report.events_trimmed >= 20
    assert [(e.type, e.task) for e in await store.events()] == [("added", new)]
    assert len(await store.tasks()) == 21  # the tasks stay: the trail has its own horizon


async def test_the_audit_trail_is_bounded_in_bytes(store: Store) -> None:
    budget = 40_000
    await store.set_retention(events_bytes=budget)
    await store.register("w", max_claims=100)
    await store.add_many([TaskSpec(title=f"t{i}", max_attempts=1000) for i in range(40)])
    for i, c in enumerate(await store.claim_many("w", 40)):
        await store.fail(c.task.id, c.token, f"{i:03} " + "x" * 4000)  # 4 KB each
    before = await store.events(count=10_000)
    report = await settle(store)
    after = await store.events(count=10_000)
    assert report.events_trimmed > 0
    assert after[-1] == before[-1]  # the newest stay
    assert sum(len(json.dumps(e.data)) for e in after) <= budget
    assert sum(len(json.dumps(e.data)) for e in after) > budget / 3  # trimmed to it, not far past
    if not store.url.startswith("file:"):
        size = await store.admin.memory_usage(C.events_key(store.namespace))  # type: ignore[attr-defined]
        assert size <= budget * 1.25


# --- one task's history through its index -----------------------------------------------------


async def _cost(store: Store, task: str) -> tuple[list[Event], int]:
    """The task's events, and what reading them cost: Redis commands sent for the events
    (XRANGE calls, INFO commandstats), or SQLite VM steps (a progress handler)."""
    if store.url.startswith("file:"):
        steps = 0

        def step() -> int:
            nonlocal steps
            steps += 1
            return 0

        conn = store._connection()  # type: ignore[attr-defined]
        conn.set_progress_handler(step, 10)
        try:
            events = await store.events(task=task)
        finally:
            conn.set_progress_handler(None, 10)
        return events, steps
    admin = store.admin  # type: ignore[attr-defined]

    async def xranges() -> int:
        stats = await admin.info("commandstats")
        return int(stats.get("cmdstat_xrange", {}).get("calls", 0))

    before = await xranges()
    events = await store.events(task=task)
    return events, await xranges() - before


async def test_one_tasks_history_is_read_through_its_index(store: Store) -> None:
    await store.register("w", max_claims=10)
    t = await store.add("watched")
    c = await store.claim("w")
    assert c is not None and c.task.id == t
    await store.heartbeat(t, c.token, stage="one")
    await store.heartbeat(t, c.token, stage="two")
    await store.complete(t, c.token)
    whole = [e for e in await store.events(count=100_000) if e.task == t]
    small, small_cost = await _cost(store, t)
    assert small == whole and [e.type for e in small] == ["added", "claimed", "stage", "stage", "completed"]
    assert await store.events(task=t, after=whole[1].id, count=2) == whole[2:4]

    for _ in range(3):  # the trail grows 60 times past the task's events
        await store.add_many([TaskSpec(title=f"noise {i}") for i in range(1000)])
    big, big_cost = await _cost(store, t)
    assert big == whole
    print(f"cost of events --task: {small_cost} with a short trail, {big_cost} with a long one")
    if store.url.startswith("file:"):
        assert big_cost <= small_cost * 1.2 + 5  # VM steps: an index seek, then the task's rows
    else:
        assert big_cost == small_cost  # one XRANGE per event of the task, plus one

    # Once retention removes the task, its history goes with it (the trail keeps it).
    await store.set_retention(done_s=0)
    await settle(store)
    assert await store.events(task=t) == []
    assert [e for e in await store.events(count=100_000) if e.task == t] == whole


async def test_an_index_started_late_still_gives_the_whole_history(redis_store: Store) -> None:
    """A task whose first events an older claimroom wrote (no index, or one that starts
    after them): read from the trail as before."""
    s = redis_store
    t = await s.add("old")
    await finish(s)
    whole = [e for e in await s.events() if e.task == t]
    key = C.task_events_key(s.namespace, t)
    r = s._redis  # type: ignore[attr-defined]  # raw keys: stages what an older claimroom left
    await r.lpop(key)  # the index starts after the task's first event
    assert await s.events(task=t) == whole
    await r.delete(key)  # no index at all
    assert await s.events(task=t) == whole


# --- settings ------------------------------------------------------------------------------------


async def test_settings_per_queue_over_the_board_over_the_defaults(store: Store) -> None:
    board = await store.retention()
    assert (board.done_s, board.done_count) == (C.retention_done_s, C.retention_done_count)
    assert (board.failed_s, board.events_bytes) == (C.retention_failed_s, C.retention_events_bytes)
    await store.set_retention(done_s=3600, failed_count=None)
    q = await store.set_retention("q", done_count=5)
    assert (q.done_s, q.done_count, q.failed_count) == (3600, 5, None)
    assert (await store.retention("other")).done_count == C.retention_done_count
    again = Store.from_url(store.url, store.namespace)
    try:
        assert await again.retention("q") == q  # kept in the board
    finally:
        await again.close()
    assert (await store.set_retention("q", reset=True)).done_count == C.retention_done_count
    assert (await store.set_retention(reset=True)).done_s == C.retention_done_s
    assert [e.type for e in await store.events()].count("retention") == 4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"done_s": -1},
        {"done_s": float("nan")},
        {"done_s": "soon"},
        {"done_count": 2.5},
        {"done_count": -3},
        {"events_bytes": 0},
        {"failed_s": 1e10},  # past a hundred years
        {"done_count": True},
        {"queue": "a b", "done_s": 1},
        {"queue": "q", "events_s": 5},
        {"queue": "q", "agents_s": 5},
        {"reset": "yes"},
    ],
)
async def test_bad_settings_are_refused_and_change_nothing(store: Store, kwargs: dict[str, Any]) -> None:
    before = await store.retention("q")
    with pytest.raises(BadInput):
        await store.set_retention(**kwargs)
    assert await store.retention("q") == before


def test_the_cli_shows_and_changes_retention(cli_env: dict[str, str]) -> None:
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "claimroom.core.cli", *args], env=cli_env, capture_output=True, text=True
        )

    p = run("retention", "--queue", "q", "--keep-done", "5", "--done-for", "forever", "--json")
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)["retention"]
    assert (got["done_count"], got["done_s"], got["failed_count"]) == (5, None, C.retention_failed_count)
    p = run("retention", "--queue", "q")
    assert "forever, the newest 5 per queue" in p.stdout
    for bad in (["--done-for", "soon"], ["--keep-done", "-1"], ["--queue", "q", "--events-for", "9"]):
        p = run("retention", *bad)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr


# --- boards from elsewhere ---------------------------------------------------------------------


async def test_a_migrated_board_keeps_its_settings_and_its_indexes(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    folder = tmp_path / "board"
    folder.mkdir()
    async with (
        Store.from_url(redis_url, namespace) as red,
        Store.from_url(folder.as_uri(), namespace) as filed,
        Store.from_url(redis_url, namespace + "b") as back,
    ):
        await red.set_retention("q", done_count=1, done_s=None)
        await red.set_retention(agents_s=0)
        x = await red.add("x", queue="q")
        y = await red.add("y", queue="q")
        await finish(red, "auto-agent")
        await finish(red, "auto-agent")
        await red.register("named")
        await migrate(red, filed)
        await migrate(filed, back)
        for s in (filed, back):
            assert await s.retention("q") == await red.retention("q")
            assert [e.type for e in await s.events(task=x)] == ["added", "claimed", "completed"]
            report = await settle(s)
            assert report.removed == 1 and report.agents_removed == 1
            assert [t.id for t in await s.tasks()] == [y]
            assert [a.name for a in await s.agents()] == ["named"]


async def test_an_older_redis_board_has_its_finished_tasks_indexed(redis_store: Store) -> None:
    s = redis_store
    ids = await s.add_many([TaskSpec(title=f"t{i}") for i in range(5)])
    for _ in ids:
        await finish(s)
    r = s._redis  # type: ignore[attr-defined]  # raw keys: stages what an older claimroom left
    ns = s.namespace
    # As a board written before retention: no finished index, no walk over it yet.
    await r.delete(C.finished_key(ns, "done", "default"), C.retention_due_key(ns), C.retention_cursor_key(ns))
    await s.set_retention(done_count=2)
    await settle(s)
    assert [t.id for t in await s.tasks()] == ids[-2:]


async def test_tasks_an_older_redis_board_numbered_go_before_those_finished_since(redis_store: Store) -> None:
    """claimroom before scored a finished index from 1 (INCR seq:finished); it now scores by
    the ms a task finished in and its rank there: the entries from before are the oldest."""
    s = redis_store
    await s.register("w", max_claims=2)
    await s.add_many([TaskSpec(title=f"t{i}") for i in range(7)])
    before = [await finish(s) for _ in range(3)]
    r, key = s._redis, C.finished_key(s.namespace, "done", "default")  # type: ignore[attr-defined]
    await r.zadd(key, {tid: n for n, tid in enumerate(before, 1)})  # as it numbered them
    since = [await finish(s) for _ in range(2)]
    batch = await s.claim_many("w", 2)
    # Finished in one call, against the order of their ids: their rank in the ms orders them.
    done, _ = await s.complete_many([(c.task.id, c.token) for c in reversed(batch)], agent="w")
    assert all(o.error is None for o in done)
    await s.set_retention(done_count=4)
    await settle(s)
    # The newest four, in the order they finished (two alone, two in one call), then none from before.
    assert [t.id for t in await s.tasks(state=State.DONE)] == sorted(
        [*since, *(o.task for o in done)], key=lambda t: int(t[1:])
    )
    await s.set_retention(done_count=1)
    await settle(s)
    assert [t.id for t in await s.tasks(state=State.DONE)] == [done[-1].task]


async def test_an_older_file_board_has_its_finished_tasks_indexed(tmp_path: Path) -> None:
    folder = tmp_path / "board"
    folder.mkdir()
    async with Store.from_url(folder.as_uri(), "ns") as s:
        ids = await s.add_many([TaskSpec(title=f"t{i}") for i in range(5)])
        for _ in ids:
            await finish(s)
    conn = sqlite3.connect(folder / C.file_db_name)
    try:
        undo_since_7(conn)  # and below, everything after 4
        conn.executescript(
            """
            ALTER TABLE agents DROP COLUMN auto;
            DROP TABLE finished;
            DROP TABLE retention_due;
            DROP TABLE retention;
            DROP TABLE cursors;
            ALTER TABLE agents DROP COLUMN session;
            DROP TABLE tokens;
            UPDATE meta SET value = '4' WHERE key = 'schema';
            """
        )
    finally:
        conn.close()
    async with Store.from_url(folder.as_uri(), "ns") as s:
        await s.set_retention(done_count=2)
        await settle(s)
        assert [t.id for t in await s.tasks()] == ids[-2:]
