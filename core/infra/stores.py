"""The stores claimroom starts for a project: starting one, bringing the same one back, stopping them.

Each store claimroom starts is recorded in ``.claimroom/started.json`` (kind, port, password,
container and volume, or the local data directory). A recorded store may be brought back
by any command, but only as that same store with that same data; when its data is gone
it is not started empty in its place (see ``revive``). Everything here blocks.

Every store claimroom starts requires a password: the one in the URL the user gave, else
the project's own (``.claimroom/redis.password``). A command that names the store without
it (or names none) gets it from the record (``known_url``), so agents of the project never
handle the password; a process of another user cannot read it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import constants as C
from .. import private
from ..errors import BadInput, StartFailed, StoreUnavailable
from ..projectdir import known_url as known_url  # the one place a password joins a URL (light)
from . import docker_redis, local_server
from .probe import is_local, password_of, port_of, probe
from .project import (
    Started,
    infra_dir,
    load_config,
    mark_stopped,
    project_password,
    read_started,
    record_started,
    start_lock,
)
from .topology import stop_topology

METHODS = ("docker", "local")


@dataclass(frozen=True)
class StartOptions:
    """How a store may be started: which ways, in order, and the container's particulars."""

    methods: tuple[str, ...] = METHODS
    image: str = C.default_redis_image
    container: str = ""  # "" -> claimroom-redis (or claimroom-redis-PORT off the default port)
    volume: str = ""
    pull: bool = True
    start_timeout_s: float = C.store_start_timeout_s  # a started store must answer within this

    @classmethod
    def from_config(cls, config: Mapping[str, Any], env: Mapping[str, str] | None = None) -> StartOptions:
        """Options from the project's config (``redis_image``, ``auto_start``) and environment."""
        environ = os.environ if env is None else env
        image = environ.get(C.env_redis_image) or config.get("redis_image") or C.default_redis_image
        methods = config.get("auto_start", list(METHODS))
        if not isinstance(methods, list) or any(m not in METHODS for m in methods):
            raise BadInput(f'"auto_start" in the config must be a list of {", ".join(METHODS)}')
        if not isinstance(image, str) or not image:
            raise BadInput('"redis_image" in the config must be an image name such as redis:7')
        return cls(methods=tuple(methods), image=image)


def method_name(method: str) -> str:
    return "Docker" if method == "docker" else "redis-server"


# --- which record is the store a URL names ------------------------------------------------


def record_for(project: Path, url: str) -> Started | None:
    """The store claimroom started for ``project`` that ``url`` names, if any.

    It must be on this machine at the port the URL spells out, with the same password;
    the database number does not matter (every database lives in the same server and data).
    A topology is never one (its URL is not a ``redis://`` one; ``topology.py`` has its own).
    """
    if not is_local(url):
        return None
    port = port_of(url)
    if port is None:
        return None
    password = password_of(url)
    return next(
        (
            r
            for r in read_started(project)
            if r.port == port and r.password == password and r.kind not in C.topology_kinds
        ),
        None,
    )


def new_password(project: Path, url: str) -> str:
    """The password a store claimroom starts at ``url`` requires: the URL's, else the project's."""
    return password_of(url) or project_password(project)


def started_here(project: Path, url: str) -> bool:
    """Whether ``url`` is a store claimroom started for ``project`` and not stopped on purpose."""
    record = record_for(project, url)
    return record is not None and not record.stopped


def data_problem(project: Path, record: Started) -> str:
    """Why the recorded store's data is gone ("" when it is there).

    Only the data counts: redis-server deletes its pid file whenever it stops cleanly.
    """
    if record.kind == "docker":
        return f"its volume {record.volume} is gone" if docker_redis.volume_gone(record.volume) else ""
    data = local_server.server_dir(project) / "data"
    return "" if data.is_dir() else f"its data directory {data} is gone"


# --- starting -------------------------------------------------------------------------------


def _start_one(
    method: str, project: Path, port: int, password: str, opts: StartOptions
) -> tuple[Started, str]:
    # Files an older claimroom left readable by others (append-only files, its log, the
    # lock and config files) are narrowed before the store that reads them starts.
    private.narrow_tree(infra_dir(project))
    if method == "docker":
        spec = docker_redis.DockerSpec(
            port=port,
            image=opts.image,
            container=opts.container,
            volume=opts.volume,
            password=password,
            pull=opts.pull,
            start_timeout_s=opts.start_timeout_s,
        )
        return docker_redis.ensure(spec)
    started = local_server.start(project, port, password, opts.start_timeout_s)
    return started, f"started redis-server on 127.0.0.1:{port}, data in {started.directory}"


def start_new(
    project: Path, port: int, password: str, opts: StartOptions, failures: list[str]
) -> tuple[str, str] | None:
    """Start a store by the first method of ``opts`` that works, and record it (under the lock).

    Returns (method, what was done); each method that failed adds why to ``failures``.
    """
    for method in opts.methods:
        try:
            started, action = _start_one(method, project, port, password, opts)
        except StartFailed as exc:
            failures.append(f"{method_name(method)}: {exc}")
            continue
        record_started(project, started)
        return method, action
    return None


def data_gone(project: Path, record: Started, lost: str) -> StoreUnavailable:
    """The error for a recorded store whose data is gone (``lost`` says what)."""
    return StoreUnavailable(
        f"store unavailable at 127.0.0.1:{record.port}: it is the {record.label} that claimroom "
        f"started for {project}, but {lost}; claimroom does not start an empty store in its place. "
        "Fix: bring the data back, or run claimroom up to start an empty store there"
    )


def revive(
    project: Path, record: Started, opts: StartOptions | None = None, *, make_private: bool = False
) -> tuple[Started, str]:
    """Start the recorded store again, with its own data and only its own way (under the lock);
    what runs now and what was done.

    ``StoreUnavailable`` when its data is gone (an empty store in its place would lose the
    board without a word) or it cannot start: no other way is tried, since that would be
    another store with other data. It keeps its password; one started before stores had
    passwords gets the project's when ``make_private`` (``claimroom up``, never a restart
    behind the back of processes holding its URL without one).
    """
    if lost := data_problem(project, record):
        raise data_gone(project, record, lost)
    base = opts or StartOptions()
    again = StartOptions(
        methods=(record.kind,),
        image=record.image or C.default_redis_image,
        container=record.container,
        volume=record.volume,
        pull=base.pull,
        start_timeout_s=base.start_timeout_s,
    )
    password = record.password or (project_password(project) if make_private else "")
    try:
        started, action = _start_one(record.kind, project, record.port, password, again)
    except StartFailed as exc:
        raise StoreUnavailable(
            f"could not start again the {record.label} that claimroom started for {project} ({exc}); "
            f"its data stays in {record.where}"
        ) from None
    record_started(project, started)  # also clears "stopped"
    if password != record.password:
        action += "; it now requires the project's password (.claimroom/redis.password)"
    return started, action


def restart(project: Path, url: str) -> str | None:
    """Bring back the store claimroom started for ``project`` at ``url``; None if it started none there.

    Used by the health monitor and the store pane. Returns what was done, or "" when the
    store answered again before anything had to be done.
    """
    record = record_for(project, url)
    if record is None:
        return None
    with start_lock(project):
        if probe(url).ok:
            return ""
        return revive(project, record)[1]


# --- stopping -------------------------------------------------------------------------------


def stop_store(project: Path, record: Started) -> str:
    """Stop one recorded store and note it was stopped on purpose (under the lock); one line."""
    try:
        if record.kind in C.topology_kinds:
            said = stop_topology(record)
        elif record.kind == "docker":
            said = docker_redis.stop(record.container, record.volume)
        else:
            said = local_server.stop(local_server.server_dir(project) / "redis.pid")
    except StartFailed as exc:
        raise StoreUnavailable(str(exc)) from None
    mark_stopped(project, record)
    return said


def down(project: Path) -> str:
    """``claimroom down``: stop every store claimroom started for this project; one line each."""
    records = read_started(project)
    if not records:
        if load_config(project).get("fallback_url"):
            return "nothing to stop: this project coordinates through files"
        return f"nothing to stop: claimroom started no store for {project}"
    said: list[str] = []
    failed: list[str] = []
    with start_lock(project):
        for record in records:
            try:
                said.append(stop_store(project, record))
            except StoreUnavailable as exc:
                failed.append(str(exc))
    stopped = [line for line in said if line.startswith("stopped")]
    if failed:
        raise StoreUnavailable("; ".join(failed + stopped))
    if not stopped:
        names = ", ".join(r.label for r in records)
        return f"nothing to stop: the stores claimroom started for {project} are not running ({names})"
    return "\n".join(stopped)
