"""The control room driven through Textual's Pilot against a real redis-server.

Each test gives the app its own Store (its own connections) and plays the agents through
the ``store`` fixture, so what the app shows arrived through Redis, as it would in use.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pilot_wait import dialog_open, focused_id, until
from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot
from textual.widgets import OptionList
from waiting import clock_past

from claimroom import themes
from claimroom.core.errors import LeaseLost
from claimroom.core.local_redis import LocalRedis, free_port
from claimroom.core.models import State
from claimroom.core.store import Store
from claimroom.tui.app import ControlRoom, run
from claimroom.tui.dialogs import AgentPicker, ChoiceDialog, HelpScreen
from claimroom.tui.panes import PAGE_ROWS
from claimroom.tui.tables import cursor_key

SIZE = (120, 40)


@pytest.fixture
async def app_store(store_url: str, namespace: str) -> AsyncIterator[Store]:
    """The app's own connection to the test's board, on each backend (the app closes it on exit)."""
    s = Store.from_url(store_url, namespace)
    yield s
    await s.close()


# Flows whose backend does not matter to the control room run once, on Redis.
redis_only = pytest.mark.parametrize("backend", ["redis"], indirect=True)


def rows(app: ControlRoom, pane: str) -> list[str]:
    tp = app.table_pane(pane)
    assert tp is not None
    return [r.key.value or "" for r in tp.table.ordered_rows]


async def ready(pilot: Pilot[int], app: ControlRoom, pane: str, key: str) -> None:
    """Show ``pane`` and wait until row ``key`` is on it, with the cursor on that row."""
    await pilot.press(str(["overview", "queues", "claims", "agents", "orphans"].index(pane) + 1))
    await until(pilot, lambda: key in rows(app, pane))
    tp = app.table_pane(pane)
    assert tp is not None
    tp.table.move_cursor(row=tp.table.get_row_index(key))


async def test_kill_live_claim_then_heartbeat_is_lease_lost(store: Store, app_store: Store) -> None:
    tid = await store.add("refactor the parser")
    claim = await store.claim("ada")
    assert claim is not None
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app, "claims", tid)
        await pilot.press("x")
        await until(pilot, lambda: dialog_open(app))
        assert focused_id(app) == "cancel"  # Cancel first and focused
        assert tid in str(app.screen.query_one("#dialog-targets").render())
        await pilot.press("tab")
        assert focused_id(app) == "choice-kill"
        await pilot.press("enter")
        await until(pilot, lambda: app.last_outcome is not None)
    assert (await store.get(tid)).state is State.QUEUED
    with pytest.raises(LeaseLost):
        await store.heartbeat(tid, claim.token)
    killed = [e for e in await store.events(task=tid) if e.type == "killed"]
    assert killed and killed[0].operator == "lead"


async def test_reassign_orphan_goes_to_the_chosen_agent(store: Store, app_store: Store) -> None:
    await store.register("grace", ["python"])
    await store.register("ada", ["python"])
    tid = await store.add("migrate the users table")
    claim = await store.claim("linus")
    assert claim is not None
    silent = await store.heartbeat(tid, claim.token, progress=0.8, ttl_s=0.001)  # late-stage work ...
    await clock_past(store, silent)  # ... then silence past its deadline
    await store.reap()
    assert (await store.get(tid)).state is State.ORPHANED
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app, "orphans", tid)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AgentPicker) and app.focused is not None)
        picker = app.screen.query_one(OptionList)
        assert app.focused is picker  # the list has the keys: arrows move in it, enter picks
        names = [picker.get_option_at_index(i).id for i in range(picker.option_count)]
        assert picker.highlighted == 0
        await pilot.press(*["down"] * names.index("grace"), "enter")
        await until(pilot, lambda: dialog_open(app))
        assert "grace" in app.screen.title_text  # type: ignore[attr-defined]
        assert focused_id(app) == "cancel"
        await pilot.press("r")  # the letter on "[r] Reassign"
        await until(pilot, lambda: app.last_outcome is not None)
        assert app.last_outcome is not None and app.last_outcome.done
    assert await store.claim("ada") is None  # reserved for grace: nobody else takes it
    got = await store.claim("grace")
    assert got is not None and got.task.id == tid


async def test_dialog_refuses_when_the_claim_changed_meanwhile(store: Store, app_store: Store) -> None:
    tid = await store.add("write the docs")
    claim = await store.claim("ada")
    assert claim is not None
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app, "claims", tid)
        await pilot.press("x")
        await until(pilot, lambda: dialog_open(app))
        await store.complete(tid, claim.token)  # the agent finishes while the operator hesitates
        await pilot.press("right", "right")
        assert focused_id(app) == "choice-kill-dead"
        await pilot.press("enter")
        await until(pilot, lambda: app.last_outcome is not None)
        assert app.last_outcome is not None and app.last_outcome.changed == [tid]
        assert any("changed since you selected it" in n for n in app.notices)
    assert (await store.get(tid)).state is State.DONE


async def test_readonly_refuses_actions(store: Store, app_store: Store) -> None:
    tid = await store.add("tune the cache")
    assert await store.claim("ada") is not None
    app = ControlRoom(app_store, readonly=True, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app, "claims", tid)
        for key in ("x", "a", "r", "c", "e"):
            await pilot.press(key)
        await pilot.pause()
        assert not isinstance(app.screen, ChoiceDialog | AgentPicker)
        assert sum("read-only" in n for n in app.notices) == 5
        app.action_act("kill")  # the palette path refuses too
        assert "read-only" in app.notices[-1]
        assert not app.board.switch_key_events  # nor does it change the server's settings
    assert (await store.get(tid)).state is State.CLAIMED


async def test_claim_by_another_connection_appears_within_a_second(store: Store, app_store: Store) -> None:
    tid = await store.add("speed up the tests")
    app = ControlRoom(app_store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: app.snapshot is not None and app.link.status.live)
        assert tid not in rows(app, "claims")
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await store.claim("ada") is not None
        await until(pilot, lambda: tid in rows(app, "claims"), timeout_s=1.0)
        assert loop.time() - start < 1.0


@redis_only
async def test_cursor_stays_on_its_row_when_rows_arrive_above(store: Store, app_store: Store) -> None:
    await store.register("ada", max_claims=10)
    ids = [await store.add(f"task {i}") for i in range(3)]
    for _ in ids:
        assert await store.claim("ada", ttl_s=600) is not None
    app = ControlRoom(app_store)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app, "claims", ids[1])
        new = await store.add("urgent")
        assert await store.claim("ada", ttl_s=30) is not None  # shortest lease: sorts first
        await until(pilot, lambda: rows(app, "claims")[:1] == [new])
        pane = app.table_pane("claims")
        assert pane is not None and cursor_key(pane.table) == ids[1]


@redis_only
async def test_marks_filter_and_bulk_kill(store: Store, app_store: Store) -> None:
    await store.register("ada", max_claims=10)
    ids = [await store.add(f"job {n}") for n in ("alpha", "beta", "gamma")]
    for _ in ids:
        assert await store.claim("ada") is not None
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app, "claims", ids[0])
        pane = app.table_pane("claims")
        assert pane is not None
        await pilot.press("space", "j", "space")  # marks the first, skips the second, marks the third
        assert pane.marks == {ids[0], ids[2]}
        await pilot.press("slash", *"gamma")
        await until(pilot, lambda: rows(app, "claims") == [ids[2]])
        await pilot.press("escape")  # clears the filter
        await until(pilot, lambda: len(rows(app, "claims")) == 3)
        await pilot.press("x")
        await until(pilot, lambda: dialog_open(app))
        assert app.screen.targets[0].startswith(ids[0]) and len(app.screen.targets) == 2  # type: ignore[attr-defined]
        await pilot.press("down", "enter")  # down moves like tab: Cancel -> "Kill → requeue"
        await until(pilot, lambda: app.last_outcome is not None)
    states = [(await store.get(t)).state for t in ids]
    assert states == [State.QUEUED, State.CLAIMED, State.QUEUED]


@redis_only
async def test_cancel_is_the_default_and_changes_nothing(store: Store, app_store: Store) -> None:
    tid = await store.add("keep me")
    assert await store.claim("ada") is not None
    app = ControlRoom(app_store)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app, "claims", tid)
        await pilot.press("c")
        await until(pilot, lambda: dialog_open(app))
        await pilot.press("enter")  # a stray enter hits Cancel
        await until(pilot, lambda: not isinstance(app.screen, ChoiceDialog))
        assert app.last_outcome is None
    assert (await store.get(tid)).state is State.CLAIMED


@redis_only
async def test_queue_pause_and_breaker_reset(store: Store, app_store: Store) -> None:
    await store.add("a docs task", queue="docs")
    await store.register("hopper")
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app, "queues", "docs")
        await pilot.press("P")
        await until(pilot, lambda: dialog_open(app))
        await pilot.press("p")  # "[p] Pause"
        await until(pilot, lambda: app.last_outcome is not None)
        assert await store.paused() == {"docs"}
        app.last_outcome = None
        await until(pilot, lambda: app.snapshot is not None and any(q.paused for q in app.snapshot.queues))
        await pilot.press("P")  # all the selected queues are paused: the dialog offers Resume
        await until(pilot, lambda: dialog_open(app))
        assert "Resume" in app.screen.title_text  # type: ignore[attr-defined]
        await pilot.press("shift+tab", "enter")  # shift+tab from Cancel wraps round to the last choice
        await until(pilot, lambda: app.last_outcome is not None)
        assert await store.paused() == set()
        app.last_outcome = None
        await ready(pilot, app, "agents", "hopper")
        await pilot.press("b")
        await until(pilot, lambda: dialog_open(app))
        await pilot.press("r")  # "[r] Reset"
        await until(pilot, lambda: app.last_outcome is not None)
        assert app.last_outcome is not None and app.last_outcome.done == ["agent hopper: breaker reset"]
    assert [e.type for e in await store.events()][-3:] == ["paused", "resumed", "breaker-reset"]


def palette_found(app: ControlRoom, wanted: str) -> bool:
    """The command palette has searched all that was typed and lists ``wanted`` first."""
    if any(w.group == CommandPalette._GATHER_COMMANDS_GROUP and not w.is_finished for w in app.workers):
        return False
    found = app.screen.query(CommandList)
    return (
        bool(found)
        and found.first().option_count > 0
        and wanted in str(found.first().get_option_at_index(0).prompt)
    )


@redis_only
async def test_keys_help_palette_pause_and_theme(store: Store, app_store: Store) -> None:
    app = ControlRoom(app_store, theme="light")
    assert app.theme == "claimroom-light"
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape")
        await pilot.press("colon")
        await until(pilot, lambda: type(app.screen).__name__ == "CommandPalette")
        await pilot.press(*"theme: ansi")
        await until(pilot, lambda: palette_found(app, "Theme: ansi"))
        await pilot.press("down", "enter")
        await until(pilot, lambda: app.theme == "claimroom-ansi")
        await pilot.press("p")
        assert app.link.status.paused
        await pilot.press("p")
        assert not app.link.status.paused
        app.update_keymap({"action.kill": "K"})  # binding ids make keys remappable
        await pilot.press("3", "K")
        assert any("nothing selected" in n for n in app.notices)


async def test_store_outage_is_shown_and_recovers(namespace: str) -> None:
    server = LocalRedis.start()
    try:
        store = Store.from_url(server.url, namespace)
        app = ControlRoom(store)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None and app.link.status.live)
            server.stop()
            await until(pilot, lambda: app.query_one("#outage").has_class("-down"), timeout_s=5)
            assert "unavailable" in app.link.status.outage
            server = LocalRedis.start(port=server.port)
            await until(pilot, lambda: not app.query_one("#outage").has_class("-down"), timeout_s=8)
            await until(pilot, lambda: app.link.status.live, timeout_s=8)
    finally:
        server.stop()


async def test_starting_with_the_store_down_shows_it(namespace: str) -> None:
    app = ControlRoom(Store.from_url(f"redis://127.0.0.1:{free_port()}/0", namespace))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.link.status.attempts >= 2)
        assert app.query_one("#outage").has_class("-down")
        assert app.snapshot is None and "unavailable" in app.link.status.outage
        await pilot.press("3", "x", "7", "8")  # still usable: panes switch, actions explain
    assert app.return_code in (0, None)


@redis_only
async def test_countdowns_tick_with_the_injected_clock(store: Store, app_store: Store) -> None:
    tid = await store.add("slow work")
    claim = await store.claim("ada", ttl_s=60)
    assert claim is not None
    now = [claim.deadline_ms / 1000 - 60]  # frozen at the moment of the claim

    app = ControlRoom(app_store, clock=lambda: now[0])
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app, "claims", tid)
        pane = app.table_pane("claims")
        assert pane is not None
        assert pane.table.get_cell(tid, "lease").plain == "1m00s"
        now[0] += 55  # no store read needed: the next tick re-renders from the model
        await until(pilot, lambda: pane.table.get_cell(tid, "lease").plain == "5s")
        assert pane.table.get_cell(tid, "hb").plain == "55s"


@pytest.mark.parametrize("theme", sorted(themes.ALIASES))
def test_every_theme_resolves(theme: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert themes.resolve(theme) in themes.THEMES
    monkeypatch.setenv(themes.ENV_VAR, theme)
    assert themes.resolve(None) == themes.resolve(theme)
    with pytest.raises(themes.UnknownTheme):
        themes.resolve("solarized")


@redis_only
async def test_every_theme_renders(store: Store, app_store: Store) -> None:
    app = ControlRoom(app_store)
    async with app.run_test(size=(80, 24)) as pilot:
        for name in themes.THEMES:
            app.set_theme(name)
            await pilot.press("3")
            await pilot.pause()
            assert app.theme == name and app.palette_styles.error.color is not None


def test_run_refuses_bad_input_with_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("redis://127.0.0.1:1/0", "ns", theme="solarized") == 2
    assert run("ftp://example.com", "ns") == 2
    assert run("redis://127.0.0.1:1/0", "bad namespace!") == 2
    assert run("redis://127.0.0.1:1/0", "ns", operator="   ") == 2
    err = capsys.readouterr().err
    assert "unknown theme" in err and "unsupported store URL" in err and err.count("claimroom:") == 4


@redis_only
async def test_a_board_larger_than_a_page_is_paged(store: Store, app_store: Store) -> None:
    n = PAGE_ROWS * 2 + 10
    for i in range(n):
        await store.add(f"job {i}")
        assert await store.claim(f"agent{i:03d}", ttl_s=600 + i) is not None  # t1 expires soonest
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: len(rows(app, "claims")) == PAGE_ROWS, 10)
        pane = app.table_pane("claims")
        assert pane is not None and pane.pages == 3
        first = rows(app, "claims")
        assert first[0] == "t1" and len(pane.shown) == n  # the table holds a page; the filter sees all
        assert "page 1/3" in str(pane.query_one(".pane-status").render())
        await pilot.press("space")  # mark t1 on page 1
        await pilot.press("right_square_bracket")
        second = rows(app, "claims")
        assert len(second) == PAGE_ROWS and not set(first) & set(second)
        await pilot.press("space")  # and the first row of page 2
        assert app._selected(pane) == ["t1", second[0]]  # marks hold across pages, in board order
        await pilot.press("right_square_bracket")
        assert len(rows(app, "claims")) == 10 and "page 3/3" in str(pane.query_one(".pane-status").render())
        await pilot.press("right_square_bracket")
        assert any("no more pages" in n for n in app.notices)
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert rows(app, "claims") == first
        # The cursor running off the end of a page turns it, and back.
        pane.table.move_cursor(row=PAGE_ROWS - 1)
        await pilot.press("j")
        assert pane.page == 1 and cursor_key(pane.table) == second[0]
        await pilot.press("k")
        assert pane.page == 0 and cursor_key(pane.table) == first[-1]


@redis_only
async def test_a_changed_cell_is_drawn_anew(store: Store, app_store: Store) -> None:
    # The claims table memoises cell renders by content: a new stage must reach the screen.
    tid = await store.add("refactor the parser")
    claim = await store.claim("ada")
    assert claim is not None
    await store.heartbeat(tid, claim.token, stage="planning")
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: "planning" in app.export_screenshot())
        await store.heartbeat(tid, claim.token, stage="reviewing", progress=0.5)
        await until(pilot, lambda: "reviewing" in app.export_screenshot())
        shot = app.export_screenshot()
        assert "planning" not in shot and "50%" in shot


@redis_only
async def test_app_owning_its_process_runs_the_collector_on_its_own_timer(app_store: Store) -> None:
    """freeze_gc (as `claimroom tui` runs): after the first snapshot the startup objects are
    frozen and automatic collection is off, the app's timer collects instead; on exit the
    collector is back on."""
    import gc

    app = ControlRoom(app_store, operator="lead", freeze_gc=True)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None)
            assert not gc.isenabled() and gc.get_freeze_count() > 0
            await until(pilot, lambda: app._gc_passes >= 1)
        assert gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()  # this process is a test run: let earlier garbage be collected again
