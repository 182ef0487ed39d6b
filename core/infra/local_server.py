"""A project's own ``redis-server`` process, daemonized, with everything under ``.claimroom/redis/``.

``redis.conf``, ``data/`` (append-only files), ``redis.log`` and ``redis.pid`` live there.
The server outlives the command that started it; ``stop`` ends it through its pid file
(never by process name), after checking that the pid is still a redis-server.

Private: the password is in ``redis.conf`` (0600), never on the command line, where ``ps``
would show it to every user until the server rewrites its process title; and the server
starts with umask 077, so every file it makes (append-only files, snapshots, its log and
pid file) is the owner's alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .. import constants as C
from .. import private
from ..errors import StartFailed
from ..local_redis import is_redis_process as is_redis_process  # named here, where infra found it
from ..local_redis import log_since
from ..storeurl import scrubbed
from .probe import local_url, probe
from .project import Started, infra_dir


def server_dir(project: Path) -> Path:
    return project / C.infra_dirname / C.local_server_dirname


def _quote(value: str) -> str:
    # redis.conf reads double-quoted strings with C-like escapes, as JSON writes them.
    return json.dumps(value)


def write_config(project: Path, port: int, password: str = "") -> Path:
    """Write ``redis.conf`` for this project's server; returns its path."""
    folder = server_dir(project)
    private.make_dir(folder / "data")
    lines = [
        "# Written by claimroom for this project's store; rewritten on each start.",
        f"port {port}",
        "bind 127.0.0.1",
        "protected-mode yes",
        "daemonize yes",
        f"pidfile {_quote(str(folder / 'redis.pid'))}",
        f"logfile {_quote(str(folder / 'redis.log'))}",
        f"dir {_quote(str(folder / 'data'))}",
        *(f"{key} {value}" for key, value in C.redis_server_settings),
    ]
    if password:
        lines.append(f"requirepass {_quote(password)}")
    conf = folder / "redis.conf"
    private.write_file(conf, ("\n".join(lines) + "\n").encode())  # owner-only: it holds the password
    return conf


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def running_pid(project: Path) -> int | None:
    """The pid of this project's redis-server when it is running."""
    pid = read_pid(server_dir(project) / "redis.pid")
    return pid if pid is not None and is_redis_process(pid) else None


def _last_problem(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines):
        if " # " in line or "FATAL" in line or "rror" in line:
            return line.split(" # ", 1)[-1]
    return lines[-1] if lines else ""


def start(
    project: Path, port: int, password: str = "", timeout_s: float = C.store_start_timeout_s
) -> Started:
    """Start (or find running) this project's redis-server on ``port``; ``StartFailed`` if it cannot."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise StartFailed("redis-server is not on PATH (Debian: apt-get install redis-server)")
    infra_dir(project)
    folder = server_dir(project)
    url = local_url(port, password)
    started = Started(
        kind="local",
        url=url,
        port=port,
        pid_file=str(folder / "redis.pid"),
        directory=str(folder),
        password=password,
    )
    pid = running_pid(project)
    if pid is not None:
        if probe(url).ok:
            return started
        raise StartFailed(
            f"this project's redis-server (pid {pid}) runs but does not answer on 127.0.0.1:{port}; "
            f"see {folder / 'redis.log'} or stop it (claimroom down)"
        )
    conf = write_config(project, port, password)
    log = folder / "redis.log"
    offset = log.stat().st_size if log.exists() else 0
    with contextlib.suppress(FileNotFoundError):
        (folder / "redis.pid").unlink()  # stale: the server it named is gone
    try:
        # With daemonize the command returns once the server has forked away from us.
        done = subprocess.run(
            [binary, str(conf)], capture_output=True, timeout=timeout_s, check=False, umask=private.UMASK
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StartFailed(f"redis-server did not start ({exc})") from None
    if done.returncode != 0:
        said = (
            scrubbed((done.stderr or done.stdout).decode("utf-8", "replace"), password).strip().splitlines()
        )
        raise StartFailed(f"redis-server refused to start ({said[-1] if said else done.returncode})")
    deadline = time.monotonic() + timeout_s
    daemon: int | None = None
    while time.monotonic() < deadline:
        if probe(url).ok:
            return started
        new = log_since(log, offset)
        if daemon is None and (m := re.search(r"\bpid=(\d+)", new)):
            daemon = int(m.group(1))
        if daemon is not None and not is_redis_process(daemon):
            problem = scrubbed(_last_problem(log_since(log, offset)), password)
            raise StartFailed(f"redis-server exited at start ({problem}; log: {log})")
        time.sleep(0.05)
    raise StartFailed(
        f"redis-server did not answer on 127.0.0.1:{port} within {timeout_s:.0f} s (log: {log})"
    )


def stop(pid_file: Path, timeout_s: float = C.local_stop_timeout_s) -> str:
    """Stop the redis-server named by ``pid_file`` (SIGTERM: it saves and exits); one line."""
    pid = read_pid(pid_file)
    if pid is None or not is_redis_process(pid):
        return "the project's redis-server was not running"
    with contextlib.suppress(ProcessLookupError):  # it may end between the check and the signal
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while is_redis_process(pid):
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)
    return f"stopped redis-server (pid {pid}); its data stays in {pid_file.parent / 'data'}"
