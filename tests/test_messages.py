"""Messages between agents (core/messages.py) on both backends: direct and broadcast,
read marks, limits, retention, the wake-up of a waiting claimer, concurrency, the dump.
The CLI, the MCP tools and the control room: test_messages_clients.py."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from waiting import Waits, clock_past

from claimroom.core import constants
from claimroom.core.errors import BadInput, NotFound
from claimroom.core.file.schema import db_path
from claimroom.core.models import ClaimMiss
from claimroom.core.store import Miss, Store


async def _quiet_send(store: Store, sender: str, to: str, text: str) -> None:
    """A message stored as ``send`` stores it, but announced nowhere: a lost hint."""
    ns = store.namespace
    if store.url.startswith("file"):
        with sqlite3.connect(db_path(store.url)) as db:
            db.execute(
                "INSERT INTO counters (ns, name, value) VALUES (?, 'message', 1)"
                " ON CONFLICT (ns, name) DO UPDATE SET value = value + 1",
                (ns,),
            )
            (mid,) = db.execute(
                "SELECT value FROM counters WHERE ns = ? AND name = 'message'", (ns,)
            ).fetchone()
            db.execute(
                "INSERT INTO messages (ns, id, sender, recipient, text, at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                (ns, mid, sender, to, text, await store.now_ms()),
            )
        return
    r = aioredis.Redis.from_url(store.url, decode_responses=True)
    try:
        mid = await r.incr(constants.seq_key(ns, "message"))
        m = {"id": mid, "sender": sender, "to": to, "text": text, "at_ms": await store.now_ms()}
        await r.zadd(constants.inbox_key(ns, to), {json.dumps(m): mid})
    finally:
        await r.aclose()


async def _agents(store: Store, *names: str) -> None:
    for name in names:
        await store.register(name)


async def test_direct_message_reaches_only_its_recipient(store: Store) -> None:
    await _agents(store, "ada", "bob", "cy")
    sent = await store.send("ada", "bob", "the parser is yours\nsee notes")
    assert sent.sender == "ada" and sent.to == "bob" and sent.id > 0 and sent.at_ms > 0
    (got,) = await store.inbox("bob")
    assert (got.id, got.sender, got.to, got.text, got.read) == (sent.id, "ada", "bob", sent.text, False)
    assert got.at_ms == sent.at_ms
    assert await store.inbox("cy") == []
    assert await store.unread(["ada", "bob", "cy"]) == {"ada": 0, "bob": 0, "cy": 0}  # bob read it


async def test_read_marks_and_unread(store: Store) -> None:
    await _agents(store, "ada", "bob")
    ids = [(await store.send("ada", "bob", f"m{i}")).id for i in range(5)]
    assert await store.unread(["bob"]) == {"bob": 5}
    peek = await store.inbox("bob", mark_read=False)
    assert [m.id for m in peek] == ids and not any(m.read for m in peek)
    assert await store.unread(["bob"]) == {"bob": 5}  # a peek marks nothing
    first = await store.inbox("bob", unread=True, limit=2)
    assert [m.id for m in first] == ids[:2]  # the oldest unread first
    assert await store.unread(["bob"]) == {"bob": 3}
    rest = await store.inbox("bob", unread=True)
    assert [m.id for m in rest] == ids[2:]
    assert await store.inbox("bob", unread=True) == []
    every = await store.inbox("bob")
    assert [m.id for m in every] == ids and all(m.read for m in every)
    newest = await store.inbox("bob", limit=2)
    assert [m.id for m in newest] == ids[3:]  # the newest two, oldest first


async def test_broadcast_reaches_every_agent_with_its_own_marks(store: Store) -> None:
    await _agents(store, "ada", "bob", "cy")
    b = await store.send("ada", "*", "main is frozen")
    d = await store.send("cy", "bob", "hi bob")
    assert b.to == "" and b.broadcast
    assert await store.unread(["ada", "bob", "cy"]) == {"ada": 1, "bob": 2, "cy": 1}
    got = await store.inbox("bob")
    assert [(m.id, m.to) for m in got] == [(b.id, ""), (d.id, "bob")]
    assert await store.unread(["ada", "bob", "cy"]) == {"ada": 1, "bob": 0, "cy": 1}
    await store.register("late")  # registered after the broadcast: sees it while it is kept
    assert [m.text for m in await store.inbox("late", unread=True)] == ["main is frozen"]
    assert (await store.send("ops", None, "from the operator", operator=True)).sender == "operator:ops"
    assert [m.sender for m in await store.inbox("ada", unread=True)] == ["ada", "operator:ops"]


async def test_send_refusals_change_nothing(store: Store) -> None:
    await _agents(store, "ada", "bob")
    with pytest.raises(NotFound, match="no such agent nobody"):
        await store.send("ada", "nobody", "hello")
    with pytest.raises(NotFound, match="no such agent ghost"):
        await store.send("ghost", "bob", "hello")
    with pytest.raises(NotFound, match="no such agent ghost"):
        await store.inbox("ghost")
    too_big = "x" * (constants.max_message_bytes + 1)
    with pytest.raises(BadInput, match=f"larger than {constants.max_message_bytes} bytes"):
        await store.send("ada", "bob", too_big)
    with pytest.raises(BadInput, match="larger than"):  # bytes, not characters
        await store.send("ada", "bob", "é" * (constants.max_message_bytes // 2 + 1))
    for bad in ("ring \x07 bell", "\x1b[2Jclear", "cr\r", "del\x7f", "c1\x9b"):
        with pytest.raises(BadInput, match="control character"):
            await store.send("ada", "bob", bad)
    for empty in ("", "  \n"):
        with pytest.raises(BadInput, match="empty"):
            await store.send("ada", "bob", empty)
    with pytest.raises(BadInput):
        await store.send("ada", "bad name!", "hi")
    assert await store.inbox("bob") == []
    assert [e for e in await store.events() if e.type == "message"] == []
    await store.send("ada", "bob", "x" * constants.max_message_bytes)  # at the limit: taken
    ok = await store.send("ada", "bob", "tab\tand\nnewline")
    assert [m.text for m in await store.inbox("bob")][-1] == ok.text


async def test_send_is_audited_without_its_text(store: Store) -> None:
    await _agents(store, "ada", "bob")
    m = await store.send("ada", "bob", "secret plan")
    b = await store.send("root", "*", "hello all", operator=True)
    ev = [e for e in await store.events() if e.type == "message"]
    assert [(e.agent, e.operator, e.data) for e in ev] == [
        ("ada", "", {"from": "ada", "to": "bob", "id": m.id, "size": 11}),
        ("", "root", {"from": "operator:root", "to": "*", "id": b.id, "size": 9}),
    ]
    assert all("secret" not in str(e.to_json()) for e in ev)


async def test_inboxes_and_the_broadcast_log_are_capped(store: Store) -> None:
    await _agents(store, "ada", "bob")
    cap = constants.inbox_max
    ids = [(await store.send("ada", "bob", f"m{i}")).id for i in range(cap + 2)]
    await store.inbox("bob", unread=True, limit=3)  # marks m2..m4 read (m0, m1 are gone)
    got = await store.inbox("bob", limit=cap + 10, mark_read=False)
    assert [m.id for m in got] == ids[2:]  # the oldest went
    assert await store.unread(["bob"]) == {"bob": cap - 3}
    b = [(await store.send("ada", "*", f"b{i}")).id for i in range(constants.broadcasts_max + 1)]
    every = await store.inbox("ada", limit=constants.broadcasts_max + 10, mark_read=False)
    assert [m.id for m in every] == b[1:]
    await store.send("ada", "bob", "one more")  # drops the oldest, m2: read, so its mark goes too
    assert await store.unread(["bob"]) == {"bob": cap - 2 + constants.broadcasts_max}


# --- the wake-up of a waiting claimer --------------------------------------------------------


async def test_a_message_ends_a_waiting_claim_at_once(
    store: Store, store_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "wait_recheck_s", 600.0)  # only the hint can end the wait in time
    await _agents(store, "ada", "bob")
    await store.send("ada", "bob", "old, and read")
    await store.inbox("bob")
    await store.send("ada", "bob", "old, unread: not news to a claim that starts later")
    waits = Waits(store, monkeypatch)
    miss = Miss()
    waiting = asyncio.create_task(store.claim("bob", wait_s=60, miss=miss))
    await waits.reach(1)  # it waits: the old messages did not end it
    async with Store.from_url(store_url, namespace) as other:  # another connection
        await other.send("ada", "bob", "take over t1, I am stuck")
    try:
        got = await asyncio.wait_for(waiting, 5)
    except TimeoutError:
        pytest.fail("the message did not wake the waiting claimer")
    assert got is None and miss.last == ClaimMiss("message")
    assert [m.text for m in await store.inbox("bob", unread=True)][-1] == "take over t1, I am stuck"


async def test_a_broadcast_ends_a_waiting_claim(
    store: Store, store_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "wait_recheck_s", 600.0)
    await _agents(store, "bob")
    waits = Waits(store, monkeypatch)
    miss = Miss()
    waiting = asyncio.create_task(store.claim("bob", wait_s=60, miss=miss))
    await waits.reach(1)
    async with Store.from_url(store_url, namespace) as other:
        await other.send("ops", "*", "stop and pull main", operator=True)
    assert await asyncio.wait_for(waiting, 5) is None and miss.last.reason == "message"


async def test_a_message_read_elsewhere_does_not_end_the_wait(
    store: Store, store_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check is the board, not the hint: a message already read when the claimer looks
    (another process of the agent read it) is no news; a task added later is claimed."""
    monkeypatch.setattr(constants, "wait_recheck_s", 0.05)  # the re-check, not a hint, looks
    await _agents(store, "ada", "bob")
    waits = Waits(store, monkeypatch)
    # The claimer's look at its messages waits while the gate is shut: woken by the send's
    # hint, it would otherwise look between the send and the read, and rightly end its wait.
    gate, look = asyncio.Event(), store._message_news
    gate.set()

    async def gated(agent: str, after: int) -> tuple[int, int]:
        await gate.wait()
        return await look(agent, after)

    monkeypatch.setattr(store, "_message_news", gated)
    waiting = asyncio.create_task(store.claim("bob", wait_s=60))
    await waits.reach(1)
    # Sent and read in one go from elsewhere, between two looks of the claimer.
    async with Store.from_url(store_url, namespace) as other:
        gate.clear()
        await other.send("ada", "bob", "fyi")
        await other.inbox("bob")
        gate.set()
        seen = waits.count
        await waits.reach(seen + 3)  # it looked again, several times, and waits on
        assert not waiting.done()
        tid = await other.add("work")
    got = await asyncio.wait_for(waiting, 5)
    assert got is not None and got.task.id == tid


async def test_without_the_hint_the_recheck_finds_the_message(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule 8: a message whose hint is lost still ends the wait, at the next re-check."""
    monkeypatch.setattr(constants, "wait_recheck_s", 0.1)
    await _agents(store, "ada", "bob")
    waits = Waits(store, monkeypatch)
    miss = Miss()
    waiting = asyncio.create_task(store.claim("bob", wait_s=60, miss=miss))
    await waits.reach(1)
    await _quiet_send(store, "ada", "bob", "no hint")
    await asyncio.wait_for(waiting, 5)
    assert miss.last.reason == "message"


# --- retention, concurrency, the board dump ---------------------------------------------------


async def test_retention_trims_messages_past_the_trails_horizon(store: Store) -> None:
    await _agents(store, "ada", "bob")
    old = [await store.send("ada", "bob", "old direct"), await store.send("ada", "*", "old broadcast")]
    await store.inbox("bob", limit=1)  # a read mark, which must go with its message
    horizon_s = 0.3
    await clock_past(store, old[-1].at_ms + int(horizon_s * 1000))
    kept = await store.send("ada", "bob", "new")
    await store.set_retention(events_s=horizon_s)
    await store.reap()
    got = await store.inbox("bob", mark_read=False)
    assert [m.id for m in got] == [kept.id]
    assert await store.unread(["ada", "bob"]) == {"ada": 0, "bob": 1}
    assert await store.inbox("ada", mark_read=False) == []


async def test_retention_trims_in_bounded_batches(store: Store) -> None:
    await _agents(store, "ada", *(f"a{i}" for i in range(4)))
    n = constants.retention_messages_batch // 2 + 10  # each inbox; together past one batch
    for i in range(4):
        for k in range(n):
            await store.send("ada", f"a{i}", f"m{k}")
    horizon_s = 0.2
    await clock_past(store, await store.now_ms() + int(horizon_s * 1000))
    await store.set_retention(events_s=horizon_s)
    report = await store.reap()  # up to retention_calls_per_reap calls, each capped
    assert not report.retention_more
    assert await store.unread([f"a{i}" for i in range(4)]) == {f"a{i}": 0 for i in range(4)}


async def test_many_concurrent_senders_lose_nothing(store: Store, store_url: str, namespace: str) -> None:
    senders = [f"s{i}" for i in range(8)]
    await _agents(store, "inbox", *senders)
    per = 25

    async def one(name: str) -> list[int]:
        async with Store.from_url(store_url, namespace) as s:  # each its own connection
            return [(await s.send(name, "inbox", f"{name}:{k}")).id for k in range(per)]

    sent = await asyncio.gather(*(one(n) for n in senders))
    got = await store.inbox("inbox", limit=len(senders) * per)
    assert [m.id for m in got] == sorted(i for ids in sent for i in ids)  # all there, by id
    for name, ids in zip(senders, sent, strict=True):
        mine = [m for m in got if m.sender == name]
        assert [m.text for m in mine] == [f"{name}:{k}" for k in range(per)]  # each in its order
        assert [m.id for m in mine] == ids
    assert len({m.id for m in got}) == len(got)


async def test_board_dump_round_trip_carries_messages(store: Store, redis_url: str, tmp_path: Path) -> None:
    await _agents(store, "ada", "bob")
    await store.send("ada", "bob", "direct, read")
    await store.inbox("bob")
    await store.send("ada", "bob", "direct, unread")
    await store.send("ops", "*", "broadcast", operator=True)
    await store.inbox("ada", limit=1)  # ada read the broadcast
    board = await store.export_board()
    assert [m["text"] for m in board["messages"]] == ["direct, read", "direct, unread", "broadcast"]
    # Into the other backend, then back into this one: nothing lost either way.
    there_url = f"file://{tmp_path}" if store.url.startswith("redis") else redis_url
    ns = "moved" + store.namespace
    async with Store.from_url(there_url, ns) as there:
        await there.import_board(board)
        assert [(m.text, m.read) for m in await there.inbox("bob", mark_read=False)] == [
            ("direct, read", True), ("direct, unread", False), ("broadcast", False),
        ]  # fmt: skip
        assert await there.unread(["ada", "bob"]) == {"ada": 0, "bob": 2}
        again = await there.export_board()
        assert (again["messages"], again["reads"]) == (board["messages"], board["reads"])
        after = await there.send("bob", "ada", "a new one after the import")
        assert after.id > max(int(m["id"]) for m in board["messages"])
        # A merge into a board with messages keeps both, the incoming ones numbered after.
        await store.import_board(await there.export_board(), merge=True)
    texts = [m.text for m in await store.inbox("bob", mark_read=False)]
    assert texts == [
        "direct, read",
        "direct, unread",
        "broadcast",
        "direct, read",
        "direct, unread",
        "broadcast",
    ]


async def test_unread_after_reading_the_newest_first(store: Store) -> None:
    """Read marks that are not the oldest messages (the newest was read first): unread still
    finds exactly the others, oldest first."""
    await _agents(store, "ada", "bob")
    ids = [(await store.send("ada", "bob", f"m{i}")).id for i in range(6)]
    b = [(await store.send("ada", "*", f"b{i}")).id for i in range(3)]
    assert [m.id for m in await store.inbox("bob", limit=2)] == [b[1], b[2]]
    assert [m.id for m in await store.inbox("bob", unread=True, limit=3)] == ids[:3]
    assert [m.id for m in await store.inbox("bob", unread=True)] == [*ids[3:], b[0]]
    assert await store.unread(["bob"]) == {"bob": 0}
