"""Waiting on a running Textual app in Pilot tests: poll a condition while the app runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.pilot import Pilot


async def until(pilot: Pilot[int], cond: Callable[[], object], timeout_s: float = 3.0) -> None:
    """Let the app run until ``cond()`` holds; fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await pilot.pause(0.02)


async def click(pilot: Pilot[int], selector: str, timeout_s: float = 3.0) -> None:
    """Click ``selector`` once it is under the pointer where Pilot clicks: a dialog that has
    just opened may still be settling (Pilot then clicks whatever is there, and the test
    would wait for a choice that was never made)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not await pilot.click(selector):
        if loop.time() > end:
            raise AssertionError(f"{selector} was not clickable within {timeout_s} s")
        await pilot.pause(0.02)
