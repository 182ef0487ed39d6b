"""The store's container or server, as the control room reads and steers it (blocking calls).

Everything here blocks (Docker API calls, process signals, file reads) and runs in Textual
thread workers, never on the event loop. Only a store claimroom started for this project
(its ``.claimroom/started.json`` names it and the URL in use is that store) is steered: a
store somebody else runs is theirs to start and stop.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from claimroom.core import constants as C
from claimroom.core.errors import StoreUnavailable
from claimroom.core.infra import docker_redis, local_server
from claimroom.core.infra.project import Started, read_started, start_lock
from claimroom.core.infra.stores import record_for, restart, stop_store
from claimroom.core.infra.topology import topology_state
from claimroom.core.storeurl import redacted, scrubbed

LOG_LINES = 50  # recent log lines shown on the store pane
_LOG_READ_BYTES = 64 * 1024


@dataclass(frozen=True)
class InfraFacts:
    """What runs the store: ``kind`` "docker" or "local" when claimroom started it, else ""."""

    kind: str
    name: str = ""  # container name, or the data directory of a local redis-server
    state: str = ""  # "running", "exited", "stopped", "absent", or why Docker cannot be asked
    image: str = ""
    started_at: float | None = None  # epoch seconds, while running
    docker_restarts: int | None = None  # Docker's own restart count (restart policy)
    where: str = ""  # the volume or the data directory
    pid: int | None = None
    logs: tuple[str, ...] = ()
    note: str = ""  # why start/stop/restart are off
    others: tuple[str, ...] = ()  # every other store claimroom started for the project, one line each

    @property
    def managed(self) -> bool:
        return self.kind in ("docker", "local")

    @property
    def running(self) -> bool:
        return self.state == "running"


def unmanaged(url: str, project: Path | None) -> InfraFacts:
    """Facts for a store claimroom did not start here (nothing to read, nothing to steer)."""
    if url.startswith("file:"):
        note = "a file board: no server to start or stop"
    elif project is None:
        note = "no project given: start, stop and restart are off"
    else:
        note = f"claimroom did not start this store for {project}: start, stop and restart are off"
    return InfraFacts(kind="", note=note)


def _record(project: Path | None, url: str) -> Started | None:
    return None if project is None else record_for(project, url)


def read_facts(project: Path | None, url: str) -> InfraFacts:
    """The container's or server's state, image, uptime and recent log (blocks); and a line
    for each other store claimroom started for the project."""
    record = _record(project, url)
    if record is None or project is None:
        facts = unmanaged(url, project)
    elif record.kind == "docker":
        facts = _docker_facts(record)
    else:
        facts = _local_facts(project, record)
    if project is None:
        return facts
    others = tuple(_other(project, r) for r in read_started(project) if r != record)
    return replace(facts, others=others)


def _other(project: Path, record: Started) -> str:
    """One line for a store claimroom started that is not the one in use."""
    if record.kind in C.topology_kinds:
        state = topology_state(record)
    elif record.kind == "docker":
        state = docker_redis.state(record.container)
    else:
        state = "running" if local_server.running_pid(project) is not None else "stopped"
    return f"{record.label}: {state} ({record.where})"


def _docker_errors() -> tuple[type[BaseException], ...]:
    import docker.errors
    import requests

    return (docker.errors.DockerException, requests.RequestException, OSError)


def _started_at(text: str) -> float | None:
    try:  # Docker gives nanoseconds; fromisoformat keeps microseconds
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _docker_facts(record: Started) -> InfraFacts:
    base = InfraFacts(kind="docker", name=record.container, image=record.image, where=record.volume)
    client, problem = docker_redis.engine()
    if client is None:
        return replace(base, state=problem)
    import docker.errors

    try:
        container = client.containers.get(record.container)
        attrs: dict[str, Any] = container.attrs
        state = attrs.get("State") or {}
        running = container.status == "running"
        raw = container.logs(tail=LOG_LINES).decode("utf-8", "replace")
        return replace(
            base,
            state=str(container.status),
            image=str((attrs.get("Config") or {}).get("Image") or record.image),
            started_at=_started_at(str(state.get("StartedAt", ""))) if running else None,
            docker_restarts=int(attrs.get("RestartCount") or 0),
            logs=tuple(scrubbed(raw, record.password).splitlines()[-LOG_LINES:]),
        )
    except docker.errors.NotFound:
        return replace(base, state="absent")
    except _docker_errors() as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return replace(base, state=f"docker: {first}")
    finally:
        client.close()


def _tail(path: Path, lines: int = LOG_LINES) -> tuple[str, ...]:
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - _LOG_READ_BYTES))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ()
    return tuple(text.splitlines()[-lines:])


def _process_start(pid: int) -> float | None:
    """When ``pid`` started (epoch seconds), from /proc: boot time plus its start in clock ticks."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        lines = Path("/proc/stat").read_text().splitlines()
        boot = next(int(line.split()[1]) for line in lines if line.startswith("btime"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _local_facts(project: Path, record: Started) -> InfraFacts:
    folder = Path(record.directory) if record.directory else local_server.server_dir(project)
    pid = local_server.running_pid(project)
    return InfraFacts(
        kind="local",
        name=f"redis-server on 127.0.0.1:{record.port}",
        state="running" if pid is not None else "stopped",
        started_at=_process_start(pid) if pid is not None else None,
        where=str(folder / "data"),
        pid=pid,
        logs=_tail(folder / "redis.log"),
    )


# --- steering: each returns one line saying what happened, or raises StoreUnavailable ----


def _stop(project: Path, record: Started) -> str:
    with start_lock(project):
        return stop_store(project, record)


def _start(project: Path, url: str) -> str:
    action = restart(project, url)
    if action is None:
        raise StoreUnavailable(f"claimroom did not start the store at {redacted(url)} for {project}")
    return action or "the store was already running"


def operate(op: str, project: Path, url: str) -> str:
    """Start, stop or restart the store claimroom started for ``project`` (blocks)."""
    record = _record(project, url)
    if record is None:
        raise StoreUnavailable(f"claimroom did not start the store at {redacted(url)} for {project}")
    if op == "stop":
        return _stop(project, record)
    if op == "start":
        return _start(project, url)
    began = time.monotonic()
    stopped = _stop(project, record)
    started = _start(project, url)
    return f"restarted in {time.monotonic() - began:.1f} s ({stopped.split(';')[0]}; {started})"


def uptime_s(facts: InfraFacts | None, now_s: float) -> float | None:
    """How long the container or server has been running, when known."""
    if facts is None or facts.started_at is None or not facts.running:
        return None
    return max(0.0, now_s - facts.started_at)
