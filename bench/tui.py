"""Control-room benchmark: the Textual app on a 100 000-task board under ~1,000 events/s.

A script, not a test. It starts its own redis-server (``LocalRedis``, a free port, never
6379), builds a board, runs the control room headless against it while other OS processes
play agents, prints one table and stops everything it started:

    .venv/bin/python bench/tui.py            # full run, about 30 s
    .venv/bin/python bench/tui.py --quick    # smoke run, about 10 s

The board (built by a separate process, so its memory never counts against the app's):
``--tasks`` tasks (``add_many`` in batches of 10 000), ``--agents`` registered agents each
holding ``--held`` claims with a long lease (3600 s). A "probe" queue feeds the traffic.

The traffic: ``--generators`` processes (``_tui_agents.py``), ``--rate`` events/s between them, for
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

The instruments are in ``_tui_watch.py``, the board's builder and the traffic in ``_tui_agents.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import sys
import time
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any

from _harness import BenchRedis, Children, header, load_avg, print_table, redis_client, run_children
from _stats import Row, fmt, ms_rows, yes  # bench/ is on sys.path when a script here runs
from _tui_agents import KINDS
from _tui_watch import LAG_TICK_S, Result, watch

SCREEN_P99_TARGET_MS = 250.0
SLICE_TARGET_MS = 50.0
RSS_TARGET_MB = 250.0
AGENTS = Path(__file__).resolve().with_name("_tui_agents.py")


def report(
    args: argparse.Namespace, board: dict[str, Any], r: Result, redis_version: str, wall_s: float
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
        rows += ms_rows(f"event -> model, {kind} ({len(rec.model_ms[kind]):,}) p{{q}}", rec.model_ms[kind])
    every_model = [v for k in KINDS for v in rec.model_ms[k]]
    every_screen = [v for k in KINDS for v in rec.screen_ms[k]]
    rows += ms_rows("event -> model, all p{q}", every_model, SCREEN_P99_TARGET_MS)
    for kind in KINDS:
        rows += ms_rows(f"event -> screen, {kind} ({len(rec.screen_ms[kind]):,}) p{{q}}", rec.screen_ms[kind])
    rows += ms_rows(
        f"event -> screen, all ({len(every_screen):,}) p{{q}}", every_screen, SCREEN_P99_TARGET_MS
    )
    rows.append(Row("  event -> screen, max", fmt(max(every_screen, default=float("nan"))), "ms"))
    rows += ms_rows("refresh: board.read wall (I/O included) p{q}", rec.read_ms)
    rows += ms_rows("refresh: loop time (read's Python + apply) p{q}", rec.refresh_loop_ms, qs=(50, 99))
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
    rows += ms_rows("refresh: apply to the table (_render_active) p{q}", rec.apply_ms)
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
    rows += ms_rows("1 s timer re-render (_render_active) p{q}", rec.tick_ms, qs=(50,))
    rows.append(Row("1 s timer re-render, max", fmt(max(rec.tick_ms, default=float("nan"))), "ms"))
    encoded = "encoded" if not args.no_encode else "not encoded"
    rows.append(Row(f"frames drawn ({encoded})", f"{rec.frames / r.window_s:.1f}", "per s"))
    rows += ms_rows("  frame encode (App._display) p{q}", rec.display_ms, qs=(50, 99))
    rows += ms_rows(f"event-loop lag ({LAG_TICK_S * 1000:g} ms ticker) p{{q}}", rec.lag_ms)
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

    facts = [f"Textual {version('textual')}", f"redis-server {redis_version}", redis_client()]
    title = header("control-room", facts, args.load_at_start)
    if args.what_if_min_gap is not None:
        title += f"\nWHAT-IF RUN (--what-if-min-gap {args.what_if_min_gap:g}): live link min_gap_s changed"
    print_table(title, rows, wall_s)
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
    args.load_at_start = load_avg()
    return args


async def run(args: argparse.Namespace, server: BenchRedis) -> tuple[dict[str, Any], Result, str]:
    """Build the board, start the traffic, watch the app: (the board's figures, what the
    app showed, the redis-server's version)."""
    ns = "tui" + uuid.uuid4().hex[:8]
    url = server.url
    board_argv = ["board", url, ns, *(str(x) for x in (args.tasks, args.probe_tasks, args.agents, args.held))]
    building = asyncio.create_task(run_children(AGENTS, [board_argv], "board builder"))
    traffic: Children | None = None
    try:
        # The agents start (imports) while the board is built; they wait for "go".
        share = (args.generators, args.agents, args.rate / args.generators, args.seconds, args.lifetime)
        argvs = [["traffic", url, ns, str(i), *(str(x) for x in share)] for i in range(args.generators)]
        traffic = await Children.start(AGENTS, argvs, "traffic generator")
        (board,) = await asyncio.wait_for(building, 300)
        if args.profile:
            import cProfile

            with cProfile.Profile() as prof:
                result = await watch(args, server, ns, traffic)
            prof.dump_stats(args.profile)
        else:
            result = await watch(args, server, ns, traffic)
        return board, result, await server.version()
    finally:
        building.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await building
        if traffic is not None:
            traffic.kill()
        await server.close()


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    with BenchRedis() as server:
        board, result, redis_version = asyncio.run(run(args, server))
        report(args, board, result, redis_version, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
