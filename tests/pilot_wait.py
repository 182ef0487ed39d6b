"""Waiting on a running Textual app in Pilot tests, and what the keys have reached.

Tests drive the control room by key presses only (``pilot.press``), as an operator over SSH
does: a click would pass where the keyboard cannot reach (a dialog whose Tab did nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rich.segment import Segment
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Button

from claimroom.tui.dialogs import ChoiceDialog


async def until(pilot: Pilot[int], cond: Callable[[], object], timeout_s: float = 10.0) -> None:
    """Let the app run until ``cond()`` holds; fail after ``timeout_s``. The limit only
    bounds a failing test (a passing one goes on once the condition holds), so it is
    generous: on a loaded machine a pane's first read and paint can take seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await pilot.pause(0.02)


def dialog_open(app: App[int]) -> bool:
    """A choice dialog is on screen and has given its first button the focus (it does so
    just after mounting: keys pressed before that would go to the board)."""
    return isinstance(app.screen, ChoiceDialog) and isinstance(app.focused, Button)


def focused_id(app: App[int]) -> str | None:
    """The id of the widget with the focus (a dialog's buttons: ``cancel``, ``choice-<value>``)."""
    return app.focused.id if app.focused is not None else None


def screen_segments(app: App[int]) -> list[list[Segment]]:
    """What the terminal is sent for the screen on top, line by line, as Rich segments."""
    return [list(strip) for strip in app.screen._compositor.render_strips()]


def screen_lines(app: App[int]) -> list[str]:
    """The text of the screen on top, line by line."""
    return ["".join(seg.text for seg in line) for line in screen_segments(app)]
