"""Table plumbing shared by the panes: formatting, urgency colours, keyed in-place updates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.app import App
from textual.color import Color
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

from claimroom.core.safetext import shown


@dataclass(frozen=True)
class Palette:
    """Rich styles for urgency, resolved from the current theme (cells are Rich Text, which
    cannot refer to CSS variables, so they are rebuilt when the theme changes)."""

    error: Style
    warning: Style
    success: Style
    muted: Style
    accent: Style

    @classmethod
    def of(cls, app: App[Any]) -> Palette:
        v = app.theme_variables

        def style(name: str, fallback: str, bold: bool | None = None) -> Style:
            # bold None (not False): leave the table's own bold (cursor row, header) alone.
            try:
                return Style(color=Color.parse(v.get(name, fallback)).rich_color, bold=bold)
            except Exception:  # an odd theme value must not break rendering; fall back to plain
                return Style(bold=bold)

        return cls(
            error=style("error", "red", bold=True),
            warning=style("warning", "yellow"),
            success=style("success", "green"),
            muted=Style(dim=True),
            accent=style("accent", "magenta"),
        )


def age(ms: int) -> str:
    """A duration for a narrow cell: ``7s``, ``3m05s``, ``2h10m``, ``4d03h``."""
    s = max(0, ms) // 1000
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def left(ms: int) -> str:
    """Time left on a lease or lock: ``-3s`` once it has passed (the reaper is about to act)."""
    return age(ms) if ms >= 0 else "-" + age(-ms)


def clip(text: str, width: int) -> str:
    """Text cut to ``width`` cells with an ellipsis, so one long title cannot widen a table.

    Control characters are escaped first (``shown``), so the cut is of what is drawn.
    """
    text = shown(text)
    return text if len(text) <= width else text[: width - 1] + "…"


Piece = tuple[str, Style | str]  # words and their style, for ``joined``


def joined(pieces: Sequence[Piece], sep: str = " · ", end: str = "") -> Text:
    """``pieces`` in one line, ``sep`` between them and ``end`` after the last, each escaped.

    Every space goes at the end of a styled run, never at its start: SVG renderers (rsvg,
    which turns the snapshots into pictures) drop a run's leading space, so ``ok`` then
    `` · synced`` was drawn as ``ok· synced``, and ``docs`` then `` paused`` as ``docspaused``.
    """
    out = Text()
    lead, rest = sep[: len(sep) - len(sep.lstrip())], sep.lstrip()
    for i, (words, style) in enumerate(pieces):
        last = i == len(pieces) - 1
        out.append(shown(words) + (end if last else lead), style)
        if rest and not last:
            out.append(rest)
    return out


@dataclass(frozen=True)
class Row:
    """One table row as plain strings and styles: cheap to build and compare for every row
    read, turned into Rich ``Text`` cells only for the rows on the table's current page."""

    key: str
    cells: tuple[str, ...]
    style: Style | None = None
    styles: tuple[tuple[int, Style], ...] = ()  # per-column styles that override ``style``

    def texts(self) -> list[Text]:
        """The cells as plain-text ``Text`` (never markup: titles are user data), with every
        control character escaped: this is where store text becomes table cells, and Rich
        passes ESC through (a title could otherwise retitle or clear the operator's terminal)."""
        own, base = dict(self.styles), self.style
        return [
            Text(shown(c), style=own.get(i, base) or "", no_wrap=True, end="")
            for i, c in enumerate(self.cells)
        ]

    def marked(self, mark: str, style: Style) -> Row:
        """This row behind a leading mark column."""
        shifted = ((0, style), *((i + 1, st) for i, st in self.styles))
        return Row(self.key, (mark, *self.cells), self.style, shifted)

    def matches(self, needle: str) -> bool:
        """Whether any cell contains ``needle`` (already lower-cased)."""
        return any(needle in c.lower() for c in self.cells)


def row(key: str, *cells: str, style: Style | None = None, styles: dict[int, Style] | None = None) -> Row:
    """A row of plain-text cells in one style (``styles`` overrides it per column)."""
    return Row(key, cells, style, tuple((styles or {}).items()))


def sync_table(
    table: DataTable[Text], rows: Sequence[Row], drawn: dict[str, Row], sort_column: str | None = None
) -> None:
    """Make ``table`` show ``rows`` in order, touching only what changed.

    Rows are matched by key, so a refresh updates cells in place instead of rebuilding the
    table, and the cursor stays on the row it was on (by key, not by index) even when rows
    above it come and go. ``drawn`` is what the table holds (kept by the caller and updated
    here): an unchanged row costs one comparison, a changed one only its changed cells.
    ``sort_column`` names a column holding the row key as its text, used to reorder in
    place; without it a reordered table is rebuilt.
    """
    columns = [c.key for c in table.ordered_columns]
    keep: str | None = None
    if table.row_count:
        try:
            keep = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # no valid cursor cell (empty or just cleared): nothing to keep
            keep = None
    keep_index = table.cursor_row
    wanted = [r.key for r in rows]
    wanted_set = set(wanted)
    with table.app.batch_update():
        for gone in [k for k in table.rows if k.value not in wanted_set]:
            table.remove_row(gone)
            drawn.pop(str(gone.value), None)
        for r in rows:
            was = drawn.get(r.key)
            if r.key not in table.rows:
                table.add_row(*r.texts(), key=r.key)
            elif was != r:
                restyled = was is None or was.style != r.style or was.styles != r.styles
                texts = r.texts()
                for i, (col, new) in enumerate(zip(columns, texts, strict=False)):
                    if restyled or was is None or i >= len(was.cells) or was.cells[i] != r.cells[i]:
                        table.update_cell(r.key, col, new)  # widths: fit_columns, once, below
            drawn[r.key] = r
        order = [tr.key.value for tr in table.ordered_rows]
        if order != wanted:
            if sort_column is not None:
                place = {shown(k): i for i, k in enumerate(wanted)}  # the key as its cell shows it
                table.sort(sort_column, key=lambda cell: place.get(str(getattr(cell, "plain", cell)), 0))
            else:
                table.clear()
                for r in rows:
                    table.add_row(*r.texts(), key=r.key)
        fit_columns(table)
        if keep is not None and keep in wanted_set:
            try:
                index = table.get_row_index(keep)
            except RowDoesNotExist:
                index = keep_index
            if index != table.cursor_row:
                table.move_cursor(row=index, animate=False)
        elif table.row_count:
            table.move_cursor(row=min(keep_index, table.row_count - 1), animate=False)


def fit_columns(table: DataTable[Text]) -> None:
    """Size each auto-width column to its widest cell, in one pass over the table.

    Textual's ``update_cell(update_width=True)`` re-measures the whole column each time a
    cell gets narrower, which on a table whose countdowns all tick is quadratic (seconds of
    event-loop time per refresh on 500 rows, found by bench/tui.py); this is linear.
    """
    changed = False
    for key, column in table.columns.items():
        if not column.auto_width:
            continue
        widest = max((_width(cell) for cell in table.get_column(key)), default=0)
        width = max(widest, column.label.cell_len)
        if width != column.content_width:
            column.content_width = width
            changed = True
    if changed:
        table.refresh(layout=True)


def _width(cell: object) -> int:
    return cell.cell_len if isinstance(cell, Text) else len(str(cell))


def cursor_key(table: DataTable[Text]) -> str | None:
    """The key of the row under the cursor, if any."""
    if not table.row_count:
        return None
    try:
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    except Exception:  # the cursor is outside the rows (table emptied): no selection
        return None
