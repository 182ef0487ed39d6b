"""The control room: a Textual app over one board.

The app holds the model (``Snapshot`` + ``LinkStatus``); the panes render it; all store I/O
runs in async workers (``LiveLink`` and the action worker), so the event loop never waits
on Redis. ``run`` is what ``claimroom tui`` calls.
"""

from __future__ import annotations

import getpass
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

from claimroom import themes
from claimroom.core import validate
from claimroom.core.errors import ClaimroomError
from claimroom.core.store import Store
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Static, TabbedContent, TabPane

from .actions import ACTIONS, KIND_PANES, Outcome
from .board import Board, Snapshot
from .commands import ControlRoomCommands
from .dialogs import HelpScreen
from .live import LinkStatus, LiveLink
from .operate import operate
from .overview import OverviewPane, StorePane, link_line
from .panes import TABLE_PANES, TablePane
from .tables import Palette, age, cursor_key

PANES = ("overview", "queues", "claims", "agents", "orphans", "locks", "events", "store")
INFO_EVERY_S = 10.0


def os_user() -> str:
    """The operator's name when none is given: the OS user, as the design note says."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry and no USER variable (some containers): still audit something
        return "operator"


class FilterInput(Input):
    """The ``/`` filter: narrows the current table as you type; escape clears it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Clear filter", id="filter.clear")]

    def action_close(self) -> None:
        self.value = ""
        self.app.action_close_filter()  # type: ignore[attr-defined]


class ControlRoom(App[int]):
    """Watch and steer one claimroom board."""

    CSS_PATH = str(themes.STYLESHEET)
    TITLE = "claimroom"
    COMMANDS = App.COMMANDS | {ControlRoomCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Help", id="help"),
        Binding("slash", "filter", "Filter", id="filter"),
        Binding("colon", "command_palette", "Palette", id="palette"),
        # Declared here (Textual adds ctrl+p only when no binding opens the palette) to carry an id.
        Binding("ctrl+p", "command_palette", "Palette", show=False, priority=True, id="palette.ctrl_p"),
        *(
            Binding(str(i), f"pane('{p}')", p.title(), show=False, id=f"pane.{p}")
            for i, p in enumerate(PANES, 1)
        ),
        Binding("j", "cursor(1)", "Down", show=False, id="cursor.down"),
        Binding("k", "cursor(-1)", "Up", show=False, id="cursor.up"),
        Binding("space", "mark", "Mark", id="mark"),
        Binding("escape", "clear_marks", "Clear marks", show=False, id="marks.clear"),
        Binding("p", "toggle_live", "Pause live", id="live.pause"),
        Binding("ctrl+r", "refresh", "Refresh", show=False, id="refresh"),
        Binding("ctrl+q", "quit", "Quit", priority=True, id="quit"),
        *(
            Binding(
                a.key, f"act('{a.name}')", a.label, show=a.name in ("kill", "reassign"), id=f"action.{a.name}"
            )
            for a in ACTIONS.values()
        ),
    ]

    def __init__(
        self,
        store: Store,
        *,
        readonly: bool = False,
        theme: str | None = None,
        operator: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        for t in themes.THEMES.values():
            self.register_theme(t)
        self.theme = themes.resolve(theme)
        self.store = store
        self.readonly = readonly
        self.operator = validate.operator(operator or os_user())
        self.clock = clock
        # A real wall clock is corrected by the store's clock (rule 3: deadlines are store
        # time); an injected clock is taken as the truth, which is what tests freeze.
        self._correct_skew = clock is time.time
        self.board = Board(store, clock)
        self.link = LiveLink(self.board, self._on_snapshot, self._on_status)
        self.snapshot: Snapshot | None = None
        self.palette_styles = Palette.of(self)
        self.last_outcome: Outcome | None = None  # the last confirmed action's result
        self.notices: deque[str] = deque(maxlen=50)  # recent notifications, newest last

    # --- layout --------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        yield Static(id="outage")
        with TabbedContent(id="panes", initial="overview"):
            with TabPane("Overview", id="overview"):
                yield OverviewPane()
            for name, cls in TABLE_PANES.items():
                with TabPane(name.title(), id=name):
                    yield cls(name)
            with TabPane("Store", id="store"):
                yield StorePane()
        # Disabled while hidden, so it never takes focus (and the board's keys) by itself.
        yield FilterInput(placeholder="filter rows (escape clears)", id="filter", disabled=True)
        yield Footer(show_command_palette=False)  # ":" is in the footer already

    def on_mount(self) -> None:
        # The theme's colours are known only once the stylesheet is applied: now, and on each change.
        self.palette_styles = Palette.of(self)
        self.theme_changed_signal.subscribe(self, lambda _theme: self._on_theme())
        self.run_worker(self.link.run_refresh(), name="refresh", group="live")
        self.run_worker(self.link.run_hints(), name="hints", group="live")
        self.set_interval(1.0, self._tick)
        self.set_interval(INFO_EVERY_S, self._read_info)
        self._read_info()
        self._render_status()

    async def on_unmount(self) -> None:
        # The app owns the store it was given: its connections close with the app's loop.
        await self.store.close()

    def notify(self, message: str, *, title: str = "", **kwargs: Any) -> None:
        # Kept so tests (and a later "recent notices" view) can read what the operator was told.
        # Messages carry task titles and store errors: never markup.
        self.notices.append(f"{title}: {message}" if title else message)
        kwargs.setdefault("markup", False)
        super().notify(message, title=title, **kwargs)

    # --- the model -----------------------------------------------------------------

    def now_ms(self) -> int:
        """Now on the store's clock (see ``_correct_skew``)."""
        now = int(self.clock() * 1000)
        if self._correct_skew and self.snapshot is not None:
            now += self.snapshot.store_ms - self.snapshot.read_ms
        return now

    def _on_snapshot(self, snap: Snapshot) -> None:
        self.snapshot = snap
        self._render_active()

    def _on_status(self, status: LinkStatus) -> None:
        self._render_status()

    def _tick(self) -> None:
        # Countdowns and ages move every second without a store read.
        if not self.link.status.paused:
            self._render_active()
        self._render_status()

    @work(group="info", exclusive=True)
    async def _read_info(self) -> None:
        try:
            info = await self.board.server_info()
        except Exception:  # the refresh loop reports outages; the facts just stay as they were
            return
        if not self.is_running:
            return
        self.query_one(StorePane).info = info
        if self.active_pane == "store":
            self._render_active()

    # --- rendering -----------------------------------------------------------------

    @property
    def active_pane(self) -> str:
        return self.query_one(TabbedContent).active or "overview"

    def table_pane(self, name: str | None = None) -> TablePane | None:
        name = name or self.active_pane
        if name not in TABLE_PANES:
            return None
        return self.query_one(f"#pane-{name}", TablePane)

    def _render_active(self) -> None:
        """Render only the pane on screen: 500-row tables are not redrawn when hidden."""
        if not self.is_running:
            return  # shutting down: a snapshot that lands now has no widgets left to fill
        snap, name = self.snapshot, self.active_pane
        now, pal = self.now_ms(), self.palette_styles
        if name == "store":
            self.query_one(StorePane).show(
                self.board.url, self.store.namespace, list(self.board.pings), self.link.status, now, pal
            )
        elif snap is None:
            return
        elif name == "overview":
            self.query_one(OverviewPane).show(snap, now, pal, self.link.status)
        elif (pane := self.table_pane(name)) is not None:
            pane.show(snap, now, pal)

    def _render_status(self) -> None:
        if not self.is_running:
            return
        st, pal, now = self.link.status, self.palette_styles, self.now_ms()
        line = Text()
        line.append("claimroom ", "bold")
        line.append(self.store.namespace + "  ")
        line.append_text(link_line(st, now, pal))
        if self.snapshot is not None and not st.outage:
            line.append(f" · {self.snapshot.ping_ms:.1f} ms")
        if st.paused:
            line.append("  PAUSED", pal.warning)
        if self.readonly:
            line.append("  READ-ONLY", pal.accent)
        line.append(f"  {self.board.url}", pal.muted)
        self.query_one("#status", Static).update(line)
        outage = self.query_one("#outage", Static)
        outage.set_class(bool(st.outage), "-down")
        if st.outage:
            synced = "never" if st.synced_ms is None else age(now - st.synced_ms) + " ago"
            outage.update(
                Text(
                    f"⚠ {st.outage}\nreconnecting: attempt {st.attempts}, next in {st.retry_in_s:.1f} s; "
                    f"showing the last good snapshot (synced {synced})"
                )
            )

    def _on_theme(self) -> None:
        self.palette_styles = Palette.of(self)
        self._render_active()
        self._render_status()

    def set_theme(self, name: str) -> None:
        self.theme = themes.resolve(name)
        self.notify(f"theme: {themes.short_name(self.theme)}")

    @on(TabbedContent.TabActivated)
    def _on_tab(self, event: TabbedContent.TabActivated) -> None:
        self._render_active()
        if (pane := self.table_pane()) is not None:
            pane.table.focus()

    # --- keys ----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While a dialog is open its own keys apply; the board's keys must not act behind it.
        return not (isinstance(self.screen, ModalScreen) and action not in ("quit", "command_palette"))

    def action_pane(self, name: str) -> None:
        self.query_one(TabbedContent).active = name

    def action_cursor(self, delta: int) -> None:
        if (pane := self.table_pane()) is not None:
            (pane.table.action_cursor_down if delta > 0 else pane.table.action_cursor_up)()

    def action_mark(self) -> None:
        pane = self.table_pane()
        if pane is None or not pane.MARKABLE:
            self.notify("nothing to mark on this pane", severity="warning")
            return
        key = cursor_key(pane.table)
        if key is not None:
            pane.toggle_mark(key, self.palette_styles)
            pane.table.action_cursor_down()
            if self.snapshot is not None:
                pane.show(self.snapshot, self.now_ms(), self.palette_styles)

    def action_clear_marks(self) -> None:
        if (pane := self.table_pane()) is not None and pane.marks:
            pane.marks.clear()
            self._render_active()

    def action_filter(self) -> None:
        pane = self.table_pane()
        if pane is None:
            self.notify("the filter applies to table panes (2-7)", severity="warning")
            return
        box = self.query_one(FilterInput)
        box.value = pane.filter_text
        box.disabled = False
        box.add_class("-open")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if (pane := self.table_pane()) is not None:
            pane.filter_text = event.value.strip()
            self._render_active()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.action_close_filter()

    def action_close_filter(self) -> None:
        box = self.query_one(FilterInput)
        box.remove_class("-open")
        box.disabled = True
        if (pane := self.table_pane()) is not None:
            pane.table.focus()

    def action_toggle_live(self) -> None:
        self.link.set_paused(not self.link.status.paused)
        self.notify("live updates paused" if self.link.status.paused else "live updates resumed")

    def action_refresh(self) -> None:
        self.link.poke(force=True)

    def action_help(self) -> None:
        rows = []
        for _key, binding in self._bindings:
            if binding.id:
                rows.append(
                    (self.get_key_display(binding), binding.description or binding.action, binding.id)
                )
        notes = [
            "Actions work on the marked rows (space), else the row under the cursor.",
            "Each asks first (Cancel is the default) and refuses if the task changed meanwhile.",
            "Remap keys through App.set_keymap with the ids in the last column.",
        ]
        if self.readonly:
            notes.append("Read-only mode: actions are disabled.")
        self.push_screen(HelpScreen(rows, notes))

    # --- operator actions ----------------------------------------------------------

    def action_act(self, name: str) -> None:
        spec = ACTIONS[name]
        if self.readonly:
            self.notify(f"read-only mode: {spec.label.lower()} is disabled", severity="warning")
            return
        if self.active_pane not in KIND_PANES[spec.kind]:
            where = " or ".join(KIND_PANES[spec.kind])
            self.notify(f"{spec.label}: select rows on the {where} pane", severity="warning")
            return
        self._run_action(name)

    def _selected(self, pane: TablePane) -> list[str]:
        if pane.marks:
            return [k for k in pane.shown if k in pane.marks]
        key = cursor_key(pane.table)
        return [key] if key is not None else []

    @work(group="act", exclusive=True)
    async def _run_action(self, name: str) -> None:
        spec, pane, snap = ACTIONS[name], self.table_pane(), self.snapshot
        if pane is None or snap is None or not (keys := self._selected(pane)):
            self.notify(f"{spec.label}: nothing selected", severity="warning")
            return
        outcome = await operate(self, spec, keys, snap)
        if outcome is not None:
            self._report(spec.label, outcome)
            pane.marks.clear()
            self._render_active()

    def _report(self, label: str, outcome: Outcome) -> None:
        self.last_outcome = outcome
        self.notify("\n".join(outcome.lines()) or "nothing done", title=label, severity=outcome.severity)
        self.link.poke(force=True)


def run(
    url: str, namespace: str, *, readonly: bool = False, theme: str | None = None, operator: str | None = None
) -> int:
    """Run the control room on a board until the operator quits; returns an exit code."""
    try:
        theme_name = themes.resolve(theme)
        store = Store.from_url(url, namespace)
        app = ControlRoom(store, readonly=readonly, theme=theme_name, operator=operator)
    except (ClaimroomError, themes.UnknownTheme) as exc:
        sys.stderr.write(f"claimroom: {exc}\n")
        return 2
    app.run()
    return app.return_code or 0
