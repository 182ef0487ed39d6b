"""``claimroom serve --http`` as a person runs it: it says where it listens, shows on the
board, refuses calls without a token, stops cleanly on SIGTERM and Ctrl-C, and answers a bad
``--http`` value or a port in use with one line and exit 2."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from mcp_support import until

from claimroom.core.local_redis import free_port
from claimroom.core.store import Store

CLAIMROOM = str(Path(sys.executable).parent / "claimroom")


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [CLAIMROOM, "serve", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def first_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    return proc.stderr.readline()


def stop(proc: subprocess.Popen[str], sig: int) -> tuple[int, str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=15)
    return proc.returncode, out, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_serve_http_starts_shows_and_stops_cleanly(
    cli_env: dict[str, str], redis_store: Store, sig: int
) -> None:
    port = free_port()
    began = time.monotonic()
    proc = start(cli_env, "--http", f"127.0.0.1:{port}")
    try:
        line = first_line(proc)
        where = f"http://127.0.0.1:{port}/mcp"
        assert (
            line == f"claimroom: MCP server on {where} (board {redis_store.namespace!r}; Ctrl-C stops it)\n"
        )
        started_s = time.monotonic() - began
        async with httpx2.AsyncClient(timeout=5) as http:
            r = await http.post(f"http://127.0.0.1:{port}/mcp", json={})
        assert r.status_code == 401

        async def listed() -> bool:
            return [(s.transport, s.address) for s in await redis_store.servers()] == [
                ("http", f"127.0.0.1:{port}")
            ]

        await until(listed)
    finally:
        code, out, err = stop(proc, sig)
    assert code == 0 and out == ""
    assert err == "claimroom: MCP server stopped\n", err
    assert await redis_store.servers() == []  # a clean stop removes its record at once
    assert started_s < 5, started_s


def test_serve_http_bad_values_and_a_taken_port(cli_env: dict[str, str]) -> None:
    for value in ("nonsense", "127.0.0.1:0", "127.0.0.1:99999", "::1:8765", "host:port"):
        argv = [CLAIMROOM, "serve", "--http", value]
        done = subprocess.run(argv, env=cli_env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--http" in done.stderr, (
            value,
            done,
        )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([CLAIMROOM, "serve", "--http", f"127.0.0.1:{port}"], env=cli_env,
                              capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        f"claimroom: cannot listen on 127.0.0.1:{port}: the port is in use; choose another --http HOST:PORT\n"
    )


def test_serve_elsewhere_than_loopback_says_tokens_are_required(cli_env: dict[str, str]) -> None:
    port = free_port()
    proc = start(cli_env, "--http", f"0.0.0.0:{port}")
    try:
        assert first_line(proc).startswith(f"claimroom: MCP server on http://0.0.0.0:{port}/mcp")
        assert "every request must carry a bearer token" in first_line(proc)
    finally:
        code, _, err = stop(proc, signal.SIGTERM)
    assert code == 0 and "Traceback" not in err


def test_serve_is_listed_in_help(cli_env: dict[str, str]) -> None:
    done = subprocess.run([CLAIMROOM, "--help"], env=cli_env, capture_output=True, text=True, timeout=30)
    assert "serve" in done.stdout and os.path.basename(CLAIMROOM) == "claimroom"
