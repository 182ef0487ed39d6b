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
