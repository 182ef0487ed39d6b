"""Every operator action and every dialog of the control room, worked by keys alone.

An operator over SSH has no mouse: each dialog must move by Tab / shift+Tab and the arrows,
act on Enter, cancel on Escape, and press a button by the letter shown on it. Each test
presses keys only and checks the store changed (or, for Cancel and Escape, did not).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pilot_wait import dialog_open, focused_id, screen_lines, until
from textual.pilot import Pilot
from textual.widgets import OptionList

from claimroom.core.models import State
from claimroom.core.store import Store
from claimroom.tui.actions import ACTIONS
from claimroom.tui.app import PANES, ControlRoom
from claimroom.tui.dialogs import CANCEL_KEY, AgentPicker, Choice, ChoiceDialog, HelpScreen
from claimroom.tui.operate import PAUSE, RESET, RESUME, TASK_CHOICES
from claimroom.tui.storepane import KEYS, OPS

# The size an operator's SSH pane often has; every dialog must work there.
SIZE = (80, 24)
redis_only = pytest.mark.parametrize("backend", ["redis"], indirect=True)


@pytest.fixture
async def app_store(store_url: str, namespace: str) -> AsyncIterator[Store]:
    s = Store.from_url(store_url, namespace)
    yield s
    await s.close()


def rows(app: ControlRoom, pane: str) -> list[str]:
    tp = app.table_pane(pane)
    assert tp is not None
    return [r.key.value or "" for r in tp.table.ordered_rows]


async def on_row(pilot: Pilot[int], app: ControlRoom, pane: str, key: str) -> None:
    """Show ``pane`` by its number key and move the cursor to row ``key`` with j / k."""
    await pilot.press(str(PANES.index(pane) + 1))
    await until(pilot, lambda: key in rows(app, pane))
    tp = app.table_pane(pane)
    assert tp is not None
    target = tp.table.get_row_index(key)
    while tp.table.cursor_row != target:
        await pilot.press("j" if tp.table.cursor_row < target else "k")


async def open_dialog(pilot: Pilot[int], app: ControlRoom, key: str) -> ChoiceDialog:
    await pilot.press(key)
    await until(pilot, lambda: dialog_open(app))
    assert focused_id(app) == "cancel"  # Cancel is first and has the focus
    assert isinstance(app.screen, ChoiceDialog)
    return app.screen


async def outcome(pilot: Pilot[int], app: ControlRoom) -> None:
    await until(pilot, lambda: app.last_outcome is not None and not isinstance(app.screen, ChoiceDialog))
    app.last_outcome = None


async def claimed(store: Store, title: str, agent: str = "ada") -> tuple[str, int]:
    tid = await store.add(title)
    claim = await store.claim(agent, ttl_s=600)
    assert claim is not None and claim.task.id == tid
    return tid, claim.token


# --- every task action, by keys ------------------------------------------------------------


async def test_requeue_retry_extend_and_cancel_by_keys(store: Store, app_store: Store) -> None:
    await store.register("ada", max_claims=10)
    requeued, _ = await claimed(store, "requeue me")
    extended, _ = await claimed(store, "give me time")
    cancelled, _ = await claimed(store, "drop me")
    dead, token = await claimed(store, "retry me")
    await store.fail(dead, token, "broken", fatal=True)
    before = (await store.get(extended)).deadline_ms
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await on_row(pilot, app, "claims", requeued)
        dialog = await open_dialog(pilot, app, "r")
        assert [c.value for c in dialog.choices] == ["requeue"]
        await pilot.press("q")  # "[q] Requeue": r opened it, so r does not confirm it
        await outcome(pilot, app)

        await on_row(pilot, app, "claims", extended)
        await open_dialog(pilot, app, "e")
        await pilot.press("right", "right")  # Cancel -> +1 min -> +5 min
        assert focused_id(app) == "choice-300"
        await pilot.press("enter")
        await outcome(pilot, app)

        await on_row(pilot, app, "claims", cancelled)
        await open_dialog(pilot, app, "c")
        await pilot.press("down")
        assert focused_id(app) == "choice-cancel"
        await pilot.press("enter")
        await outcome(pilot, app)

        await on_row(pilot, app, "orphans", dead)
        await open_dialog(pilot, app, "t")
        await pilot.press("tab", "enter")
        await outcome(pilot, app)
    assert (await store.get(requeued)).state is State.QUEUED
    assert (await store.get(extended)).deadline_ms - before >= 299_000
    assert (await store.get(cancelled)).state is State.CANCELLED
    assert (await store.get(dead)).state is State.QUEUED
    by_operator = [(e.type, e.task) for e in await store.events() if e.operator == "lead"]
    assert [t for _type, t in by_operator] == [requeued, extended, cancelled, dead]


@redis_only
async def test_bulk_by_marks_and_the_kill_letter(store: Store, app_store: Store) -> None:
    await store.register("ada", max_claims=10)
    ids = [(await claimed(store, f"job {n}"))[0] for n in range(3)]
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await on_row(pilot, app, "claims", ids[0])
        await pilot.press("space", "space")  # marks a row and moves down: two rows marked
        dialog = await open_dialog(pilot, app, "x")
        assert len(dialog.targets) == 2
        await pilot.press("d")  # "[d] Kill → dead"
        await outcome(pilot, app)
    states = sorted([(await store.get(t)).state for t in ids], key=lambda s: s.value)
    assert states == [State.CLAIMED, State.DEAD, State.DEAD]


# --- moving in a dialog --------------------------------------------------------------------


@redis_only
async def test_tab_shift_tab_and_arrows_move_and_wrap(store: Store, app_store: Store) -> None:
    tid, _ = await claimed(store, "stay put")
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await on_row(pilot, app, "claims", tid)
        await open_dialog(pilot, app, "x")
        seen = []
        for key in ("tab", "tab", "tab", "shift+tab", "shift+tab", "right", "down", "left", "up", "up"):
            await pilot.press(key)
            seen.append(focused_id(app))
        assert seen == [
            "choice-kill", "choice-kill-dead", "cancel", "choice-kill-dead", "choice-kill",
            "choice-kill-dead", "cancel", "choice-kill-dead", "choice-kill", "cancel",
        ]  # fmt: skip
        # The board's keys do not act behind a dialog: no pane switch, no second dialog.
        await pilot.press("1", "j", "a", "x")
        assert isinstance(app.screen, ChoiceDialog) and app.active_pane == "claims"
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ChoiceDialog))
        assert app.last_outcome is None
    assert (await store.get(tid)).state is State.CLAIMED


@redis_only
async def test_escape_and_the_cancel_letter_change_nothing(store: Store, app_store: Store) -> None:
    await store.register("ada", max_claims=10)
    await store.register("grace")
    tid, _ = await claimed(store, "leave me alone")
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await on_row(pilot, app, "claims", tid)
        for key in ("x", "r", "e", "c"):
            for leave in ("escape", CANCEL_KEY):
                await open_dialog(pilot, app, key)
                await pilot.press(leave)
                await until(pilot, lambda: not isinstance(app.screen, ChoiceDialog))
        # The agent picker: escape, its Cancel letter, and Tab to Cancel then Enter.
        for leave in (("escape",), (CANCEL_KEY,), ("tab", "enter")):
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, AgentPicker) and app.focused is not None)
            assert isinstance(app.focused, OptionList)
            await pilot.press(*leave)
            await until(pilot, lambda: not isinstance(app.screen, AgentPicker))
            assert not isinstance(app.screen, ChoiceDialog)  # no confirmation follows a cancelled pick
        await on_row(pilot, app, "queues", "default")
        await open_dialog(pilot, app, "P")
        await pilot.press("escape")
        await on_row(pilot, app, "agents", "grace")
        await open_dialog(pilot, app, "b")
        await pilot.press(CANCEL_KEY)
        await until(pilot, lambda: not isinstance(app.screen, ChoiceDialog))
        await pilot.pause(0.1)  # nothing is to happen: no condition to wait for, a look a while on
        assert app.last_outcome is None
    task = await store.get(tid)
    assert (task.state, task.agent) == (State.CLAIMED, "ada")
    assert await store.paused() == set()
    assert not [e for e in await store.events() if e.operator == "lead"]  # nothing audited: nothing done


# --- the letters ---------------------------------------------------------------------------


def test_every_dialog_letter_is_unique_and_never_its_opening_key() -> None:
    """Within a dialog the letters differ (Cancel's included), and no choice that acts has
    the key that opened the dialog: a key pressed twice must not act without a look at the
    dialog (twice c, which opens "cancel task", only backs out)."""
    dialogs: list[tuple[str, list[Choice]]] = [(ACTIONS[a].key, cs) for a, cs in TASK_CHOICES.items()]
    dialogs += [(ACTIONS["pause"].key, [PAUSE]), (ACTIONS["pause"].key, [RESUME])]
    dialogs += [(ACTIONS["reset-breaker"].key, [RESET])]
    dialogs += [(KEYS[op], [choice]) for op, (choice, _warning) in OPS.items()]
    assert {a for a in ACTIONS if ACTIONS[a].kind == "task"} == set(TASK_CHOICES)
    for opener, choices in dialogs:
        letters = [CANCEL_KEY, *(c.key for c in choices)]
        assert len(set(letters)) == len(letters), letters
        assert opener not in letters[1:], (opener, letters)
        assert all(len(k) == 1 and (k.islower() or k.isdigit()) for k in letters)


def test_a_dialog_with_clashing_letters_is_refused() -> None:
    with pytest.raises(ValueError, match="clash"):
        ChoiceDialog("?", [], [Choice("c", "Cancel task", "cancel")])
    with pytest.raises(ValueError, match="clash"):
        ChoiceDialog("?", [], [Choice("r", "Requeue", "a"), Choice("r", "Retry", "b")])


async def test_every_button_shows_its_letter(store: Store, app_store: Store) -> None:
    tid, _ = await claimed(store, "look at me")
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await on_row(pilot, app, "claims", tid)
        await open_dialog(pilot, app, "e")
        buttons = next(line for line in screen_lines(app) if "Cancel" in line)
        for label in ("[c] Cancel", "[s] +1 min", "[m] +5 min", "[l] +15 min"):
            assert label in buttons, buttons
        await pilot.press("escape")


@redis_only
async def test_help_scrolls_by_keys_and_escape_closes_it(store: Store, app_store: Store) -> None:
    app = ControlRoom(app_store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen) and app.focused is not None)
        box = app.screen.query_one("#help")
        assert box.max_scroll_y > 0  # at 80x24 the key list is longer than the screen
        await pilot.press("pagedown", "down")
        await until(pilot, lambda: box.scroll_y > 0)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen))
