"""The Sentinel or Cluster topology ``claimroom up --sentinel`` / ``--cluster`` runs for a project.

Its processes (``core/local_topology.py``) are daemonized, so they outlive the command, and
live under ``.claimroom/sentinel/`` or ``.claimroom/cluster/``: a folder per process (config,
log, append-only files) and ``topology.json``, the list of every process with its pid,
which ``claimroom down`` stops them by. The store record (``started.json``, kind
"sentinel" or "cluster") holds its URL and password and names that folder.

A project uses one store: a topology is not started beside another store claimroom runs
for the project (nor beside its file board), since agents on two stores would duplicate
work. Once started it is the project's store: a command that names none uses it (the
newest record, ``projectdir.newest_topology``); one that finds none of its processes
running starts them again, with their data; ``claimroom up`` also restarts any one that
died. Everything here blocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from .. import constants as C
from .. import private
from ..errors import BadInput, StoreUnavailable
from ..local_topology import STATE_FILE, LocalCluster, LocalSentinel, attach
from ..storeurl import redacted, scheme
from .project import (
    Started,
    infra_dir,
    load_config,
    project_password,
    read_started,
    record_started,
    start_lock,
)

Topology = LocalSentinel | LocalCluster


class Brought(NamedTuple):
    """What ``up_topology`` found or did, in the order of ``resolve.Resolution``'s fields."""

    url: str
    how: str  # "sentinel" | "cluster"
    detail: str
    started: bool


def topology_dir(project: Path, kind: str) -> Path:
    return project / C.infra_dirname / kind


def check_kind(kind: str) -> str:
    if kind not in C.topology_kinds:
        raise BadInput(f"unknown topology {kind!r}: use {' or '.join(C.topology_kinds)}")
    return kind


def describe(topo: Topology) -> str:
    """Its processes in one line: the master and replicas (and sentinels), or each master's slots."""
    if isinstance(topo, LocalSentinel):
        nodes = topo.refresh()
        masters = [n.address for n in nodes if n.role == "master"]
        replicas = [n.address for n in nodes if n.role == "replica"]
        line = f"master {', '.join(masters) or 'none'}, replicas {', '.join(replicas) or 'none'}"
        return line + f", sentinels {', '.join(s.address for s in topo.sentinels)}"
    parts = []
    for shard in topo.masters():
        slots = " ".join(f"{lo}-{hi}" if hi > lo else str(lo) for lo, hi in shard.slots)
        copies = ", ".join(f"127.0.0.1:{p}" for p in shard.replicas) or "no replica"
        parts.append(f"127.0.0.1:{shard.port} (slots {slots}; {copies})")
    return "masters " + ", ".join(parts)


def _record(kind: str, topo: Topology) -> Started:
    first = topo.sentinels[0] if isinstance(topo, LocalSentinel) else topo.nodes[0]
    return Started(
        kind=kind, url=topo.url, port=first.port, directory=str(topo.directory), password=topo.password
    )


def _bare(url: str) -> str:
    """A URL without its password and options: which processes it names."""
    rest = url.split("://", 1)[-1].rpartition("@")[2]
    return f"{scheme(url)}://{rest.split('?', 1)[0]}"


def _check_url(project: Path, kind: str, url: str | None) -> None:
    """A URL given with ``--sentinel``/``--cluster`` must name that very topology."""
    if not url:
        return
    folder = topology_dir(project, kind)
    try:
        ours = attach(folder).url if (folder / STATE_FILE).exists() else ""
    except StoreUnavailable:
        ours = ""
    if not ours or _bare(ours) != _bare(url):
        raise BadInput(
            f"claimroom up --{kind} starts the project's own {C.topology_names[kind]}, but CLAIMROOM_URL "
            f"(or --url) names {redacted(url)}: unset it, or leave out --{kind}"
        )


def _refuse_beside(project: Path, kind: str) -> None:
    """``StoreUnavailable`` when the project has another store in use (see the module's docstring)."""
    fallback = load_config(project).get("fallback_url")
    if isinstance(fallback, str) and fallback:
        raise StoreUnavailable(
            f"this project coordinates through files ({fallback}); claimroom up --{kind} does not start "
            "a Redis beside them (agents on two stores would duplicate work). Fix: claimroom migrate the "
            f'board, remove "fallback_url" from .claimroom/config.json, then claimroom up --{kind}'
        )
    for r in read_started(project):
        if r.kind != kind and not r.stopped:
            raise StoreUnavailable(
                f"this project's store is the {r.label} that claimroom started; claimroom up --{kind} "
                "does not start a second store beside it (agents on two stores would duplicate work). "
                f"Fix: claimroom down (its data stays in {r.where}), then claimroom up --{kind}"
            )


def _bring_back(project: Path, kind: str, folder: Path) -> Brought:
    """Under the start lock: the recorded topology, every dead process started again."""
    topo = attach(folder)
    name = C.topology_names[kind]
    try:
        again = topo.revive()
    except StoreUnavailable as exc:
        raise StoreUnavailable(
            f"could not start again the {name} that claimroom started for {project} ({exc}); its data "
            f"stays in {folder}"
        ) from None
    record_started(project, _record(kind, topo))  # also clears "stopped"
    if again:
        total = len(topo.processes)
        said = f"started again {len(again)} of the {total} processes of the {name} claimroom started"
        return Brought(topo.url, kind, f"{said}: {describe(topo)}; files in {folder}", started=True)
    return Brought(topo.url, kind, f"the {name} claimroom started runs: {describe(topo)}", started=False)


def up_topology(
    project: Path, kind: str, url: str | None = None, timeout_s: float = C.topology_start_timeout_s
) -> Brought:
    """``claimroom up --sentinel`` / ``--cluster``: the project's topology of that kind, running.

    Found running, started again (each process that is not running, with its data), or
    started new; ``BadInput`` when ``url`` names another store, ``StoreUnavailable`` when
    the project uses another store or a process does not come up.
    """
    check_kind(kind)
    _check_url(project, kind, url)
    folder = topology_dir(project, kind)
    with start_lock(project):
        _refuse_beside(project, kind)
        if (folder / STATE_FILE).exists():
            return _bring_back(project, kind, folder)
        private.narrow_tree(infra_dir(project))
        password = project_password(project)
        cls = LocalSentinel if kind == "sentinel" else LocalCluster
        topo: Topology = cls.start(
            folder, password=password, persistent=True, detached=True, timeout_s=timeout_s
        )
        record_started(project, _record(kind, topo))
    detail = f"started a {C.topology_names[kind]} on 127.0.0.1: {describe(topo)}; files in {folder}"
    return Brought(topo.url, kind, detail, started=True)


def recorded_topology(project: Path, record: Started, *, explicit: bool) -> Brought:
    """The store of a command that names none, when the project's newest store is a topology.

    Not a process is touched while any runs (the topology mends itself; ``explicit``, which
    is ``claimroom up``, restarts the dead ones); when none runs, all start again.
    """
    folder = Path(record.directory)
    if not (folder / STATE_FILE).exists():
        raise StoreUnavailable(
            f"store unavailable: the {record.label} that claimroom started for {project} is gone "
            f"({folder / STATE_FILE} is missing); claimroom does not start an empty store in its place. "
            f"Fix: bring its files back, or claimroom up --{record.kind} to start an empty one"
        )
    if explicit:
        return up_topology(project, record.kind)
    if attach(folder).running():
        return Brought(record.url, record.kind, f"the {record.label} claimroom started ({folder})", False)
    with start_lock(project):
        return _bring_back(project, record.kind, folder)


def stop_topology(record: Started) -> str:
    """Stop every process of the recorded topology by its pid (``topology.json``); one line."""
    folder = Path(record.directory)
    name = C.topology_names.get(record.kind, record.kind)
    try:
        topo = attach(folder)
    except StoreUnavailable:
        return f"the {name} was not running (no {STATE_FILE} in {folder})"
    if not topo.running():
        return f"the {record.label} was not running"
    ended = topo.stop()
    pids = ", ".join(str(p) for p in ended)
    return f"stopped the {record.label}: {len(ended)} processes, pids {pids}; its data stays in {folder}"


def topology_state(record: Started) -> str:
    """ "running", "partly running (4 of 6 processes)", "not running", or why it cannot be told."""
    try:
        return attach(Path(record.directory)).state()
    except StoreUnavailable:
        return f"not running (no {STATE_FILE} in {record.directory})"
