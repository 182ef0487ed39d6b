"""What the benchmark scripts share (a module, not a benchmark: ./dev bench skips it).

- ``BenchRedis``: a redis-server of the bench's own (a free port, never 6379), a fresh
  namespace on it per measure, and the admin part of the store (``RedisStore.admin``) for
  what a bench asks of the server itself: emptying it, its SLOWLOG, INFO.
- ``CpuMeter``: CPU seconds over a span, of this process, of other processes by pid, and
  of everything else on the machine (other load skews every figure, so it is shown);
  ``status_kb`` reads a process's memory (VmRSS, VmHWM).
- ``Children``: child processes of a bench script that start, say "ready", wait until
  all are told "go" together, and report one JSON object each, so that what they measure
  is agents working, not Python starting up beside them (which, on two cores, it was).
- ``LagTicker``: how late a ticker wakes up, i.e. how long the event loop was held.
- ``header`` and ``print_table``: the report, one table with its targets and the wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import redis as redis_py
from _stats import Row
from redis.utils import HIREDIS_AVAILABLE

from claimroom.core.local_redis import LocalRedis
from claimroom.core.redis.admin import RedisAdmin
from claimroom.core.redis.store import RedisStore

# --- the bench's own redis-server -----------------------------------------------------------


class BenchRedis:
    """A redis-server this process started and stops (``LocalRedis``), used as a context manager.

    Its tools (``admin``, ``fresh``, ``version``) open a store on first use in the running
    event loop; ``close`` closes it before that loop ends."""

    def __init__(self) -> None:
        self.local = LocalRedis.start()
        # FLUSHALL (``fresh``) is safe only on a server this process started on its own port.
        assert self.local.port != 6379
        self._store: RedisStore | None = None

    @property
    def url(self) -> str:
        return self.local.url

    @property
    def pid(self) -> int:
        return self.local.process.pid

    @property
    def admin(self) -> RedisAdmin:
        """The server's tools, through a store of the bench's own."""
        if self._store is None:
            self._store = RedisStore(self.url, "bench-admin")
        return self._store.admin

    async def fresh(self, *, coalesce: bool = True) -> RedisStore:
        """A new namespace on the emptied server: each measure starts from a clean board."""
        await self.admin.flush_server()
        return RedisStore(self.url, "b" + uuid.uuid4().hex[:10], coalesce=coalesce)

    async def version(self) -> str:
        return str((await self.admin.info("server"))["redis_version"])

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None

    def stop(self) -> None:
        self.local.stop()

    def __enter__(self) -> BenchRedis:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --- CPU and memory, from /proc --------------------------------------------------------------


def cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used; None when it cannot be read."""
    try:
        rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def machine_s() -> tuple[float, float] | None:
    """CPU seconds the whole machine has been busy (all cores; not the hypervisor's steal),
    and the seconds stolen by its hypervisor; None where there is no /proc/stat."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (
                int(x) for x in f.readline().split()[1:9]
            )
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def status_kb(field: str) -> int:
    """A ``kB`` field of this process's /proc/self/status (VmRSS, VmHWM); 0 where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass(frozen=True)
class CpuSample:
    wall: float
    own: float  # this process
    pids: dict[str, float | None]
    machine: tuple[float, float] | None  # (busy, steal)


@dataclass(frozen=True)
class CpuSpan:
    """CPU seconds used over a span, and what else the machine did meanwhile."""

    wall_s: float
    own_s: float
    pids_s: dict[str, float | None]
    others_cores: float | None  # every other process on the machine, in cores
    steal_cores: float | None  # taken by the hypervisor, in cores


class CpuMeter:
    """CPU seconds over a span: this process, the processes named in ``pids``, the rest."""

    def __init__(self, pids: Mapping[str, int] | None = None) -> None:
        self.pids = dict(pids or {})

    def sample(self) -> CpuSample:
        return CpuSample(
            time.perf_counter(), time.process_time(), {k: cpu_s(p) for k, p in self.pids.items()}, machine_s()
        )

    @staticmethod
    def between(a: CpuSample, b: CpuSample) -> CpuSpan:
        wall, own = b.wall - a.wall, b.own - a.own
        pids = {k: None if a.pids[k] is None or v is None else v - a.pids[k] for k, v in b.pids.items()}
        others = steal = None
        if a.machine is not None and b.machine is not None and wall > 0:
            steal = (b.machine[1] - a.machine[1]) / wall
            if None not in pids.values():
                used = own + sum(v for v in pids.values() if v is not None)
                others = max(0.0, (b.machine[0] - a.machine[0]) - used) / wall
        return CpuSpan(wall, own, pids, others, steal)


# --- child processes told to go together ------------------------------------------------------


class Children:
    """Child processes of a bench script: each prints "ready", waits for "go" on stdin
    (``ready_then_go``), then prints one JSON report on stdout and exits."""

    def __init__(self, what: str, procs: list[asyncio.subprocess.Process]) -> None:
        self.what = what
        self.procs = procs

    @classmethod
    async def start(cls, script: str | Path, argvs: Sequence[Sequence[str]], what: str) -> Children:
        """Run ``script`` once per ``argvs`` entry; return once every one is ready."""
        procs = []
        children = cls(what, procs)
        try:
            for argv in argvs:
                procs.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        str(script),
                        *argv,
                        stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE,
                    )
                )
            for proc in procs:
                assert proc.stdout is not None
                if (await proc.stdout.readline()).strip() != b"ready":
                    raise RuntimeError(f"a {what} did not start")
        except BaseException:
            children.kill()
            raise
        return children

    async def go(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()

    async def reports(self) -> list[dict[str, Any]]:
        """Each child's report, once all have exited (parsed off the event loop: a long
        report must not hold a loop that is being measured)."""
        reports = []
        for proc in self.procs:
            out, _ = await proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"a {self.what} exited with {proc.returncode}")
            reports.append(await asyncio.to_thread(json.loads, out))
        return reports

    def kill(self) -> None:
        """End the children still running (when the bench fails part-way)."""
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()


async def run_children(script: str | Path, argvs: Sequence[Sequence[str]], what: str) -> list[dict[str, Any]]:
    """Start the children, tell them all to go once all are up, and return their reports."""
    children = await Children.start(script, argvs, what)
    try:
        await children.go()
        return await children.reports()
    finally:
        children.kill()


async def ready_then_go() -> None:
    """In a child: say "ready", then wait for "go" (the parent's ``Children.go``)."""
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def report(data: Mapping[str, Any]) -> None:
    """In a child: its one report, for the parent's ``Children.reports``."""
    print(json.dumps(data), flush=True)


# --- the event loop's lag ------------------------------------------------------------------


class LagTicker:
    """A task sleeping ``tick_s`` at a time, recording how late each wake-up was (ms): how
    long the event loop was held, as the app's own timers would see it."""

    def __init__(self, tick_s: float) -> None:
        self.tick_s = tick_s
        self.lags_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def max_ms(self) -> float:
        """The longest lag; 0 when none (a wake-up a hair early is no lag)."""
        return max([0.0, *self.lags_ms])

    def start(self) -> None:
        self._task = asyncio.create_task(self._tick())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _tick(self) -> None:
        clock = time.perf_counter
        while True:
            t = clock()
            await asyncio.sleep(self.tick_s)
            self.lags_ms.append((clock() - t - self.tick_s) * 1000)


# --- the report ----------------------------------------------------------------------------------


def load_avg() -> float | None:
    """The machine's 1-minute load average (other load skews every figure)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def redis_client() -> str:
    return f"redis-py {redis_py.__version__} (hiredis {'yes' if HIREDIS_AVAILABLE else 'no'})"


def header(name: str, facts: Sequence[str], load: float | None) -> str:
    """The line above a table: which bench, ``facts`` (versions, sizes), then the machine."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    at_start = "" if load is None else f" | load avg at start {load:.2f}"
    return " | ".join(
        [
            f"claimroom {name} bench",
            f"Python {platform.python_version()}",
            *facts,
            f"cores {os.cpu_count()} (usable {usable})",
            f"{platform.machine()} {platform.system()}{at_start}",
        ]
    )


def print_table(title: str, rows: Sequence[Row], wall_s: float | None = None) -> None:
    """``title``, then the rows under a header; the target and ok columns only when some row
    has a target; then the wall time of the whole run."""
    fields = ["measure", "value", "unit", "target", "ok"]
    if all(r.target == "-" and r.ok == "-" for r in rows):
        fields = fields[:3]
    head = Row("measure", "value", "unit", "target", "ok")
    widths = [max(len(getattr(r, f)) for r in [head, *rows]) for f in fields]

    def line(r: Row) -> str:
        cells = [getattr(r, f) for f in fields]
        padded = [
            f"{c:>{w}}" if f == "value" else f"{c:<{w}}"
            for f, c, w in zip(fields, cells, widths, strict=True)
        ]
        return "  ".join([*padded[:-1], cells[-1]])

    print(title)
    print(line(head))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))
    if wall_s is not None:
        print(f"(wall time {wall_s:.1f} s)")
