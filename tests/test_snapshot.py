"""What views read through the Store, on both backends: the board snapshot, server facts,
the key-event switch, the change feed, and whole-board export and import."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from claimroom.core import constants as C
from claimroom.core.dump import Board
from claimroom.core.errors import BadInput, Conflict
from claimroom.core.local_redis import LocalRedis
from claimroom.core.models import ServerInfo, State, Task
from claimroom.core.snapshot import SECTIONS, Snapshot
from claimroom.core.store import Store, TaskSpec
from claimroom.tui.seed import seed

QUEUES = {"alpha": 3_000, "beta": 2_000, "gamma": 1_000}  # 6,000 tasks: past any row limit


async def test_counts_per_state_and_queue_are_exact_on_a_big_board(store: Store) -> None:
    for queue, n in QUEUES.items():
        await store.add_many([TaskSpec(f"{queue} {i}", queue=queue) for i in range(n)])
    await store.register("w", max_claims=1_000)
    claims = await store.claim_many("w", 250, queues=["alpha"])
    for c in claims[:10]:
        await store.complete(c.task.id, c.token)
    for c in claims[10:15]:
        await store.fail(c.task.id, c.token, "broken", fatal=True)
    beta = await store.tasks(state=State.QUEUED, queue="beta", limit=7)
    for t in beta:
        await store.act("cancel", t.id, State.QUEUED, 0, "op")
    gamma = await store.tasks(state=State.QUEUED, queue="gamma", limit=4)
    for t in gamma:
        await store.act("reassign", t.id, State.QUEUED, 0, "op", "w")  # queued, but only for w
    await store.pause("gamma", "op")

    snap = await store.snapshot()
    assert snap.counts == await store.counts()
    assert {s: n for s, n in snap.counts.items() if n} == {
        State.QUEUED: 6_000 - 250 - 7, State.CLAIMED: 235, State.DONE: 10, State.DEAD: 5, State.CANCELLED: 7
    }  # fmt: skip
    exact = store.url.startswith("file:")
    assert [(q.name, q.ready, q.claimed, q.paused) for q in snap.queues] == [
        ("alpha", 2_750, 235 if exact else 200, False),  # Redis counts claims among the 200 read
        ("beta", 1_993, 0, False),
        ("gamma", 996, 0, True),
    ]
    assert snap.queue_claims_exact is exact and snap.claimed_capped is not exact
    assert len(snap.claims) == 200 and snap.claims_total == 235
    assert [t.id for t in snap.orphans] == sorted(
        (c.task.id for c in claims[10:15]), key=lambda i: -int(i[1:])
    )
    assert snap.orphans_total == 5


async def test_rows_are_the_most_urgent_and_totals_stay_exact(store: Store) -> None:
    await store.register("ada", max_claims=20)
    for i in range(6):
        await store.add(f"job {i}")
        assert await store.claim("ada", ttl_s=100 - i) is not None  # later claims expire sooner
    for name in ("dan", "cy", "bo", "al"):
        await store.register(name)
    for path in ("e", "d", "c", "b"):
        await store.lock([path], "ada")
    for i in range(4):
        await store.add(f"doomed {i}")
        claim = await store.claim("al")
        assert claim is not None
        await store.fail(claim.task.id, claim.token, "no", fatal=True)

    snap = await store.snapshot(rows=3, events=5)
    assert [t.id for t in snap.claims] == ["t6", "t5", "t4"]  # soonest deadline first
    assert [t.id for t in snap.orphans] == ["t10", "t9", "t8"]  # the newest dead first
    assert [a.name for a in snap.agents] == ["ada", "al", "bo"] and snap.agents_total == 5
    assert snap.agents[0].held == ("t1", "t2", "t3", "t4", "t5", "t6")
    assert [lk.path for lk in snap.locks] == ["b", "c", "d"] and snap.locks_total == 4
    assert snap.events == tuple(await store.latest_events(5))  # the newest five, oldest first
    assert snap.claims_total == 6 and snap.orphans_total == 4


async def test_a_snapshot_agrees_with_the_public_api(store: Store) -> None:
    await seed(store)
    await store.announce_server(ServerInfo("s1", "http", "127.0.0.1:8765", pid=1))
    snap = await store.snapshot()
    assert snap.counts == await store.counts()
    claimed = await store.tasks(state=State.CLAIMED)
    assert list(snap.claims) == sorted(claimed, key=lambda t: (t.deadline_ms, t.seq))
    orphaned, dead = await store.tasks(state=State.ORPHANED), await store.tasks(state=State.DEAD)
    assert list(snap.orphans) == orphaned[::-1] + dead[::-1]
    in_review = await store.tasks(state=State.REVIEW)
    assert len(in_review) == snap.review_total == 2
    assert list(snap.reviews) == sorted(in_review, key=lambda t: (t.review_ms, t.seq))
    assert {q.name: q.review for q in snap.queues if q.review} == {"backend": 1, "docs": 1}
    assert list(snap.agents) == await store.agents()
    assert list(snap.locks) == await store.locks()
    assert list(snap.events) == await store.latest_events(200)
    assert [s.id for s in snap.servers] == [s.id for s in await store.servers()] == ["s1"]
    assert {q.name for q in snap.queues if q.paused} == await store.paused()
    assert abs(snap.store_ms - await store.now_ms()) < 5_000
    assert snap.sections == SECTIONS and snap.read_ms == 0 and snap.stuck == ()  # a view's to add


async def test_a_snapshot_reads_only_the_sections_asked(store: Store) -> None:
    await seed(store)
    snap = await store.snapshot(sections={"claims"})
    assert snap.sections == {"claims"} and len(snap.claims) == 5
    assert (snap.orphans, snap.agents, snap.locks, snap.events) == ((), (), (), ())
    assert (snap.agents_total, snap.locks_total, snap.orphans_total) == (5, 3, 2)  # totals always
    assert {q.name: q.ready for q in snap.queues} == {"backend": 1, "docs": 3, "infra": 1, "search": 1}
    empty: Snapshot = await store.snapshot(sections=())
    assert empty.claims == () and empty.counts == snap.counts
    with pytest.raises(BadInput, match="unknown snapshot section stuck"):
        await store.snapshot(sections={"claims", "stuck"})
    with pytest.raises(BadInput):
        await store.snapshot(rows=0)


async def test_server_facts(store: Store) -> None:
    await store.add("a task")
    facts = await store.server_facts()
    assert facts and all(isinstance(v, str) for v in facts.values())
    if store.url.startswith("file:"):
        assert facts["journal_mode"] == "wal" and facts["synchronous"] == "NORMAL"
        assert facts["database"].endswith(C.file_db_name) and facts["database_size"] != "none"
    else:
        assert list(facts)[:3] == ["redis_version", "redis_mode", "role"]
        assert facts["maxmemory_policy"] == "noeviction"


@pytest.fixture
def own_server(backend: str, tmp_path: Path) -> Iterator[tuple[str, redis.Redis | None]]:
    """A store URL whose server settings this test may change, and a client to look at them
    (None for the file store)."""
    if backend == "file":
        folder = tmp_path / "board"
        folder.mkdir()
        yield folder.as_uri(), None
        return
    server = LocalRedis.start(tmp_path / "redis")
    admin = redis.Redis(port=server.port, decode_responses=True)
    yield server.url, admin
    admin.close()
    server.stop()


async def test_the_key_event_switch(own_server: tuple[str, redis.Redis | None]) -> None:
    url, admin = own_server
    async with Store.from_url(url, "keys") as store:
        if admin is None:
            assert await store.key_events() is None and await store.key_events(switch=True) is None
            return
        admin.config_set("notify-keyspace-events", "Kl")  # someone else's choice, kept
        assert await store.key_events() is False  # looked, changed nothing
        assert set(admin.config_get("notify-keyspace-events")["notify-keyspace-events"]) == {"K", "l"}
        assert await store.key_events(switch=True) is True
        flags = admin.config_get("notify-keyspace-events")["notify-keyspace-events"]
        assert C.keyspace_events_on(flags) and {"K", "l"} <= set(flags)
        assert await store.key_events() is True
        with pytest.raises(BadInput):
            await store.key_events(switch="yes")  # type: ignore[arg-type]


async def test_changes_says_so_at_once_then_on_each_change(store_url: str, namespace: str) -> None:
    async with Store.from_url(store_url, namespace) as viewer, Store.from_url(store_url, namespace) as writer:
        feed = viewer.changes()
        try:
            await asyncio.wait_for(anext(feed), 5)  # live: whatever came before may have changed
            pending = asyncio.ensure_future(anext(feed))
            done, _ = await asyncio.wait({pending}, timeout=0.2)
            assert not done  # nothing changed: nothing said
            await writer.add("a change")
            await asyncio.wait_for(pending, 5)
        finally:
            await feed.aclose()


@pytest.fixture
async def other(store_url: str) -> AsyncIterator[Store]:
    s = Store.from_url(store_url, "other" + str(time.monotonic_ns()))
    yield s
    await s.close()


def comparable(board: Board) -> dict[str, object]:
    """A dump without what names its source (namespace, clock), its tasks as read (a Redis
    task hash may hold empty fields, which an import leaves out)."""
    out: dict[str, object] = {k: v for k, v in board.items() if k not in ("namespace", "now_ms")}
    out["tasks"] = [Task.from_fields(t) for t in board["tasks"]]
    return out


async def test_export_and_import_round_trip(store: Store, other: Store) -> None:
    await seed(store)
    await store.set_retention("docs", done_count=3)
    board = await store.export_board()
    assert (board["format"], board["version"], board["namespace"]) == ("claimroom-board", 2, store.namespace)
    assert [t["id"] for t in board["tasks"]] == [f"t{i}" for i in range(1, 27)]
    assert sum(t["state"] == "review" and bool(t["review_ref"]) for t in board["tasks"]) == 2
    moved = await other.import_board(board)
    assert moved == {"tasks": 26, "agents": 5, "locks": 3, "events": len(board["events"]), "paused": 1}
    again = await other.export_board()
    assert comparable(again) == comparable(board)
    assert (await other.snapshot()).counts == (await store.snapshot()).counts
    with pytest.raises(Conflict, match="is not empty"):
        await other.import_board(board)
    with pytest.raises(BadInput, match="not a claimroom board dump"):
        await other.import_board({**board, "version": 1})  # type: ignore[typeddict-item]
    with pytest.raises(BadInput):
        await other.import_board(board, merge="yes")  # type: ignore[arg-type]
    assert abs(await store.now_ms() - time.time() * 1000) < 5_000


async def test_an_import_refuses_a_task_whose_id_is_not_t_and_its_seq(store: Store, other: Store) -> None:
    """Every store names a task t<seq>, and a Redis task hash stores neither (it reads its
    seq from its id): a dump that says otherwise is refused whole, before any write."""
    await store.add("one")
    board = await store.export_board()
    (t,) = board["tasks"]
    for bad in ({**t, "id": "job-1"}, {**t, "seq": "7"}):
        with pytest.raises(BadInput, match=r"id must be t<seq>"):
            await other.import_board({**board, "tasks": [bad]})
    assert await other.tasks() == []
