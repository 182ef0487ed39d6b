"""The fault suite: many agent processes work thousands of tasks while faults are injected,
then every invariant of the board is checked.

Injected, with counts printed: agent processes SIGKILLed (a new process takes the slot);
agent processes frozen with SIGSTOP past their TTL and resumed (zombies, which then try to
complete with their old token); on the standalone target the agents' network to Redis cut
for seconds and restored (a TCP proxy on loopback that the suite owns) and Redis itself
SIGKILLed and restarted from its append-only file; on Sentinel the master killed
(failover); on Cluster the master of the board's slot killed and its replica promoted.

Checked at the end, from the whole board and audit trail (``_chaos_check.py``): every task
done, or dead/cancelled with its reason; none done twice; no completion accepted from a
stale token; every state change in the audit trail, in order; no claim older than TTL + 1 s
left. A failed invariant prints the audit trail of its first tasks, and the exit status is 1.

    .venv/bin/python bench/chaos.py                    # standalone, full size: about 3 minutes
    .venv/bin/python bench/chaos.py --size small       # a few hundred tasks, under a minute
    .venv/bin/python bench/chaos.py --target all --seed 7 --agents 8

Redis persistence: appendonly yes with appendfsync always, so a SIGKILL loses nothing the
store acknowledged and every invariant is exact. (The stores claimroom starts use everysec:
there a write that waits behind a slow fsync is acknowledged before it is written, and a
machine crash loses up to a second of writes. ``--lose-writes`` plays that loss on purpose:
acknowledged completions lost are then counted, not failed, but a token must still never go
to two agents.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _chaos_run import CUT_OFF, ZOMBIE, Outcome, Plan, Run
from _chaos_targets import available, start_target
from _harness import header, load_avg, print_table
from _stats import Row, fmt, yes

TARGETS = ("standalone", "sentinel", "cluster")
SIZES = {  # tasks, fault phase (s), agent processes, loops per process, drain limit (s)
    "small": (300, 25.0, 6, 2, 60.0),
    "full": (3000, 150.0, 10, 3, 120.0),
}
TTL_S = 2.0


def plan_of(args: argparse.Namespace) -> Plan:
    tasks, seconds, agents, loops, drain = SIZES[args.size]
    return Plan(
        tasks=args.tasks or tasks,
        seconds=args.seconds or seconds,
        agents=args.agents or agents,
        loops=args.loops or loops,
        ttl_s=args.ttl,
        seed=args.seed,
        drain_s=drain,
    )


async def run_target(name: str, plan: Plan, *, lose_writes: bool = False) -> Outcome:
    namespace = "chaos" + uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="claimroom-chaos-") as folder:
        target = await start_target(name, Path(folder), namespace, lose_writes=lose_writes)
        try:
            home = Path(folder) / "home"
            home.mkdir()
            return await Run(plan, target, namespace, home).execute()
        finally:
            await target.stop()


def redis_version() -> str:
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return "redis-server ?"
    version = next((w.split("=", 1)[1] for w in out.split() if w.startswith("v=")), "?")
    return f"redis-server {version}"


def report(out: Outcome, plan: Plan, load: float | None, wall_s: float) -> None:
    facts = [
        f"target {out.target}",
        redis_version(),
        *out.facts,
        f"{plan.tasks} tasks, {plan.agents} agent processes x {plan.loops} loops, TTL {plan.ttl_s:g} s",
        f"faults for {plan.seconds:g} s, seed {plan.seed}",
    ]
    rows = [
        Row(f"injected: {k}", str(v), "times", "> 0", yes(v > 0)) for k, v in sorted(out.injected.items())
    ]
    seen = dict(out.seen)
    for who in (ZOMBIE, CUT_OFF):  # always shown, the accepted ones held to 0
        refused, accepted = seen.pop(f"{who}: refused", 0), seen.pop(f"{who}: accepted", 0)
        mark = ("> 0", yes(refused > 0)) if who == ZOMBIE else ("-", "-")
        rows.append(Row(f"{who}: refused (lease lost)", str(refused), "times", *mark))
        rows.append(Row(f"{who}: accepted", str(accepted), "times", "0", yes(accepted == 0)))
    rows += [Row(k, str(v), "times") for k, v in sorted(seen.items())]
    f = out.figures
    rows += [
        Row("tasks on the board", fmt(f["tasks added"], 0), "tasks"),
        Row("audit events", fmt(f["audit events"], 0), "events"),
        Row(
            "lease overdue, max (sampled every 0.5 s, outside Redis outages)",
            fmt(f["lease overdue, max"], 0),
            "ms",
            "<= 1000",
            yes(f["lease overdue, max"] <= 1000),
        ),
        Row("lease samples", fmt(f["lease samples"], 0), "samples"),
        Row("drain after the faults", fmt(f["drain after the faults"]), "s"),
        Row("run: faults then drain", fmt(f["run, faults then drain"]), "s"),
    ]
    print_table(header("chaos", facts, load), rows, wall_s)
    print("invariants")
    for inv in out.invariants:
        print(f"  {'held' if inv.ok else 'FAILED':<6}  {inv.name}: {inv.detail}")
    for text in out.trails:
        print(f"\naudit trail, failed invariant {text}")
    for line in out.errors[:20]:
        print(f"agent error: {line}")
    print()


async def main_async(args: argparse.Namespace) -> int:
    plan = plan_of(args)
    names = list(TARGETS) if args.target == "all" else [args.target]
    outcomes = []
    for name in names:
        load, start = load_avg(), time.perf_counter()
        out = await run_target(name, plan, lose_writes=args.lose_writes)
        report(out, plan, load, time.perf_counter() - start)
        outcomes.append(out)
    if args.json:
        Path(args.json).write_text(json.dumps([o.to_json() for o in outcomes], indent=1))
    return 0 if all(o.ok for o in outcomes) else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--target", choices=[*TARGETS, "all"], default="standalone")
    p.add_argument("--size", choices=list(SIZES), default="full", help="small: ~300 tasks; full: ~3,000")
    p.add_argument("--quick", action="store_true", help="the same as --size small (as ./dev bench --quick)")
    p.add_argument("--agents", type=int, default=0, metavar="N", help="agent processes (default by size)")
    p.add_argument(
        "--loops", type=int, default=0, metavar="N", help="agent loops per process (default by size)"
    )
    p.add_argument("--tasks", type=int, default=0, metavar="N", help="tasks (default by size)")
    p.add_argument("--seconds", type=float, default=0.0, metavar="S", help="fault phase (default by size)")
    p.add_argument("--ttl", type=float, default=TTL_S, metavar="S", help=f"lease TTL (default {TTL_S:g})")
    p.add_argument("--seed", type=int, default=1, help="seeds the fault timing and the agents' choices")
    p.add_argument(
        "--lose-writes",
        action="store_true",
        help="standalone: also crash Redis losing its last second of writes, as a machine crash "
        "under appendfsync everysec would (acknowledged completions may then be lost: counted, "
        "not failed; tokens must still never be handed out twice)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the outcomes to FILE as JSON")
    args = p.parse_args()
    if args.quick:
        args.size = "small"
    names = list(TARGETS) if args.target == "all" else [args.target]
    missing = [n for n in names if not available(n)]
    if missing:
        p.error(
            f"--target {args.target}: {' and '.join(missing)} need core/local_topology.py "
            "(LocalSentinel, LocalCluster), which this checkout does not have"
        )
    for flag in ("agents", "loops", "tasks", "seconds"):
        if getattr(args, flag) < 0:
            p.error(f"--{flag} must not be negative")
    if not 0.5 <= args.ttl <= 30:
        p.error("--ttl must be between 0.5 and 30 seconds")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
