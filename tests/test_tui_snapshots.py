"""Snapshot tests: every pane at 80x24 and 120x40 on one fixed board, and in the 16-colour
theme at 80x24, pixel for pixel.

Determinism: the board is seeded once per session through the Store API on a fixed
namespace, then ``pin_times`` rewrites its timestamps relative to a fixed instant and the
app's clock is frozen at that instant, so every age and countdown renders the same. Three
things would still differ between runs and are replaced with constants here, not in the
app: the store URL (the session server's port is random), the ping (a real round trip),
and the server facts and topology on the store pane (uptime, memory, client count, the
server's address); see ``pin_app``.

Update after an intended change with ``pytest tests/test_tui_snapshots.py --snapshot-update``
and look at the SVGs under tests/__snapshots__/ before committing them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from pilot_wait import dialog_open, screen_segments, until
from rich.segment import Segment
from textual.pilot import Pilot

from claimroom import themes
from claimroom.core.local_redis import LocalRedis
from claimroom.core.store import Store
from claimroom.tui.app import PANES, ControlRoom
from claimroom.tui.seed import pin_app, pinned_clock, seed_pinned

NAMESPACE = "snapboard"


@pytest.fixture(scope="session")
def board_url(redis_server: LocalRedis) -> str:
    asyncio.run(seed_pinned(redis_server.url, NAMESPACE))
    return redis_server.url


def pinned_app(url: str, theme: str = "dark") -> ControlRoom:
    app = ControlRoom(Store.from_url(url, NAMESPACE), theme=theme, operator="snap", clock=pinned_clock)
    return pin_app(app)


async def loaded(pilot: Pilot[int], app: ControlRoom) -> None:
    """Until the board is read, its link live and the store pane's facts and topology in."""
    pane = app.query_one("StorePane")
    await until(
        pilot,
        lambda: app.snapshot is not None and app.link.status.live and pane.info and pane.topology is not None,
    )


async def settle(pilot: Pilot[int]) -> None:
    """Until the screen stops changing: scrolling to the followed row repaints the scrollbar
    a frame later, so the same picture two frames apart."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 20  # bounds a failing test only: a loaded machine paints slowly
    seen: list[list[Segment]] | None = None
    while True:
        await pilot.wait_for_scheduled_animations()
        await pilot.pause(2 / 60)  # two of Textual's frames
        now = screen_segments(pilot.app)
        if now == seen:
            return
        assert loop.time() < end, "the screen kept changing"
        seen = now


def show(app: ControlRoom, pane: str) -> Callable[[Pilot[int]], object]:
    async def before(pilot: Pilot[int]) -> None:
        await loaded(pilot, app)
        await pilot.press(str((PANES.index(pane) + 1) % 10))  # 1-9, then 0
        await settle(pilot)

    return before


def kill_dialog_tabbed(app: ControlRoom) -> Callable[[Pilot[int]], object]:
    """The kill dialog on the first claim, with the focus moved by Tab to "Kill → requeue"."""

    async def before(pilot: Pilot[int]) -> None:
        await loaded(pilot, app)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("x")
        await until(pilot, lambda: dialog_open(app))
        await pilot.press("tab")
        await settle(pilot)

    return before


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@pytest.mark.parametrize("pane", PANES)
def test_pane(snap_compare: Callable[..., bool], board_url: str, pane: str, size: tuple[int, int]) -> None:
    app = pinned_app(board_url)
    assert snap_compare(app, terminal_size=size, run_before=show(app, pane))


@pytest.mark.parametrize("pane", PANES)
def test_pane_in_16_colours(snap_compare: Callable[..., bool], board_url: str, pane: str) -> None:
    """Every pane in the 16-colour theme at 80x24, as a basic terminal over SSH shows it: the
    terminal's own palette, and no colour that only truecolor or 256 colours has."""
    app = pinned_app(board_url, "16")
    assert snap_compare(app, terminal_size=(80, 24), run_before=show(app, pane))


@pytest.mark.parametrize("theme", [themes.short_name(t) for t in themes.THEMES])
def test_dialog_focus_is_visible(snap_compare: Callable[..., bool], board_url: str, theme: str) -> None:
    """A dialog at 80x24 with a choice other than Cancel focused, in each theme (16 colours too):
    the focused button must stand out (look at the SVGs when they change)."""
    app = pinned_app(board_url, theme)
    assert snap_compare(app, terminal_size=(80, 24), run_before=kill_dialog_tabbed(app))
