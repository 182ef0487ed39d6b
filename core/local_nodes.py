"""The processes of a local Redis topology: one node each, and what every topology does with them.

A ``Topology`` (``core/local_topology.py`` has the two kinds) starts each process from a
config file in a folder of its own (config, log, data), waits on conditions with a
deadline, kills one by PID, stops them all and keeps ``topology.json`` (every process:
port, pid, role as last seen) so another process can attach to it. Processes die with
the process that started them (``die_with_parent``), unless ``detached``: then they are
daemonized with a pid file, to outlive the command that started them (``claimroom up``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import constants as C
from . import private
from .errors import BadInput, StoreUnavailable
from .local_redis import die_with_parent, free_port, is_redis_process, log_since, log_tail, redis_binary

STATE_FILE = "topology.json"
MASTER, REPLICA, SENTINEL, DOWN = "master", "replica", "sentinel", "down"


def conf_string(value: str) -> str:
    return json.dumps(value)  # a redis.conf string: double-quoted, C-like escapes


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@dataclass(eq=False)
class Node:
    """One redis-server process of a topology: a data node or a sentinel."""

    port: int
    directory: Path  # its config, log and data
    role: str  # "master", "replica", "sentinel" or "down", as last seen
    pid: int = 0
    bus_port: int = 0  # a cluster node's bus port
    node_id: str = ""  # a cluster node's id
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def sentinel(self) -> bool:
        return self.directory.name.startswith("sentinel-")

    @property
    def conf(self) -> Path:
        return self.directory / ("sentinel.conf" if self.sentinel else "redis.conf")

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    @property
    def pid_file(self) -> Path:
        return self.directory / "redis.pid"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def name(self) -> str:
        return f"{'sentinel' if self.sentinel else 'redis-server'} on {self.address}"

    def alive(self) -> bool:
        """Whether its process runs (a child of ours: not exited; else: its pid serves its port)."""
        if self.process is not None:
            return self.process.poll() is None
        return self.pid > 0 and is_redis_process(self.pid, self.port)

    def to_json(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "folder": self.directory.name,
            "role": self.role,
            "pid": self.pid,
            "bus_port": self.bus_port,
            "node_id": self.node_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], topology_dir: Path) -> Node:
        return cls(
            port=int(data["port"]),
            directory=topology_dir / str(data["folder"]),
            role=str(data.get("role", DOWN)),
            pid=int(data.get("pid", 0)),
            bus_port=int(data.get("bus_port", 0)),
            node_id=str(data.get("node_id", "")),
        )


@dataclass(eq=False)
class Topology:
    """What both topologies share: their processes, how they start, wait, die and stop."""

    kind: ClassVar[str] = ""

    directory: Path
    password: str
    nodes: list[Node]  # the data nodes
    detached: bool = False  # daemonized, outliving us (claimroom up); else they die with us
    persistent: bool = False  # append-only files (claimroom up); tests and benchmarks keep none
    settings: dict[str, int] = field(default_factory=dict)
    _owns_dir: bool = field(default=False, repr=False)

    # --- what callers read --------------------------------------------------------------

    @property
    def processes(self) -> list[Node]:
        return list(self.nodes)

    def _auth(self) -> str:
        return f":{quote(self.password, safe='')}@" if self.password else ""

    def node(self, port: int) -> Node:
        """The process serving ``port``; ``BadInput`` when none of this topology does."""
        for n in self.processes:
            if n.port == port:
                return n
        raise BadInput(f"127.0.0.1:{port} is not a node of the {self.kind} topology in {self.directory}")

    def pids(self) -> list[int]:
        return [n.pid for n in self.processes if n.pid]

    def running(self) -> list[Node]:
        return [n for n in self.processes if n.alive()]

    def state(self) -> str:
        """ "running", "partly running (4 of 6 processes)" or "not running"."""
        alive, total = len(self.running()), len(self.processes)
        if alive == total:
            return "running"
        return f"partly running ({alive} of {total} processes)" if alive else "not running"

    def client(self, port: int, timeout_s: float = C.probe_timeout_s) -> Any:
        """A sync client of one process (close it, or use it in ``with``)."""
        return redis.Redis(
            host="127.0.0.1",
            port=port,
            password=self.password or None,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),  # the waits poll again themselves; a dead node answers at once
            decode_responses=True,
        )

    # --- starting one process ------------------------------------------------------------

    def _base_conf(self, node: Node) -> list[str]:
        lines = [
            f"# Written by claimroom for its local {self.kind} topology; rewritten on each start.",
            f"port {node.port}",
            "bind 127.0.0.1",
            f"dir {conf_string(str(node.directory))}",
            f"logfile {conf_string(str(node.log))}",
        ]
        if self.detached:
            lines += ["daemonize yes", f"pidfile {conf_string(str(node.pid_file))}"]
        if self.password:
            lines.append(f"requirepass {conf_string(self.password)}")
        return lines

    def _data_conf(self, node: Node) -> list[str]:
        """The settings every data node has: claimroom's, no eviction, a fast first sync."""
        settings = C.redis_server_settings if self.persistent else (("appendonly", "no"), ("save", '""'))
        lines = [*self._base_conf(node), *(f"{k} {v}" for k, v in settings)]
        lines += [
            "maxmemory-policy noeviction",
            f"notify-keyspace-events {C.keyspace_events}",
            "repl-diskless-sync yes",
            "repl-diskless-sync-delay 0",  # a replica's first sync starts at once (default: 5 s)
        ]
        if self.password:
            lines.append(f"masterauth {conf_string(self.password)}")
        return lines

    def _write_conf(self, node: Node, lines: list[str]) -> None:
        private.make_dir(node.directory)
        private.write_file(node.conf, ("\n".join(lines) + "\n").encode())

    def _launch(self, node: Node, timeout_s: float) -> None:
        """Start ``node``'s process from its config file (written before)."""
        args = [redis_binary(), str(node.conf), *(["--sentinel"] if node.sentinel else [])]
        offset = node.log.stat().st_size if node.log.exists() else 0
        if not self.detached:
            node.process = subprocess.Popen(
                args,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
                umask=private.UMASK,
            )
            node.pid = node.process.pid
            self.save()
            return
        node.process = None
        with contextlib.suppress(FileNotFoundError):
            node.pid_file.unlink()
        try:  # daemonize: the command returns once the server has forked away from us
            done = subprocess.run(
                args, capture_output=True, timeout=timeout_s, check=False, umask=private.UMASK
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StoreUnavailable(f"{node.name} did not start ({exc})") from None
        if done.returncode != 0:
            said = (done.stderr or done.stdout).decode("utf-8", "replace").strip().splitlines()
            raise StoreUnavailable(f"{node.name} refused to start ({said[-1] if said else done.returncode})")
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(OSError, ValueError):
                node.pid = int(node.pid_file.read_text().strip())
                break
            new = log_since(node.log, offset)
            begun = re.search(r"\bpid=(\d+)", new)
            if (begun and not is_redis_process(int(begun.group(1)))) or time.monotonic() > deadline:
                raise self._failed(node, "did not come up")
            time.sleep(C.topology_poll_s)
        self.save()

    def _tail(self, node: Node) -> str:
        """The end of ``node``'s log for a message (the password, were it echoed, hidden)."""
        tail = log_tail(node.log) or "empty"
        return tail.replace(self.password, "***") if self.password else tail

    def _failed(self, node: Node, what: str) -> StoreUnavailable:
        return StoreUnavailable(f"{node.name} {what} (log {node.log}: {self._tail(node)})")

    def _answers(self, node: Node) -> bool:
        try:
            with self.client(node.port) as r:
                return bool(r.ping())
        except (redis.RedisError, OSError):
            return False

    def _wait(
        self, what: str, missing: Callable[[], str], timeout_s: float, watch: Iterable[Node] = ()
    ) -> None:
        """Until ``missing()`` says nothing is missing (""); a watched process that dies, or the
        deadline, is ``StoreUnavailable`` naming what was missing and the tail of the right log."""
        watched = list(watch)
        deadline = time.monotonic() + timeout_s
        while True:
            for n in watched:
                if not n.alive():
                    n.role = DOWN
                    raise self._failed(n, f"exited while {what}")
            try:
                lack = missing()
            except (redis.RedisError, OSError) as exc:
                lack = f"{exc.__class__.__name__}: {exc}"
            if not lack:
                return
            if time.monotonic() > deadline:
                blamed = next((n for n in watched if n.address in lack), watched[0] if watched else None)
                where = f" (log {blamed.log}: {self._tail(blamed)})" if blamed else ""
                raise StoreUnavailable(f"{what}: not within {timeout_s:.0f} s: {lack}{where}")
            time.sleep(C.topology_poll_s)

    def _start_nodes(self, nodes: list[Node], timeout_s: float) -> None:
        """Launch ``nodes`` (configs written) together and wait until each answers PING."""
        for n in nodes:
            self._launch(n, timeout_s)
        self._wait(
            f"starting {len(nodes)} processes",
            lambda: next((f"{n.name} does not answer" for n in nodes if not self._answers(n)), ""),
            timeout_s,
            nodes,
        )

    def _replicas_synced(self, replicas: list[Node]) -> str:
        for n in replicas:
            with self.client(n.port) as r:
                info = r.info("replication")
            if info.get("role") != "slave" or info.get("master_link_status") != "up":
                return f"{n.name} is not in sync with its master"
        return ""

    # --- killing, stopping, the state file ------------------------------------------------------

    def kill(self, node: Node, timeout_s: float = C.topology_stop_timeout_s) -> Node:
        """SIGKILL ``node``'s process and wait until it is gone; returns it (role "down")."""
        if node.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, signal.SIGKILL)
        self._reap(node, timeout_s)
        node.role = DOWN
        self.save()
        return node

    def _reap(self, node: Node, timeout_s: float) -> bool:
        """Wait until ``node``'s process is gone; whether it went in time."""
        if node.process is not None:
            try:
                node.process.wait(timeout_s)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout_s
        while node.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(C.topology_poll_s)
        return True

    def _stop_order(self) -> list[Node]:
        return self.processes

    def stop(self, timeout_s: float = C.topology_stop_timeout_s) -> list[int]:
        """Stop every process (SIGTERM, SIGKILL after ``timeout_s``), by PID; the pids it ended."""
        ended = []
        order = self._stop_order()
        for n in order:
            if n.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(n.pid, signal.SIGTERM)
                ended.append(n.pid)
        for n in order:
            if not self._reap(n, timeout_s):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(n.pid, signal.SIGKILL)
                self._reap(n, timeout_s)
            n.role = DOWN
        if self._owns_dir:
            shutil.rmtree(self.directory, ignore_errors=True)
        elif self.directory.is_dir():
            self.save()
        return ended

    def save(self) -> None:
        """Write ``topology.json``: every process, its port, pid and role (owner-only: the password)."""
        data = {
            "kind": self.kind,
            "password": self.password,
            "detached": self.detached,
            "persistent": self.persistent,
            "settings": self.settings,
            "nodes": [n.to_json() for n in self.nodes],
            **self._extra_json(),
        }
        private.make_dir(self.directory)
        private.write_file(self.directory / STATE_FILE, (json.dumps(data, indent=2) + "\n").encode())

    def _extra_json(self) -> dict[str, Any]:
        return {}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def make_folder(directory: Path | None, prefix: str) -> tuple[Path, bool]:
    if directory is None:
        return Path(tempfile.mkdtemp(prefix=prefix)), True
    private.make_dir(directory)
    return directory, False


def check_password(password: str) -> None:
    if any(ch.isspace() or not ch.isprintable() for ch in password):
        raise BadInput("a topology's password must be printable, without spaces")


def role_of(topo: Topology, node: Node) -> str:
    """ROLE of a live data node ("master" or "replica"); "down" when it is dead or does not answer."""
    if not node.alive():
        return DOWN
    try:
        with topo.client(node.port) as r:
            said = r.execute_command("ROLE")
    except (redis.RedisError, OSError):
        return DOWN
    return MASTER if said and said[0] == "master" else REPLICA


def read_state(directory: Path, kind: str) -> dict[str, Any]:
    path = directory / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreUnavailable(f"cannot read {path} ({exc}): no {kind} topology to attach to there") from None
    if not isinstance(data, dict) or data.get("kind") != kind or not isinstance(data.get("nodes"), list):
        raise StoreUnavailable(f"{path} does not describe a {kind} topology")
    return data
