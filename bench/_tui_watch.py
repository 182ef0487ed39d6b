"""bench/tui.py's instruments in the app's process, and the run they watch.

A module, not a benchmark (``./dev bench`` skips it). What is measured, and how, is said
in bench/tui.py's docstring.
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.events
import time
from dataclasses import dataclass, field
from typing import Any

from _harness import BenchRedis, Children, CpuMeter, LagTicker, status_kb
from _tui_agents import KINDS, PROBE_QUEUE
from textual.widgets import DataTable

from claimroom.core.store import Store
from claimroom.tui.app import ControlRoom

LAG_TICK_S = 0.010
STAGE_CELL = 16  # ClaimsPane clips the stage to 16 cells


class LoopMeter:
    """Times every asyncio callback (``Handle._run``): the refresh task's share of the loop,
    and the longest slices of anything."""

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None  # the refresh worker's task
        self.task_busy_s = 0.0
        self.task_max_s = 0.0  # longest slice of that task since the last reset
        self.total_busy_s = 0.0
        self.long: list[tuple[float, str]] = []  # (ms, owner) of slices over 10 ms
        self._orig: Any = None

    @staticmethod
    def owner(handle: asyncio.Handle) -> str:
        who = getattr(handle._callback, "__self__", None)  # type: ignore[attr-defined]
        if isinstance(who, asyncio.Task):
            coro = who.get_coro()
            return f"{who.get_name()} / {getattr(coro, '__qualname__', coro)}"
        return repr(handle._callback)[:80]  # type: ignore[attr-defined]

    def install(self) -> None:
        orig = self._orig = asyncio.events.Handle._run
        meter = self
        clock = time.perf_counter

        def _run(handle: asyncio.Handle) -> None:
            t = clock()
            orig(handle)
            dt = clock() - t
            meter.total_busy_s += dt
            if meter.task is not None and getattr(handle._callback, "__self__", None) is meter.task:  # type: ignore[attr-defined]
                meter.task_busy_s += dt
                meter.task_max_s = max(meter.task_max_s, dt)
            if dt > 0.010:
                meter.long.append((dt * 1000, meter.owner(handle)))

        asyncio.events.Handle._run = _run  # type: ignore[method-assign]

    def uninstall(self) -> None:
        if self._orig is not None:
            asyncio.events.Handle._run = self._orig  # type: ignore[method-assign]


@dataclass
class Pending:
    kind: str
    key: str
    stage: str = ""


@dataclass
class Recorder:
    """What the app's model and screen showed, and when."""

    gate_s: float = float("inf")  # events before this (the generators' start) are not counted
    model_ms: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    screen_ms: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    event_s: dict[tuple[str, str], float] = field(default_factory=dict)  # (kind, key) -> write time
    gone_model: dict[str, float] = field(default_factory=dict)  # completes: task -> when seen gone
    gone_screen: dict[str, float] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)  # probe claims ever in the model
    drawn: set[str] = field(default_factory=set)  # row keys ever in the table at a frame
    present: set[str] = field(default_factory=set)  # probe claims in the last snapshot
    stages: dict[str, str] = field(default_factory=dict)
    fresh: list[Pending] = field(default_factory=list)  # in the model, not yet in the table
    pending: list[Pending] = field(default_factory=list)  # in the table, waiting for a frame
    read_ms: list[float] = field(default_factory=list)  # board.read wall time (I/O included)
    refresh_loop_ms: list[float] = field(default_factory=list)  # loop time per refresh
    refresh_slice_ms: list[float] = field(default_factory=list)  # longest slice per refresh
    apply_ms: list[float] = field(default_factory=list)  # _render_active for a new snapshot
    tick_ms: list[float] = field(default_factory=list)  # _render_active from the 1 s timer
    frames: int = 0
    display_ms: list[float] = field(default_factory=list)  # App._display (frame encoding)
    lag_ms: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    snapshots: int = 0
    failed_reads: int = 0  # board.read raised or was cancelled by the live link's timeout
    max_probes: int = 0  # most probe claims in one snapshot (must stay under the row limit)
    recording: bool = False

    def on_snapshot(self, snap: Any) -> None:
        now = time.time()
        self.snapshots += 1
        present: set[str] = set()
        for t in snap.claims:
            if t.queue != PROBE_QUEUE:
                continue
            present.add(t.id)
            if t.id not in self.seen:
                self.seen.add(t.id)
                at = t.claimed_ms / 1000
                if at >= self.gate_s:
                    self.model_ms["claim"].append((now - at) * 1000)
                    self.event_s[("claim", t.id)] = at
                    self.fresh.append(Pending("claim", t.id))
            if t.stage and self.stages.get(t.id) != t.stage:
                self.stages[t.id] = t.stage
                at = t.updated_ms / 1000
                if at >= self.gate_s:
                    self.model_ms["heartbeat"].append((now - at) * 1000)
                    self.event_s[("heartbeat", t.id + " " + t.stage)] = at
                    self.fresh.append(Pending("heartbeat", t.id, t.stage))
        for gone in self.present - present:
            self.gone_model[gone] = now
            self.fresh.append(Pending("complete", gone))
        self.present = present
        self.max_probes = max(self.max_probes, len(present))

    def applied(self) -> None:
        self.pending.extend(self.fresh)
        self.fresh.clear()

    def on_frame(self, table: Any) -> None:
        """A frame was drawn: whatever the table holds now is on screen."""
        if not self.pending:
            return
        now = time.time()
        rows = table.rows
        self.drawn.update(k.value for k in rows)
        left: list[Pending] = []
        for p in self.pending:
            if p.kind == "complete":
                if p.key in rows:
                    left.append(p)
                elif p.key in self.drawn:  # it was on screen, and now it is gone
                    self.gone_screen[p.key] = now
                continue  # never on the table's page: nothing on screen to change
            if p.key not in rows:
                continue  # completed before it could be drawn; counted as not shown
            if p.kind == "heartbeat":
                try:
                    shown = table.get_cell(p.key, "stage").plain
                except Exception:
                    continue
                if shown != (p.stage if len(p.stage) <= STAGE_CELL else p.stage[: STAGE_CELL - 1] + "…"):
                    continue  # a newer stage replaced it before this frame; that one is tracked
                key = p.key + " " + p.stage
            else:
                key = p.key
            self.screen_ms[p.kind].append((now - self.event_s[(p.kind, key)]) * 1000)
        self.pending = left

    def completes(self, done: list[tuple[str, float]]) -> None:
        """Match the generators' completes (time before the call) with when they left."""
        for tid, at in done:
            if at < self.gate_s:
                continue
            if tid in self.gone_model and self.gone_model[tid] >= at:
                self.model_ms["complete"].append((self.gone_model[tid] - at) * 1000)
            if tid in self.gone_screen and self.gone_screen[tid] >= at:
                self.screen_ms["complete"].append((self.gone_screen[tid] - at) * 1000)


async def rss_sampler(rec: Recorder) -> None:
    while True:
        rec.rss_kb.append(status_kb("VmRSS"))
        await asyncio.sleep(0.5)


# --- the run --------------------------------------------------------------------------------


@dataclass
class Result:
    rec: Recorder
    gens: list[dict[str, Any]]
    window_s: float
    app_cpu_s: float
    redis_cpu_s: float | None
    rss_base_kb: int
    rss_ready_kb: int
    hwm_kb: int
    long: list[tuple[float, str]]
    loop_busy: float


async def watch(args: argparse.Namespace, server: BenchRedis, ns: str, traffic: Children) -> Result:
    """Run the control room on board ``ns``, tell the ``traffic`` to go, and watch."""
    rec = Recorder()
    meter = LoopMeter()
    cpu = CpuMeter({"redis": server.pid})
    encode = not args.no_encode
    tasks: list[asyncio.Task[Any]] = []
    state: dict[str, Any] = {"in_snapshot": False, "read_start": None, "read_ok": False, "table": None}

    class BenchRoom(ControlRoom):
        """The control room with observation points; behaviour unchanged."""

        @property
        def is_headless(self) -> bool:
            # False: ``_display`` encodes each frame as for a terminal; the headless driver
            # still drops the bytes. (True skips the encoding, the cheaper, unrealistic case.)
            return not encode and super().is_headless

        def _on_snapshot(self, snap: Any) -> None:
            if rec.recording:
                rec.on_snapshot(snap)
            state["in_snapshot"] = True
            try:
                super()._on_snapshot(snap)
            finally:
                state["in_snapshot"] = False
            rec.applied()

        def _render_active(self) -> None:
            t = time.perf_counter()
            super()._render_active()
            if rec.recording:
                (rec.apply_ms if state["in_snapshot"] else rec.tick_ms).append(
                    (time.perf_counter() - t) * 1000
                )

        def _display(self, screen: Any, renderable: Any) -> None:
            t = time.perf_counter()
            super()._display(screen, renderable)
            if renderable is None or self._batch_count or state["table"] is None:
                return
            if rec.recording:
                rec.frames += 1
                rec.display_ms.append((time.perf_counter() - t) * 1000)
            rec.on_frame(state["table"])

    store = Store.from_url(server.url, ns)
    app = BenchRoom(store, readonly=True, operator="bench", freeze_gc=True)  # as `claimroom tui` runs
    if args.what_if_min_gap is not None:
        app.link.min_gap_s = args.what_if_min_gap
    board_read = app.board.read

    async def timed_read() -> Any:
        # One refresh ends where the next begins: by then its last slice (the apply) is counted.
        if state["read_start"] is not None and state["read_ok"] and rec.recording:
            rec.refresh_loop_ms.append((meter.task_busy_s - state["read_start"]) * 1000)
            rec.refresh_slice_ms.append(meter.task_max_s * 1000)
        meter.task = asyncio.current_task()
        # The slice running now (the wake-up after the pause) belongs to this refresh too, but
        # is only added when it ends: start from the busy time before it.
        state["read_start"] = meter.task_busy_s
        state["read_ok"] = False
        meter.task_max_s = 0.0
        t = time.perf_counter()
        try:
            snap = await board_read()
        except BaseException:  # the live link's timeout cancels us, or the store failed
            if rec.recording:
                rec.failed_reads += 1
            raise
        state["read_ok"] = True
        if rec.recording:
            rec.read_ms.append((time.perf_counter() - t) * 1000)
        return snap

    app.board.read = timed_read  # type: ignore[method-assign]

    rss_base = status_kb("VmRSS")
    meter.install()
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            app.action_pane("claims")
            await pilot.pause()
            state["table"] = app.query_one("#claims-table", DataTable)
            deadline = time.monotonic() + 30
            while app.snapshot is None or state["table"].row_count == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("the control room showed no claims within 30 s")
                await pilot.pause(0.05)
            await asyncio.sleep(args.warmup)
            rss_ready = status_kb("VmRSS")
            lag = LagTicker(LAG_TICK_S)
            rec.lag_ms = lag.lags_ms
            lag.start()
            tasks.append(asyncio.create_task(rss_sampler(rec)))

            rec.gate_s = time.time()
            rec.recording = True
            meter.long.clear()
            busy0 = meter.total_busy_s
            before = cpu.sample()
            await traffic.go()
            await asyncio.sleep(args.seconds)
            gens = await asyncio.wait_for(traffic.reports(), 60)
            await asyncio.sleep(args.settle)  # the last events reach the model and the screen
            rec.recording = False
            span = CpuMeter.between(before, cpu.sample())
            loop_busy = (meter.total_busy_s - busy0) / span.wall_s
            long = list(meter.long)
            await lag.stop()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            app.exit()
    finally:
        meter.uninstall()
    for g in gens:
        rec.completes(g["completed"])
    return Result(
        rec=rec,
        gens=gens,
        window_s=span.wall_s,
        app_cpu_s=span.own_s,
        redis_cpu_s=span.pids_s["redis"],
        rss_base_kb=rss_base,
        rss_ready_kb=rss_ready,
        hwm_kb=status_kb("VmHWM"),
        long=long,
        loop_busy=loop_busy,
    )
