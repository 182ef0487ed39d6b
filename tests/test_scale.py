"""Bounded work (design rule 10) and targeted wake-ups, on both backends.

Work is counted, never timed: the Redis commands a claim script runs (``INFO commandstats``
on the test's own server) and the SQL statements a file-store claim runs (SQLite's trace
callback), the script calls or transactions an operation takes, the entries left in the
claim index. Timings live in bench/claims.py (``--only scale``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
from oldboards import undo_since_7
from waiting import Waits

from claimroom.core import constants
from claimroom.core.errors import BadInput, NotFound
from claimroom.core.file import claim as file_claim
from claimroom.core.file import ops as file_ops
from claimroom.core.file import schema as file_schema
from claimroom.core.file import states as file_states
from claimroom.core.file import tx as file_tx
from claimroom.core.file.store import FileStore
from claimroom.core.models import State
from claimroom.core.redis.store import RedisStore
from claimroom.core.store import Store, TaskSpec
from claimroom.tui.board import Board

SIGS: tuple[tuple[str, ...], ...] = ((), ("py",), ("db", "py"))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Script calls (Redis) or transactions (file) of claim and add, by name."""
    seen: Counter[str] = Counter()
    real_run = RedisStore._run

    async def run(self: RedisStore, name: str, *args: Any) -> list[Any]:
        seen[name] += 1
        return await real_run(self, name, *args)

    monkeypatch.setattr(RedisStore, "_run", run)
    for module, name in ((file_claim, "claim"), (file_ops, "add")):
        real = getattr(module, name)

        def counted(*args: Any, _real: Callable[..., Any] = real, _name: str = name) -> Any:
            seen[_name] += 1
            return _real(*args)

        monkeypatch.setattr(module, name, counted)
    return seen


@contextlib.asynccontextmanager
async def work(store: Store) -> AsyncIterator[list[int]]:
    """The Redis commands (run inside scripts included) or SQL statements run meanwhile."""
    out = [0]
    if isinstance(store, RedisStore):

        async def commands() -> int:
            stats = await store.admin.info("commandstats")
            return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info",))

        before = await commands()
        yield out
        out[0] = await commands() - before - 1  # less the script call itself
        return
    assert isinstance(store, FileStore)
    await store.counts()  # the connection is open
    conn = store._conn
    assert conn is not None
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        yield out
    finally:
        conn.set_trace_callback(None)
    out[0] = len(statements)


async def index_sizes(store: Store) -> dict[str, int]:
    """How many entries the claim index of the store's namespace holds, per structure."""
    ns = store.namespace
    if isinstance(store, RedisStore):
        r = store._redis  # raw keys: counts the claim index's own keys
        keys = [k async for k in r.scan_iter(match=constants.prefix(ns) + "*", count=1000)]
        return {
            "queues": int(await r.scard(constants.queues_key(ns))),
            "capsigs": sum(1 for k in keys if fnmatchcase(k, constants.capsigs_key(ns, "*"))),
            "heads": sum(1 for k in keys if fnmatchcase(k, constants.heads_key(ns, "*"))),
            "ready": sum(1 for k in keys if fnmatchcase(k, constants.ready_key(ns, "*", "*"))),
            "sigs": int(await r.hlen(constants.sigs_key(ns))),
        }
    assert isinstance(store, FileStore)

    def count(tx: file_tx.Tx) -> dict[str, int]:
        return {
            t: tx.one(f"SELECT COUNT(*) FROM {t} WHERE ns = :ns")[0]
            for t in ("queues", "capsigs", "heads", "sigs")
        }  # type: ignore[index]

    return await store._read(count)


def board_specs(queues: int, per_queue: int) -> list[TaskSpec]:
    return [
        TaskSpec(f"t{i}", queue=f"q{i % queues}", priority=i % 5, requires=SIGS[i % len(SIGS)])
        for i in range(queues * per_queue)
    ]


# --- a claim's work does not grow with the board ------------------------------------------


async def claim_work(store: Store, queues: int) -> int:
    await store.add_many(board_specs(queues, 2 if queues > 1 else 9))
    await store.register("w", ["db", "py"])
    for _ in range(2):  # warm: scripts loaded, connections open, both boards past their first claim
        c = await store.claim("w")
        assert c is not None
        await store.complete(c.task.id, c.token)
    async with work(store) as n:
        c = await store.claim("w")
    assert c is not None
    return n[0]


async def test_a_claim_does_the_same_work_with_2000_queues_as_with_one(
    store: Store, store_url: str, namespace: str
) -> None:
    one = await claim_work(store, 1)
    async with Store.from_url(store_url, namespace + "x") as big:
        many = await claim_work(big, 2000)
    # The same, bar the few more steps of emptying a (queue, signature) pair on the big board.
    assert many <= one + 5, f"a claim ran {many} commands/statements with 2,000 queues, {one} with one"


async def test_a_claim_naming_queues_is_bounded_too(store: Store) -> None:
    await store.add_many(board_specs(300, 1))
    too_many = [f"q{i}" for i in range(constants.max_claim_queues + 1)]
    with pytest.raises(BadInput, match=f"at most {constants.max_claim_queues} queues"):
        await store.claim("w", queues=too_many)
    named = too_many[: constants.max_claim_queues]
    got = await store.claim_many("w", 5, queues=named)
    assert len(got) == 1 and got[0].task.queue in named  # capacity 1


async def test_a_rollback_reads_only_its_own_claims_subtasks(store: Store) -> None:
    parent = await store.add("parent")
    first = await store.claim("w", ttl_s=60)
    assert first is not None
    early = await store.add_many([TaskSpec(f"sub {i}", parent=parent) for i in range(300)])
    await store.release(parent, first.token)  # rolls back: the 300 are cancelled
    assert (await store.counts())[State.CANCELLED] == 300
    second = await store.claim("w", ttl_s=60)
    assert second is not None and second.task.id == parent
    late = await store.add("one more sub", parent=parent)
    async with work(store) as n:
        await store.fail(parent, second.token, "broken")
    assert (await store.get(late)).state is State.CANCELLED
    assert (await store.get(early[0])).reason == f"rollback of {parent}"
    if isinstance(store, RedisStore):
        assert n[0] < 60, f"a rollback of one subtask ran {n[0]} commands beside 300 old ones"
    else:  # one statement either way: the bound is in its plan, a seek on the claim's token
        assert isinstance(store, FileStore) and store._conn is not None
        sql = "EXPLAIN QUERY PLAN " + file_ops.ROLLBACK_CHILDREN
        plan = " ".join(
            r["detail"] for r in store._conn.execute(sql, {"ns": store.namespace, "p": parent, "tok": 1})
        )
        assert "spawn_token=?" in plan, plan


# --- empty queues and signatures leave every index ------------------------------------------


async def test_empty_queues_leave_every_index_and_paused_ones_still_show(store: Store) -> None:
    await store.add_many(board_specs(30, 2))
    await store.pause("q0", "op")
    await store.register("w", ["db", "py"], max_claims=100)
    got = await store.claim_many("w", 100)
    assert len(got) == 58 and all(c.task.queue != "q0" for c in got)
    for c in got:
        await store.complete(c.task.id, c.token)
    # Left: the paused queue's two tasks, both needing nothing (a set sigs does not count); a
    # paused queue has no head.
    sizes = await index_sizes(store)
    assert {k: sizes[k] for k in ("queues", "capsigs", "heads", "sigs")} == {
        "queues": 1, "capsigs": 1, "heads": 0, "sigs": 0
    }  # fmt: skip
    snap = await Board(store).read()
    assert [(q.name, q.ready, q.paused) for q in snap.queues] == [("q0", 2, True)]

    await store.pause("q0", "op", resume=True)
    rest = await store.claim_many("w", 100)
    assert sorted(c.task.queue for c in rest) == ["q0", "q0"]
    await store.act("cancel", rest[0].task.id, State.CLAIMED, rest[0].token, "op")
    await store.complete(rest[1].task.id, rest[1].token)
    assert set((await index_sizes(store)).values()) == {0}
    await store.pause("q7", "op")  # a paused queue shows in the control room, empty or not
    snap = await Board(store).read()
    assert [(q.name, q.ready, q.paused) for q in snap.queues] == [("q7", 0, True)]


# --- batches are capped, the caller loops ----------------------------------------------------


async def test_claim_many_takes_a_large_count_in_bounded_calls(store: Store, calls: Counter[str]) -> None:
    await store.add_many([TaskSpec(f"t{i}") for i in range(300)])
    await store.register("bulk", max_claims=300)
    calls.clear()
    got = await store.claim_many("bulk", 300)
    assert len({c.task.id for c in got}) == 300
    assert calls["claim"] == math.ceil(300 / constants.claim_batch_max)
    assert (await store.counts())[State.CLAIMED] == 300
    calls.clear()
    assert await store.claim_many("bulk", 10) == []  # at capacity: one call says so
    assert calls["claim"] == 1


async def test_add_many_writes_a_large_batch_in_checked_chunks(store: Store, calls: Counter[str]) -> None:
    chunk = constants.add_chunk
    n = 2 * chunk + chunk // 2
    late = chunk + chunk // 2  # a task of the second chunk
    specs = [TaskSpec(f"t{i}") for i in range(n)]
    specs[late] = TaskSpec("late", after=["$5"])  # names a task of the first chunk
    specs[n - 1] = TaskSpec("last", parent=f"${late}")
    ids = await store.add_many(specs)
    assert calls["add"] == 3
    assert len(set(ids)) == n
    assert (await store.get(ids[late])).after == (ids[5],)
    assert (await store.get(ids[late])).state is State.BLOCKED
    assert (await store.get(ids[n - 1])).parent == ids[late]

    # Refused whole, before anything is written: a missing task, a later "$k".
    before = await store.counts()
    calls.clear()
    bad = [TaskSpec(f"b{i}") for i in range(n)]
    with pytest.raises(NotFound, match="t999999"):
        await store.add_many([*bad[:-1], TaskSpec("b", after=["t999999"])])
    with pytest.raises(BadInput, match=rf"after \${n - 1} must name an earlier task"):
        await store.add_many([*bad[:late], TaskSpec("b", after=[f"${n - 1}"]), *bad[late + 1 :]])
    assert calls["add"] == 0
    assert await store.counts() == before


async def test_capability_sets_in_use_are_capped(store: Store) -> None:
    limit = constants.max_capsigs
    # One batch (several chunks, checked first) fills the board to the limit: tasks needing
    # nothing are not counted.
    await store.add_many([TaskSpec("plain")] + [TaskSpec(f"n{i}", requires=[f"c{i}"]) for i in range(limit)])
    with pytest.raises(BadInput, match=f"besides none, at most {limit} are allowed"):
        await store.add("one more", requires=["new"])
    before = await store.counts()
    with pytest.raises(BadInput, match="capability sets"):
        await store.add_many(
            [TaskSpec(f"r{i}", requires=["c1"]) for i in range(150)] + [TaskSpec("x", requires=["new"])]
        )
    assert await store.counts() == before
    await store.add("an existing set is fine", requires=["c7"])
    await store.add_many([TaskSpec("needing nothing is always fine")] * 3)

    # A set leaves once no unfinished task needs it: done or cancelled.
    (c3,) = [t for t in await store.tasks(limit=10_000) if t.requires == ("c3",)]
    await store.act("cancel", c3.id, State.QUEUED, 0, "op")
    await store.add("now it fits", requires=["new"])


async def sigs_in_use(store: Store) -> dict[str, int]:
    """The capability sets the store counts as in use, with their unfinished tasks."""
    if isinstance(store, RedisStore):
        found = await store._redis.hgetall(constants.sigs_key(store.namespace))  # raw: the index itself
        return {k: int(v) for k, v in found.items()}
    assert isinstance(store, FileStore)
    return dict(
        await store._read(lambda tx: [tuple(r) for r in tx.all("SELECT sig, tasks FROM sigs WHERE ns = :ns")])
    )


async def test_capability_sets_follow_cascades_and_restores(store: Store) -> None:
    await store.register("w", ["base"])
    a = await store.add("A", requires=["base"])
    await store.add_many(
        [TaskSpec("B", requires=["rare"], after=[a]), TaskSpec("C", requires=["rarer"], after=["$0"])]
    )
    await store.add("D")  # needs nothing: never counted
    assert await sigs_in_use(store) == {"base": 1, "rare": 1, "rarer": 1}
    c = await store.claim("w")
    assert c is not None and c.task.id == a
    await store.fail(a, c.token, "broken", fatal=True)  # dead: B and C are cancelled with it
    assert await sigs_in_use(store) == {"base": 1}  # a dead task may be retried: it still counts
    await store.act("retry", a, State.DEAD, c.token, "op", restore=True)
    assert await sigs_in_use(store) == {"base": 1, "rare": 1, "rarer": 1}


async def test_a_board_that_counted_the_empty_set_is_capped_without_it(redis_store: Store) -> None:
    """claimroom before counted tasks needing nothing under '' in `sigs`: such a board keeps
    the field (nothing counts it down any more), and neither the cap nor a claim reads it."""
    assert isinstance(redis_store, RedisStore)
    key = constants.sigs_key(redis_store.namespace)
    await redis_store.add_many(
        [TaskSpec("plain")] + [TaskSpec(f"n{i}", requires=[f"c{i}"]) for i in range(63)]
    )
    await redis_store._redis.hset(key, "", "5")  # as an older claimroom left it
    await redis_store.add("the 64th set fits", requires=["new"])
    with pytest.raises(BadInput, match="capability sets"):
        await redis_store.add("the 65th does not", requires=["newer"])
    await redis_store.register("w", ["c0"], max_claims=5)
    got = [c.task.title for c in await redis_store.claim_many("w", 5)]
    assert got == ["plain", "n0"]  # the plain task once, then the one it can take


def test_too_many_capability_sets_is_exit_2_in_one_line(
    cli_env: dict[str, str], redis_url: str, namespace: str
) -> None:
    async def fill() -> None:
        async with Store.from_url(redis_url, namespace) as s:
            await s.add_many([TaskSpec(f"n{i}", requires=[f"c{i}"]) for i in range(constants.max_capsigs)])

    asyncio.run(fill())
    run = subprocess.run(
        [str(Path(sys.executable).parent / "claimroom"), "add", "x", "--requires", "new"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "capability sets" in run.stderr
    assert "Traceback" not in run.stderr


# --- waiting claimers wake only for work they can take ----------------------------------------


async def test_idle_claimers_sleep_through_heartbeats_and_wake_for_their_work(
    store: Store, store_url: str, namespace: str, calls: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.add("long work", queue="busy")
    held = await store.claim("worker", queues=["busy"], ttl_s=30)
    assert held is not None
    await store.register("solo", max_claims=1)
    others = [Store.from_url(store_url, namespace) for _ in range(5)]
    waits = [Waits(s, monkeypatch) for s in others]

    async def all_waiting(which: list[int], before: list[int]) -> None:
        """Until each of ``which`` started a wait since ``before`` (its counts then)."""
        for i in which:
            await waits[i].reach(before[i] + 1)

    # idle0/2: all queues; idle1/3: queue "mine"; none has a capability.
    wanted: list[list[str]] = [[], ["mine"], [], ["mine"]]
    try:

        async def noise(seconds: float) -> None:
            """Heartbeats 10 times a second, and work none of the idle claimers can take."""
            end = time.monotonic() + seconds
            k = 0
            while time.monotonic() < end:
                await store.heartbeat(held.task.id, held.token, progress=min(0.9, k / 100))
                if k % 3 == 0:
                    await store.add(f"gpu {k}", queue="other", requires=["gpu"])
                    await store.add(
                        f"elsewhere {k}", queue="elsewhere" if k % 2 else "busy", requires=["gpu"]
                    )
                k += 1
                await asyncio.sleep(0.1)

        calls.clear()
        wait_s = 3.0
        idle = [others[i].claim(f"idle{i}", queues=wanted[i], wait_s=wait_s) for i in range(4)]
        results = await asyncio.gather(*idle, noise(wait_s))
        assert results[:4] == [None] * 4
        # Each claimer claims once, then once per re-check: not once per heartbeat or add.
        recheck = 4 * (wait_s / constants.wait_recheck_s + 2)
        assert calls["claim"] <= recheck, f"{calls['claim']} claims by 4 idle claimers in {wait_s} s"

        # Work they can take wakes them at once: from here on, the re-check is ten minutes away.
        monkeypatch.setattr(constants, "wait_recheck_s", 600.0)
        before = [w.count for w in waits]
        waiting = [
            asyncio.ensure_future(others[i].claim(f"idle{i}", queues=wanted[i], wait_s=5)) for i in range(4)
        ]
        await all_waiting([0, 1, 2, 3], before)
        t0 = time.monotonic()
        await store.add("for you", queue="mine")
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        assert time.monotonic() - t0 < 0.5
        first = done.pop().result()
        assert first is not None and first.task.title == "for you"
        await store.add_many([TaskSpec(f"more {i}", queue="mine") for i in range(3)])
        for c in await asyncio.gather(*waiting):
            assert c is not None
            await store.complete(c.task.id, c.token)

        # So does room freed for an agent at capacity, and a task assigned to an agent.
        await store.add_many([TaskSpec("a"), TaskSpec("b")])
        first_claim = await store.claim("solo")
        assert first_claim is not None
        before = [w.count for w in waits]
        solo = asyncio.ensure_future(others[4].claim("solo", wait_s=5))
        await all_waiting([4], before)
        t0 = time.monotonic()
        await store.complete(first_claim.task.id, first_claim.token)
        assert await solo is not None and time.monotonic() - t0 < 0.5

        await store.add("special", requires=["gpu"])  # nobody here can take it ...
        task = next(t for t in await store.tasks(state=State.QUEUED, limit=1000) if t.title == "special")
        before = [w.count for w in waits]
        picked = asyncio.ensure_future(others[0].claim("idle0", wait_s=5))
        await all_waiting([0], before)
        t0 = time.monotonic()
        await store.act("reassign", task.id, State.QUEUED, 0, "op", agent="idle0")  # ... but idle0 now
        got = await picked
        assert got is not None and got.task.id == task.id and time.monotonic() - t0 < 0.5
    finally:
        for s in others:
            await s.close()


# --- the file store: index seeks, and boards of the first schema -----------------------------


def test_file_claim_queries_are_index_seeks(tmp_path: Path) -> None:
    conn = file_schema.connect(tmp_path / constants.file_db_name)
    params = {
        "ns": "n",
        "a": "x",
        "s": "",
        "q": "q",
        "q0": "a",
        "q1": "b",
        "q2": "c",
        "now": 0,
        "p": "t1",
        "tok": 1,
    }
    for sql in (
        file_claim.ASSIGNED,
        file_claim.SIGS,
        file_claim.BEST_HEAD,
        file_claim.best_head_in(3),
        file_states.HEAD_TASK,
        file_claim.HELD,
        file_states.HEAD_OF,
        file_ops.ROLLBACK_CHILDREN,
    ):
        plan = " | ".join(r["detail"] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
        assert "SCAN" not in plan and "USING" in plan, f"{sql}\n -> {plan}"
    rollback = " ".join(
        r["detail"] for r in conn.execute("EXPLAIN QUERY PLAN " + file_ops.ROLLBACK_CHILDREN, params)
    )
    assert "spawn_token=?" in rollback  # that claim's subtasks, not all the task ever had
    conn.close()


async def test_a_board_of_the_schema_before_is_upgraded_in_place(tmp_path: Path, namespace: str) -> None:
    url = tmp_path.as_uri()
    async with Store.from_url(url, namespace) as s:
        await s.add_many(board_specs(20, 2))
        await s.pause("q3", "op")
        c = await s.claim("w")
        assert c is not None
        await s.complete(c.task.id, c.token)
    # Back to what the schema before held: no heads or sigs, tasks_parent without the
    # spawning token, and queues never pruned.
    conn = file_schema.connect(tmp_path / constants.file_db_name)
    before = 4  # the claim index came with schema 5 (and retention, schema 6, after it)
    undo_since_7(conn)  # and below, everything after 4
    conn.executescript(
        "DROP TABLE finished; DROP TABLE retention_due; DROP TABLE retention; DROP TABLE cursors;"
        " ALTER TABLE agents DROP COLUMN auto; ALTER TABLE agents DROP COLUMN session; DROP TABLE tokens;"
        " DROP TABLE heads; DROP TABLE sigs; DROP INDEX tasks_parent;"
        " CREATE INDEX tasks_parent ON tasks (ns, parent) WHERE parent <> '';"
        f" UPDATE meta SET value = '{before}' WHERE key = 'schema';"
        f" INSERT INTO queues (ns, queue) VALUES ('{namespace}', 'drained');"
    )
    conn.close()
    async with Store.from_url(url, namespace) as s:
        sizes = await index_sizes(s)
        assert sizes["queues"] == 20  # "drained" pruned; q3 paused but with tasks
        # A head per (open queue, signature) with a task: two each, less the one emptied.
        assert sizes["heads"] == 19 * 2 - 1
        await s.register("w", ["db", "py"], max_claims=37)
        got = await s.claim_many("w", 100)
        assert len(got) == 37 and all(x.task.queue != "q3" for x in got)
    conn = file_schema.connect(tmp_path / constants.file_db_name)
    assert [r[2] for r in conn.execute("PRAGMA index_info(tasks_parent)")] == ["ns", "parent", "spawn_token"]
    conn.close()
