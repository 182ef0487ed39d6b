"""PagedTable: the DataTable every table pane shows, turning pages and drawing only what changed.

It overrides DataTable internals (``_render_cell``, ``_row_locations``, the header's
component styles), so ``tests/test_pagedtable.py`` draws the same rows through a plain
DataTable and through this one and compares what shows: a Textual release that changes
those internals fails there, not on an operator's screen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.widgets import DataTable

_JOIN = Text("\n")
RENDER_MEMO_MAX = 4_000  # rendered cells kept (a few screens' worth at every width and style)


@dataclass(frozen=True)
class _FrozenStyles:
    """What DataTable reads of its header's component styles while drawing a line."""

    rich_style: Style


class PagedTable(DataTable[Text]):
    """A DataTable that turns the page when the cursor runs off either end of it, and
    re-renders only the cells whose content changed.

    Textual's DataTable keys its cell-render cache on a table-wide update counter, so one
    changed cell makes every visible cell render again through Rich (about 100 ms for a
    120x40 screen of claims here, measured with bench/tui.py). A live board changes a few
    cells per refresh, so cells are memoised here by what decides their look: position,
    content, styles, width, cursor and hover state. The memo is a plain bounded dict;
    anything it does not cover (header, labels) goes through Textual unchanged.
    """

    def __init__(self, turn: Callable[[int], bool] | None = None, **kwargs: Any) -> None:
        """``turn(delta)`` shows the next (1) or previous (-1) page, False when there is none
        (the pane's); without it the cursor stops at either end as in a DataTable."""
        self._memo: dict[tuple[object, ...], Any] = {}  # before DataTable's own set-up clears it
        super().__init__(**kwargs)
        self._turn = turn
        self._bodies: dict[tuple[object, ...], Any] = {}  # Rich's layout of a cell, by content
        self._removing = False
        self._frame_style: Style | None = None  # this widget's style while one frame draws
        self._frame_header: _FrozenStyles | None = None
        self._drawing = False

    # The memo keys on the cell's base style but not on the component styles laid over it
    # (the cursor's colour comes from the theme): it goes whenever Textual drops its caches.
    def notify_style_update(self) -> None:
        self._memo.clear()
        super().notify_style_update()

    def _clear_caches(self) -> None:
        self._memo.clear()
        super()._clear_caches()

    def render_lines(self, crop: Any) -> Any:
        # Textual works out the widget's style from every ancestor's CSS on each line drawn
        # (~0.15 ms a line); it cannot change while one frame draws, so once per frame.
        self._drawing, self._frame_style, self._frame_header = True, None, None
        try:
            return super().render_lines(crop)
        finally:
            self._drawing, self._frame_style, self._frame_header = False, None, None

    @property
    def rich_style(self) -> Style:
        if not self._drawing:
            return super().rich_style
        if self._frame_style is None:
            self._frame_style = super().rich_style
        return self._frame_style

    def get_component_styles(self, *names: str) -> Any:
        # The header's style, asked for on every line drawn, is as constant within a frame.
        if not self._drawing or names != ("datatable--header",):
            return super().get_component_styles(*names)
        if self._frame_header is None:
            self._frame_header = _FrozenStyles(super().get_component_styles(*names).rich_style)
        return self._frame_header

    def remove_row(self, row_key: Any) -> None:
        # Textual asks for a layout pass of the whole screen on every removed row (about
        # 130 ms on a 120x40 screen: 414 of them in a 12 s bench/tui.py run, the largest
        # cost left). The table's height is re-measured when it next idles anyway
        # (virtual_size, which asks for a layout only when it changed), and sync_table
        # removes and adds rows together, so the count seldom changes: a repaint will do.
        self._removing = True
        try:
            super().remove_row(row_key)
        finally:
            self._removing = False

    def refresh(
        self, *regions: Any, repaint: bool = True, layout: bool = False, recompose: bool = False
    ) -> Any:
        layout = layout and not self._removing
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> Any:
        if row_index < 0 or column_index < 0:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        try:  # DataTable internals (Textual 8): anything unexpected falls back to Textual's path
            row_key = self._row_locations.get_key(row_index)
            column_key = self._column_locations.get_key(column_index)
            if row_key is None or column_key is None:  # no such cell (any more): Textual's path
                return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
            cell = self._data[row_key][column_key]
            key = (
                row_index, column_index, cell.plain, cell.style, tuple(cell.spans), base_style, width,
                cursor, hover, self._show_hover_cursor, self._pseudo_class_state, self.rows[row_key].height,
            )  # fmt: skip
        except (KeyError, AttributeError):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        lines = self._memo.get(key)
        if lines is None:
            if len(self._memo) >= RENDER_MEMO_MAX:
                self._memo.clear()
            lines = self._memo[key] = (
                self._render_body(row_index, column_index, cell, base_style, width, cursor, hover)
                if self.rows[row_key].height == 1
                else super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
            )
        return lines

    def _render_body(
        self, row_index: int, column_index: int, cell: Any, base_style: Style, width: int, cursor: bool,
        hover: bool,
    ) -> Any:  # fmt: skip
        """A cell as Textual renders it, with the costly part, Rich laying out the padded
        text, kept by content alone. The memo above is keyed by position too (the segments
        carry the row and column for mouse clicks), so a row that moved up or down, which
        a live table does all the time, missed it and paid ~0.3 ms a cell for Rich again;
        here only the cheap restyling is paid. Same steps as DataTable._render_cell: pad,
        render, then the pre style (base + position + component) and post style on top."""
        pad = self.cell_padding
        fits = isinstance(cell, Text) and "\n" not in cell.plain and cell.cell_len <= width - 2 * pad
        if not fits or cell.justify not in (None, "default", "left"):  # the panes' cells: left aligned
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        body_key = (cell.plain, cell.style, tuple(cell.spans), cell.justify, cell.overflow, width, pad)
        body = self._bodies.get(body_key)
        if body is None:
            if len(self._bodies) >= RENDER_MEMO_MAX:
                self._bodies.clear()
            # What Padding(cell) renders to for one line of text that fits (checked above),
            # without Rich's wrapping and measuring machinery (~0.2 ms a cell): the padding
            # and the fill in the null style, the text's own segments in between.
            blank = Style.null()
            fill = width - 2 * pad - cell.cell_len
            # join() turns the Text's own style into a span, as Rich's wrapping does.
            line = [Segment(" " * pad, blank), *_JOIN.join([cell]).render(self.app.console, end="")]
            line += [Segment(" " * (fill + pad), blank)]
            body = self._bodies[body_key] = [line]
        fixed = row_index < self.fixed_rows or column_index < self.fixed_columns
        component_style, post_style = self._get_styles_to_render_cell(
            False, False, fixed, hover, cursor, self.show_cursor, self._show_hover_cursor,
            self.cursor_foreground_priority == "css", self.cursor_background_priority == "css",
        )  # fmt: skip
        pre = base_style + Style.from_meta({"row": row_index, "column": column_index}) + component_style
        return [list(Segment.apply_style(line, style=pre, post_style=post_style)) for line in body]

    def action_cursor_down(self) -> None:
        at_end = self.row_count and self.cursor_row >= self.row_count - 1
        if self._turn is not None and at_end and self._turn(1):
            self.move_cursor(row=0, animate=False)
            return
        super().action_cursor_down()

    def action_cursor_up(self) -> None:
        if self._turn is not None and self.cursor_row <= 0 and self._turn(-1):
            self.move_cursor(row=self.row_count - 1, animate=False)
            return
        super().action_cursor_up()
