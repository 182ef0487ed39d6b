"""Control-room benchmark: the Textual app on a 100 000-task board under ~1,000 events/s.

A script, not a test. It starts its own redis-server (``LocalRedis``, a free port, never
6379), builds a board, runs the control room headless against it while other OS processes
play agents, prints one table and stops everything it started:

    .venv/bin/python bench/tui.py            # full run, about 30 s
    .venv/bin/python bench/tui.py --quick    # smoke run, about 10 s

The board (built by a separate process, so its memory never counts against the app's):
``--tasks`` tasks (``add_many`` in batches of 10 000), ``--agents`` registered agents each
holding ``--held`` claims with a long lease (3600 s). A "probe" queue feeds the traffic.

The traffic: ``--generators`` spawned processes, ``--rate`` events/s between them, for
``--seconds``: 20 % claims (probe queue, 120 s lease), 60 % heartbeats on those claims,
each with a new stage, 20 % completes (of claims older than ``--lifetime``, 0.8 s). The
short probe leases put the probe claims first in the claims table (soonest deadline
first), so they are among the rows the app reads, as long as fewer than its 200 are live
at once (~200 claims/s x 0.8 s: ~170; with 1.5 s, ~300, and the newest waited outside the
capped read for older ones to finish, which measured the cap, not the propagation); those
on the table's first page (the page on screen) are the ones whose screen latency is
measured.

The app: ``ControlRoom`` in ``run_test(size=(120, 40))`` on the claims pane, subclassed
only to observe it (nothing in ``tui/`` is changed):

  * model: ``_on_snapshot`` (the refresh loop hands each snapshot to the app there). On
    entry, every probe claim not seen before counts as "claim in the model", every new
    stage as "heartbeat in the model", every probe claim gone as "complete in the model".
    Event times: the store's own stamps in the task hash (``claimed_ms``, ``updated_ms``,
    Redis TIME, i.e. the moment of the write), and for completes the generator's
    ``time.time()`` just before its call; one machine, one clock.
  * screen: ``App._display`` (each frame the compositor produced). An event is on screen
    at the first frame after the claims DataTable holds it: the row key present (claim),
    the stage cell showing the new stage (heartbeat), the row key gone (complete).
    Frames are encoded to terminal sequences as on a real terminal (the headless driver
    then drops the bytes); ``--no-encode`` skips that, as plain headless mode does.
  * event-loop time per refresh: every asyncio callback is timed (``Handle._run``
    wrapped); the slices that ran the refresh worker's task, from the wake-up after its
    pause through the snapshot applied to the table, are one refresh's loop time (the
    read's Python work: building the pipelines, parsing replies, ``Task.from_fields``;
    plus the table update). The apply alone (``_render_active``) is shown too, and the
    1 s timer's re-render of the same pane.
  * event-loop lag: a ticker sleeping 10 ms at a time; how late each wake-up was.
  * memory: VmRSS sampled every 0.5 s and VmHWM (peak) at the end, from /proc/self/status.
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.events
import multiprocessing as mp
import os
import platform
import random
import shlex
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import redis as redis_py
from _stats import Row, percentile  # bench/ is on sys.path when a script here runs
from redis.utils import HIREDIS_AVAILABLE

from claimroom.core.local_redis import LocalRedis
from claimroom.core.store import Store, TaskSpec

ADD_CHUNK = 10_000  # constants.max_batch_add
CONCURRENCY = 64  # setup calls in flight (the store's pool holds 256 connections)
PROBE_QUEUE = "probe"
BULK_QUEUE = "default"
PROBE_TTL_S = 120.0  # far sooner than the held claims' deadline: probe claims sort first
HELD_TTL_S = 3600.0
SCREEN_P99_TARGET_MS = 250.0
SLICE_TARGET_MS = 50.0
RSS_TARGET_MB = 250.0
LAG_TICK_S = 0.010
KINDS = ("claim", "heartbeat", "complete")
STAGES = ("plan", "read code", "edit", "run tests", "lint", "fix tests", "review", "summary")
STAGE_CELL = 16  # ClaimsPane clips the stage to 16 cells


# --- small helpers ----------------------------------------------------------------------


def yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def fmt(v: float) -> str:
    """A figure in ms with one decimal; "n/a" when there was nothing to measure."""
    return "n/a" if v != v else f"{v:.1f}"


def proc_status_kb(field_name: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM); 0 where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process, from /proc."""
    try:
        rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


async def bounded(calls: list[Callable[[], Any]], limit: int = CONCURRENCY) -> list[Any]:
    """Run coroutine factories with at most ``limit`` in flight; results in order."""
    sem = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Any]) -> Any:
        async with sem:
            return await call()

    return await asyncio.gather(*(one(c) for c in calls))


# --- the board (a separate process) -------------------------------------------------------


def agent_name(i: int) -> str:
    return f"agent-{i:03d}"


async def build_board(
    url: str, ns: str, tasks: int, probe_tasks: int, agents: int, held: int
) -> dict[str, Any]:
    store = Store.from_url(url, ns)
    t0 = time.perf_counter()
    try:
        for start in range(0, probe_tasks, ADD_CHUNK):
            count = min(ADD_CHUNK, probe_tasks - start)
            await store.add_many(
                [
                    TaskSpec(title=f"probe {start + i}: rename the config loader", queue=PROBE_QUEUE)
                    for i in range(count)
                ]
            )
        bulk = tasks - probe_tasks
        for start in range(0, bulk, ADD_CHUNK):
            count = min(ADD_CHUNK, bulk - start)
            await store.add_many(
                [
                    TaskSpec(
                        title=f"task {start + i}: split the parser module and add tests",
                        queue=BULK_QUEUE,
                        priority=(start + i) % 7,
                    )
                    for i in range(count)
                ]
            )
        added_s = time.perf_counter() - t0
        names = [agent_name(i) for i in range(agents)]
        await bounded(
            [lambda n=n: store.register(n, ["python"], max_claims=held + 8) for n in names]  # type: ignore[misc]
        )
        got = await bounded(
            [
                lambda n=n: store.claim_many(n, held, queues=[BULK_QUEUE], ttl_s=HELD_TTL_S)  # type: ignore[misc]
                for n in names
            ]
        )
        return {"added_s": added_s, "total_s": time.perf_counter() - t0, "held": sum(len(g) for g in got)}
    finally:
        await store.close()


def board_main(url: str, ns: str, tasks: int, probe_tasks: int, agents: int, held: int, out: Any) -> None:
    out.put(asyncio.run(build_board(url, ns, tasks, probe_tasks, agents, held)))


# --- the agents (other OS processes) -------------------------------------------------------


async def generate(
    url: str,
    ns: str,
    index: int,
    generators: int,
    agents: list[str],
    rate: float,
    seconds: float,
    lifetime_s: float,
) -> dict[str, Any]:
    """``rate`` events/s for ``seconds``: claims, heartbeats with a new stage, completes."""
    store = Store.from_url(url, ns)
    rng = random.Random(index)
    live: deque[list[Any]] = deque()  # [task id, token, claimed at, heartbeats], oldest first
    counts = dict.fromkeys((*KINDS, "empty", "error"), 0)
    completed: list[tuple[str, float]] = []  # (task id, time.time() just before the call)
    claimed: list[str] = []
    stage_no = 0
    turn = 0
    agent_turn = 0

    async def claim(agent: str) -> None:
        try:
            got = await store.claim_many(agent, 1, queues=[PROBE_QUEUE], ttl_s=PROBE_TTL_S)
        except Exception:
            counts["error"] += 1
            return
        if not got:
            counts["empty"] += 1
            return
        counts["claim"] += 1
        live.append([got[0].task.id, got[0].token, time.time(), 0])
        claimed.append(got[0].task.id)

    async def heartbeat(tid: str, token: int, stage: str, progress: float) -> None:
        try:
            await store.heartbeat(tid, token, ttl_s=PROBE_TTL_S, progress=progress, stage=stage)
        except Exception:
            counts["error"] += 1
            return
        counts["heartbeat"] += 1

    async def complete(tid: str, token: int) -> None:
        t = time.time()
        try:
            await store.complete(tid, token)
        except Exception:
            counts["error"] += 1
            return
        counts["complete"] += 1
        completed.append((tid, t))

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    issued = 0
    try:
        while (elapsed := time.perf_counter() - t0) < seconds:
            due = min(int(elapsed * rate) - issued, 200)
            issued += due
            ops = []
            busy: set[str] = set()
            now = time.time()
            for _ in range(due):
                kind, turn = turn % 5, turn + 1
                if kind == 1 and live and now - live[0][2] >= lifetime_s:
                    tid, token, *_ = live.popleft()
                    ops.append(complete(tid, token))
                    busy.add(tid)
                elif kind == 0 or not live:
                    ops.append(claim(agents[agent_turn % len(agents)]))
                    agent_turn += 1
                else:
                    entry = live[rng.randrange(len(live))]
                    if entry[0] in busy:
                        entry = live[-1]
                    busy.add(entry[0])
                    entry[3] += 1
                    stage_no += 1
                    # Stages like an agent's, of varying width; the number makes each one new.
                    stage = f"{STAGES[stage_no % len(STAGES)]} #{stage_no * generators + index}"
                    ops.append(heartbeat(entry[0], entry[1], stage, min(0.99, 0.08 * entry[3])))
            if ops:
                await asyncio.gather(*ops)
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - t0
    finally:
        await store.close()
    return {
        "counts": counts,
        "seconds": elapsed,
        "cpu_s": time.process_time() - cpu0,
        "claimed": claimed,
        "completed": completed,
        "live_at_end": len(live),
    }


def generator_main(
    url: str,
    ns: str,
    index: int,
    generators: int,
    agents: list[str],
    rate: float,
    seconds: float,
    lifetime_s: float,
    go: Any,
    out: Any,
) -> None:
    go.wait()
    out.put(asyncio.run(generate(url, ns, index, generators, agents, rate, seconds, lifetime_s)))


# --- instruments in the app's process ------------------------------------------------------


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


async def lag_ticker(rec: Recorder) -> None:
    clock = time.perf_counter
    while True:
        t = clock()
        await asyncio.sleep(LAG_TICK_S)
        if rec.recording:
            rec.lag_ms.append((clock() - t - LAG_TICK_S) * 1000)


async def rss_sampler(rec: Recorder) -> None:
    while True:
        rec.rss_kb.append(proc_status_kb("VmRSS"))
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


async def watch(args: argparse.Namespace, url: str, ns: str, redis_pid: int, go: Any, out: Any) -> Result:
    # Textual is imported here, not at the top: the spawned agents import this module too.
    from textual.widgets import DataTable

    from claimroom.tui.app import ControlRoom

    rec = Recorder()
    meter = LoopMeter()
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

    store = Store.from_url(url, ns)
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

    rss_base = proc_status_kb("VmRSS")
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
            rss_ready = proc_status_kb("VmRSS")
            tasks += [asyncio.create_task(lag_ticker(rec)), asyncio.create_task(rss_sampler(rec))]

            rec.gate_s = time.time()
            rec.recording = True
            meter.long.clear()
            busy0, wall0 = meter.total_busy_s, time.perf_counter()
            cpu0, rcpu0 = time.process_time(), proc_cpu_s(redis_pid)
            go.set()
            await asyncio.sleep(args.seconds)
            gens = [await asyncio.to_thread(out.get, True, 60) for _ in range(args.generators)]
            await asyncio.sleep(args.settle)  # the last events reach the model and the screen
            rec.recording = False
            window = time.perf_counter() - wall0
            app_cpu = time.process_time() - cpu0
            rcpu1 = proc_cpu_s(redis_pid)
            loop_busy = (meter.total_busy_s - busy0) / window
            long = list(meter.long)
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
        window_s=window,
        app_cpu_s=app_cpu,
        redis_cpu_s=None if rcpu0 is None or rcpu1 is None else rcpu1 - rcpu0,
        rss_base_kb=rss_base,
        rss_ready_kb=rss_ready,
        hwm_kb=proc_status_kb("VmHWM"),
        long=long,
        loop_busy=loop_busy,
    )


def ms_rows(
    rows: list[Row],
    label: str,
    values: list[float],
    target_ms: float | None = None,
    qs: tuple[int, ...] = (50, 99),
    mark: tuple[int, ...] = (99,),
) -> None:
    for q in qs:
        v = percentile(values, q)
        if target_ms is not None and q in mark:
            rows.append(Row(f"{label} p{q}", fmt(v), "ms", f"< {target_ms:g}", yes(v < target_ms)))
        else:
            rows.append(Row(f"{label} p{q}", fmt(v), "ms"))


def report(
    args: argparse.Namespace, board: dict[str, Any], r: Result, server: LocalRedis, wall_s: float
) -> None:
    rec, rows = r.rec, []
    c = {k: sum(g["counts"][k] for g in r.gens) for k in (*KINDS, "empty", "error")}
    gen_s = max(g["seconds"] for g in r.gens)
    events = sum(c[k] for k in KINDS)
    claimed = [tid for g in r.gens for tid in g["claimed"]]
    rows.append(
        Row("board: tasks / held claims / agents", f"{args.tasks:,} / {board['held']:,} / {args.agents}", "-")
    )
    rows.append(
        Row(
            "board: build (add_many x10k; register + claim)",
            f"{board['added_s']:.1f} / {board['total_s']:.1f}",
            "s",
        )
    )
    rows.append(
        Row(
            f"events written by {args.generators} processes ({gen_s:.1f} s)",
            f"{events / gen_s:,.0f}",
            "events/s",
            f">= {0.9 * args.rate:,.0f}",
            yes(events / gen_s >= 0.9 * args.rate),
        )
    )
    rows.append(
        Row(
            "  claims / heartbeats (new stage) / completes",
            f"{c['claim']:,} / {c['heartbeat']:,} / {c['complete']:,}",
            "events",
        )
    )
    if c["empty"] or c["error"]:
        rows.append(
            Row("  refused: no probe task left / errors", f"{c['empty']} / {c['error']}", "calls", "0", "NO")
        )
    rows.append(Row("refreshes (snapshots applied)", f"{rec.snapshots / r.window_s:.1f}", "per s"))
    rows.append(
        Row(
            "refresh: reads failed or timed out (10 s)",
            f"{rec.failed_reads}",
            "reads",
            "0",
            yes(rec.failed_reads == 0),
        )
    )
    seen = sum(1 for tid in claimed if tid in rec.seen)
    rows.append(
        Row(
            "claims seen in the model",
            f"{seen:,} of {len(claimed):,}",
            "claims",
            "all",
            yes(seen == len(claimed)),
        )
    )
    from claimroom.tui.board import ROW_LIMIT
    from claimroom.tui.panes import PAGE_ROWS

    limits = f"(rows read {ROW_LIMIT}, a page shows {PAGE_ROWS})"
    rows.append(Row(f"  most probe claims in one snapshot {limits}", f"{rec.max_probes}", "rows"))
    for kind in KINDS:
        ms_rows(rows, f"event -> model, {kind} ({len(rec.model_ms[kind]):,})", rec.model_ms[kind])
    every_model = [v for k in KINDS for v in rec.model_ms[k]]
    every_screen = [v for k in KINDS for v in rec.screen_ms[k]]
    ms_rows(rows, "event -> model, all", every_model, SCREEN_P99_TARGET_MS)
    for kind in KINDS:
        ms_rows(rows, f"event -> screen, {kind} ({len(rec.screen_ms[kind]):,})", rec.screen_ms[kind])
    ms_rows(rows, f"event -> screen, all ({len(every_screen):,})", every_screen, SCREEN_P99_TARGET_MS)
    rows.append(Row("  event -> screen, max", fmt(max(every_screen, default=float("nan"))), "ms"))
    ms_rows(rows, "refresh: board.read wall (I/O included)", rec.read_ms)
    ms_rows(rows, "refresh: loop time (read's Python + apply)", rec.refresh_loop_ms, qs=(50, 99))
    worst = max(rec.refresh_loop_ms, default=float("nan"))
    rows.append(Row("refresh: loop time, max", fmt(worst), "ms"))
    slice_max = max(rec.refresh_slice_ms, default=float("nan"))
    rows.append(
        Row(
            "refresh: longest single loop slice",
            fmt(slice_max),
            "ms",
            f"<= {SLICE_TARGET_MS:g}",
            yes(slice_max <= SLICE_TARGET_MS),
        )
    )
    ms_rows(rows, "refresh: apply to the table (_render_active)", rec.apply_ms)
    apply_max = max(rec.apply_ms, default=float("nan"))
    rows.append(
        Row(
            "refresh: apply, max",
            fmt(apply_max),
            "ms",
            f"<= {SLICE_TARGET_MS:g}",
            yes(apply_max <= SLICE_TARGET_MS),
        )
    )
    ms_rows(rows, "1 s timer re-render (_render_active)", rec.tick_ms, qs=(50,))
    rows.append(Row("1 s timer re-render, max", fmt(max(rec.tick_ms, default=float("nan"))), "ms"))
    encoded = "encoded" if not args.no_encode else "not encoded"
    rows.append(Row(f"frames drawn ({encoded})", f"{rec.frames / r.window_s:.1f}", "per s"))
    ms_rows(rows, "  frame encode (App._display)", rec.display_ms, qs=(50, 99))
    ms_rows(rows, f"event-loop lag ({LAG_TICK_S * 1000:g} ms ticker)", rec.lag_ms)
    lag_max = max(rec.lag_ms, default=float("nan"))
    rows.append(
        Row(
            "event-loop lag, max",
            fmt(lag_max),
            "ms",
            f"<= {SLICE_TARGET_MS:g}",
            yes(lag_max <= SLICE_TARGET_MS),
        )
    )
    rows.append(Row("event loop busy (all callbacks)", f"{100 * r.loop_busy:.0f}", "% of wall"))
    if r.long:
        by_owner: dict[str, list[float]] = {}
        for ms, who in r.long:
            by_owner.setdefault(who, []).append(ms)
        for who, vals in sorted(by_owner.items(), key=lambda kv: -max(kv[1]))[:3]:
            rows.append(
                Row(f"  slices > 10 ms: {who[:60]}", f"{len(vals)} (max {max(vals):.0f})", "slices (ms)")
            )
    peak = max(max(rec.rss_kb, default=0), r.hwm_kb) / 1024
    rows.append(
        Row(
            "RSS: before the app / app up, idle",
            f"{r.rss_base_kb / 1024:.0f} / {r.rss_ready_kb / 1024:.0f}",
            "MB",
        )
    )
    rows.append(
        Row("RSS: peak (VmHWM)", f"{peak:.0f}", "MB", f"< {RSS_TARGET_MB:g}", yes(peak < RSS_TARGET_MB))
    )
    rows.append(Row("RSS: end of run", f"{rec.rss_kb[-1] / 1024 if rec.rss_kb else 0:.0f}", "MB"))
    gen_cpu = sum(g["cpu_s"] for g in r.gens)
    redis = "?" if r.redis_cpu_s is None else f"{r.redis_cpu_s / r.window_s:.2f}"
    rows.append(
        Row(
            "cpu: app / redis-server / agents",
            f"{r.app_cpu_s / r.window_s:.2f} / {redis} / {gen_cpu / gen_s:.2f}",
            "cores",
        )
    )

    admin = redis_py.Redis.from_url(server.url)
    try:
        redis_version = admin.info("server")["redis_version"]
    finally:
        admin.close()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    load = f" | load avg at start {args.load_at_start:.2f}" if args.load_at_start is not None else ""
    print(
        f"claimroom control-room bench | Python {platform.python_version()} | Textual {version('textual')} "
        f"| redis-server {redis_version} | redis-py {redis_py.__version__} "
        f"(hiredis {'yes' if HIREDIS_AVAILABLE else 'no'}) | cores {os.cpu_count()} (usable {usable}) "
        f"| {platform.machine()} {platform.system()}{load}"
    )
    header = Row("measure", "value", "unit", "target", "ok")
    every = [header, *rows]
    widths = [max(len(getattr(x, f)) for x in every) for f in ("measure", "value", "unit", "target", "ok")]

    def line(x: Row) -> str:
        return (
            f"{x.measure:<{widths[0]}}  {x.value:>{widths[1]}}  {x.unit:<{widths[2]}}  "
            f"{x.target:<{widths[3]}}  {x.ok}"
        )

    if args.what_if_min_gap is not None:
        print(f"WHAT-IF RUN (--what-if-min-gap {args.what_if_min_gap:g}): live link min_gap_s changed")
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for x in rows:
        print(line(x))
    print(f"(wall time {wall_s:.1f} s)")
    print("command: " + shlex.join([sys.executable, *sys.argv]))


# --- entry point ----------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="smoke run: small board, a few seconds of traffic")
    p.add_argument("--tasks", type=int, default=100_000, help="tasks on the board (default 100 000)")
    p.add_argument("--agents", type=int, default=500, help="registered agents (default 500)")
    p.add_argument("--held", type=int, default=6, help="long-lease claims each agent holds (default 6)")
    p.add_argument("--rate", type=float, default=1000.0, help="events/s from all generators (default 1000)")
    p.add_argument("--seconds", type=float, default=12.0, help="length of the traffic, s (default 12)")
    p.add_argument("--generators", type=int, default=2, help="agent processes (default 2)")
    p.add_argument(
        "--lifetime", type=float, default=0.8, help="probe claims complete after this, s (default 0.8)"
    )
    p.add_argument("--warmup", type=float, default=1.0, help="app running before the traffic, s (default 1)")
    p.add_argument("--settle", type=float, default=1.0, help="app running after the traffic, s (default 1)")
    p.add_argument("--no-encode", action="store_true", help="skip encoding frames to terminal sequences")
    p.add_argument("--profile", metavar="FILE", help="cProfile the app's process into FILE (pstats)")
    p.add_argument(
        "--what-if-min-gap",
        type=float,
        metavar="S",
        help="diagnosis only: set the live link's min_gap_s (pause after each refresh; the app's: 0.1 s)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.tasks, args.agents, args.held = min(args.tasks, 10_000), min(args.agents, 100), min(args.held, 4)
        args.rate, args.seconds, args.warmup = min(args.rate, 500.0), min(args.seconds, 4.0), 0.5
    # Probe tasks: every claim of the run, with room to spare.
    args.probe_tasks = min(args.tasks // 2, int(0.2 * args.rate * (args.seconds + 2) * 1.5) + 200)
    args.load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    ctx = mp.get_context("spawn")
    server = LocalRedis.start()
    assert server.port != 6379
    ns = "tui" + uuid.uuid4().hex[:8]
    procs: list[Any] = []
    try:
        out = ctx.Queue()
        builder = ctx.Process(
            target=board_main,
            args=(server.url, ns, args.tasks, args.probe_tasks, args.agents, args.held, out),
        )
        builder.start()
        procs.append(builder)
        # The agents start (imports, connections) while the board is built; they wait for "go".
        go = ctx.Event()
        gen_out = ctx.Queue()
        names = [agent_name(i) for i in range(args.agents)]
        for i in range(args.generators):
            proc = ctx.Process(
                target=generator_main,
                args=(
                    server.url,
                    ns,
                    i,
                    args.generators,
                    names[i :: args.generators],
                    args.rate / args.generators,
                    args.seconds,
                    args.lifetime,
                    go,
                    gen_out,
                ),
            )
            proc.start()
            procs.append(proc)
        board = out.get(timeout=300)
        builder.join()
        if args.profile:
            import cProfile

            with cProfile.Profile() as prof:
                result = asyncio.run(watch(args, server.url, ns, server.process.pid, go, gen_out))
            prof.dump_stats(args.profile)
        else:
            result = asyncio.run(watch(args, server.url, ns, server.process.pid, go, gen_out))
        report(args, board, result, server, time.perf_counter() - start)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join(5)
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
