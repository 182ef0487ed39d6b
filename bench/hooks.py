"""Hook latency: what a Claude Code edit waits for, against ``python3 -c pass`` on the same machine.

A script, not a test. It starts its own redis-server (``LocalRedis``, a free port, never
6379) and a project in a temporary directory, puts one lock on the board (held by another
agent, for a task), then times, interleaved run by run so that the machine's load falls on
all of them alike:

  - ``python -c pass`` (this interpreter: the one the ``claimroom`` script runs on);
  - the command hook ``claimroom hook PreToolUse`` with Claude Code's JSON on stdin, on a
    free path (allowed) and on the locked path (denied), on Redis, and on a free path on
    the file store; the PostToolUse command hook (it heartbeats through the Store);
  - the http hook: the same event POSTed to ``/hooks/PreToolUse`` of a server running
    ``hook_routes`` (uvicorn in this process, a new connection per request).

Target (issue 13): the command form at most 100 ms above the baseline at the median.

    .venv/bin/python bench/hooks.py             # 30 runs of each
    .venv/bin/python bench/hooks.py --runs 100  # at most 200
    .venv/bin/python bench/hooks.py --quick     # 10 runs of each
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _harness import BenchRedis, header, load_avg, print_table
from _stats import Row, percentile, yes

from claimroom.core.store import Store

CLAIMROOM = str(Path(sys.executable).parent / "claimroom")
NAMESPACE = "hookbench"
SESSION = "5f0c2b1e-8d4a-4c7e-9a51-3b2d6e7f8a90"
target_ms = 100.0


def event(project: Path, name: str, path: str) -> bytes:
    return json.dumps(
        {
            "session_id": SESSION,
            "transcript_path": f"/tmp/{SESSION}.jsonl",
            "cwd": str(project),
            "permission_mode": "default",
            "hook_event_name": name,
            "tool_name": "Edit",
            "tool_input": {"file_path": str(project / path), "old_string": "a", "new_string": "b"},
            "tool_use_id": "toolu_bench",
        }
    ).encode()


def timed(args: list[str], stdin: bytes, env: dict[str, str], cwd: Path, expect: str) -> tuple[float, float]:
    """Wall time and CPU time (user + sys, which other processes' load hardly moves) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(args, input=stdin, env=env, cwd=cwd, capture_output=True, timeout=60)
    ms = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    said = done.stdout.decode()
    if done.returncode != 0 or (expect == "deny") != ('"deny"' in said):
        raise SystemExit(f"bench: {' '.join(args)} answered {done.returncode} {said!r} {done.stderr!r}")
    return ms, cpu


class HookServer:
    """``hook_routes`` on uvicorn in a thread, acting as the session's agent on the board."""

    def __init__(self, url: str) -> None:
        import uvicorn
        from starlette.applications import Starlette

        from claimroom.core.claude.acts import acting
        from claimroom.core.claude.http_hooks import hook_routes
        from claimroom.core.sessions import agent_name

        stores: list[Store] = []

        async def make_acting(request: Any, session: str) -> Any:
            if not stores:
                stores.append(Store.from_url(url, NAMESPACE))
            return acting(stores[0], agent_name(session), session)

        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[None]:
            yield
            for store in stores:
                await store.close()

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        app = Starlette(routes=hook_routes(make_acting), lifespan=lifespan)
        self.server = uvicorn.Server(uvicorn.Config(app, port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            self.thread.join(0.01)

    def post(self, body: bytes, expect: str) -> tuple[float, float]:
        url = f"http://127.0.0.1:{self.port}/hooks/PreToolUse"
        start = time.perf_counter()
        req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            said = r.read().decode()
        ms = (time.perf_counter() - start) * 1000
        if (expect == "deny") != ('"deny"' in said):
            raise SystemExit(f"bench: http hook answered {said!r}")
        return ms, float("nan")  # the server's CPU is this process's

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


async def seed(url: str) -> None:
    async with Store.from_url(url, NAMESPACE) as store:
        tid = await store.add("rewrite the parser")
        await store.claim("ada", ttl_s=3600)
        await store.lock(["src/locked.py"], "ada", task=tid)
        mine = await store.add("the bench session's task")
        claim = await store.claim(f"claude-{SESSION[:8]}", ttl_s=3600)
        assert claim is not None and claim.task.id == mine


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--runs", type=int, default=30, help="runs of each measure (1..200)")
    p.add_argument("--quick", action="store_true", help="10 runs of each (a smoke run)")
    args = p.parse_args(argv)
    runs = 10 if args.quick else max(1, min(args.runs, 200))
    server = BenchRedis()
    http: HookServer | None = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            project = Path(tmp) / "project"
            (project / ".git").mkdir(parents=True)
            board = Path(tmp) / "board"
            board.mkdir()
            asyncio.run(seed(server.url))
            asyncio.run(seed(board.as_uri()))
            env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAIMROOM_", "CLAUDE_"))}
            env |= {"CLAIMROOM_URL": server.url, "CLAIMROOM_NAMESPACE": NAMESPACE}
            env["CLAUDE_PROJECT_DIR"] = str(project)
            file_env = env | {"CLAIMROOM_URL": board.as_uri()}
            free, locked = (
                event(project, "PreToolUse", "src/free.py"),
                event(project, "PreToolUse", "src/locked.py"),
            )
            post = event(project, "PostToolUse", "src/free.py")
            http = HookServer(server.url)
            hook = [CLAIMROOM, "hook"]
            measures: dict[str, Callable[[], tuple[float, float]]] = {
                "python -c pass (baseline)": lambda: timed(
                    [sys.executable, "-c", "pass"], b"", env, project, ""
                ),
                "command PreToolUse, free path (Redis)": lambda: timed(
                    [*hook, "PreToolUse"], free, env, project, "allow"
                ),
                "command PreToolUse, locked path (Redis)": lambda: timed(
                    [*hook, "PreToolUse"], locked, env, project, "deny"
                ),
                "command PreToolUse, free path (file store)": lambda: timed(
                    [*hook, "PreToolUse"], free, file_env, project, "allow"
                ),
                "command PostToolUse, heartbeat (Redis)": lambda: timed(
                    [*hook, "PostToolUse"], post, env, project, "allow"
                ),
                "http PreToolUse, free path": lambda: http.post(free, "allow") if http else (0.0, 0.0),
                "http PreToolUse, locked path": lambda: http.post(locked, "deny") if http else (0.0, 0.0),
            }
            for measure in measures.values():  # warm the page cache and the server
                measure()
            times: dict[str, list[float]] = {name: [] for name in measures}
            cpus: dict[str, list[float]] = {name: [] for name in measures}
            load = load_avg()
            start = time.perf_counter()
            for _ in range(runs):
                for name, measure in measures.items():
                    wall, cpu = measure()
                    times[name].append(wall)
                    cpus[name].append(cpu)
            wall_s = time.perf_counter() - start
    finally:
        if http is not None:
            http.stop()
        server.stop()

    base = statistics.median(times["python -c pass (baseline)"])
    base_cpu = statistics.median(cpus["python -c pass (baseline)"])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        over = median - base
        target, ok = "-", "-"
        if name.startswith("command PreToolUse"):
            target, ok = f"<= {target_ms:g} ms over baseline", yes(over <= target_ms)
        over_text = "" if name.startswith("python") else f" ({over:+.0f} ms)"
        rows.append(
            Row(
                name, f"{median:.0f} / {percentile(values, 90):.0f}{over_text}", "ms median / p90", target, ok
            )
        )
        cpu = statistics.median(cpus[name])
        if cpu == cpu:  # not NaN: a process of its own
            extra = "" if name.startswith("python") else f" ({cpu - base_cpu:+.0f} ms)"
            rows.append(Row("  its CPU time (user + sys)", f"{cpu:.0f}{extra}", "ms median"))
    print_table(header("hook", [f"{runs} runs each, interleaved"], load), rows, wall_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
