"""The MCP server's overhead: claim+complete by concurrent MCP clients over Streamable HTTP,
beside the same work through the Python API, in one run on one fresh redis-server.

A script, not a test. It starts its own redis-server (``LocalRedis``, a free port, never
6379) and the real ``claimroom serve --http 127.0.0.1:PORT`` as a subprocess (as agents
use it: its own process, its own event loop), then:

  - Python API: ``--clients`` asyncio agents in this process, each an ``Acting`` with its
    own worker identity over one shared ``Store`` (as the server shares one), each doing
    ``--cycles`` claim+complete;
  - MCP: ``--clients`` clients of the SDK (``mcp.Client`` over Streamable HTTP), each with
    its own agent's worker token, doing the same through the ``claim`` and ``complete``
    tools; once speaking 2026-07-28 (stateless, ``mode="auto"``) and once 2025-11-25 (the
    initialize handshake and a session, ``mode="legacy"``). Connecting is not timed.

Reported for each: tool calls/s (two per cycle), the latency of one call (p50, p99; for
MCP as the client sees it: its SDK, HTTP, the server, the store), and where the CPU went
(this process: the agents or the clients; the server process; redis-server). The ratio of
the API's calls/s to MCP's is the server's overhead. All clients share this process's one
event loop, so on a small machine they compete with the server for the cores: the CPU
rows tell which side ran out first.

    .venv/bin/python bench/mcp_clients.py            # 32 clients x 20 cycles, about 20 s on an idle machine
    .venv/bin/python bench/mcp_clients.py --quick    # 8 clients x 10 cycles
    .venv/bin/python bench/mcp_clients.py --clients 64 --cycles 100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _harness import BenchRedis, CpuMeter, header, load_avg, print_table
from _stats import Row, percentile
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from claimroom.core.acting import Acting
from claimroom.core.identity import Identity, Role
from claimroom.core.local_redis import free_port
from claimroom.core.store import Store, TaskSpec
from claimroom.core.tokens import create_token

CLAIMROOM = str(Path(sys.executable).parent / "claimroom")
NAMESPACE = "mcpbench"
WARMUP = 1  # untimed cycles per agent before the timed ones
ERAS = {"auto": "2026-07-28 stateless", "legacy": "2025-11-25 sessions"}


@dataclass
class Run:
    name: str
    calls: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # where -> CPU seconds over the run
    others_cores: float = 0.0  # other processes on the machine, in cores, over the run
    steal_cores: float = 0.0  # taken by the hypervisor, in cores

    @property
    def rate(self) -> float:
        return self.calls / self.seconds


class Meter:
    """Wall time and CPU of this process, the server and redis-server over a timed span, and
    what else the machine did meanwhile (other load skews every figure, so it is shown)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.cpu = CpuMeter(pids)

    @contextlib.asynccontextmanager
    async def timing(self, run: Run) -> AsyncIterator[None]:
        before = self.cpu.sample()
        yield
        span = CpuMeter.between(before, self.cpu.sample())
        run.seconds = span.wall_s
        run.cpu = {
            "this process": span.own_s,
            **{k: float("nan") if v is None else v for k, v in span.pids_s.items()},
        }
        run.others_cores = span.others_cores or 0.0
        run.steal_cores = span.steal_cores or 0.0


async def together(
    n: int, cycles: int, cycle: Callable[[int], Awaitable[None]], run: Run, meter: Meter
) -> None:
    """``n`` agents, each doing ``cycles`` of ``cycle(i)`` at once; timed from the first to the last.

    Each agent first does one untimed cycle (``WARMUP``): the store loads its scripts, a
    client fetches the tools' schemas it checks results against."""

    async def agent(i: int, count: int) -> None:
        for _ in range(count):
            await cycle(i)

    async with asyncio.TaskGroup() as tg:
        for i in range(n):
            tg.create_task(agent(i, WARMUP))
    run.latencies_ms.clear()
    async with meter.timing(run), asyncio.TaskGroup() as tg:
        for i in range(n):
            tg.create_task(agent(i, cycles))
    run.calls = 2 * n * cycles


def timed(run: Run) -> Callable[[Awaitable[Any]], Awaitable[Any]]:
    async def call(work: Awaitable[Any]) -> Any:
        start = time.perf_counter()
        got = await work
        run.latencies_ms.append((time.perf_counter() - start) * 1000)
        return got

    return call


async def python_api(url: str, n: int, cycles: int, meter: Meter) -> Run:
    run = Run("Python API (Store + Acting)")
    t = timed(run)
    async with Store.from_url(url, NAMESPACE + "-api") as store:
        await store.add_many([TaskSpec(f"api {i}") for i in range(n * (cycles + WARMUP))])
        agents = [Acting(store, Identity(f"api{i}", Role.WORKER)) for i in range(n)]

        async def cycle(i: int) -> None:
            got = await t(agents[i].claim())
            if got is None:
                raise SystemExit(f"bench: agent api{i} found nothing to claim")
            await t(agents[i].complete(got.task.id, got.token))

        await together(n, cycles, cycle, run, meter)
    return run


def ok(result: Any, what: str) -> dict[str, Any]:
    if result.is_error or result.structured_content is None:
        raise SystemExit(f"bench: {what} failed: {result.content}")
    return dict(result.structured_content)


async def over_mcp(url: str, store: Store, era: str, n: int, cycles: int, meter: Meter) -> tuple[Run, float]:
    """The MCP run in one protocol era; also how long opening the ``n`` clients took."""
    run = Run(f"MCP over HTTP, {ERAS[era]}")
    t = timed(run)
    tokens = [await create_token(store, f"{era}{i}", "worker") for i in range(n)]
    await store.add_many([TaskSpec(f"{era} {i}") for i in range(n * (cycles + WARMUP))])
    async with contextlib.AsyncExitStack() as stack:
        began = time.perf_counter()

        async def open_client(token: str) -> Client:
            http = await stack.enter_async_context(
                create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
            )
            return await stack.enter_async_context(
                Client(streamable_http_client(url, http_client=http), mode=era)
            )

        clients = [await open_client(token) for token in tokens]
        connect_s = time.perf_counter() - began
        if era == "auto" and clients[0].protocol_version != "2026-07-28":
            raise SystemExit(f"bench: mode auto spoke {clients[0].protocol_version}, not 2026-07-28")

        async def cycle(i: int) -> None:
            got = ok(await t(clients[i].call_tool("claim", {})), "claim")
            if not got["claimed"]:
                raise SystemExit(f"bench: client {i} found nothing to claim: {got['why']}")
            ok(await t(clients[i].call_tool("complete", {"task": got["task"]["id"], "token": got["token"]})),
               "complete")  # fmt: skip

        await together(n, cycles, cycle, run, meter)
    return run, connect_s


@contextlib.contextmanager
def serving(redis_url: str, home: Path) -> Any:
    """``claimroom serve --http`` on a free port until the block ends; yields (url, pid)."""
    port = free_port()
    env = dict(os.environ, CLAIMROOM_URL=redis_url, CLAIMROOM_NAMESPACE=NAMESPACE, CLAIMROOM_HOME=str(home))
    env.pop("CLAIMROOM_TOKEN", None)
    proc = subprocess.Popen([CLAIMROOM, "serve", "--http", f"127.0.0.1:{port}"], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # said once it accepts connections
        if "MCP server on" not in line:
            raise SystemExit(f"bench: claimroom serve did not start: {line}{proc.stderr.read()}")
        yield f"http://127.0.0.1:{port}/mcp", proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode != 0 or "Traceback" in err or err.count("\n") > 1:
            print(f"bench: claimroom serve ended {proc.returncode}: {err.strip()}", file=sys.stderr)


def rows_of(run: Run, n: int) -> list[Row]:
    cpu = ", ".join(f"{k} {v / run.calls * 1e6:,.0f}" for k, v in run.cpu.items())
    return [
        Row(f"{run.name}: tool calls/s, {n} agents", f"{run.rate:,.0f}", "calls/s"),
        Row("  latency of one call p50 / p99",
            f"{percentile(run.latencies_ms, 50):.1f} / {percentile(run.latencies_ms, 99):.1f}", "ms"),
        Row(f"  CPU per call ({cpu})", f"{sum(run.cpu.values()) / run.calls * 1e6:,.0f}", "us"),
        Row("  meanwhile: other processes / hypervisor steal",
            f"{run.others_cores:.2f} / {run.steal_cores:.2f}", "cores"),
    ]  # fmt: skip


def against(run: Run, api: Run, n: int, connect_s: float) -> list[Row]:
    """An MCP run's rows beside the Python API's."""
    server_s = run.cpu["server"]
    p50 = percentile(run.latencies_ms, 50) / percentile(api.latencies_ms, 50)
    return [
        *rows_of(run, n),
        Row(f"  opening the {n} clients (not timed above)", f"{connect_s:.2f}", "s"),
        # What one core of server could answer if the clients cost it nothing.
        Row("  the server's own ceiling: 1 core / its CPU per call",
            f"{run.calls / server_s:,.0f}" if server_s > 0 else "-", "calls/s"),
        Row("  Python API calls/s / these calls/s (the overhead)", f"{api.rate / run.rate:.1f}", "x"),
        Row("  p50 latency / the Python API's", f"{p50:.1f}", "x"),
    ]  # fmt: skip


async def bench(a: argparse.Namespace, redis: BenchRedis, home: Path) -> list[Row]:
    with serving(redis.url, home) as (url, server_pid):
        meter = Meter({"server": server_pid, "redis": redis.pid})
        api = await python_api(redis.url, a.clients, a.cycles, meter)
        rows = rows_of(api, a.clients)
        async with Store.from_url(redis.url, NAMESPACE) as store:
            for era in a.eras:
                run, connect_s = await over_mcp(url, store, era, a.clients, a.cycles, meter)
                rows += against(run, api, a.clients, connect_s)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=32, help="concurrent agents (and MCP clients)")
    p.add_argument("--cycles", type=int, default=20, help="claim+complete cycles per agent")
    p.add_argument("--eras", default="auto,legacy", help="MCP protocol eras: auto (2026-07-28), legacy")
    p.add_argument("--quick", action="store_true", help="a smoke run: 8 clients x 10 cycles")
    a = p.parse_args()
    if a.quick:
        a.clients, a.cycles = 8, 10
    a.eras = [e.strip() for e in a.eras.split(",") if e.strip()]
    if a.clients < 1 or a.cycles < 1 or not a.eras or set(a.eras) - set(ERAS):
        p.error("--clients and --cycles must be at least 1; --eras is auto, legacy or both")
    began = time.perf_counter()
    load = load_avg()
    with BenchRedis() as redis, tempfile.TemporaryDirectory() as home:
        rows = asyncio.run(bench(a, redis, Path(home)))
    title = header("MCP clients", [f"{a.clients} agents x {a.cycles} claim+complete"], load)
    print_table(title, rows, time.perf_counter() - began)


if __name__ == "__main__":
    main()
