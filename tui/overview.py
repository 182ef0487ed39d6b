"""The overview pane (a summary rather than a table), and the link line the header shares."""

from __future__ import annotations

from collections import deque

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from claimroom.core.models import State

from .board import Snapshot
from .live import LinkStatus
from .panes import claim_urgency
from .tables import Palette, Piece, age, clip, joined, left

RATE_WINDOW_MS = 60_000
STUCK_LINES = 3  # of the eight lines of "needs attention"
MAX_SERVER_LINES = 3


def _grid() -> Table:
    t = Table.grid(padding=(0, 1))
    t.add_column(no_wrap=True)
    t.add_column(justify="right", no_wrap=True)
    return t


def link_pieces(status: LinkStatus, now_ms: int, pal: Palette) -> list[Piece]:
    """Store reachability, sync age and whether hints are live."""
    out: list[Piece] = []
    if status.outage:
        out.append(("DOWN", pal.error))
        out.append((f"retry {status.retry_in_s:.1f}s", ""))
    else:
        out.append(("ok", pal.success))
    if status.synced_ms is not None:
        out.append((f"synced {age(now_ms - status.synced_ms)} ago", ""))
    out.append(("events live", pal.success) if status.live else ("polling", pal.warning))
    if status.key_events is False:
        # Changes made outside claimroom's scripts (a hand-run DEL) show at the next reconcile.
        out.append(("key events off", pal.warning))
    return out


def link_line(status: LinkStatus, now_ms: int, pal: Palette) -> Text:
    """``link_pieces`` in one line: ``ok · synced 2s ago · events live``."""
    return joined(link_pieces(status, now_ms, pal))


def server_lines(snap: Snapshot, pal: Palette) -> RenderableType:
    """The MCP servers on the board (``claimroom serve``): one line each, its clients, calls/s,
    errors and uptime, as it last said (each refreshes its record every few seconds)."""
    lines = [Text("mcp servers", style="bold")]
    for s in snap.servers[:MAX_SERVER_LINES]:
        pieces: list[Piece] = [
            (f"{s.transport} {clip(s.address, 22)}", pal.accent),
            (f"{s.clients} client{'s' if s.clients != 1 else ''}", ""),
            (f"{s.calls_per_s:.1f} calls/s", ""),
            (f"{s.errors:,} errors", pal.error if s.errors else pal.muted),
            (f"up {age(snap.store_ms - s.started_ms)}", pal.muted),
        ]
        lines.append(joined(pieces))
    if len(snap.servers) > MAX_SERVER_LINES:
        lines.append(Text(f"+{len(snap.servers) - MAX_SERVER_LINES} more", style=pal.muted))
    return Group(*lines)


class OverviewPane(Vertical):
    """Depths, claims, orphans, rates, store health and last sync on one screen."""

    def __init__(self) -> None:
        super().__init__(id="pane-overview")
        self._done: deque[tuple[int, int, int]] = deque(maxlen=600)  # (read_ms, done, dead)

    def compose(self) -> ComposeResult:
        with Horizontal(id="overview-boxes"):
            yield Static(id="ov-tasks", classes="ov-box")
            yield Static(id="ov-queues", classes="ov-box")
            yield Static(id="ov-health", classes="ov-box")
        yield Static(id="ov-servers")
        yield Static(id="ov-attention")

    def on_mount(self) -> None:
        for box, title in (("#ov-tasks", "tasks"), ("#ov-queues", "queues"), ("#ov-health", "health")):
            self.query_one(box).border_title = title
        self.query_one("#ov-servers").display = False  # until a snapshot shows a server

    def _rate(self, snap: Snapshot) -> tuple[str, str]:
        done, dead = snap.counts.get(State.DONE, 0), snap.counts.get(State.DEAD, 0)
        if not self._done or self._done[-1][0] != snap.read_ms:
            self._done.append((snap.read_ms, done, dead))
        while self._done and snap.read_ms - self._done[0][0] > RATE_WINDOW_MS:
            self._done.popleft()
        t0, done0, dead0 = self._done[0]
        span_min = (snap.read_ms - t0) / 60_000
        if span_min < 5 / 60:  # under 5 s of history: a rate would be noise
            return "—", "—"
        return f"{(done - done0) / span_min:.1f}", f"{(dead - dead0) / span_min:.1f}"

    def show(self, snap: Snapshot, now_ms: int, pal: Palette, status: LinkStatus) -> None:
        tasks = _grid()
        tone = {State.CLAIMED: pal.accent, State.ORPHANED: pal.warning, State.DEAD: pal.error,
                State.DONE: pal.success, State.RETRYING: pal.warning}  # fmt: skip
        for s in State:
            n = snap.counts.get(s, 0)
            tasks.add_row(Text(s.value), Text(f"{n:,}", style=(tone.get(s) if n else pal.muted) or ""))
        self.query_one("#ov-tasks", Static).update(tasks)

        queues = _grid()
        busiest = sorted(snap.queues, key=lambda q: (-q.ready, q.name))[:8]
        for q in busiest:
            name: list[Piece] = [(clip(q.name, 14), "")]
            if q.paused:
                name.append(("paused", pal.warning))
            queues.add_row(joined(name, " "), Text(f"{q.ready:,}"))
        if not busiest:
            queues.add_row(Text("no queues yet", style=pal.muted), Text(""))
        elif len(snap.queues) > len(busiest):
            queues.add_row(Text(f"+{len(snap.queues) - len(busiest)} more", style=pal.muted), Text(""))
        self.query_one("#ov-queues", Static).update(queues)

        expiring = sum(1 for t in snap.claims if claim_urgency(t, now_ms, pal)[1] is pal.error)
        breakers = sum(1 for a in snap.agents if a.breaker_open_until_ms > now_ms)
        done_rate, dead_rate = self._rate(snap)
        health = _grid()
        health.add_row("store", "DOWN" if status.outage else f"{snap.ping_ms:.1f} ms")
        health.add_row("events", Text("live", pal.success) if status.live else Text("polling", pal.warning))
        synced = "never" if status.synced_ms is None else age(now_ms - status.synced_ms) + " ago"
        health.add_row("synced", synced)
        health.add_row("agents", Text(f"{snap.agents_total:,}" + (f" ({breakers} open)" if breakers else ""),
                                      style=pal.error if breakers else ""))  # fmt: skip
        health.add_row("expiring", Text(str(expiring), style=pal.error if expiring else ""))
        health.add_row("locks", f"{snap.locks_total:,}")
        health.add_row("done/min", done_rate)
        health.add_row("dead/min", dead_rate)
        self.query_one("#ov-health", Static).update(health)

        servers = self.query_one("#ov-servers", Static)
        servers.display = bool(snap.servers)  # shown only when a server runs on the board
        if snap.servers:
            servers.update(server_lines(snap, pal))
        self.query_one("#ov-attention", Static).update(self._attention(snap, now_ms, pal))

    def _attention(self, snap: Snapshot, now_ms: int, pal: Palette) -> RenderableType:
        """The few things most likely to need a person: short leases first, then tasks
        blocked on something that can never finish (no other pane shows them), then orphans."""
        lines: list[Text] = []
        for t in snap.claims[:5]:
            lease, style = claim_urgency(t, now_ms, pal)
            if style is not None:
                lines.append(Text(f"{clip(t.id, 12):<6} {clip(t.agent, 12):<12} lease {left(lease):>6}  "
                                  f"{clip(t.title, 40)}", style=style))  # fmt: skip
        for s in snap.stuck[:STUCK_LINES]:
            on = clip(f"{s.dependency} {s.dependency_state}", 14)
            lines.append(Text(f"{clip(s.task.id, 12):<6} {'blocked on':<12} {on:>12}  "
                              f"{clip(s.task.title, 40)}", style=pal.warning))  # fmt: skip
        for t in snap.orphans[: 8 - len(lines)]:
            style = pal.error if t.state is State.DEAD else pal.warning
            lines.append(Text(f"{clip(t.id, 12):<6} {t.state.value:<12} {age(now_ms - t.updated_ms):>12}  "
                              f"{clip(t.title, 40)}", style=style))  # fmt: skip
        if not lines:
            lines.append(Text("nothing needs you right now", style=pal.success))
        return Group(Text("needs attention", style="bold"), *lines)
