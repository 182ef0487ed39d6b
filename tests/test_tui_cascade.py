"""The control room and cascades, by keys on both backends: a retry that restores the
dependents a dead task's end cancelled, and "needs attention" showing a blocked task that
waits on something that can never finish.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from pilot_wait import dialog_open, focused_id, screen_lines, until
from test_cascade import hand_edit
from textual.pilot import Pilot

from claimroom.core.models import State
from claimroom.core.store import Store, TaskSpec
from claimroom.tui import board as board_module
from claimroom.tui.app import PANES, ControlRoom
from claimroom.tui.board import Board
from claimroom.tui.dialogs import ChoiceDialog

SIZE = (120, 40)


@pytest.fixture
async def app_store(store_url: str, namespace: str) -> AsyncIterator[Store]:
    """The app's own connection to the test's board (the app closes it on exit)."""
    s = Store.from_url(store_url, namespace)
    yield s
    await s.close()


def on_screen(app: ControlRoom, text: str) -> bool:
    return any(text in line for line in screen_lines(app))


async def select(pilot: Pilot[int], app: ControlRoom, pane: str, key: str) -> None:
    """Show ``pane`` and put the cursor on row ``key`` once it is there."""
    await pilot.press(str(PANES.index(pane) + 1))
    tp = app.table_pane(pane)
    assert tp is not None
    await until(pilot, lambda: key in [r.key.value for r in tp.table.ordered_rows])
    tp.table.move_cursor(row=tp.table.get_row_index(key))


async def test_retry_offers_to_restore_the_cancelled_dependents(store: Store, app_store: Store) -> None:
    lonely = await store.add("a task nobody waits on")
    a = await store.add("build the base image")
    b, c = await store.add_many([TaskSpec("push the image", after=[a]), TaskSpec("deploy", after=["$0"])])
    for tid in (lonely, a):
        claim = await store.claim("ada")
        assert claim is not None and claim.task.id == tid
        await store.fail(tid, claim.token, "disk full", fatal=True)
    assert (await store.get(c)).state is State.CANCELLED

    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        # Nothing waited on this one: the plain retry only.
        await select(pilot, app, "orphans", lonely)  # dead tasks are listed with the orphans
        await pilot.press("t")
        await until(pilot, lambda: dialog_open(app))
        assert isinstance(app.screen, ChoiceDialog) and [ch.key for ch in app.screen.choices] == ["r"]
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ChoiceDialog))

        await select(pilot, app, "orphans", a)
        await pilot.press("t")
        await until(pilot, lambda: dialog_open(app))
        assert focused_id(app) == "cancel"
        assert isinstance(app.screen, ChoiceDialog) and [ch.key for ch in app.screen.choices] == ["r", "a"]
        assert on_screen(app, "[a] Retry and restore 1 dependent")
        await pilot.press("a")
        await until(pilot, lambda: app.last_outcome is not None)
        assert app.last_outcome is not None and app.last_outcome.done
    assert (await store.get(a)).state is State.QUEUED
    assert (await store.get(lonely)).state is State.DEAD
    assert [(await store.get(t)).state for t in (b, c)] == [State.BLOCKED, State.BLOCKED]
    (retried,) = [e for e in await store.events(task=a) if e.type == "retried"]
    assert retried.operator == "lead"
    assert [e.type for e in await store.events(task=b)][-1] == "restored"


async def test_needs_attention_shows_a_task_blocked_on_a_dead_one(store: Store, app_store: Store) -> None:
    a = await store.add("write the schema")
    b = await store.add("migrate the users", after=[a])
    await hand_edit(store, a, "dead")  # as an older claimroom, or a hand edit, leaves it
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on_screen(app, "migrate the users"))
        line = next(line for line in screen_lines(app) if "migrate the users" in line)
        assert b in line and "blocked on" in line and f"{a} dead" in line


async def test_needs_attention_walks_a_big_board_a_window_at_a_time(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(board_module, "STUCK_WINDOW", 3)
    ok, dead = await store.add_many([TaskSpec("fine"), TaskSpec("will be dead")])
    waiting = await store.add_many([TaskSpec(f"waits {i}", after=[ok]) for i in range(7)])
    stuck = await store.add_many([TaskSpec(f"stuck {i}", after=[dead]) for i in range(2)])
    await hand_edit(store, dead, "dead")
    looks: list[tuple[int, int, int]] = []
    real = store.stuck

    async def counted(*, after_seq: int = 0, limit: int = 500, also: Sequence[str] = ()) -> Any:
        looks.append((after_seq, limit, len(also)))
        return await real(after_seq=after_seq, limit=limit, also=also)

    monkeypatch.setattr(store, "stuck", counted)
    board = Board(store)
    seen = [[s.task.id for s in (await board.read()).stuck] for _ in range(5)]
    assert seen[:2] == [[], []]  # two windows of tasks that wait on a live one
    assert seen[2:] == [stuck] * 3  # found in the third, then kept (checked again) as the walk restarts
    assert all(limit == 3 for _, limit, _ in looks)
    ends = [(await store.get(t)).seq for t in (*waiting, *stuck)][2::3]
    assert [after for after, _, _ in looks] == [0, *ends, 0]
    assert [n for _, _, n in looks] == [0, 0, 0, 2, 2]
