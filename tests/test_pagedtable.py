"""PagedTable draws exactly what Textual's own DataTable draws, and turns pages at either end.

PagedTable overrides DataTable internals to draw faster (``tui/pagedtable.py``): the same
rows are put through a plain DataTable and through a PagedTable, each in a real App driven
by Pilot, and the screens are compared cell by cell (character and style) after every step
a live board takes: the first draw, cursor moves, changed cells, rows gone and added, the
mouse over a row, the focus gone, a theme change, the cursor's colour alone changed. A
Textual release that changes what the override relies on fails here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from pilot_wait import screen_segments
from rich.style import Style
from rich.text import Text
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.theme import Theme
from textual.widgets import DataTable, Input

from claimroom.tui.pagedtable import PagedTable

SIZE = (90, 16)
# Two themes alike but for their primary colour, which is the focused cursor's: a switch
# between them changes what the cursor row looks like and nothing else.
THEMES = [
    Theme(name=f"test-{name}", primary=primary, background="#101010", surface="#101010", panel="#202020")
    for name, primary in (("blue", "#0178D4"), ("pink", "#D40178"))
]
Shown = list[list[tuple[str, Style | None]]]


def row(i: int, state: str = "claimed") -> list[Text]:
    # What the panes put in cells: plain, styled, spans, and one too wide for its column.
    return [
        Text(f"t{i:03d}"),
        Text(state, style="bold red" if state == "dead" else ""),
        Text.assemble(("ag", "green"), f"ent-{i % 4}"),
        Text(f"{i * 7 % 100}%", justify="right"),
        Text(f"a title long enough to be cut short in its column, number {i}"),
    ]


class Tables(App[int]):
    """A table of the class under test, sized as the panes size theirs, and an input below it."""

    CSS = "DataTable { height: 1fr; }"  # as .table-pane DataTable in themes/claimroom.tcss

    def __init__(self, table: type[DataTable[Text]]) -> None:
        super().__init__()
        self.table_class = table
        for theme in THEMES:
            self.register_theme(theme)

    def compose(self) -> ComposeResult:
        yield self.table_class(id="table", cursor_type="row", zebra_stripes=False)
        yield Input(id="elsewhere")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label, width in (("id", "task", None), ("state", "state", None), ("agent", "agent", None),
                                  ("prog", "prog", None), ("title", "title", 24)):  # fmt: skip
            table.add_column(label, key=key, width=width)
        for i in range(30):
            table.add_row(*row(i), key=f"t{i:03d}")
        table.focus()


def shown(app: App[int]) -> Shown:
    """Each cell of the screen as it is drawn: its character and its style."""
    return [[(ch, seg.style) for seg in line for ch in seg.text] for line in screen_segments(app)]


def text(line: list[tuple[str, Style | None]]) -> str:
    return "".join(ch for ch, _ in line)


def difference(want: Shown, got: Shown) -> str:
    """The first few lines that differ, and where the first of them starts to."""
    lines = [(y, w, g) for y, (w, g) in enumerate(zip(want, got, strict=True)) if w != g]
    said = [f"  line {y}: DataTable  {text(w)!r}\n          PagedTable {text(g)!r}" for y, w, g in lines[:5]]
    if lines:
        _, w, g = lines[0]
        x = next(x for x, (a, b) in enumerate(zip(w, g, strict=True)) if a != b)
        said.append(f"  first at column {x}: DataTable {w[x]!r}\n    PagedTable {g[x]!r}")
    return "\n".join(said)


Step = Callable[[Pilot[int], DataTable[Text]], Awaitable[None]]


async def down(pilot: Pilot[int], table: DataTable[Text]) -> None:
    await pilot.press("down", "down", "down")


async def change_cells(pilot: Pilot[int], table: DataTable[Text]) -> None:
    table.update_cell("t003", "state", Text("dead", style="bold red"))
    table.update_cell("t004", "prog", Text("99%", justify="right"))
    table.update_cell("t001", "agent", Text.assemble(("ag", "yellow"), "ent-9"))


async def rows_come_and_go(pilot: Pilot[int], table: DataTable[Text]) -> None:
    table.remove_row("t000")
    table.remove_row("t002")
    table.add_row(*row(40, "dead"), key="t040")


async def hover(pilot: Pilot[int], table: DataTable[Text]) -> None:
    await pilot.hover("#table", offset=(3, 6))


async def blur(pilot: Pilot[int], table: DataTable[Text]) -> None:
    pilot.app.query_one("#elsewhere", Input).focus()


async def theme(pilot: Pilot[int], table: DataTable[Text]) -> None:
    pilot.app.theme = "textual-light"


async def focus_again(pilot: Pilot[int], table: DataTable[Text]) -> None:
    pilot.app.theme = "test-blue"
    table.focus()
    await pilot.press("up")


async def cursor_colour(pilot: Pilot[int], table: DataTable[Text]) -> None:
    pilot.app.theme = "test-pink"


STEPS: list[tuple[str, Step]] = [
    ("down", down),
    ("change_cells", change_cells),
    ("rows_come_and_go", rows_come_and_go),
    ("hover", hover),
    ("blur", blur),
    ("theme", theme),
    ("focus_again", focus_again),
    ("cursor_colour", cursor_colour),
]


async def run(table: type[DataTable[Text]]) -> tuple[list[Shown], dict[str, int]]:
    """The screen after the first draw and after each step; and PagedTable's memo sizes."""
    app = Tables(table)
    screens = []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screens.append(shown(app))
        widget = app.query_one(DataTable)
        for _name, step in STEPS:
            await step(pilot, widget)
            await pilot.pause()
            screens.append(shown(app))
        memo = {"cells": len(getattr(widget, "_memo", {})), "bodies": len(getattr(widget, "_bodies", {}))}
    return screens, memo


async def test_paged_table_draws_what_data_table_draws() -> None:
    plain, _ = await run(DataTable)
    paged, memo = await run(PagedTable)
    names = ["first draw", *(name for name, _ in STEPS)]
    for name, want, got in zip(names, plain, paged, strict=True):
        if got != want:
            pytest.fail(f"after {name}, PagedTable draws differently:\n" + difference(want, got))
    # The fast path ran (a fallback to Textual's own drawing everywhere would also match).
    assert memo["cells"] > 0 and memo["bodies"] > 0, memo
    # And the screens were worth comparing: the steps changed what shows.
    assert len({repr(s) for s in plain}) == len(plain)


class Paged(App[int]):
    def __init__(self, turn: Callable[[int], bool] | None) -> None:
        super().__init__()
        self.turn = turn

    def compose(self) -> ComposeResult:
        yield PagedTable(self.turn, id="table", cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(PagedTable)
        table.add_column("n", key="n")
        for i in range(3):
            table.add_row(Text(str(i)), key=str(i))
        table.focus()


async def test_the_cursor_turns_the_page_past_either_end() -> None:
    asked: list[int] = []

    def turn(delta: int) -> bool:
        asked.append(delta)
        return delta > 0  # a next page, no previous one

    app = Paged(turn)
    async with app.run_test(size=(20, 10)) as pilot:
        table = app.query_one(PagedTable)
        await pilot.press("up")  # at the top, no previous page: stays
        assert asked == [-1] and table.cursor_row == 0
        await pilot.press("down", "down")
        assert asked == [-1] and table.cursor_row == 2  # within the page: no turn
        await pilot.press("down")  # past the end: the next page, from its top
        assert asked == [-1, 1] and table.cursor_row == 0


async def test_without_pages_the_cursor_stops_as_in_a_data_table() -> None:
    app = Paged(None)
    async with app.run_test(size=(20, 10)) as pilot:
        table = app.query_one(PagedTable)
        await pilot.press("down", "down", "down", "down")
        assert table.cursor_row == 2
