"""Start and stop a private ``redis-server`` process on a free port.

Part of the product: ``claimroom demo`` runs its board on one (core/demo.py). The
benchmarks, the screenshot script and the tests use it too, as they must never touch a
Redis someone else owns. (The full auto-start of a project's store, with Docker and health
checks, is the infrastructure part; this is its smallest piece.)
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import constants as C
from . import private
from .errors import StoreUnavailable


def die_with_parent() -> None:
    """In the child: ask Linux to end it when its parent dies, however the parent dies.

    A private server must not outlive the demo or test run that owns it, even when that
    process is killed or its terminal goes away (SIGHUP skips ``finally`` blocks).
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_binary() -> str:
    """The path of ``redis-server``; ``StoreUnavailable`` in one line when it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise StoreUnavailable(
            "redis-server is not installed; install it (Debian: apt-get install redis-server)"
        )
    return binary


def is_redis_process(pid: int, port: int | None = None) -> bool:
    """Whether ``pid`` is alive and is a redis-server (so a reused pid is never signalled).

    With ``port``: one serving that port, as its process title says ("redis-server
    127.0.0.1:PORT [sentinel]"), so a pid read from a record is never another server's.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    if re.search(r"^State:\s+Z", status, re.M):  # a zombie is dead, whatever its name
        return False
    if b"redis-server" not in cmdline and b"redis-check-rdb" not in cmdline:
        return False
    return port is None or re.search(rb":%d(?![0-9])" % port, cmdline) is not None


def log_since(log: Path, offset: int) -> str:
    """What a server's log gained past ``offset`` ("" when it cannot be read)."""
    try:
        with log.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def log_tail(log: Path, lines: int = 2, limit: int = 300) -> str:
    """The last lines of a server's log, on one line (for an error message); "" when there is none."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    kept = [_LOG_PREFIX.sub("", ln.strip()) for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)[-limit:]


# "1234:M 30 Nov 2026 15:47:58.132 # ": pid, role, time and level, left out of a message.
_LOG_PREFIX = re.compile(r"^\d+:[A-Z] \d+ \w+ \d+ [\d:.]+ [#*.-] ")


@dataclass
class LocalRedis:
    """A redis-server child process; ``stop()`` ends exactly that process."""

    port: int
    process: subprocess.Popen[bytes]
    directory: Path
    _owns_dir: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(
        cls,
        directory: Path | None = None,
        port: int | None = None,
        timeout_s: float = 10.0,
        *,
        appendfsync: str | None = None,
    ) -> LocalRedis:
        """Start a server in ``directory`` (a new temporary one when None) on ``port`` (a free
        one when None). ``appendfsync`` ("everysec", as the stores claimroom starts for a
        project, or "always"): log every write to the directory's append-only file with that
        fsync policy, so that a server started again on the same directory finds the data of
        the one before; None: no persistence."""
        binary = redis_binary()
        owns = directory is None
        folder = Path(tempfile.mkdtemp(prefix="claimroom-redis-")) if directory is None else directory
        folder.mkdir(parents=True, exist_ok=True)
        chosen = port or free_port()
        args = [
            binary,
            "--port", str(chosen),
            "--bind", "127.0.0.1",
            "--dir", str(folder),
            "--save", "",
            "--appendonly", "no" if appendfsync is None else "yes",
            "--appendfsync", appendfsync or "everysec",
            "--maxmemory-policy", "noeviction",
            "--notify-keyspace-events", C.keyspace_events,
            "--logfile", str(folder / "redis.log"),
        ]  # fmt: skip
        proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
            umask=private.UMASK,  # its log (and any file it writes) is the owner's alone
        )
        server = cls(chosen, proc, folder, owns)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StoreUnavailable(f"redis-server exited at start; see {folder / 'redis.log'}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", chosen), 0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return server
            time.sleep(0.02)
        server.stop()
        raise StoreUnavailable(f"redis-server did not answer on port {chosen} within {timeout_s:.0f} s")

    def kill(self) -> None:
        """End the server at once (SIGKILL), as a crash would; its directory stays, so a
        server started on it again (``start(directory, port, appendfsync=...)``) recovers."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._owns_dir:
            shutil.rmtree(self.directory, ignore_errors=True)
