"""Market-based bidding on both backends: windows open when a task is ready, the lowest bid
wins the claim atomically with a fencing token at the window's end (closed by a claim or
the reaper alone, on the store's clock), refusals change nothing, and the races at the
close never give two claims.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp_support import board_state, ok, refused, serving
from mcp_support import client as mcp_client
from pilot_wait import screen_lines, until
from textual.pilot import Pilot
from waiting import clock_past

from claimroom.core import bidding
from claimroom.core.errors import BadInput, Conflict, LeaseLost
from claimroom.core.local_redis import LocalRedis
from claimroom.core.models import Event, State
from claimroom.core.store import Store, TaskSpec
from claimroom.core.tokens import create_token
from claimroom.tui.app import ControlRoom
from claimroom.tui.auctions import AuctionsBox
from claimroom.tui.seed import pin_app

CLAIMROOM = str(Path(sys.executable).parent / "claimroom")


async def events_of(store: Store, etype: str, task: str | None = None) -> list[Event]:
    return [e for e in await store.events(task=task, count=100_000) if e.type == etype]


async def close(store: Store, task: str) -> None:
    """Let ``task``'s window run out on the store's clock, then one reaper pass."""
    t = await store.get(task)
    assert t.bid_close_ms > 0
    await clock_past(store, t.bid_close_ms)
    report = await store.reap()
    assert task in report.auctions_closed


async def test_lowest_bid_wins_the_claim_with_a_working_token(store: Store) -> None:
    for a in ("a1", "a2", "a3"):
        await store.register(a, ["py"], 2)
    tid = await store.add("auctioned", requires=["py"], bid_window_s=0.3)
    t = await store.get(tid)
    assert t.state is State.BLOCKED and t.bid_window_ms == 300 and t.bid_close_ms > 0
    assert await store.claim("a1") is None  # an open window is nobody's to claim
    await store.bid(tid, "a1", 5)
    await store.bid(tid, "a2", 2.5, ttl_s=30)
    await store.bid(tid, "a3", 7)
    [auction] = await store.auctions()
    assert [b.agent for b in auction.bids] == ["a2", "a1", "a3"] and auction.close_ms == t.bid_close_ms
    await close(store, tid)
    won = await store.get(tid)
    assert won.state is State.CLAIMED and won.agent == "a2" and won.bid_winner == "a2" and won.token > 0
    assert won.deadline_ms == won.claimed_ms + 30_000
    assert await store.auctions() == []
    [closed] = await events_of(store, "auction-closed", tid)
    assert closed.data == {"bids": 3, "to": "claimed", "winner": "a2", "cost": 2.5}
    assert closed.token == won.token
    assert [e.agent for e in await events_of(store, "claimed", tid)] == ["a2"]
    # Its next claim hands the won claim over, once; the token works.
    got = await store.claim("a2")
    assert got is not None and got.task.id == tid and got.token == won.token
    assert await store.claim("a2") is None
    assert [t.id for t in await store.held("a2")] == [tid]
    await store.heartbeat(tid, won.token, progress=0.5)
    await store.complete(tid, won.token)
    assert (await store.get(tid)).state is State.DONE


async def test_a_stale_token_is_refused_after_an_auction(store: Store) -> None:
    await store.register("a1", [], 1)
    tid = await store.add("x", bid_window_s=0.2)
    await store.bid(tid, "a1", 1, ttl_s=0.2)
    await close(store, tid)
    first = await store.get(tid)
    await clock_past(store, first.deadline_ms)
    await store.reap()  # the lease expires: back to its queue (no second auction)
    assert (await store.get(tid)).state is State.QUEUED
    again = await store.claim("a1")
    assert again is not None and again.token > first.token
    with pytest.raises(LeaseLost):
        await store.complete(tid, first.token)
    await store.complete(tid, again.token)


async def test_ties_go_to_the_earliest_bid(store: Store) -> None:
    for a in ("zed", "amy"):
        await store.register(a)
    tid = await store.add("x", bid_window_s=0.5)
    await store.bid(tid, "zed", 3)
    await clock_past(store, await store.now_ms())  # amy bids strictly later
    await store.bid(tid, "amy", 3)
    await close(store, tid)
    assert (await store.get(tid)).agent == "zed"


async def test_a_rebid_replaces_the_cost_and_takes_a_new_time(store: Store) -> None:
    for a in ("zed", "amy"):
        await store.register(a)
    tid = await store.add("x", bid_window_s=0.5)
    await store.bid(tid, "zed", 3)
    await clock_past(store, await store.now_ms())
    await store.bid(tid, "amy", 3)
    await clock_past(store, await store.now_ms())
    again = await store.bid(tid, "zed", 3)  # the same cost, a new time: amy is now earlier
    [auction] = await store.auctions()
    assert auction.bids[0].agent == "amy"
    assert [b for b in auction.bids if b.agent == "zed"] == [again]
    [*_, last] = await events_of(store, "bid", tid)
    assert last.data["replaced"] is True
    await close(store, tid)
    assert (await store.get(tid)).agent == "amy"


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.sampled_from("abcd")), max_size=8))
def test_rank_is_cost_then_time_then_name(entries: list[tuple[int, int, str]]) -> None:
    bids = [bidding.Bid("t1", a, float(c), at, 1000) for c, at, a in entries]
    ranked = bidding.rank(bids)
    assert [(b.cost, b.at_ms, b.agent) for b in ranked] == sorted((b.cost, b.at_ms, b.agent) for b in bids)


async def test_no_bids_sends_the_task_to_its_queue(store: Store) -> None:
    tid = await store.add("x", queue="q1", bid_window_s=0.1)
    await close(store, tid)
    assert (await store.get(tid)).state is State.QUEUED
    [closed] = await events_of(store, "auction-closed", tid)
    assert closed.data == {"bids": 0, "to": "queued"}
    got = await store.claim("w")
    assert got is not None and got.task.id == tid


async def board(store: Store, tid: str) -> tuple[object, ...]:
    return (await store.get(tid), await store.auctions(), len(await store.events(count=100_000)))


async def test_refused_bids_change_nothing(store: Store) -> None:
    await store.register("py", ["py"])
    await store.register("go", ["go"])
    await store.register("broken", ["py"])
    plain = await store.add("no window")
    tid = await store.add("x", requires=["py"], bid_window_s=5)
    await store.bid(tid, "py", 1)
    before = await board(store, tid)
    for task, agent, why in [
        (tid, "go", "lacks capability py"),
        (tid, "nobody", "not registered"),
        (plain, "py", "opens no bidding window"),
    ]:
        with pytest.raises(Conflict, match=why):
            await store.bid(task, agent, 1)
    for bad in (-1, float("nan"), "cheap", float("inf"), True):
        with pytest.raises(BadInput):
            await store.bid(tid, "py", bad)  # type: ignore[arg-type]
    assert await board(store, tid) == before
    # A breaker open: refused too.
    for _ in range(5):
        await store.add("fails")
        c = await store.claim("broken")
        assert c is not None
        await store.fail(c.task.id, c.token, "boom", fatal=True)
    with pytest.raises(Conflict, match="breaker open"):
        await store.bid(tid, "broken", 1)


async def test_a_closed_window_refuses_bids(store: Store) -> None:
    await store.register("a1")
    tid = await store.add("x", bid_window_s=0.1)
    t = await store.get(tid)
    await clock_past(store, t.bid_close_ms)
    with pytest.raises(Conflict, match="has closed"):  # its time is up, not closed yet
        await store.bid(tid, "a1", 1)
    await store.reap()
    before = await board(store, tid)
    with pytest.raises(Conflict, match="has closed"):
        await store.bid(tid, "a1", 1)
    assert await board(store, tid) == before


async def test_a_window_waits_for_the_dependencies(store: Store) -> None:
    await store.register("a1")
    dep = await store.add("first")
    tid = await store.add("then", after=[dep], bid_window_s=0.2)
    t = await store.get(tid)
    assert t.state is State.BLOCKED and t.bid_close_ms == 0
    with pytest.raises(Conflict, match="not open yet"):
        await store.bid(tid, "a1", 1)
    c = await store.claim("a1")
    assert c is not None and c.task.id == dep
    assert await store.complete(dep, c.token) == []  # not unblocked: its window opens instead
    t = await store.get(tid)
    assert t.state is State.BLOCKED and t.bid_close_ms > 0
    [opened] = await events_of(store, "auction-opened", tid)
    assert opened.data == {"close_ms": t.bid_close_ms, "after": dep}
    await store.bid(tid, "a1", 1)
    await close(store, tid)
    assert (await store.get(tid)).agent == "a1"


async def test_windows_close_by_the_reaper_alone(store: Store) -> None:
    await store.register("a1", [], 10)
    ids = await store.add_many([TaskSpec(title=f"t{i}", bid_window_s=0.5) for i in range(30)])
    for tid in ids[:15]:
        await store.bid(tid, "a1", 1)
    last = max([(await store.get(t)).bid_close_ms for t in ids])
    await clock_past(store, last)
    closed: list[str] = []
    while len(closed) < 30:  # batches of auction_batch per pass
        report = await store.reap()
        assert report.auctions_closed
        closed += report.auctions_closed
    assert sorted(closed) == sorted(ids)
    states = [(await store.get(t)).state for t in ids]
    # a1 had room for 10: passed over after that; the windows without bids went to the queue.
    assert states[:15].count(State.CLAIMED) == 10 and states[:15].count(State.QUEUED) == 5
    assert states[15:] == [State.QUEUED] * 15


@pytest.mark.parametrize("how", ["capacity", "breaker", "removed"])
async def test_an_agent_leaving_mid_auction_is_passed_over(store: Store, how: str) -> None:
    await store.register("second", [], 1)
    if how == "removed":
        await store.claim("cheap")  # registered by its first claim (auto): retention removes it
    else:
        await store.register("cheap", [], 1)
    tid = await store.add("x", bid_window_s=1.0)
    await store.bid(tid, "cheap", 1)
    await store.bid(tid, "second", 2)
    if how == "capacity":
        await store.add("other")
        assert await store.claim("cheap") is not None
    elif how == "breaker":
        await store.register("cheap", [], 10)
        for _ in range(5):
            await store.add("fails")
            c = await store.claim("cheap")
            assert c is not None
            await store.fail(c.task.id, c.token, "boom", fatal=True)
    else:
        await store.set_retention(agents_s=0.05)
        await clock_past(store, await store.now_ms() + 60)
        await store.reap()
        assert "cheap" not in [a.name for a in await store.agents()]
    await close(store, tid)
    t = await store.get(tid)
    assert t.agent == "second"
    [closed] = await events_of(store, "auction-closed", tid)
    reason = {"capacity": "at capacity", "breaker": "breaker open", "removed": "not registered"}[how]
    assert closed.data["passed"] == [{"agent": "cheap", "reason": reason}]


async def test_two_agents_bidding_at_the_close_never_get_two_claims(store: Store) -> None:
    """Trials on concurrent tasks: two agents bid until the window refuses them, right
    through its close, while another process's claims close windows: each window ends with
    one claim at most, the lowest accepted bid's, and a bid is either counted or refused."""
    await store.register("low", [], 1000)
    await store.register("high", [], 1000)
    accepted: dict[str, dict[str, float]] = {}

    async def bidder(tid: str, agent: str, cost: float) -> None:
        while True:
            try:
                await store.bid(tid, agent, cost)
            except Conflict:
                return
            accepted[tid][agent] = cost

    async def trials(n: int) -> None:
        for _ in range(n):
            tid = await store.add("race", bid_window_s=0.03)
            accepted[tid] = {}
            await asyncio.gather(bidder(tid, "high", 2), bidder(tid, "low", 1))

    async def claimer(stop: asyncio.Event) -> None:
        while not stop.is_set():  # its claims close the windows whose time is up
            assert await store.claim("bystander", queues=["elsewhere"]) is None

    stop = asyncio.Event()
    claiming = asyncio.create_task(claimer(stop))
    await asyncio.gather(*(trials(10) for _ in range(4)))
    stop.set()
    await claiming
    while (await store.reap()).auctions_closed:
        pass
    for tid, bids in accepted.items():
        t = await store.get(tid)
        claimed = await events_of(store, "claimed", tid)
        [closed] = await events_of(store, "auction-closed", tid)
        assert closed.data["bids"] == len(bids)
        if bids:
            assert t.state is State.CLAIMED and t.agent == min(bids, key=lambda a: bids[a])
            assert len(claimed) == 1
        else:
            assert t.state is State.QUEUED and not claimed
    held = {a: {t.id for t in await store.held(a)} for a in ("low", "high")}
    assert not held["low"] & held["high"]
    assert any(len(b) == 2 for b in accepted.values())  # the race was run: both got bids in


async def test_bid_wait_returns_the_outcome(store: Store) -> None:
    for a in ("a1", "a2"):
        await store.register(a)
    tid = await store.add("x", bid_window_s=0.3)
    await store.bid(tid, "a1", 1)
    await store.bid(tid, "a2", 2)
    # No reaper runs: the waiter closes the window itself once its time is up.
    won, lost = await asyncio.gather(
        store.wait_bid(tid, "a1", wait_s=10), store.wait_bid(tid, "a2", wait_s=10)
    )
    assert won.status == "won" and won.claim is not None and won.claim.task.id == tid
    assert lost.status == "lost" and lost.winner == "a1" and lost.claim is None
    assert await store.claim("a1") is None  # handed over by the wait already
    await store.complete(tid, won.claim.token)


async def test_bad_windows_are_refused(store: Store) -> None:
    for bad in (-1, float("nan"), 10**9, "x"):
        with pytest.raises(BadInput, match="bid window"):
            await store.add("x", bid_window_s=bad)
    assert await store.tasks() == []


# --- the CLI, as an agent runs it ------------------------------------------------------


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLAIMROOM, *args], env=env, capture_output=True, text=True, timeout=60)


async def test_cli_bid_wait_prints_the_won_claim_and_the_loser_its_winner(
    cli_env: dict[str, str], redis_store: Store
) -> None:
    for a in ("a1", "a2"):
        assert cli(cli_env, "register", a, "--can", "py").returncode == 0
    added = cli(cli_env, "add", "auctioned", "--requires", "py", "--bid-window", "3", "--json")
    tid = json.loads(added.stdout)["id"]
    assert json.loads(added.stdout)["state"] == "blocked"

    def waiter(agent: str, cost: str) -> subprocess.Popen[str]:
        args = ["bid", tid, "--agent", agent, "--cost", cost, "--ttl", "40", "--wait", "--json"]
        return subprocess.Popen(
            [CLAIMROOM, *args], env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    waiters = [waiter("a1", "7"), waiter("a2", "2.5")]
    (_, err1), (out2, _) = [w.communicate(timeout=60) for w in waiters]
    assert waiters[0].returncode == 3 and "a2 won" in err1
    won = json.loads(out2)
    assert waiters[1].returncode == 0 and won["task"]["id"] == tid and won["task"]["agent"] == "a2"
    t = await redis_store.get(tid)
    assert t.state is State.CLAIMED and t.token == won["token"]
    shown_ = json.loads(cli(cli_env, "show", tid, "--json").stdout)
    assert shown_["bid_winner"] == "a2" and shown_["bids"] == []
    assert cli(cli_env, "complete", tid, "--token", str(won["token"])).returncode == 0


async def test_cli_refusals_and_bad_input(cli_env: dict[str, str], redis_store: Store) -> None:
    assert cli(cli_env, "register", "a1").returncode == 0
    plain = json.loads(cli(cli_env, "add", "plain", "--json").stdout)["id"]
    tid = json.loads(cli(cli_env, "add", "x", "--bid-window", "60", "--json").stdout)["id"]
    assert cli(cli_env, "bid", tid, "--agent", "a1", "--cost", "4").returncode == 0
    shown_ = json.loads(cli(cli_env, "show", tid, "--json").stdout)
    assert [(b["agent"], b["cost"]) for b in shown_["bids"]] == [("a1", 4.0)]
    before = len(await redis_store.events())
    for args, code, text in [
        (("bid", plain, "--agent", "a1", "--cost", "1"), 6, "opens no bidding window"),
        (("bid", tid, "--agent", "ghost", "--cost", "1"), 6, "not registered"),
        (("bid", tid, "--agent", "a1", "--cost", "-3"), 2, "cost must be 0 or more"),
        (("bid", tid, "--agent", "a1", "--cost", "cheap"), 2, "--cost must be a number"),
        (("bid", tid, "--agent", "a1", "--cost", "nan"), 2, "cost must be 0 or more"),
        (("add", "y", "--bid-window", "-1"), 2, "bid window must be more than 0"),
        (("add", "y", "--bid-window", "1e9"), 2, "bid window must be at most"),
    ]:
        p = cli(cli_env, *args)
        assert p.returncode == code and text in p.stderr, (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1
    assert len(await redis_store.events()) == before


# --- MCP: a real client over HTTP, as the bearer token's agent ---------------------------


async def test_mcp_bid_tool_bids_as_the_caller_and_waits_for_the_claim(store: Store, tmp_path: Path) -> None:
    pat = await create_token(store, "pat", "planner")
    ada = await create_token(store, "ada", "worker")
    bob = await create_token(store, "bob", "worker")
    async with (
        serving(store, root=tmp_path) as served,
        mcp_client(served.url, pat) as planner,
        mcp_client(served.url, ada) as a,
        mcp_client(served.url, bob) as b,
    ):
        ok(await a.call_tool("register", {"capabilities": ["py"]}))
        ok(await b.call_tool("register", {"capabilities": ["py"]}))
        added = ok(await planner.call_tool("add", {"title": "bid me", "requires": ["py"], "bid_window_s": 2}))
        tid = added["id"]
        assert added["state"] == "blocked"
        placed = ok(await a.call_tool("bid", {"task": tid, "cost": 3}))
        assert placed["status"] == "placed" and placed["agent"] == "ada"
        before = await board_state(store)
        assert "cost" in refused(await b.call_tool("bid", {"task": tid, "cost": -1}))
        assert "no such task" in refused(await b.call_tool("bid", {"task": "t999", "cost": 1}))
        assert await board_state(store) == before
        won, lost = await asyncio.gather(
            b.call_tool("bid", {"task": tid, "cost": 1, "ttl_s": 30, "wait_s": 10}),
            a.call_tool("bid", {"task": tid, "cost": 2, "wait_s": 10}),
        )
        w, lo = ok(won), ok(lost)
        assert w["status"] == "won" and w["agent"] == "bob" and w["claimed"]["id"] == tid
        assert lo["status"] == "lost" and lo["winner"] == "bob" and lo["claimed"] is None
        t = await store.get(tid)
        assert (t.state, t.agent, t.token) == (State.CLAIMED, "bob", w["token"])
        done = ok(await b.call_tool("complete", {"task": tid, "token": w["token"]}))
        assert done["state"] == "done"


# --- the control room: open auctions under the claims, live; keyboard only --------------


def auctions_text(app: ControlRoom) -> str:
    box = app.query_one(AuctionsBox)
    return "\n".join(screen_lines(app)) if box.display else ""


async def test_control_room_shows_open_auctions_with_bids_and_time_left(store: Store, store_url: str) -> None:
    for a in ("ada", "bob"):
        await store.register(a)
    tid = await store.add("pick the parser", bid_window_s=3.0)
    await store.bid(tid, "bob", 4)
    app = ControlRoom(Store.from_url(store_url, store.namespace), operator="lead")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")  # the claims pane
        await until(pilot, lambda: "1 open auction" in auctions_text(app))
        assert "bob 4" in auctions_text(app)
        await store.bid(tid, "ada", 2)  # live: the new best bid comes first
        await until(pilot, lambda: "ada 2, bob 4" in auctions_text(app))
        await clock_past(store, (await store.get(tid)).bid_close_ms)
        await store.reap()
        # Closed: the box goes, the won claim is in the claims table.
        await until(pilot, lambda: not app.query_one(AuctionsBox).display)
        await until(pilot, lambda: any(tid in line and "ada" in line for line in screen_lines(app)))


@pytest.fixture(scope="module")
def auction_board(redis_server: LocalRedis) -> tuple[str, float]:
    """A board of two open auctions (an hour long, so they stay open through the test), and
    the app clock to show it at: half an hour before the first closes."""

    async def seed() -> float:
        async with Store.from_url(redis_server.url, "auctionsnap") as s:
            for a, caps in (("ada", ["db"]), ("bob", ["db"]), ("cy", [])):
                await s.register(a, caps)
            first = await s.add("migrate the schema", requires=["db"], bid_window_s=3600)
            second = await s.add("tidy the docs", bid_window_s=3600)
            for tid, agent, cost in ((first, "bob", 12), (first, "ada", 7.5), (second, "cy", 3)):
                await s.bid(tid, agent, cost)
            return (await s.get(first)).bid_close_ms / 1000 - 1800

    return redis_server.url, asyncio.run(seed())


@pytest.mark.parametrize("theme", ["dark", "16"])
def test_snapshot_claims_pane_with_auctions(
    snap_compare: Callable[..., bool], auction_board: tuple[str, float], theme: str
) -> None:
    url, at = auction_board
    app = pin_app(
        ControlRoom(Store.from_url(url, "auctionsnap"), theme=theme, operator="snap", clock=lambda: at)
    )

    async def before(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: app.snapshot is not None and app.link.status.live)
        await pilot.press("3")
        await until(pilot, lambda: "2 open auctions" in auctions_text(app))
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(80, 24), run_before=before)


async def test_open_auctions_round_trip_through_export_and_import(
    store: Store, redis_url: str, tmp_path: Path
) -> None:
    """An open window and its bids travel with the board (migrate), to either backend."""
    await store.register("a1")
    await store.register("a2")
    tid = await store.add("x", bid_window_s=60)
    await store.bid(tid, "a1", 5)
    await store.bid(tid, "a2", 2.5, ttl_s=30)
    board = await store.export_board()
    assert sorted((b["agent"], float(b["cost"])) for b in board.get("bids", [])) == [("a1", 5.0), ("a2", 2.5)]
    for url in (redis_url, f"file://{tmp_path}"):
        async with Store.from_url(url, store.namespace + "copy") as copy:
            await copy.import_board(board)
            assert await copy.auctions() == await store.auctions()
            assert await copy.get(tid) == await store.get(tid)
            again = await copy.export_board()
            assert again.get("bids") == board.get("bids")
