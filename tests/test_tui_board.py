"""The control room's model: the snapshot read, its caps, and the hint watcher."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from claimroom.core import constants as C
from claimroom.core.errors import StoreUnavailable
from claimroom.core.local_redis import LocalRedis, free_port
from claimroom.core.models import State
from claimroom.core.store import Store
from claimroom.tui.board import PANE_SECTIONS, Board
from claimroom.tui.seed import seed


async def test_snapshot_of_a_seeded_board(store: Store) -> None:
    await seed(store)
    snap = await Board(store).read()
    assert snap.counts[State.CLAIMED] == 5 and snap.claims_total == 5
    assert [t.id for t in snap.claims][:1] == ["t2"]  # soonest deadline first (t4 was extended)
    assert {t.id for t in snap.claims} == {"t2", "t3", "t4", "t5", "t20"}  # t20: the plan's subtask
    assert [(t.id, t.state) for t in snap.orphans] == [("t6", State.ORPHANED), ("t7", State.DEAD)]
    queues = {q.name: q for q in snap.queues}
    assert queues["docs"].paused and queues["docs"].ready == 3
    assert queues["backend"].claimed == 3 and queues["infra"].claimed == 1
    assert [lk.path for lk in snap.locks] == ["docs", "migrations", "src/db/schema.py"]
    assert snap.events[-1].type == "extended" and snap.events[-1].operator == "lead"
    assert snap.agents_total == 5 and snap.ping_ms >= 0


async def test_rows_are_capped_and_totals_kept(store: Store) -> None:
    await store.register("ada", max_claims=20)
    for i in range(8):
        await store.add(f"job {i}")
        assert await store.claim("ada", ttl_s=100 - i) is not None  # later claims expire sooner
    snap = await Board(store, row_limit=3, event_limit=5).read()
    assert snap.claims_total == 8
    assert [t.id for t in snap.claims] == ["t8", "t7", "t6"]  # the most urgent three
    assert len(snap.events) == 5 and snap.events[-1].task == "t8"


async def test_a_read_fetches_only_the_active_panes_sections(store: Store) -> None:
    await seed(store)
    board = Board(store)
    first = await board.read()  # the first read fills every pane, whatever is asked
    board.sections = PANE_SECTIONS["claims"]
    await store.register("newcomer")
    await store.add("fresh work", queue="backend")
    claim = await store.claim("newcomer", queues=["backend"])
    assert claim is not None
    tid = claim.task.id
    claims_only = await board.read()
    assert tid in {t.id for t in claims_only.claims}  # the claims were read again
    assert claims_only.agents == first.agents  # the agents were carried over, not re-read
    assert claims_only.agents_total == first.agents_total + 1  # totals are always fresh
    assert claims_only.events == first.events
    board.sections = PANE_SECTIONS["overview"]
    everything = await board.read()
    assert "newcomer" in {a.name for a in everything.agents}
    assert everything.events[-1].task == tid


async def test_watch_hints_on_change(store: Store, store_url: str, namespace: str) -> None:
    other = Store.from_url(store_url, namespace)
    hinted, live = asyncio.Event(), asyncio.Event()
    board = Board(other)

    def on_live(up: bool) -> None:
        if up:
            live.set()

    watcher = asyncio.create_task(board.watch(hinted.set, on_live))
    try:
        await asyncio.wait_for(live.wait(), 2)
        hinted.clear()
        await store.add("wake the views")
        await asyncio.wait_for(hinted.wait(), 2)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await other.close()


@contextlib.asynccontextmanager
async def watching(board: Board) -> AsyncIterator[asyncio.Event]:
    """``board.watch`` running; yields an event set on each hint, and stops the watcher."""
    hinted, live = asyncio.Event(), asyncio.Event()
    watcher = asyncio.create_task(board.watch(hinted.set, lambda up: live.set() if up else None))
    try:
        await asyncio.wait_for(live.wait(), 2)
        hinted.clear()  # the hint it gives on going live (said in the same step as live)
        yield hinted
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[LocalRedis, redis.Redis]]:
    """A redis-server of this test's own (its notification settings change) and a client."""
    server = LocalRedis.start(tmp_path / "redis")
    admin = redis.Redis(port=server.port, decode_responses=True)
    yield server, admin
    admin.close()
    server.stop()


async def test_watch_switches_key_events_on_and_hears_hand_made_changes(
    own_redis: tuple[LocalRedis, redis.Redis],
) -> None:
    """A key deleted by hand (no script, so no hint) still wakes the views; keys of other
    namespaces do not. The server had notifications off: the watcher switched them on."""
    server, admin = own_redis
    admin.config_set("notify-keyspace-events", "Kl")  # someone else's choice, kept
    async with Store.from_url(server.url, "keys") as store:
        await store.add("a task")
        board = Board(store)
        async with watching(board) as hinted:
            flags = admin.config_get("notify-keyspace-events")["notify-keyspace-events"]
            assert board.key_events is True and C.keyspace_events_on(flags) and {"K", "l"} <= set(flags)
            admin.set("{claimroom:other}:x", 1)
            admin.delete("{claimroom:other}:x")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(hinted.wait(), 0.3)
            admin.delete(C.queues_key("keys"))
            await asyncio.wait_for(hinted.wait(), 2)


async def test_watch_without_config_rights_says_key_events_are_off(
    own_redis: tuple[LocalRedis, redis.Redis],
) -> None:
    """A managed Redis that refuses CONFIG: the views still get hints; the flag says off."""
    server, admin = own_redis
    admin.config_set("notify-keyspace-events", "")
    admin.acl_setuser(
        "op", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"], commands=["+@all", "-config"]
    )
    async with Store.from_url(f"redis://op:pw@127.0.0.1:{server.port}/0", "keys") as store:
        board = Board(store)
        async with watching(board) as hinted:
            assert board.key_events is False
            assert admin.config_get("notify-keyspace-events")["notify-keyspace-events"] == ""
            await store.add("still hinted")
            await asyncio.wait_for(hinted.wait(), 2)


async def test_a_read_only_watch_leaves_the_server_settings_alone(
    own_redis: tuple[LocalRedis, redis.Redis],
) -> None:
    """A read-only control room changes nothing, notification settings included: it says
    key events are off and lives on the hints; once they are on, it says so."""
    server, admin = own_redis
    admin.config_set("notify-keyspace-events", "")
    async with Store.from_url(server.url, "keys") as store:
        board = Board(store, switch_key_events=False)
        async with watching(board) as hinted:
            assert board.key_events is False
            assert admin.config_get("notify-keyspace-events")["notify-keyspace-events"] == ""
            await store.add("still hinted")
            await asyncio.wait_for(hinted.wait(), 2)
        admin.config_set("notify-keyspace-events", "KEA")
        async with watching(board):
            assert board.key_events is True


async def test_unreachable_store_is_store_unavailable(namespace: str) -> None:
    store = Store.from_url(f"redis://127.0.0.1:{free_port()}/0", namespace)
    try:
        with pytest.raises(StoreUnavailable):
            await Board(store).read()
    finally:
        await store.close()


async def test_queue_claimed_counts_past_the_row_limit_are_lower_bounds_on_redis(store: Store) -> None:
    """Redis counts a queue's claims among the claims read; the file store counts them all."""
    from rich.style import Style

    from claimroom.tui.panes import QueuesPane
    from claimroom.tui.tables import Palette

    await store.register("ada", max_claims=20)
    for i in range(5):
        await store.add(f"job {i}", queue="backend")
        assert await store.claim("ada") is not None
    plain = Palette(*(Style() for _ in range(5)))
    pane = QueuesPane("queues")
    capped = pane.rows(await Board(store, row_limit=3).read(), 0, plain)
    exact = store.url.startswith("file:")
    assert [(r.key, r.cells[2]) for r in capped] == [("backend", "5" if exact else "3+")]  # 3 read of 5
    full = pane.rows(await Board(store).read(), 0, plain)
    assert [(r.key, r.cells[2]) for r in full] == [("backend", "5")]
