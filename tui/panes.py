"""The table panes: queues, claims, agents, orphans, locks, events.

Each pane turns a ``Snapshot`` plus "now" into keyed rows; ``sync_table`` applies them in
place. Times are rendered relative to the app's clock (lease left, heartbeat age), which is
what a person needs and what keeps snapshot tests stable under a frozen clock.
"""

from __future__ import annotations

import json
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from claimroom.core.models import State, Task

from .auctions import AuctionsBox
from .board import Snapshot
from .pagedtable import PagedTable
from .tables import Palette, Row, age, clip, left, row, sync_table

MARK = "●"
EVENT_PAGES_AHEAD = 1_000  # any page past the end: the events pane then shows the newest


PAGE_ROWS = 50  # rows a table holds at once: a screenful or two; the rest are a page away


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
        yield PagedTable(self.turn, id=f"{self.pane_id}-table", cursor_type="row", zebra_stripes=False)
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
    COLUMNS = (
        ("queue", "queue"), ("ready", "ready"), ("claimed", "claimed"), ("review", "review"),
        ("state", "state"),
    )  # fmt: skip
    SORT_COLUMN = "queue"
    NOUN = "queues"

    def total(self, snap: Snapshot) -> int:
        return len(snap.queues)

    def rows(self, snap: Snapshot, now_ms: int, pal: Palette) -> list[Row]:
        # On Redis claimed counts come from the claims read; past the row limit, lower bounds.
        more = "+" if snap.claimed_capped else ""
        more_review = "+" if not snap.queue_claims_exact and snap.review_total > len(snap.reviews) else ""
        return [
            row(q.name, q.name, f"{q.ready:,}", f"{q.claimed:,}{more}", f"{q.review:,}{more_review}",
                "paused" if q.paused else "open",
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


def short_token(token: int) -> str:
    """A token as a table shows it: its last 6 digits after "…" once it is longer. Tokens of
    one epoch differ there (they count up by one from the epoch's 13-digit floor); the whole
    number is in `claimroom show` and `claimroom events`."""
    text = str(token)
    return text if len(text) <= 7 else "…" + text[-6:]


def _holder(t: Task) -> str:
    """The claim's agent, and the affinity owner it was meant for when that is another."""
    return f"{t.agent} for {t.owner}" if t.owner and t.owner != t.agent else t.agent


class ClaimsPane(TablePane):
    COLUMNS = (
        ("id", "task"), ("agent", "agent"), ("token", "token"), ("lease", "lease"), ("hb", "beat"),
        ("progress", "prog"), ("stage", "stage"), ("queue", "queue"), ("title", "title"),
    )  # fmt: skip
    SORT_COLUMN = "id"
    NOUN = "claims"

    def total(self, snap: Snapshot) -> int:
        return snap.claims_total

    def compose(self) -> ComposeResult:
        yield from super().compose()
        yield AuctionsBox()  # open bidding windows, under the claims (tui/auctions.py)

    def show(self, snap: Snapshot, now_ms: int, pal: Palette) -> None:
        super().show(snap, now_ms, pal)
        self.query_one(AuctionsBox).show(snap, now_ms, pal)

    def rows(self, snap: Snapshot, now_ms: int, pal: Palette) -> list[Row]:
        out = []
        for t in snap.claims:
            lease, style = claim_urgency(t, now_ms, pal)
            beat = age(now_ms - t.updated_ms)
            out.append(
                row(t.id, t.id, _holder(t), short_token(t.token), left(lease), beat, _pct(t.progress),
                    clip(t.stage, 16), clip(t.queue, 12), clip(t.title, 40), style=style)
            )  # fmt: skip
        return out


# A session id is a UUID: its first characters tell two sessions apart, the rest is noise
# (the whole id is in `claimroom agents`).
SESSION_CHARS = 8


class AgentsPane(TablePane):
    COLUMNS = (
        ("agent", "agent"), ("held", "held"), ("owned", "owns"), ("unread", "unread"), ("seen", "seen"),
        ("breaker", "breaker"),
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
                row(a.name, a.name, f"{len(a.held)}/{a.max_claims}", _owned(a.owned), _unread(snap, a.name),
                    seen, breaker,
                    str(a.consecutive_failures), a.session[:SESSION_CHARS],
                    clip(",".join(a.capabilities), 30), style=style)
            )  # fmt: skip
        return out


def _unread(snap: Snapshot, agent: str) -> str:
    n = snap.unread.get(agent, 0)
    return f"{n:,}" if n else ""


def _owned(n: int) -> str:
    """Affine tasks waiting for an agent as their key's owner (affinity)."""
    return f"{n:,}" if n else "-"


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
            row(e.id, age(now_ms - e.at_ms), e.type, e.task, e.agent, short_token(e.token) if e.token else "",
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
