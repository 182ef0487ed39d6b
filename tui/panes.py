"""The table panes: queues, claims, agents, orphans, locks, events.

Each pane turns a ``Snapshot`` plus "now" into keyed rows; ``sync_table`` applies them in
place. Times are rendered relative to the app's clock (lease left, heartbeat age), which is
what a person needs and what keeps snapshot tests stable under a frozen clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from claimroom.core.models import State, Task
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from .board import Snapshot
from .tables import Palette, Row, age, clip, left, row, sync_table

MARK = "●"
EVENT_PAGES_AHEAD = 1_000  # any page past the end: the events pane then shows the newest


PAGE_ROWS = 50  # rows a table holds at once: a screenful or two; the rest are a page away


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

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._memo: dict[tuple[object, ...], Any] = {}
        self._bodies: dict[tuple[object, ...], Any] = {}  # Rich's layout of a cell, by content
        self._removing = False
        self._frame_style: Style | None = None  # this widget's style while one frame draws
        self._frame_header: _FrozenStyles | None = None
        self._drawing = False

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
            cell = self._data[row_key][self._column_locations.get_key(column_index)]
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
        if not isinstance(cell, Text) or "\n" in cell.plain or cell.cell_len > width - 2 * pad:
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
        pane = self.parent
        at_end = self.row_count and self.cursor_row >= self.row_count - 1
        if isinstance(pane, TablePane) and at_end and pane.turn(1):
            self.move_cursor(row=0, animate=False)
            return
        super().action_cursor_down()

    def action_cursor_up(self) -> None:
        pane = self.parent
        if isinstance(pane, TablePane) and self.cursor_row <= 0 and pane.turn(-1):
            self.move_cursor(row=self.row_count - 1, animate=False)
            return
        super().action_cursor_up()


class TablePane(Vertical):
    """A DataTable of one kind of row, with marks for bulk actions, a text filter and pages.

    The rows read (up to the board's row limit) are filtered as plain strings; only the
    current page of ``PAGE_ROWS`` becomes table rows, so a refresh costs a page's worth of
    cell updates however much was read.
    """

    COLUMNS: ClassVar[tuple[tuple[str, str], ...]] = ()  # (column key, label)
    SORT_COLUMN: ClassVar[str | None] = None  # column whose text is the row key
    MARKABLE: ClassVar[bool] = True
    NOUN: ClassVar[str] = "rows"

    def __init__(self, pane_id: str) -> None:
        super().__init__(id=f"pane-{pane_id}", classes="table-pane")
        self.pane_id = pane_id
        self.marks: set[str] = set()
        self.filter_text = ""
        self.shown: list[str] = []  # keys of every row that passes the filter, in order (all pages)
        self.page = 0
        self.pages = 1
        self._drawn: dict[str, Row] = {}  # what the table holds, for sync_table
        self._last: tuple[Snapshot, int, Palette] | None = None  # to redraw on a page turn

    def compose(self) -> ComposeResult:
        yield PagedTable(id=f"{self.pane_id}-table", cursor_type="row", zebra_stripes=False)
        yield Static("", id=f"{self.pane_id}-status", classes="pane-status")

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one(DataTable)

    def on_mount(self) -> None:
        if self.MARKABLE:
            self.table.add_column(" ", key="mark", width=1)
        for key, label in self.COLUMNS:
            self.table.add_column(label, key=key)

    def rows(self, snap: Snapshot, now_ms: int, pal: Palette) -> list[Row]:
        raise NotImplementedError

    def total(self, snap: Snapshot) -> int:
        return 0

    def show(self, snap: Snapshot, now_ms: int, pal: Palette) -> None:
        self._last = (snap, now_ms, pal)
        rows = self.rows(snap, now_ms, pal)
        read = len(rows)
        self.marks &= {r.key for r in rows}  # a mark on a row that left the board goes with it
        if self.filter_text:
            needle = self.filter_text.lower()
            rows = [r for r in rows if r.matches(needle)]
        self.shown = [r.key for r in rows]
        self.pages = max(1, -(-len(rows) // PAGE_ROWS))
        self.page = min(self.page, self.pages - 1)
        first = self.page * PAGE_ROWS
        page_rows = rows[first : first + PAGE_ROWS]
        if self.MARKABLE:
            page_rows = [r.marked(MARK if r.key in self.marks else " ", pal.accent) for r in page_rows]
        sync_table(self.table, page_rows, self._drawn, self.SORT_COLUMN)
        total = self.total(snap)
        parts = [f"{total:,} {self.NOUN}"]
        if read < total:
            parts.append(f"top {read:,} read")
        if self.filter_text:
            parts.append(f"filter {self.filter_text!r}: {len(rows):,} match")
        if self.pages > 1:
            last = first + len(page_rows)
            parts.append(f"rows {first + 1:,}-{last:,} · page {self.page + 1}/{self.pages} ([ ])")
        if self.marks:
            parts.append(f"{len(self.marks)} marked")
        # One line tall whatever it says: no layout pass (which would redraw the whole screen).
        self.query_one(".pane-status", Static).update(Text(" · ".join(parts)), layout=False)

    def turn(self, delta: int) -> bool:
        """Show the next (1) or previous (-1) page; False when there is none."""
        page = self.page + delta
        if not 0 <= page < self.pages or self._last is None:
            return False
        self.page = page
        self.show(*self._last)
        self.table.move_cursor(row=0, animate=False)  # a new page is read from its top
        return True

    def toggle_mark(self, key: str, pal: Palette) -> None:
        """Mark or unmark one row for a bulk action."""
        if not self.MARKABLE or key not in self.table.rows:
            return
        self.marks ^= {key}
        self.table.update_cell(key, "mark", Text(MARK if key in self.marks else " ", style=pal.accent))
        self._drawn.pop(key, None)  # the table's row differs from what was drawn: redraw it next time


def _pct(p: float) -> str:
    return f"{round(p * 100)}%"


class QueuesPane(TablePane):
    COLUMNS = (("queue", "queue"), ("ready", "ready"), ("claimed", "claimed"), ("state", "state"))
    SORT_COLUMN = "queue"
    NOUN = "queues"

    def total(self, snap: Snapshot) -> int:
        return len(snap.queues)

    def rows(self, snap: Snapshot, now_ms: int, pal: Palette) -> list[Row]:
        # On Redis claimed counts come from the claims read; past the row limit, lower bounds.
        more = "+" if snap.claimed_capped else ""
        return [
            row(q.name, q.name, f"{q.ready:,}", f"{q.claimed:,}{more}", "paused" if q.paused else "open",
                style=pal.warning if q.paused else None)
            for q in snap.queues
        ]  # fmt: skip


def claim_urgency(t: Task, now_ms: int, pal: Palette) -> tuple[int, Style | None]:
    """(lease left ms, style): red when the lease is about to run out, amber when it is
    getting short or the agent has not heartbeated for half its lease."""
    ttl = t.ttl_ms or 60_000
    lease = t.deadline_ms - now_ms
    hb = now_ms - t.updated_ms
    if lease <= min(10_000, ttl * 0.2):
        return lease, pal.error
    if lease <= min(30_000, ttl * 0.5) or hb > ttl * 0.5:
        return lease, pal.warning
    return lease, None


class ClaimsPane(TablePane):
    COLUMNS = (
        ("id", "task"), ("agent", "agent"), ("token", "token"), ("lease", "lease"), ("hb", "beat"),
        ("progress", "prog"), ("stage", "stage"), ("queue", "queue"), ("title", "title"),
    )  # fmt: skip
    SORT_COLUMN = "id"
    NOUN = "claims"

    def total(self, snap: Snapshot) -> int:
        return snap.claims_total

    def rows(self, snap: Snapshot, now_ms: int, pal: Palette) -> list[Row]:
        out = []
        for t in snap.claims:
            lease, style = claim_urgency(t, now_ms, pal)
            beat = age(now_ms - t.updated_ms)
            out.append(
                row(t.id, t.id, t.agent, str(t.token), left(lease), beat, _pct(t.progress),
                    clip(t.stage, 16), clip(t.queue, 12), clip(t.title, 40), style=style)
            )  # fmt: skip
        return out


# A session id is a UUID: its first characters tell two sessions apart, the rest is noise
# (the whole id is in `claimroom agents`).
SESSION_CHARS = 8


class AgentsPane(TablePane):
    COLUMNS = (
        ("agent", "agent"), ("held", "held"), ("seen", "seen"), ("breaker", "breaker"),
        ("failures", "fails"), ("session", "session"), ("caps", "capabilities"),
    )  # fmt: skip
    SORT_COLUMN = "agent"
    NOUN = "agents"

    def total(self, snap: Snapshot) -> int:
        return snap.agents_total

    def rows(self, snap: Snapshot, now_ms: int, pal: Palette) -> list[Row]:
        out = []
        for a in snap.agents:
            open_ms = a.breaker_open_until_ms - now_ms
            silent = now_ms - a.last_seen_ms
            style: Style | None = None
            if open_ms > 0:
                style = pal.error
            elif a.held and silent > 60_000:
                style = pal.warning  # holds work but has gone quiet
            elif not a.held and silent > 300_000:
                style = pal.muted
            seen = age(silent) if a.last_seen_ms else "never"
            breaker = f"open {age(open_ms)}" if open_ms > 0 else "closed"
            out.append(
                row(a.name, a.name, f"{len(a.held)}/{a.max_claims}", seen, breaker,
                    str(a.consecutive_failures), a.session[:SESSION_CHARS],
                    clip(",".join(a.capabilities), 30), style=style)
            )  # fmt: skip
        return out


class OrphansPane(TablePane):
    """Work that waits for an operator: orphaned claims, and dead tasks that may be retried."""

    COLUMNS = (
        ("id", "task"), ("state", "state"), ("agent", "last agent"), ("since", "since"), ("progress", "prog"),
        ("tries", "tries"), ("reason", "reason"), ("queue", "queue"), ("title", "title"),
    )  # fmt: skip
    SORT_COLUMN = "id"
    NOUN = "orphaned or dead"

    def total(self, snap: Snapshot) -> int:
        return snap.orphans_total

    def rows(self, snap: Snapshot, now_ms: int, pal: Palette) -> list[Row]:
        return [
            row(t.id, t.id, t.state.value, t.agent, age(now_ms - t.updated_ms), _pct(t.progress),
                f"{t.attempts}/{t.max_attempts}", clip(t.reason, 24), clip(t.queue, 12), clip(t.title, 40),
                style=pal.error if t.state is State.DEAD else pal.warning)
            for t in snap.orphans
        ]  # fmt: skip


class LocksPane(TablePane):
    COLUMNS = (("path", "path"), ("mode", "mode"), ("holders", "held by"), ("expires", "expires"))
    SORT_COLUMN = "path"
    MARKABLE = False
    NOUN = "locked paths"

    def total(self, snap: Snapshot) -> int:
        return snap.locks_total

    def rows(self, snap: Snapshot, now_ms: int, pal: Palette) -> list[Row]:
        out = []
        for lk in snap.locks:
            soonest = min(h.expires_ms for h in lk.holders) - now_ms
            holders = ", ".join(f"{h.agent}({h.task})" if h.task else h.agent for h in lk.holders)
            out.append(
                row(lk.path, clip(lk.path, 40), "shared" if lk.shared else "exclusive", clip(holders, 30),
                    left(soonest), style=pal.warning if soonest < 10_000 else None)
            )  # fmt: skip
        return out


EVENT_STYLE = {
    "expired": "error", "killed": "error", "breaker-opened": "error", "failed": "warning",
    "cancelled": "warning", "paused": "warning", "lock-expired": "warning", "completed": "success",
    "refused": "error",
}  # fmt: skip


def _detail(data: dict[str, object], now_ms: int) -> str:
    """An event's data as ``k=v`` pairs, skipping empty values; store timestamps (``*_ms``)
    are shown relative to now (``deadline=+45s``), which is what a person can use."""
    parts = []
    for k, v in data.items():
        if v in ("", None, [], {}):
            continue
        if k.endswith("_ms") and isinstance(v, int) and v > 10**12:
            parts.append(f"{k[:-3]}={'+' if v >= now_ms else '-'}{age(abs(v - now_ms))}")
            continue
        parts.append(f"{k}={v if isinstance(v, str | int | float) else json.dumps(v, separators=(',', ':'))}")
    return " ".join(parts)


class EventsPane(TablePane):
    """The audit trail, oldest first like ``claimroom events``; follows the newest like tail -f."""

    COLUMNS = (
        ("age", "age"), ("type", "event"), ("task", "task"), ("agent", "agent"), ("token", "token"),
        ("operator", "operator"), ("detail", "detail"),
    )  # fmt: skip
    MARKABLE = False
    NOUN = "recent events"

    def total(self, snap: Snapshot) -> int:
        return len(snap.events)

    def rows(self, snap: Snapshot, now_ms: int, pal: Palette) -> list[Row]:
        return [
            row(e.id, age(now_ms - e.at_ms), e.type, e.task, e.agent, str(e.token) if e.token else "",
                e.operator, clip(_detail(e.data, now_ms), 60), style=self._style(e.type, pal))
            for e in snap.events
        ]  # fmt: skip

    @staticmethod
    def _style(event_type: str, pal: Palette) -> Style | None:
        name = EVENT_STYLE.get(event_type)
        return getattr(pal, name) if name else None

    def show(self, snap: Snapshot, now_ms: int, pal: Palette) -> None:
        table = self.table
        following = table.row_count == 0 or (
            self.page >= self.pages - 1 and table.cursor_row >= table.row_count - 1
        )
        if following:
            self.page = self.pages + EVENT_PAGES_AHEAD  # clamped to the last page in show
        super().show(snap, now_ms, pal)
        if following and table.row_count:
            # After the next refresh: scrolling before the table's scrollbar exists (rows just
            # arrived) would leave Textual drawing the scrollbar thumb at the top.
            table.call_after_refresh(self._follow)

    def _follow(self) -> None:
        table = self.table
        if table.row_count:
            table.move_cursor(row=table.row_count - 1, animate=False)
            table.call_after_refresh(self._sync_scrollbar)

    def _sync_scrollbar(self) -> None:
        # Textual sets the thumb only when the scroll changes while the scrollbar is shown.
        table = self.table
        if table.show_vertical_scrollbar:
            table.vertical_scrollbar.position = table.scroll_y


TABLE_PANES: dict[str, type[TablePane]] = {
    "queues": QueuesPane,
    "claims": ClaimsPane,
    "agents": AgentsPane,
    "orphans": OrphansPane,
    "locks": LocksPane,
    "events": EventsPane,
}
