"""claims.py's ``--vs-peers`` rows for the job-queue peers: BullMQ, saq, arq and rq.

A module, not a benchmark (``./dev bench`` skips it); ``python bench/_claims_peers.py`` runs
it alone. Each peer is installed by ``bench/peers/setup`` in its own environment under
``$CLAIMROOM_PEERS_DIR`` (default bench/peers/.envs/) and driven by its script in bench/peers/
(the modes and JSON lines: bench/peers/_peer_common.py). Per peer, each on a fresh
redis-server of its own (``BenchRedis``, the server claimroom's rows run on):

  - throughput: ``tasks`` no-op jobs enqueued (not timed), then one worker process running
    ``agents`` jobs at a time until all are done; cycles/s from the first job's start to the
    last completion, the worker's own CPU and redis-server's (from /proc) per cycle; the
    median of ``trials`` runs. The trials take turns: BullMQ's first, then every other
    system's first, then every system's second, and so on, so that each claimroom trial has
    a BullMQ trial seconds away. This machine's speed drifts by twice within a run (one run
    had every system slower by 1.7-3x while its first rows ran), and a ratio of two figures
    measured minutes apart would take that drift for a difference between systems: the
    ratios to BullMQ are the median of the trials' ratios (``paired``);
  - orphan recovery: a worker holding a job is SIGKILLed while a second worker runs; the
    time from the kill until the second one starts the job ("never" past ORPHAN_BOUND_S);
  - zombie: a worker holding a job is frozen (SIGSTOP) until the second one has completed
    it, then resumed: whether the store took the stale completion ("accepted": the job's
    result is the zombie's, or it counted twice) or not ("refused").
The two recovery runs set each peer's lease (lock, job timeout) to LEASE_S, claimroom's TTL
in its own recovery rows, so that the figures compare the mechanisms rather than defaults;
LEASES says what that is in each peer. The throughput runs keep every default but concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _harness import BenchRedis, cpu_s, print_table
from _stats import Row, yes

HERE = Path(__file__).resolve().parent
DRIVERS = HERE / "peers"
SETUP = "bench/peers/setup"
LEASE_S = 2.0
ORPHAN_BOUND_S = 75.0  # rq's started-job entry outlives its heartbeat by a fixed 60 s
ANSWER_S = 15.0  # for the resumed zombie to say what became of its completion
START_S = 30.0  # for a process to start, or a worker to take a job

Event = dict[str, Any]


@dataclass(frozen=True)
class Peer:
    name: str
    driver: str
    env: str  # its folder under the peers dir
    args: tuple[str, ...] = ()  # extra driver options (a tuned variant)
    recovery: bool = True  # run the orphan and zombie runs (once per peer, not per variant)

    def command(self, envs: Path) -> list[str] | None:
        """The driver's command line; None when the peer is not installed."""
        if not self.env:  # claimroom itself: this environment's Python
            return [sys.executable, str(DRIVERS / self.driver)]
        home = envs / self.env
        if self.driver.endswith(".mjs"):
            node_bin = home / "node_bin"  # written by setup: the node it installed with
            if not (home / "node_modules" / "bullmq").is_dir() or not node_bin.is_file():
                return None
            return [str(Path(node_bin.read_text().strip()) / "node"), str(DRIVERS / self.driver)]
        python = home / "bin" / "python"
        return [str(python), str(DRIVERS / self.driver)] if python.is_file() else None


# claimroom on the same harness: two calls a task, one (complete_and_claim), batched claims.
CLAIMROOM = [
    Peer("claimroom", "claimroom_run.py", ""),
    Peer("claimroom, complete_and_claim", "claimroom_run.py", "", ("--next",), recovery=False),
    Peer("claimroom, claim_many(8)", "claimroom_run.py", "", ("--per-call", "8"), recovery=False),
    Peer("claimroom, complete_many(8)", "claimroom_run.py", "", ("--next", "--per-call", "8"), False),
]

PEERS = [
    Peer("bullmq", "bullmq_run.mjs", "bullmq"),
    Peer("saq", "saq_run.py", "saq"),
    Peer("arq", "arq_run.py", "arq"),
    # arq polls its queue every 0.5 s by default; the same worker polling every 10 ms.
    Peer("arq, poll_delay 0.01 s", "arq_run.py", "arq", ("--poll", "0.01"), recovery=False),
    Peer("rq", "rq_run.py", "rq"),
]

LEASES = {
    "claimroom": "claim ttl 2 s (default 60 s); expiry found by the rescuer's waiting claim",
    "bullmq": "lockDuration and stalledInterval 2 s (defaults 30 s), maxStalledCount 1",
    "saq": "job timeout 2 s (default 10 s), sweep every 2 s (default 60 s), abort wait 5 s, retries 3",
    "arq": "job timeout 2 s (default 300 s): in-progress key 12 s (timeout + 10 s), max_tries 3",
    "rq": "job_timeout 2 s, job_monitoring_interval and maintenance_interval 2 s, Retry(max=3);"
    " heartbeat TTL + 60 s fixed",
}


@dataclass
class PeerResult:
    name: str
    version: str = "?"
    tasks: int = 0
    cycles_per_s: float | None = None
    worker_us_per_cycle: float | None = None
    redis_us_per_cycle: float | None = None
    orphan_recovery_s: float | None = None  # None: not recovered within ORPHAN_BOUND_S (or not run)
    orphan: str = "n/a"  # how the orphan run ended, in words
    zombie: str = "n/a"  # "refused", "accepted" or "n/a: why"
    zombie_detail: str = ""
    note: str = ""
    # Each trial's (cycles/s, Redis us per cycle or None), in the order the trials ran.
    trials: list[tuple[float, float | None]] = field(default_factory=list)


def peers_dir() -> Path:
    return Path(os.environ.get("CLAIMROOM_PEERS_DIR") or DRIVERS / ".envs")


def parse_result(line: str) -> dict[str, Any]:
    """A driver's throughput line, checked for the fields the table needs."""
    data = json.loads(line)
    missing = {"peer", "version", "tasks", "seconds", "cycles_per_s", "worker_cpu_s"} - set(data)
    if missing:
        raise ValueError(f"driver result lacks {sorted(missing)}: {line.strip()[:200]}")
    return dict(data)


class Driver:
    """A driver process: its JSON lines read by a thread, waited for with a deadline."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines: queue.Queue[Event | None] = queue.Queue()
        self.stderr: collections.deque[str] = collections.deque(maxlen=5)
        self.readers = [threading.Thread(target=f, daemon=True) for f in (self._read, self._drain)]
        for t in self.readers:
            t.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                if line.startswith("{"):
                    self.lines.put(json.loads(line))
        self.lines.put(None)  # the driver's output has ended

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())

    def expect(self, want: Callable[[Event], bool], timeout_s: float) -> Event | None:
        """The first line that ``want`` accepts within ``timeout_s``; None when none came."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.lines.get(timeout=left)
            except queue.Empty:
                return None
            if event is None:
                return None
            if want(event):
                return event
        return None

    def must(self, want: Callable[[Event], bool], timeout_s: float, what: str) -> Event:
        event = self.expect(want, timeout_s)
        if event is None:
            tail = " | ".join(self.stderr)[-300:]
            raise RuntimeError(f"{what}: no answer in {timeout_s:g} s{f' ({tail})' if tail else ''}")
        return event

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        """End the driver: SIGCONT (a frozen one cannot exit), SIGTERM, then SIGKILL; and
        rq's throughput children, which end when their parent's pipes close."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for t in self.readers:  # they end at the pipes' end (a grandchild may hold them open)
            t.join(5)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def is_event(name: str, job: str | None = None) -> Callable[[Event], bool]:
    return lambda e: e.get("event") == name and (job is None or str(e.get("job")) == job)


class Runner:
    """One peer's runs, each on a fresh redis-server."""

    def __init__(self, peer: Peer, cmd: list[str], envs: Path) -> None:
        self.peer = peer
        self.cmd = cmd
        self.env = {**os.environ, "CLAIMROOM_PEER_ENV": str(envs / peer.env)}

    def driver(self, *args: str) -> Driver:
        return Driver([*self.cmd, *args, *self.peer.args], self.env)

    def once(self, *args: str) -> Event:
        """A mode that prints one line and exits (enqueue, inspect)."""
        d = self.driver(*args)
        try:
            return d.must(lambda e: "event" not in e, START_S, f"{self.peer.name} {args[0]}")
        finally:
            d.stop()

    def first_job(self, victim: Driver, url: str) -> str:
        """The job, added once the victim's worker is up (so it takes it, not a later one)."""
        victim.must(is_event("ready"), START_S, "victim start")
        return str(self.once("enqueue", url, "--lease", str(LEASE_S))["job"])

    def throughput(self, tasks: int, agents: int) -> tuple[dict[str, Any], float | None]:
        """The driver's result and redis-server's CPU seconds over the timed part."""
        with BenchRedis() as server:
            d = self.driver("throughput", server.url, "--tasks", str(tasks), "--agents", str(agents))
            try:
                d.must(is_event("ready"), START_S + tasks / 200, f"{self.peer.name} enqueue")
                before = cpu_s(server.pid)
                d.go()
                # Bounded by the slowest peer's pace (arq at its defaults: ~200 cycles/s).
                done = d.must(lambda e: "cycles_per_s" in e, 60 + tasks / 50, f"{self.peer.name} run")
                after = cpu_s(server.pid)
            finally:
                d.stop()
        redis_s = None if before is None or after is None else after - before
        return parse_result(json.dumps(done)), redis_s

    def orphan(self) -> tuple[float | None, str]:
        """Seconds from SIGKILL of the job's holder to the job starting in the other worker."""
        lease = ("--lease", str(LEASE_S))
        with BenchRedis() as server:
            victim = self.driver("worker", server.url, "--role", "victim", "--hold", "300", *lease)
            rescuer = None
            try:
                job = self.first_job(victim, server.url)
                victim.must(is_event("started", job), START_S, "victim take the job")
                rescuer = self.driver("worker", server.url, "--role", "rescuer", *lease)
                rescuer.must(is_event("ready"), START_S, "rescuer start")
                victim.signal(signal.SIGKILL)
                killed = time.time()
                got = rescuer.expect(is_event("started", job), ORPHAN_BOUND_S)
            finally:
                for d in (victim, rescuer):
                    if d is not None:
                        d.stop()
        if got is None:
            return None, f"never (not in {ORPHAN_BOUND_S:g} s)"
        return float(got["t"]) - killed, "recovered"

    def zombie(self) -> tuple[str, str]:
        """Whether the store took a frozen, then resumed, worker's completion of a job the
        other worker had completed meanwhile; and what was seen."""
        lease = ("--lease", str(LEASE_S))
        with BenchRedis() as server:
            # It holds the job 1 s, blocking, from its start: frozen well inside that second.
            victim = self.driver("worker", server.url, "--role", "victim", "--hold", "1", *lease)
            rescuer = None
            try:
                job = self.first_job(victim, server.url)
                victim.must(is_event("started", job), START_S, "victim take the job")
                victim.signal(signal.SIGSTOP)
                rescuer = self.driver("worker", server.url, "--role", "rescuer", *lease)
                rescuer.must(is_event("ready"), START_S, "rescuer start")
                fresh = rescuer.expect(is_event("completed", job), ORPHAN_BOUND_S)
                if fresh is None:
                    return f"n/a: not handed over in {ORPHAN_BOUND_S:g} s", ""
                victim.signal(signal.SIGCONT)
                answer = victim.expect(lambda e: e.get("event") in ("completed", "error"), ANSWER_S)
                final = self.once("inspect", server.url, "--job", job)
            finally:
                for d in (victim, rescuer):
                    if d is not None:
                        d.stop()
        return judge(final, answer)


def judge(final: Event, answer: Event | None) -> tuple[str, str]:
    """ "accepted" when the zombie's result is the job's (or the job counted twice), else
    "refused"; and the evidence: the stored state and what the zombie's worker said."""
    twice = (final.get("completions") or 0) > 1
    took = final.get("result") == "zombie" or twice
    said = (
        "no answer"
        if answer is None
        else "completed"
        if answer["event"] == "completed"
        else f"error: {str(answer.get('error'))[:80]}"
    )
    where = f"stored {final.get('state')} / {final.get('result')!r}"
    where += f", {final.get('completions')} results" if final.get("completions") is not None else ""
    return ("accepted" if took else "refused"), f"{where}; zombie's worker: {said}"


def summarize(out: PeerResult, runs: list[tuple[dict[str, Any], float | None]], tasks: int) -> None:
    """``out``'s throughput figures from its trials' runs: the medians, and each trial's."""
    done, redis_s = sorted(runs, key=lambda r: float(r[0]["cycles_per_s"]))[len(runs) // 2]
    out.version, out.note = str(done["version"]), str(done.get("note", ""))
    out.cycles_per_s = statistics.median(float(r[0]["cycles_per_s"]) for r in runs)
    out.worker_us_per_cycle = float(done["worker_cpu_s"]) / tasks * 1e6
    out.redis_us_per_cycle = None if redis_s is None else redis_s / tasks * 1e6
    out.trials = [(float(d["cycles_per_s"]), None if r is None else r / tasks * 1e6) for d, r in runs]


def run_peers(
    tasks: int = 20_000, agents: int = 10, trials: int = 3, only: list[str] | None = None
) -> list[PeerResult]:
    """claimroom's and every peer's results (``only``: those whose name starts with one of these).
    The throughput trials take turns across the systems (the module's docstring says why);
    then each system's orphan and zombie runs."""
    envs = peers_dir()
    chosen = [p for p in CLAIMROOM + PEERS if not only or any(p.name.startswith(o) for o in only)]
    results = {p.name: PeerResult(p.name, tasks=tasks) for p in chosen}
    runners: dict[str, Runner] = {}
    for p in chosen:
        cmd = p.command(envs)
        if cmd is None:
            results[p.name].note = f"not installed: run {SETUP}"
        else:
            runners[p.name] = Runner(p, cmd, envs)
    runs: dict[str, list[tuple[dict[str, Any], float | None]]] = {name: [] for name in runners}
    for name in turns(list(runners), trials):
        if name not in runners:
            continue  # failed in an earlier turn
        try:
            runs[name].append(runners[name].throughput(tasks, agents))
        except Exception as e:  # one broken peer must not cost the others' rows
            results[name].note = f"failed: {e}"[:300]
            del runners[name]
    for name, runner in runners.items():
        out = results[name]
        try:
            summarize(out, runs[name], tasks)
            if runner.peer.recovery:
                out.orphan_recovery_s, out.orphan = runner.orphan()
                out.zombie, out.zombie_detail = runner.zombie()
        except Exception as e:
            out.note = f"failed: {e}"[:300]
    # In the order of CLAIMROOM + PEERS, as the table has always listed them.
    return [results[p.name] for p in CLAIMROOM + PEERS if p.name in results]


async def peer_results(tasks: int = 20_000, agents: int = 10, trials: int = 3) -> list[PeerResult]:
    """``run_peers`` off the event loop, for claims.py's async parts."""
    return await asyncio.to_thread(run_peers, tasks, agents, trials)


def peer_rows(results: list[PeerResult]) -> list[Row]:
    """The table's rows: per peer cycles/s, CPU per cycle, orphan recovery, zombie outcome."""
    rows = []
    for r in results:
        if r.cycles_per_s is None:
            rows.append(Row(f"{r.name}: {r.note}", "-", "-"))
            continue
        rows.append(
            Row(f"{r.name} {r.version}: claim+complete ({r.note})", f"{r.cycles_per_s:,.0f}", "cycles/s")
        )
        worker, redis = (
            "?" if v is None else f"{v:.0f}" for v in (r.worker_us_per_cycle, r.redis_us_per_cycle)
        )
        rows.append(Row(f"  cpu/cycle: worker / redis ({r.tasks:,} cycles)", f"{worker} / {redis}", "us"))
        if r.orphan == "n/a":
            continue
        base = r.name.split(",")[0]
        lease = f"{base}: {LEASES[base]}" if base in LEASES else "?"
        took = "never" if r.orphan_recovery_s is None else f"{r.orphan_recovery_s:.1f}"
        rows.append(Row(f"  orphan recovery after SIGKILL ({lease})", took, "s"))
        rows.append(Row(f"  zombie's stale completion ({r.zombie_detail})", r.zombie, "-"))
    return rows


# The goals against BullMQ, per claimroom variant: least cycles/s ratio (one task
# per claim call: 1.0x; batched claims: 1.5x); Redis CPU per cycle at most BullMQ's.
GOALS = {
    "claimroom": 1.0,
    "claimroom, complete_and_claim": 1.0,
    "claimroom, claim_many(8)": 1.5,
    "claimroom, complete_many(8)": 1.5,
}


def paired(mine: list[float | None], bulls: list[float | None]) -> float | None:
    """The median of the trials' ratios, each trial's figure to BullMQ's of the same turn;
    None unless every trial of both has its figure."""
    if not mine or len(mine) != len(bulls):
        return None
    pairs = [(a, b) for a, b in zip(mine, bulls, strict=True) if a is not None and b]
    return statistics.median(a / b for a, b in pairs) if len(pairs) == len(mine) else None


def turns(names: list[str], trials: int) -> list[str]:
    """The order the throughput trials run in: a turn of every system, BullMQ first (the
    claimroom rows are compared with it), ``trials`` times."""
    order = sorted(names, key=lambda name: name != "bullmq")
    return order * max(1, trials)


def ratio_rows(results: list[PeerResult]) -> list[Row]:
    """claimroom's variants against BullMQ, measured in the same run: the ratios and goals.
    With the trials of both (``trials``), the median of the trials' ratios; else the ratio
    of the medians."""
    bull = next((r for r in results if r.name == "bullmq" and r.cycles_per_s), None)
    if bull is None or not bull.cycles_per_s:
        return [Row("claimroom / BullMQ: no BullMQ figure in this run (bench/peers/setup)", "-", "-")]
    rows = []
    for r in results:
        if r.name not in GOALS or not r.cycles_per_s:
            continue
        ratio = paired([t[0] for t in r.trials], [t[0] for t in bull.trials])
        ratio = r.cycles_per_s / bull.cycles_per_s if ratio is None else ratio
        goal = GOALS[r.name]
        rows.append(
            Row(f"{r.name} / BullMQ: cycles/s", f"{ratio:.2f}", "x", f">= {goal:.1f}", yes(ratio >= goal))
        )
        if r.redis_us_per_cycle and bull.redis_us_per_cycle:
            cpu = paired([t[1] for t in r.trials], [t[1] for t in bull.trials])
            cpu = r.redis_us_per_cycle / bull.redis_us_per_cycle if cpu is None else cpu
            rows.append(
                Row(f"{r.name} / BullMQ: Redis CPU per cycle", f"{cpu:.2f}", "x", "<= 1.0", yes(cpu <= 1.0))
            )
        if len(r.trials) > 1 and len(r.trials) == len(bull.trials):
            # Each turn's ratios, so that a reader sees how far apart the trials were.
            each = [
                f"{a[0] / b[0]:.2f}" + (f"/{a[1] / b[1]:.2f}" if a[1] and b[1] else "")
                for a, b in zip(r.trials, bull.trials, strict=True)
            ]
            rows.append(Row(f"  {r.name}: each turn's ratios (cycles/s / Redis CPU)", " ".join(each), "x"))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--agents", type=int, default=10)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--only", nargs="*", help="by name (claimroom bullmq saq arq rq)")
    args = p.parse_args()
    t0 = time.perf_counter()
    results = run_peers(args.tasks, args.agents, args.trials, args.only)
    for r in results:
        print(json.dumps(r.__dict__), file=sys.stderr)
    print_table(
        f"claimroom and job-queue peers, {args.tasks:,} tasks, {args.agents} agents",
        peer_rows(results) + ratio_rows(results),
        time.perf_counter() - t0,
    )


if __name__ == "__main__":
    main()
