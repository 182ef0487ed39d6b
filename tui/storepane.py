"""The store pane: where the board lives, how healthy it is, and the container or server behind it.

The pane owns the store's watchers: the topology read (``Store.topology``: every
``TOPOLOGY_EVERY_S`` while the pane is on screen, so a failover shows within seconds, its
errors shown above the last good read), a ``HealthMonitor`` (async, in a worker; it restarts a
container or redis-server claimroom started for the project when it dies), a timer that
reads the container's or process's state and log in a thread worker, and the operator's
start / stop / restart, each confirmed in a dialog whose default is Cancel and run in a
thread worker. Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Sparkline, Static
from textual.worker import Worker, WorkerFailed, WorkerState

from claimroom.core.errors import ClaimroomError
from claimroom.core.infra import HealthMonitor, HealthStatus, Resolution
from claimroom.core.topology import Topology

from .dialogs import Choice, ChoiceDialog
from .infra import InfraFacts, operate, read_facts, unmanaged
from .overview import link_line
from .room import Room
from .storeview import (
    chosen_line,
    grid,
    health_view,
    infra_title,
    infra_view,
    logs_view,
    plain,
    server_view,
    topology_title,
    topology_view,
)

HEALTH_HISTORY = 300  # statuses kept (10 minutes at the default 2 s interval)
FACTS_EVERY_S = 5.0  # how often the container's state and log are read
TOPOLOGY_EVERY_S = 2.0  # how often the topology is read while the pane is on screen
TOPOLOGY_TIMEOUT_S = 8.0  # a read's parts are bounded (2 s each); this bounds the whole

# op -> (the dialog's choice, with its letter, what the dialog warns about)
OPS: dict[str, tuple[Choice, str]] = {
    "start": (Choice("s", "Start", "go", "primary"), "agents reconnect once it answers"),
    "stop": (
        Choice("s", "Stop", "go", "error"),
        "every agent loses the store until it is started again; the health monitor will not "
        "restart it while it is stopped from here; its data stays",
    ),
    "restart": (
        Choice("r", "Restart", "go"),
        "agents lose the store for a moment and reconnect; leases keep running on the store's clock",
    ),
}
KEYS = {"start": "U", "stop": "D", "restart": "R"}


class StorePane(VerticalScroll):
    """Where the board lives: URL, link, pings, server facts, health history, container, log."""

    DEFAULT_CLASSES = "store-pane"
    OP_NAMES: ClassVar[tuple[str, ...]] = tuple(OPS)

    def __init__(self, room: Room) -> None:
        super().__init__(id="pane-store")
        self.room = room  # the app, with the model it holds (Textual's ``self.app`` is any App)
        self.info: dict[str, str] = {}
        self.url = ""  # the store's URL (with any password: the monitor connects with it)
        self.project: Path | None = None
        self.resolution: Resolution | None = None
        self.history: deque[HealthStatus] = deque(maxlen=HEALTH_HISTORY)
        self.facts: InfraFacts | None = None
        self.busy = ""  # the operator's start/stop/restart while it runs
        self.held_down = False  # stopped from here: the monitor leaves it stopped
        self.last_action = ""
        self.monitor: HealthMonitor | None = None
        self._stop_monitor = asyncio.Event()
        self.topology: Topology | None = None  # the last good read
        self.topology_error = ""  # why the latest read failed ("" when it did not)
        self.topology_read_s: float | None = None  # app clock of the last good read
        self._reading_topology = False

    def compose(self) -> ComposeResult:
        yield Static(id="store-facts")
        yield Sparkline([], id="store-pings")
        yield Static(id="store-topology", classes="store-box")
        with Horizontal(id="store-boxes"):
            yield Static(id="store-info", classes="store-box")
            yield Static(id="store-health", classes="store-box")
        yield Static(id="store-infra", classes="store-box")
        with Horizontal(id="store-buttons"):
            for op, (choice, _warning) in OPS.items():
                yield Button(f"{choice.label} ({KEYS[op]})", id=f"store-{op}", disabled=True)
        yield Static(id="store-logs", classes="store-box")

    def on_mount(self) -> None:
        for box, title in (("#store-info", "server"), ("#store-health", "health"), ("#store-logs", "log")):
            self.query_one(box).border_title = title
        self.query_one("#store-infra").border_title = infra_title(None)
        self.query_one("#store-topology").border_title = topology_title(None)

    # --- watching ------------------------------------------------------------------

    def begin(
        self,
        url: str,
        project: Path | None,
        resolution: Resolution | None,
        *,
        interval_s: float,
        pinned: Sequence[HealthStatus] | None = None,
    ) -> None:
        """Start watching the store at ``url`` (called once the app has its store)."""
        self.url, self.project, self.resolution = url, project, resolution
        self.refresh_topology()
        self.set_interval(TOPOLOGY_EVERY_S, self._topology_tick)
        if project is None or url.startswith("file:"):
            self.facts = unmanaged(url, project)  # nothing to read: known at once
        else:
            self.refresh_facts()
            self.set_interval(FACTS_EVERY_S, self.refresh_facts)
        if pinned is not None:  # pictures and snapshot tests: a fixed history, no monitor
            self.history.extend(pinned)
            return
        self.monitor = HealthMonitor(url, project=project, interval_s=interval_s, on_status=self._on_health)
        self.run_worker(self.monitor.run(self._stop_monitor), name="health", group="health")

    def on_unmount(self) -> None:
        self._stop_monitor.set()

    def _on_health(self, status: HealthStatus) -> None:
        before = self.history[-1] if self.history else None
        self.history.append(status)
        if status.state == "restarting" and not (before and before.state == "restarting"):
            self.room.notify("the store stopped answering: restarting it", severity="warning")
        if before is not None and status.restarts > before.restarts and status.ok:
            self.room.notify(f"the store is back (restarted {status.restarts} times by the control room)")
            self.refresh_facts()
        self.redraw()

    def refresh_facts(self) -> None:
        """Read the container's or server's state and log, in a thread (Docker calls block)."""
        if self.project is None or not self.url:
            return
        self.run_worker(
            partial(read_facts, self.project, self.url),
            name="store-facts",
            group="store-facts",
            thread=True,
            exclusive=True,
            exit_on_error=False,
        )

    def _topology_tick(self) -> None:
        if self.room.active_pane == "store":  # nobody looks otherwise: no load on the servers
            self.refresh_topology()

    def refresh_topology(self) -> None:
        """Read the topology again (in a worker), unless a read is still under way."""
        if self._reading_topology or not self.room.attached:
            return
        self._reading_topology = True
        self.run_worker(self._read_topology(), name="store-topology", group="store-topology")

    async def _read_topology(self) -> None:
        try:
            async with asyncio.timeout(TOPOLOGY_TIMEOUT_S):
                found = await self.room.board.topology()
        except ClaimroomError as exc:
            self.topology_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        except TimeoutError:
            self.topology_error = f"the topology read took longer than {TOPOLOGY_TIMEOUT_S:g} s"
        except Exception as exc:  # the pane must live through any failure of a read: say it, go on
            self.topology_error = f"{type(exc).__name__}: {exc}"
        else:
            self.topology, self.topology_error, self.topology_read_s = found, "", self.room.clock()
        finally:
            self._reading_topology = False
        self.redraw()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.name == "store-facts" and event.state is WorkerState.SUCCESS:
            self.facts = worker.result
            self.redraw()

    # --- steering ------------------------------------------------------------------

    def op_refusal(self, op: str) -> str:
        """Why ``op`` cannot run now ("" when it can)."""
        facts = self.facts
        if self.room.readonly:
            return "read-only mode: start, stop and restart are disabled"
        if facts is None:
            return "the store's container or server has not been read yet"
        if not facts.managed or self.project is None:
            return facts.note
        if self.busy:
            return f"the store is busy: {self.busy}"
        if op == "start" and facts.running:
            return "the store is already running"
        if op in ("stop", "restart") and not facts.running:
            return f"the store is not running ({facts.state}): start it"
        return ""

    @on(Button.Pressed, "#store-buttons Button")
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.request((event.button.id or "").removeprefix("store-"))

    def request(self, op: str) -> None:
        """Start, stop or restart the store, after the operator confirms (keys U, D, R)."""
        if why := self.op_refusal(op):
            self.room.notify(f"store {op}: {why}", severity="warning")
            return
        self._operate(op)

    @work(group="store-op", exclusive=True)
    async def _operate(self, op: str) -> None:
        facts, project = self.facts, self.project
        assert facts is not None and project is not None
        choice, warning = OPS[op]
        what = f"docker container {facts.name}" if facts.kind == "docker" else facts.name
        lines = [what, f"state: {facts.state}", f"serving {self.room.board.url}"]
        answer = await self.room.push_screen_wait(
            ChoiceDialog(f"{choice.label} the store?", lines, [choice], warning)
        )
        if answer is None or (why := self.op_refusal(op)):
            if answer is not None:
                self.room.notify(f"store {op}: {why}", severity="warning")
            return
        self.busy = {"start": "starting", "stop": "stopping", "restart": "restarting"}[op]
        if self.monitor is not None:
            self.monitor.restart = False  # the operator acts: the monitor must not race it
        self.redraw()
        worker = self.run_worker(
            partial(operate, op, project, self.url), name="store-op", thread=True, exit_on_error=False
        )
        ok = True
        try:
            said = await worker.wait()
        except WorkerFailed as failed:
            ok, err = False, failed.error
            said = str(err) if isinstance(err, ClaimroomError) else f"{type(err).__name__}: {err}"
        self.busy = ""
        if ok:
            self.held_down = op == "stop"
        if self.monitor is not None:
            self.monitor.restart = not self.held_down
            self._on_health(await self.monitor.check())  # show the new state now, not at the next probe
        self.last_action = said
        title = f"store {op}" + ("" if ok else " failed")
        self.room.notify(said, title=title, severity="information" if ok else "error")
        self.refresh_facts()
        self.room.link.poke(force=True)

    # --- drawing -------------------------------------------------------------------

    def redraw(self) -> None:
        if self.room.is_running and self.room.attached and self.room.active_pane == "store":
            self.show()

    def show(self) -> None:
        app = self.room
        status, pal, now_ms, now_s = app.link.status, app.palette_styles, app.now_ms(), app.clock()
        pings = list(app.board.pings)
        facts = grid()
        facts.add_row("url", plain(app.board.url))
        facts.add_row("namespace", plain(app.store.namespace))
        if (chosen := chosen_line(self.resolution)) is not None:
            facts.add_row("chosen", chosen)
            for tried in self.resolution.tried if self.resolution else ():
                facts.add_row("tried", plain(tried, pal.muted))
        for other in self.facts.others if self.facts else ():  # every store claimroom started
            facts.add_row("also started", plain(other))
        facts.add_row("link", link_line(status, now_ms, pal))
        if status.outage:
            facts.add_row("error", plain(status.outage, pal.error))
        if pings:
            facts.add_row(
                "ping",
                f"{pings[-1]:.2f} ms now · min {min(pings):.2f} · avg {sum(pings) / len(pings):.2f} · "
                f"max {max(pings):.2f} (last {len(pings)})",
            )
        self.query_one("#store-facts", Static).update(facts)
        self.query_one("#store-pings", Sparkline).data = pings
        topo = self.query_one("#store-topology", Static)
        topo.border_title = topology_title(self.topology)
        read_s = self.topology_read_s
        topo.update(topology_view(self.topology, self.topology_error, read_s, now_s, now_ms, pal))
        self.query_one("#store-info", Static).update(server_view(self.info, pal))
        self.query_one("#store-health", Static).update(health_view(list(self.history), now_s, pal))
        latest = self.history[-1] if self.history else None
        box = self.query_one("#store-infra", Static)
        box.border_title = infra_title(self.facts)
        box.update(infra_view(self.facts, latest, self.busy, self.held_down, self.last_action, now_s, pal))
        for op in OPS:
            self.query_one(f"#store-{op}", Button).disabled = bool(self.op_refusal(op))
        logs = self.query_one("#store-logs", Static)
        logs.border_title = "log (last 50 lines)" if self.facts and self.facts.managed else "log"
        logs.update(logs_view(self.facts, pal))
