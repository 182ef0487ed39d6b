"""The control room's review pane driven by keys through Pilot, on both backends: tasks in
review with their reference, deliverer and time in review; accept and return through
dialogs whose default is Cancel; a compare-and-set on the delivery seen; read-only mode."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pilot_wait import dialog_open, focused_id, screen_lines, until
from textual.pilot import Pilot
from textual.widgets import Input, Tab, TabbedContent

from claimroom.core import constants
from claimroom.core.models import State
from claimroom.core.store import Store
from claimroom.tui.app import ControlRoom
from claimroom.tui.keys import PANES
from claimroom.tui.review import NoteDialog
from claimroom.tui.tables import cursor_key

SIZE = (120, 40)


@pytest.fixture
async def app_store(store_url: str, namespace: str) -> AsyncIterator[Store]:
    s = Store.from_url(store_url, namespace)
    yield s
    await s.close()


def pane_key(name: str) -> str:
    """The digit that shows a pane (1-9, then 0 for the tenth)."""
    return str((PANES.index(name) + 1) % 10)


def rows(app: ControlRoom) -> list[str]:
    tp = app.table_pane("review")
    assert tp is not None
    return [r.key.value or "" for r in tp.table.ordered_rows]


async def deliver(store: Store, title: str, ref: str, agent: str = "w") -> tuple[str, int]:
    tid = await store.add(title, queue="web")
    c = await store.claim(agent, queues=["web"])
    assert c is not None and c.task.id == tid
    await store.complete(tid, c.token, review=ref)
    return tid, c.token


async def on_review(pilot: Pilot[int], app: ControlRoom, tid: str) -> None:
    app.action_pane("review")
    await until(pilot, lambda: tid in rows(app))
    tp = app.table_pane("review")
    assert tp is not None
    tp.table.move_cursor(row=tp.table.get_row_index(tid))


async def test_the_pane_lists_tasks_in_review_by_its_digit(store: Store, app_store: Store) -> None:
    first, _ = await deliver(store, "login page", "feature/login")
    second, _ = await deliver(store, "signup page", "pr/12", agent="bob")
    await store.add("not delivered")
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(pane_key("review"))  # the one test by digit
        assert app.query_one(TabbedContent).active == "review"
        await until(pilot, lambda: rows(app) == [first, second])  # longest waiting first
        text = "\n".join(screen_lines(app))
        assert "feature/login" in text and "pr/12" in text and "bob" in text
        assert "2 in review" in text


async def test_accept_by_keys_unblocks_dependents(store: Store, app_store: Store) -> None:
    tid, token = await deliver(store, "login page", "feature/login")
    dep = await store.add("ship", after=[tid])
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await on_review(pilot, app, tid)
        await pilot.press("y")
        await until(pilot, lambda: dialog_open(app))
        assert focused_id(app) == "cancel"
        assert "feature/login" in str(app.screen.query_one("#dialog-targets").render())
        await pilot.press("enter")  # a stray enter: Cancel
        await until(pilot, lambda: not dialog_open(app))
        assert (await store.get(tid)).state is State.REVIEW
        await pilot.press("y")
        await until(pilot, lambda: dialog_open(app))
        await pilot.press("a")
        await until(pilot, lambda: app.last_outcome is not None)
        await until(pilot, lambda: tid not in rows(app))
    assert (await store.get(tid)).state is State.DONE
    assert (await store.get(dep)).state is State.QUEUED
    accepted = [e for e in await store.events(task=tid) if e.type == "accepted"]
    assert [(e.operator, e.token) for e in accepted] == [("lead", token)]


async def test_return_asks_for_a_note_then_confirms(store: Store, app_store: Store) -> None:
    tid, _ = await deliver(store, "login page", "feature/login")
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await on_review(pilot, app, tid)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NoteDialog))
        assert isinstance(app.focused, Input)
        await pilot.press("enter")  # no note yet: it stays
        assert isinstance(app.screen, NoteDialog)
        await pilot.press(*"add a test", "enter")  # letters typed are the note, never a choice
        await until(pilot, lambda: dialog_open(app))
        assert focused_id(app) == "cancel"
        assert "add a test" in str(app.screen.query_one("#dialog-targets").render())
        await pilot.press("r")
        await until(pilot, lambda: app.last_outcome is not None)
    t = await store.get(tid)
    assert (t.state, t.checkpoint) == (State.QUEUED, constants.review_note_prefix + "add a test")
    again = await store.claim("w2", queues=["web"])
    assert again is not None and again.task.id == tid


async def test_escape_on_the_note_changes_nothing(store: Store, app_store: Store) -> None:
    tid, _ = await deliver(store, "login page", "feature/login")
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await on_review(pilot, app, tid)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NoteDialog))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, NoteDialog))
    assert (await store.get(tid)).state is State.REVIEW
    assert not [e for e in await store.events(task=tid) if e.type in ("accepted", "returned")]


async def test_a_verdict_on_a_task_decided_meanwhile_is_refused(store: Store, app_store: Store) -> None:
    tid, _ = await deliver(store, "login page", "feature/login")
    await store.register("rev", [constants.review_capability])
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await on_review(pilot, app, tid)
        app.link.set_paused(True)  # the operator's screen keeps what it showed
        await pilot.press("y")
        await until(pilot, lambda: dialog_open(app))
        await store.review(tid, "return", "not yet", agent="rev")  # decided while the dialog is open
        c = await store.claim("w", queues=["web"])
        assert c is not None
        await store.complete(tid, c.token, review="feature/login-2")  # and delivered again
        await pilot.press("a")
        await until(pilot, lambda: app.last_outcome is not None)
        assert app.last_outcome is not None and app.last_outcome.changed == [tid]
    assert (await store.get(tid)).state is State.REVIEW  # the new delivery waits for its own look


async def test_read_only_mode_disables_verdicts(store: Store, app_store: Store) -> None:
    tid, _ = await deliver(store, "login page", "feature/login")
    app = ControlRoom(app_store, operator="lead", readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await on_review(pilot, app, tid)
        for key in ("y", "n"):
            await pilot.press(key)
            await pilot.pause()
            assert not dialog_open(app) and not isinstance(app.screen, NoteDialog)
        assert any("read-only" in n for n in app.notices)
    assert (await store.get(tid)).state is State.REVIEW


async def test_a_verdict_key_elsewhere_says_where(store: Store, app_store: Store) -> None:
    tid, _ = await deliver(store, "login page", "feature/login")
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(pane_key("claims"))
        await pilot.press("y")
        await pilot.pause()
        assert not dialog_open(app)
        assert any("review pane" in n for n in app.notices)
        tp = app.table_pane("review")
        assert tp is not None and cursor_key(tp.table) is None
    assert (await store.get(tid)).state is State.REVIEW


async def test_the_tab_bar_fits_80_columns(store: Store, app_store: Store) -> None:
    """Every pane's tab, plans and review the last two, on one line within 80 columns."""
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        tabs = list(app.query(Tab))
        assert [t.id for t in tabs][-2:] == [f"--content-tab-{p}" for p in ("plans", "review")]
        right = max(t.region.right for t in tabs)
        assert len({t.region.y for t in tabs}) == 1 and right <= 80, f"the tabs end at column {right}"
