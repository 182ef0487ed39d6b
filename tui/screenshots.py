"""Regenerate screenshots/<pane>.svg from the real app on a seeded board.

    python -m claimroom.tui.screenshots [--out screenshots] [--size 120x40] [--theme dark]

It starts a private redis-server, seeds the demo board (``seed.py``), pins its times and
the app's clock, runs the control room headless, and saves one SVG per pane, plus the kill
confirmation as it opens and after Tab, the agent picker, and the help screen. Pinned
times mean a rerun without a UI change gives byte-identical files, so the pictures only
show up in a diff when the UI changed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from textual.pilot import Pilot

from claimroom.core.local_redis import LocalRedis
from claimroom.core.store import Store

from .app import PANES, ControlRoom
from .dialogs import AgentPicker, ChoiceDialog, HelpScreen
from .seed import pin_app, pinned_clock, seed_pinned

NAMESPACE = "demo"


async def _settle(pilot: Pilot[int]) -> None:
    await pilot.pause(0.3)
    await pilot.wait_for_scheduled_animations()
    await pilot.pause(0.1)


async def _wait(pilot: Pilot[int], cond: object, what: str) -> None:
    for _ in range(250):
        if callable(cond) and cond():
            return
        await pilot.pause(0.02)
    raise RuntimeError(f"screenshots: {what} did not happen within 5 s")


async def shoot(url: str, out: Path, size: tuple[int, int], theme: str | None) -> list[Path]:
    app = pin_app(
        ControlRoom(Store.from_url(url, NAMESPACE), theme=theme, operator="lead", clock=pinned_clock)
    )
    saved: list[Path] = []

    def save(name: str) -> None:
        saved.append(Path(app.save_screenshot(filename=f"{name}.svg", path=str(out))))

    async with app.run_test(size=size) as pilot:
        await _wait(pilot, lambda: app.snapshot is not None and app.link.status.live, "the first snapshot")
        for i, pane in enumerate(PANES, 1):
            await pilot.press(str(i % 10))  # 1-9, then 0
            await _settle(pilot)
            save(pane)
        await pilot.press("3", "x")  # the kill confirmation on the first claim
        await _wait(pilot, lambda: isinstance(app.screen, ChoiceDialog), "the kill dialog")
        await _settle(pilot)
        save("dialog-kill")  # as it opens: Cancel focused
        await pilot.press("tab")
        await _settle(pilot)
        save("dialog-kill-tab")  # Tab moved the focus to "Kill → requeue"
        await pilot.press("escape", "5", "a")  # the agent picker for the first orphan
        await _wait(pilot, lambda: isinstance(app.screen, AgentPicker), "the agent picker")
        await pilot.press("down")
        await _settle(pilot)
        save("dialog-reassign")
        await pilot.press("escape", "question_mark")
        await _wait(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        await _settle(pilot)
        save("help")
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m claimroom.tui.screenshots", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", default="screenshots", help="directory for the SVGs (default: screenshots)")
    parser.add_argument("--size", default="120x40", help="terminal size COLSxROWS (default: 120x40)")
    parser.add_argument("--theme", default="dark", help="theme name (default: dark)")
    a = parser.parse_args(argv)
    try:
        cols, rows = (int(x) for x in a.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must look like 120x40, got {a.size!r}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    server = LocalRedis.start()
    try:
        asyncio.run(seed_pinned(server.url, NAMESPACE))
        saved = asyncio.run(shoot(server.url, out, (cols, rows), a.theme))
    finally:
        server.stop()
    for path in saved:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
