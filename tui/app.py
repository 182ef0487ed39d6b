"""The control room: a Textual app over one board.

The app holds the model (``Snapshot`` + ``LinkStatus``); the panes render it; all store I/O
runs in async workers (``LiveLink`` and the action worker), Docker calls and store
resolution in thread workers, so the event loop never waits. ``run_resolving`` is what
``claimroom tui`` calls: the app comes up, then finds (or starts) its store; ``run`` takes
a store URL already resolved.
"""

from __future__ import annotations

import gc
import getpass
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import BindingType
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Static, TabbedContent, TabPane

from claimroom import themes
from claimroom.core import constants as C
from claimroom.core import validate
from claimroom.core.errors import ClaimroomError
from claimroom.core.infra import HealthStatus, Resolution, StartOptions
from claimroom.core.reaper import Reaper, checked_interval
from claimroom.core.safetext import shown
from claimroom.core.store import Store

from .actions import ACTIONS, KIND_PANES, Outcome
from .board import PANE_SECTIONS, SECTIONS, Board, Snapshot
from .commands import ControlRoomCommands
from .keys import BINDINGS, BOARD_ACTIONS, BoardKeys, FilterInput
from .keys import PANES as PANES  # re-exported: the pane order, for the palette, tests and screenshots
from .launch import Finder, find
from .live import LinkStatus, LiveLink
from .operate import operate
from .overview import OverviewPane, link_pieces
from .panes import TABLE_PANES, TablePane
from .plans import PlansPane
from .review import ReviewPane
from .review import decide as review_decide
from .storepane import StorePane
from .tables import Palette, Piece, age, cursor_key, joined

INFO_EVERY_S = 10.0
# When the app owns its process, the cyclic GC runs on these timers, each pass in a loop
# slice of its own, instead of whenever allocations tip it, which was often in the middle
# of drawing a frame (a 40 ms full pass on top of a 35 ms table redraw, bench/tui.py).
GC_YOUNG_EVERY_S = 1.0
GC_FULL_EVERY = 30  # young passes per full pass


def os_user() -> str:
    """The operator's name when none is given: the OS user, as the design note says."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry and no USER variable (some containers): still audit something
        return "operator"


class ControlRoom(BoardKeys):
    """Watch and steer one claimroom board."""

    CSS_PATH = str(themes.STYLESHEET)
    TITLE = "claimroom"
    COMMANDS = App.COMMANDS | {ControlRoomCommands}
    BINDINGS: ClassVar[list[BindingType]] = BINDINGS
    # Set once the store is known: at once when one is given, else when the finder found it.
    store: Store
    board: Board
    link: LiveLink

    def __init__(
        self,
        store: Store | None = None,
        *,
        readonly: bool = False,
        theme: str | None = None,
        operator: str | None = None,
        clock: Callable[[], float] = time.time,
        project: Path | None = None,
        resolution: Resolution | None = None,
        finder: Finder | None = None,
        health_interval_s: float = C.health_interval_s,
        reap_interval_s: float = C.reap_interval_s,
        freeze_gc: bool = False,
    ) -> None:
        super().__init__()
        if store is not None:
            self.namespace = store.namespace
        elif finder is not None:
            self.namespace = finder.namespace
        else:
            raise ValueError("the control room needs a store or a finder")
        for t in themes.THEMES.values():
            self.register_theme(t)
        self.theme = themes.resolve(theme)
        self.readonly = readonly
        self.operator = validate.operator(operator or os_user())
        self.clock = clock
        # A real wall clock is corrected by the store's clock (rule 3: deadlines are store
        # time); an injected clock is taken as the truth, which is what tests freeze.
        self._correct_skew = clock is time.time
        self.finder = finder
        self.project = project if project is not None or finder is None else finder.project
        self.resolution = resolution  # how the store was chosen, when the app (or CLI) resolved it
        self.health_interval_s = health_interval_s
        # A control room that may act also takes part in the leader-elected reaper, so
        # recovery runs while one is open even when no agent claims; a read-only one only
        # looks. (seed.pin_app turns it off: a pinned board's times lie in the past.)
        self.reaps = not readonly
        self.reap_interval_s = checked_interval(reap_interval_s)
        self.reaper: Reaper | None = None
        self.freeze_gc = freeze_gc
        self._gc_passes = 0
        self.health_pin: tuple[HealthStatus, ...] | None = None  # seed.pin_app: a fixed health history
        self.attached = False  # the store is known and the live workers run
        self.exit_message = ""  # printed after the app exits (run_resolving)
        if store is not None:
            self._bind(store)
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
                yield StorePane(self)
            with TabPane("Plans", id="plans"):
                yield PlansPane()
            with TabPane("Review", id="review"):
                yield ReviewPane("review")
        # Disabled while hidden, so it never takes focus (and the board's keys) by itself.
        yield FilterInput(placeholder="filter rows (escape clears)", id="filter", disabled=True)
        # Compact, so the keys an operator needs most fit in 80 columns (keys.FOOTER_ACTIONS);
        # ":" is in it already, so no separate palette key on the right.
        yield Footer(show_command_palette=False, compact=True)

    def _bind(self, store: Store) -> None:
        self.store = store
        self.board = Board(store, self.clock, switch_key_events=not self.readonly)
        self.link = LiveLink(self.board, self._on_snapshot, self._on_status)
        # Started when live (_go_live), stopped on the way out (on_unmount).
        self.reaper = store.reaping("tui", interval_s=self.reap_interval_s)

    def on_mount(self) -> None:
        # The theme's colours are known only once the stylesheet is applied: now, and on each change.
        self.palette_styles = Palette.of(self)
        self.theme_changed_signal.subscribe(self, lambda _theme: self._on_theme())
        self.set_interval(1.0, self._tick)
        self.set_interval(INFO_EVERY_S, self._read_info)
        if self.finder is not None and not hasattr(self, "store"):
            self.run_worker(find(self, self.finder), name="find", group="find")
        else:
            self._go_live()
        self._render_status()

    def attach(self, store: Store, resolution: Resolution | None = None) -> None:
        """Take the store the finder resolved, and go live on it."""
        self._bind(store)
        self.resolution = resolution
        self._go_live()
        self._render_active()

    def _go_live(self) -> None:
        self.attached = True
        self.run_worker(self.link.run_refresh(), name="refresh", group="live")
        self.run_worker(self.link.run_hints(), name="hints", group="live")
        if self.reaps and self.reaper is not None:
            # Its own task rather than a worker: on_unmount stops it, handing the leader
            # lease over, before the store it uses is closed.
            self.reaper.start()
        self._read_info()
        self.query_one(StorePane).begin(
            self.store.url,
            self.project,
            self.resolution,
            interval_s=self.health_interval_s,
            pinned=self.health_pin,
        )
        self._render_status()

    def quit_with(self, code: int, message: str) -> None:
        """End the app with an exit code and a message for after the screen is restored."""
        self.exit_message = message
        self.exit(return_code=code)

    async def on_unmount(self) -> None:
        if self.freeze_gc:
            gc.enable()
        if self.reaper is not None:
            await self.reaper.stop()
        # The app owns the store it was given: its connections close with the app's loop.
        if hasattr(self, "store"):
            await self.store.close()

    def notify(self, message: str, *, title: str = "", **kwargs: Any) -> None:
        # Kept so tests (and a later "recent notices" view) can read what the operator was told.
        # Messages carry task titles and store errors: never markup, no control characters.
        message, title = shown(message, multiline=True), shown(title)
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
        first = self.snapshot is None
        self.snapshot = snap
        self._render_active()
        if first and self.freeze_gc:
            # Everything built so far (Textual, the widgets, the first board) lives as long as
            # the process: keep it out of the cyclic collector, whose full passes over it
            # stalled the event loop for 100-170 ms at a time (bench/tui.py). Only when the
            # app owns its process (run, run_resolving): in a test process it would pin
            # earlier tests' garbage.
            gc.freeze()
            gc.disable()
            self.set_interval(GC_YOUNG_EVERY_S, self._collect_garbage)

    def _collect_garbage(self) -> None:
        self._gc_passes += 1
        gc.collect(2 if self._gc_passes % GC_FULL_EVERY == 0 else 1)

    def _on_status(self, status: LinkStatus) -> None:
        self._render_status()

    def _tick(self) -> None:
        # Countdowns and ages move every second without a store read.
        if not self.attached:
            return
        if not self.link.status.paused:
            self._render_active()
        self._render_status()

    @work(group="info", exclusive=True)
    async def _read_info(self) -> None:
        if not self.attached:
            return
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

    def _render_active(self) -> None:
        """Render only the pane on screen: 500-row tables are not redrawn when hidden."""
        if not self.is_running or not self.attached:
            return  # shutting down (no widgets left to fill), or no store yet
        snap, name = self.snapshot, self.active_pane
        now, pal = self.now_ms(), self.palette_styles
        if name == "store":
            self.query_one(StorePane).show()
        elif snap is None:
            return
        elif name == "overview":
            self.query_one(OverviewPane).show(snap, now, pal, self.link.status)
        elif (pane := self.table_pane(name)) is not None:
            pane.show(snap, now, pal)
        elif name == "plans":
            self.query_one(PlansPane).show(snap, now, pal)

    def _render_status(self) -> None:
        if not self.is_running:
            return
        line = Text()
        line.append("claimroom ", "bold")
        line.append(shown(self.namespace) + "  ")
        if not self.attached:
            line.append("finding the store…", self.palette_styles.warning)
            self.query_one("#status", Static).update(line, layout=False)
            return
        st, pal, now = self.link.status, self.palette_styles, self.now_ms()
        link = link_pieces(st, now, pal)
        if self.snapshot is not None and not st.outage:
            link.append((f"{self.snapshot.ping_ms:.1f} ms", ""))
        line.append_text(joined(link, end="  "))
        tail: list[Piece] = []
        if st.paused:
            tail.append(("PAUSED", pal.warning))
        if self.readonly:
            tail.append(("READ-ONLY", pal.accent))
        tail.append((self.board.url, pal.muted))
        if self.resolution is not None:  # which store, and why (the store pane has the particulars)
            tail.append((f"{self.resolution.how}: {self.resolution.detail.split(' (', 1)[0]}", pal.muted))
        line.append_text(joined(tail, "  "))
        self.query_one("#status", Static).update(line, layout=False)  # one line, always
        outage = self.query_one("#outage", Static)
        outage.set_class(bool(st.outage), "-down")
        if st.outage:
            synced = "never" if st.synced_ms is None else age(now - st.synced_ms) + " ago"
            outage.update(
                Text(
                    f"⚠ {shown(st.outage)}\nreconnecting: attempt {st.attempts}, "
                    f"next in {st.retry_in_s:.1f} s; showing the last good snapshot (synced {synced})"
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
        if self.attached:
            # Read what this pane shows from now on; now, rather than at the next hint.
            self.board.sections = PANE_SECTIONS.get(self.active_pane, SECTIONS)
            self.link.poke()
        self._render_active()
        if (pane := self.table_pane()) is not None:
            pane.table.focus()
        elif self.active_pane == "store":
            self.query_one(StorePane).focus()  # arrows and page keys scroll it
            self.query_one(StorePane).refresh_topology()  # now, not at the pane's next tick
        elif self.active_pane == "plans":
            self.query_one(PlansPane).view.focus()  # enter, space, arrows fold and move

    # --- keys ----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While a dialog is open its own keys apply; the board's keys must not act behind it.
        # Textual's own app actions stay allowed: a dialog's Tab and arrows are app.focus_next
        # and app.focus_previous, and refusing those left the operator stuck on Cancel.
        # Before the store is found only quitting (and moving in the consent dialog) makes sense.
        if action in BOARD_ACTIONS:
            return self.attached and not isinstance(self.screen, ModalScreen)
        return self.attached or action in ("quit", "focus_next", "focus_previous")

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if (pane := self.table_pane()) is not None:
            pane.filter_text = event.value.strip()
            self._render_active()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.action_close_filter()

    # --- operator actions ----------------------------------------------------------

    def store_op(self, op: str) -> None:
        """Start, stop or restart the store from anywhere (the palette); the pane asks first."""
        self.query_one(StorePane).request(op)

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

    def action_review(self, verdict: str) -> None:
        """Accept or return the task under the cursor of the review pane (asks first)."""
        if self.readonly:
            self.notify(f"read-only mode: {verdict} is disabled", severity="warning")
        elif self.active_pane != "review":
            self.notify(f"{verdict}: select a task on the review pane", severity="warning")
        else:
            self._run_review(verdict)

    @work(group="act", exclusive=True)
    async def _run_review(self, verdict: str) -> None:
        outcome = await review_decide(self, verdict)
        if outcome is not None:
            self._report(f"{verdict.title()} review", outcome)

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
        app = ControlRoom(store, readonly=readonly, theme=theme_name, operator=operator, freeze_gc=True)
    except (ClaimroomError, themes.UnknownTheme) as exc:
        sys.stderr.write(f"claimroom: {exc}\n")
        return 2
    app.run()
    return app.return_code or 0


def run_resolving(
    url: str | None,
    namespace: str,
    *,
    project: Path,
    allow_file_fallback: bool | None,
    readonly: bool = False,
    theme: str | None = None,
    operator: str | None = None,
    default_port: int = C.default_redis_port,
    options: StartOptions | None = None,
) -> int:
    """``claimroom tui``: come up at once, find (or start) the store inside the app, then run.

    ``url``, ``project`` and ``allow_file_fallback`` mean what they mean to ``resolve``; when
    no store can be had and consent was never given, the app asks in a dialog. Returns the
    exit code: 5 when the store is unavailable (what to do is printed after the app exits).
    """
    try:
        validate.namespace(namespace)
        finder = Finder(url, namespace, project, allow_file_fallback, default_port, options)
        app = ControlRoom(
            readonly=readonly, theme=themes.resolve(theme), operator=operator, finder=finder, freeze_gc=True
        )
    except (ClaimroomError, themes.UnknownTheme) as exc:
        sys.stderr.write(f"claimroom: {exc}\n")
        return 2
    app.run()
    if app.exit_message:
        sys.stderr.write(f"claimroom: {app.exit_message}\n")
    return app.return_code or 0
