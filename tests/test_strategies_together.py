"""The five coordination strategies of issue 15 together: plans, affinity, bidding, messages
and review were each built alone; these tests are where they meet (a plan's subtask in
review, an auction on an affine task, a board dump holding all five...). Both backends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from waiting import Waits, clock_past, until

from claimroom.core import affinity, constants, plan
from claimroom.core.errors import BadInput
from claimroom.core.file.store import FileStore
from claimroom.core.models import State
from claimroom.core.redis.store import RedisStore
from claimroom.core.store import Miss, Store, TaskSpec

LONG_S = 3600.0  # a steal delay or bid window no test waits out


def key_of(agents: list[str], agent: str, requires: str = "") -> str:
    """An affinity key the ring of ``agents`` gives to ``agent``."""
    ring = affinity.Ring(agents)
    return next(k for k in (f"key{i}" for i in range(10_000)) if ring.owner(k, requires) == agent)


async def close_window(store: Store, tid: str) -> None:
    """Let ``tid``'s bidding window run out on the store's clock and close it (a reaper pass)."""
    t = await store.get(tid)
    assert t.bid_close_ms > 0, f"{tid} has no open window"
    await clock_past(store, t.bid_close_ms)
    await until(store.reap, "a reaper pass")
    assert (await store.get(tid)).state is not State.BLOCKED


async def deliver(store: Store, agent: str, tid: str, ref: str = "branch-x") -> None:
    """``agent`` claims ``tid`` (the only claimable task for it) and delivers it for review."""
    c = await store.claim(agent)
    assert c is not None and c.task.id == tid, c
    await store.complete(tid, c.token, agent=agent, review=ref)
    assert (await store.get(tid)).state is State.REVIEW


def other_url(store: Store, redis_url: str, tmp_path: Path) -> str:
    """The other backend's URL."""
    if store.url.startswith("redis"):
        folder = tmp_path / "other"
        folder.mkdir()
        return folder.as_uri()
    return redis_url


# --- 1. a plan file's strategy fields ------------------------------------------------------


async def test_a_plan_carries_every_strategys_fields(store: Store) -> None:
    text = json.dumps(
        {
            "title": "port the CLI",
            "queue": "cli",
            "subtasks": [
                {"ref": "parse", "title": "parser", "requires": ["py"], "paths": ["src/parse.py"],
                 "affinity": "src/parse", "steal_after_s": 1.5},
                {"ref": "docs", "title": "docs", "after": ["parse"], "bid_window_s": 0.25,
                 "steal_after_s": 0},
                {"ref": "more", "title": "more", "bid_window_s": 2},
            ],
        },
        indent=1,
    )  # fmt: skip
    out = await plan.add(store, plan.parse(text), by="lead")
    parse, docs, more = [await store.get(out["subtasks"][r]) for r in ("parse", "docs", "more")]
    assert (parse.requires, parse.paths, parse.affinity) == (("py",), ("src/parse.py",), "src/parse")
    assert parse.steal_after_ms == 1500 and parse.queue == "cli" and parse.plan == out["parent"]
    assert (docs.bid_window_ms, docs.steal_after_ms, docs.state) == (250, 0, State.BLOCKED)
    assert docs.bid_close_ms == 0  # waits on parse: its window opens later
    assert more.bid_window_ms == 2000 and more.bid_close_ms > 0  # open at once
    parent = await store.get(out["parent"])
    assert parent.state is State.BLOCKED and parent.plan_wait and parent.plan_total == 3


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("steal_after_s", "soon", "steal after must be a number"),
        ("steal_after_s", -1, "steal after must be from"),
        ("bid_window_s", "long", "must be a number"),
        ("bid_window_s", -2.5, "bid window must be more than 0"),
    ],
)
async def test_a_bad_strategy_field_in_a_plan_is_refused_naming_the_item(
    store: Store, field: str, value: object, message: str
) -> None:
    text = json.dumps(
        {
            "title": "p",
            "subtasks": [{"ref": "ok", "title": "fine"}, {"ref": "bad", "title": "x", field: value}],
        },
        indent=1,
    )
    with pytest.raises(BadInput, match=r'subtasks\[1\] \("bad"\).*' + message):
        await plan.add(store, plan.parse(text))
    assert await store.tasks() == []


async def test_a_plan_parents_bid_window_goes_to_its_subtasks_not_to_itself(store: Store) -> None:
    """The parent is no work: it must never open a window itself (its close would hand the
    parent out as a claim or queue it)."""
    await store.register("ada")
    text = json.dumps({"title": "p", "bid_window_s": 0.05, "subtasks": [{"ref": "a", "title": "a"}]})
    out = await plan.add(store, plan.parse(text))
    parent, sub = await store.get(out["parent"]), await store.get(out["subtasks"]["a"])
    assert sub.bid_window_ms == 50 and sub.bid_close_ms > 0
    assert parent.bid_close_ms == 0
    await store.bid(sub.id, "ada", 3)
    await close_window(store, sub.id)
    assert (await store.get(sub.id)).agent == "ada"
    parent = await store.get(out["parent"])
    assert parent.state is State.BLOCKED and parent.plan_wait
    got = await store.claim("ada")  # the won claim, handed over; the parent is no claim
    assert got is not None and got.task.id == sub.id
    assert await store.claim("ada") is None
    await store.complete(sub.id, got.token)
    assert (await store.get(out["parent"])).state is State.DONE


# --- 2. a plan's subtask in review ----------------------------------------------------------


async def _plan_of(store: Store, n: int) -> tuple[str, list[str]]:
    ids = await store.plan(
        plan.Plan(subtasks=[TaskSpec(f"s{i}") for i in range(n)], parent=TaskSpec("parent"))
    )
    return ids[0], ids[1:]


async def test_review_holds_the_plan_parent_until_accepted(store: Store) -> None:
    await store.register("w")
    await store.register("rev", [constants.review_capability])
    pid, (a, b) = await _plan_of(store, 2)
    await deliver(store, "w", a)
    await deliver(store, "w", b)
    p = await store.get(pid)
    assert p.state is State.BLOCKED and p.plan_left == 2  # delivered is not done
    assert (await store.review(a, "accept", agent="rev"))[0] is State.DONE
    assert (await store.get(pid)).state is State.BLOCKED and (await store.get(pid)).plan_left == 1
    assert (await store.review(b, "return", "tests fail", agent="rev"))[0] is State.QUEUED
    p = await store.get(pid)
    assert p.state is State.BLOCKED and p.plan_left == 1
    await deliver(store, "w", b, "branch-y")
    assert (await store.review(b, "accept", operator="op"))[0] is State.DONE
    p = await store.get(pid)
    assert p.state is State.DONE and p.plan_left == 0


async def test_cancelling_a_subtask_in_review_kills_the_parent_and_cascades(store: Store) -> None:
    await store.register("w")
    pid, (a, b) = await _plan_of(store, 2)
    after_parent = await store.add("after the plan", after=[pid])
    await deliver(store, "w", a)
    t = await store.get(a)
    assert await store.act("cancel", a, State.REVIEW, t.token, "op") is State.CANCELLED
    p = await store.get(pid)
    assert p.state is State.DEAD and f"subtask {a} cancelled" in p.reason
    assert (await store.get(after_parent)).state is State.CANCELLED
    assert (await store.get(b)).state is State.QUEUED  # the other subtasks are left alone


# --- 3. a dependent's window opens on the other paths to done --------------------------------


async def test_a_window_opens_when_its_dependency_is_accepted(store: Store) -> None:
    await store.register("w")
    await store.register("rev", [constants.review_capability])
    dep = await store.add("dep")
    bidder = await store.add("bid on me", after=[dep], bid_window_s=LONG_S)
    await deliver(store, "w", dep)
    assert (await store.get(bidder)).bid_close_ms == 0  # review is not done
    await store.review(dep, "accept", agent="rev")
    t = await store.get(bidder)
    assert t.state is State.BLOCKED and t.bid_close_ms > 0
    assert [a.task for a in await store.auctions()] == [bidder]
    await store.bid(bidder, "w", 1)  # bids are taken: the window is open


async def test_a_window_opens_when_the_plan_it_waits_on_is_done(store: Store) -> None:
    await store.register("w")
    pid, (a,) = await _plan_of(store, 1)
    bidder = await store.add("after the plan", after=[pid], bid_window_s=LONG_S)
    c = await store.claim("w")
    assert c is not None and c.task.id == a
    await store.complete(a, c.token)
    assert (await store.get(pid)).state is State.DONE
    t = await store.get(bidder)
    assert t.state is State.BLOCKED and t.bid_close_ms > 0
    assert [x.task for x in await store.auctions()] == [bidder]


# --- 4, 5. affinity meets bidding and review -------------------------------------------------


async def test_an_unbid_window_on_an_affine_task_goes_to_the_keys_owner(store: Store) -> None:
    for a in ("ada", "bob"):
        await store.register(a)
    key = key_of(["ada", "bob"], "bob")
    tid = await store.add("affine auction", affinity=key, steal_after_s=LONG_S, bid_window_s=0.05)
    await close_window(store, tid)
    t = await store.get(tid)
    assert (t.state, t.owner) == (State.QUEUED, "bob") and t.steal_ms > 0
    assert await store.claim("ada") is None
    got = await store.claim("bob")
    assert got is not None and got.task.id == tid


async def test_an_auction_won_by_a_non_owner_is_the_winners(store: Store) -> None:
    for a in ("ada", "bob"):
        await store.register(a)
    key = key_of(["ada", "bob"], "bob")
    tid = await store.add("affine auction", affinity=key, steal_after_s=LONG_S, bid_window_s=0.05)
    await store.bid(tid, "ada", 1)
    await store.bid(tid, "bob", 5)
    await close_window(store, tid)
    t = await store.get(tid)
    assert (t.state, t.agent, t.bid_winner) == (State.CLAIMED, "ada", "ada")
    assert await store.claim("bob") is None
    got = await store.claim("ada")  # the won claim, handed over
    assert got is not None and got.task.id == tid and got.token == t.token
    await store.complete(tid, got.token, agent="ada")
    assert (await store.get(tid)).state is State.DONE


async def test_a_returned_affine_task_goes_back_to_its_owner_with_the_note(store: Store) -> None:
    for a in ("ada", "bob"):
        await store.register(a)
    await store.register("rev", [constants.review_capability])
    key = key_of(["ada", "bob", "rev"], "bob")
    tid = await store.add("affine", affinity=key, steal_after_s=LONG_S)
    assert (await store.get(tid)).owner == "bob"
    await deliver(store, "bob", tid)
    await store.review(tid, "return", "rename the flag", agent="rev")
    t = await store.get(tid)
    assert (t.state, t.owner) == (State.QUEUED, "bob") and t.steal_ms > 0
    assert "rename the flag" in t.checkpoint
    assert await store.claim("ada") is None
    got = await store.claim("bob")
    assert got is not None and got.task.id == tid and "rename the flag" in got.task.checkpoint


# --- 6. messages and a won auction wake a waiting claimer ----------------------------------


async def test_a_message_wakes_a_waiting_claimer(
    store: Store, store_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "wait_recheck_s", 600.0)  # only the hint ends it in time
    for a in ("ada", "bob"):
        await store.register(a)
    waits = Waits(store, monkeypatch)
    miss = Miss()
    waiting = asyncio.create_task(store.claim("bob", wait_s=60, miss=miss))
    await waits.reach(1)
    async with Store.from_url(store_url, namespace) as other:
        await other.send("ada", "bob", "hand-off: t9 is yours")
    assert await asyncio.wait_for(waiting, 5) is None and miss.last.reason == "message"


async def test_a_won_auction_is_what_the_winners_waiting_claim_returns(
    store: Store, store_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "wait_recheck_s", 600.0)
    for a in ("ada", "bob"):
        await store.register(a)
    tid = await store.add("auctioned", bid_window_s=LONG_S)
    await store.bid(tid, "bob", 2)
    waits = Waits(store, monkeypatch)
    miss = Miss()
    waiting = asyncio.create_task(store.claim("bob", wait_s=60, miss=miss))
    await waits.reach(1)
    assert not waiting.done()
    # Close the window now from another connection (its close time brought forward to now).
    async with Store.from_url(store_url, namespace) as other:
        await _close_now(other, tid)
    got = await asyncio.wait_for(waiting, 5)
    assert got is not None and got.task.id == tid and miss.last.reason == ""
    assert (await store.get(tid)).agent == "bob"


async def _close_now(store: Store, tid: str) -> None:
    """Close ``tid``'s window at once: its close time set to now, then a reaper pass."""
    now = await store.now_ms()
    if isinstance(store, RedisStore):
        ns = store.namespace
        await store._redis.hset(constants.task_key(ns, tid), "bid_close_ms", now)
        await store._redis.zadd(constants.auctions_key(ns), {tid: now})
    else:
        assert isinstance(store, FileStore)
        with contextlib.closing(sqlite3.connect(_db(store))) as conn, conn:
            conn.execute(
                "UPDATE tasks SET bid_close_ms = ? WHERE ns = ? AND id = ?", (now, store.namespace, tid)
            )
            conn.execute(
                "UPDATE auctions SET close_ms = ? WHERE ns = ? AND task = ?", (now, store.namespace, tid)
            )
    await clock_past(store, now)
    report = await store.reap()
    assert tid in report.auctions_closed


# --- 7. a board dump holding all five, into the other backend --------------------------------


async def test_a_board_with_all_five_round_trips_to_the_other_backend(
    store: Store, redis_url: str, tmp_path: Path
) -> None:
    for a in ("ada", "bob"):
        await store.register(a)
    await store.register("rev", [constants.review_capability])
    # An open auction with bids.
    auction = await store.add("auctioned", bid_window_s=LONG_S)
    await store.bid(auction, "ada", 4)
    await store.bid(auction, "bob", 2)
    # A plan mid-way: one subtask done, one in review, one queued.
    pid, (s0, s1, s2) = await _plan_of(store, 3)
    for sub in (s0, s1):
        c = await store.claim("ada")
        assert c is not None and c.task.id == sub
        await store.complete(sub, c.token, review="pr-1" if sub == s1 else None)
    # An affine task waiting for its owner.
    key = key_of(["ada", "bob", "rev"], "bob")
    affine = await store.add("affine", affinity=key, steal_after_s=LONG_S, queue="aff")
    assert (await store.get(affine)).owner == "bob"
    # Messages with read marks.
    await store.send("ada", "bob", "read this")
    await store.inbox("bob")
    await store.send("ada", "bob", "and this, unread")

    board = await store.export_board()
    async with Store.from_url(other_url(store, redis_url, tmp_path), "moved" + store.namespace) as there:
        await there.import_board(board)
        for tid in (auction, pid, s0, s1, s2):
            assert await there.get(tid) == await store.get(tid), tid
        # Its owner came along in the board (and joined the ring there as last seen), so the
        # task still waits for bob until its steal time (dump.waits_for_owner).
        moved, before = await there.get(affine), await store.get(affine)
        assert (moved.state, moved.owner) == (State.QUEUED, "bob")
        assert moved.steal_ms > 0 and abs(moved.steal_ms - before.steal_ms) <= 5_000
        assert [(b.agent, b.cost) for b in await there.bids(auction)] == [("bob", 2), ("ada", 4)]
        assert [a.task for a in await there.auctions()] == [auction]
        assert [(m.text, m.read) for m in await there.inbox("bob", mark_read=False)] == [
            ("read this", True), ("and this, unread", False),
        ]  # fmt: skip
        assert await there.claim("ada", queues=["aff"]) is None  # bob's until its steal time
        got = await there.claim("bob", queues=["aff"])
        assert got is not None and got.task.id == affine
        await there.complete(affine, got.token)
        # Review accept still works, and the plan still rolls up.
        assert (await there.review(s1, "accept", agent="rev"))[0] is State.DONE
        c = await there.claim("ada", queues=["default"])
        assert c is not None and c.task.id == s2
        await there.complete(s2, c.token)
        assert (await there.get(pid)).state is State.DONE
        # The auction still closes, to the lowest bid.
        await _close_now(there, auction)
        t = await there.get(auction)
        assert (t.state, t.agent) == (State.CLAIMED, "bob")


# --- 8. retention on a board with all five ---------------------------------------------------


async def test_retention_removes_finished_plans_and_auctions_and_keeps_open_ones(store: Store) -> None:
    for a in ("ada", "bob"):
        await store.register(a)
    # Finished: a plan done, an auction closed and its task done, an old message.
    done_pid, (d0,) = await _plan_of(store, 1)
    c = await store.claim("ada")
    assert c is not None and c.task.id == d0
    await store.complete(d0, c.token)
    closed = await store.add("closed auction", bid_window_s=0.05)
    await store.bid(closed, "ada", 1)
    await close_window(store, closed)
    c = await store.claim("ada")
    assert c is not None and c.task.id == closed
    await store.complete(closed, c.token)
    old = await store.send("ada", "bob", "old news")
    # Open: a plan waiting, an auction with a bid, a task in review.
    open_pid, (o0,) = await _plan_of(store, 1)
    c = await store.claim("ada")
    assert c is not None and c.task.id == o0
    await store.complete(o0, c.token, review="pr-2")
    auction = await store.add("open auction", bid_window_s=LONG_S)
    await store.bid(auction, "bob", 3)
    horizon_s = 0.2
    await clock_past(store, await store.now_ms() + int(horizon_s * 1000))
    kept = await store.send("bob", "ada", "new")
    await store.set_retention(done_s=horizon_s, done_count=0, failed_s=0, events_s=horizon_s)
    report = await store.reap()
    assert report.removed == 3, report
    gone = {t.id for t in await store.tasks()}
    assert gone.isdisjoint({done_pid, d0, closed})
    assert {open_pid, o0, auction} <= gone
    assert (await store.get(open_pid)).state is State.BLOCKED
    assert (await store.get(o0)).state is State.REVIEW
    assert [b.agent for b in await store.bids(auction)] == ["bob"]
    assert [a.task for a in await store.auctions()] == [auction]
    assert [m.id for m in await store.inbox("bob", mark_read=False)] == []
    assert [m.id for m in await store.inbox("ada", mark_read=False)] == [kept.id]
    assert old.id not in {m.id for m in await store.inbox("bob", mark_read=False)}


# --- 9. operator actions in the new situations -----------------------------------------------


async def test_cancel_of_a_waiting_plan_parent(store: Store) -> None:
    await store.register("ada")
    pid, (a, b) = await _plan_of(store, 2)
    after = await store.add("after the plan", after=[pid])
    assert await store.act("cancel", pid, State.BLOCKED, 0, "op") is State.CANCELLED
    assert (await store.get(pid)).state is State.CANCELLED
    assert (await store.get(after)).state is State.CANCELLED  # its dependents cascade
    # Its subtasks finishing later change nothing of it.
    c = await store.claim("ada")
    assert c is not None and c.task.id in (a, b)
    await store.complete(c.task.id, c.token)
    assert (await store.get(pid)).state is State.CANCELLED


async def test_cancel_of_a_task_with_an_open_window_drops_its_bids(store: Store) -> None:
    for a in ("ada", "bob"):
        await store.register(a)
    tid = await store.add("auctioned", bid_window_s=0.2)
    await store.bid(tid, "ada", 1)
    assert await store.act("cancel", tid, State.BLOCKED, 0, "op") is State.CANCELLED
    assert await store.auctions() == []
    assert await store.bids(tid) == []
    board = await store.export_board()
    assert [b for b in board.get("bids", []) if b["task"] == tid] == []
    assert not await _in_auction_index(store, tid)
    # Its time up, nothing closes and nobody wins it.
    await clock_past(store, (await store.get(tid)).bid_close_ms)
    assert tid not in (await store.reap()).auctions_closed
    t = await store.get(tid)
    assert (t.state, t.agent, t.bid_winner) == (State.CANCELLED, "", "")
    assert await store.claim("ada") is None


async def _in_auction_index(store: Store, tid: str) -> bool:
    if isinstance(store, RedisStore):
        return await store._redis.zscore(constants.auctions_key(store.namespace), tid) is not None
    assert isinstance(store, FileStore)
    with contextlib.closing(sqlite3.connect(_db(store))) as conn:
        row = conn.execute(
            "SELECT 1 FROM auctions WHERE ns = ? AND task = ?", (store.namespace, tid)
        ).fetchone()
    return row is not None


async def test_requeue_of_a_stolen_affine_task_goes_to_its_owner_again(store: Store) -> None:
    for a in ("ada", "bob"):
        await store.register(a)
    key = key_of(["ada", "bob"], "bob")
    tid = await store.add("affine", affinity=key, steal_after_s=0.05)
    t = await store.get(tid)
    await clock_past(store, t.steal_ms)
    stolen = await store.claim("ada")
    assert stolen is not None and stolen.task.id == tid
    before = await store.now_ms()
    assert await store.act("requeue", tid, State.CLAIMED, stolen.token, "op") is State.QUEUED
    t = await store.get(tid)
    assert (t.state, t.owner) == (State.QUEUED, "bob") and t.steal_ms >= before + 50  # a new delay
    got = await until(lambda: store.claim("bob"), "bob claiming its key's task again")
    assert got.task.id == tid


def _db(store: Store) -> Path:
    """The file store's database (tests reach into it to set a time, as test_affinity does)."""
    return Path(unquote(urlsplit(store.url).path)) / constants.file_db_name
