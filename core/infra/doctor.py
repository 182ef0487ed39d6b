"""``claimroom doctor``: the whole setup checked, each finding with what to do.

Nothing is started or changed: doctor only looks. It blocks (probes, Docker calls, and
its own event loop to read the board: call it where no loop runs, or in a thread).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

from redis import exceptions as rexc

from .. import constants as C
from .. import private
from ..errors import BadInput, ClaimroomError
from ..file.schema import db_path
from ..reaper import START_ONE, ReaperStatus, ms_text
from ..store import Store
from ..storeurl import redacted
from . import docker_redis, local_server
from .checks import FAIL, OK, WARN, Check
from .probe import client, is_local, local_url, port_of, probe, scheme, with_password
from .project import Started, config_path, infra_dir, load_config, read_started
from .stores import known_url, record_for
from .topology import topology_state
from .topology_checks import topology_checks


def _config(project: Path) -> tuple[Check, dict[str, Any]]:
    path = config_path(project)
    try:
        config = load_config(project)
    except BadInput as exc:
        return Check("config", FAIL, str(exc), f"fix or delete {path}"), {}
    if not path.exists():
        return Check("config", OK, f"no {path} yet (defaults apply)"), config
    consent = config.get("allow_file_fallback")
    said = (
        {True: "allowed", False: "declined"}.get(consent, "not asked yet")
        if isinstance(consent, bool)
        else "?"
    )
    return Check("config", OK, f"{path}: file fallback {said}"), config


def _down_fix(url: str, project: Path, named: bool, problem: str) -> str:
    """What to do about a store that does not answer (the rules of ``resolve``)."""
    elsewhere = "start Redis there, or point CLAIMROOM_URL at a running Redis for every agent"
    if not is_local(url) or problem != "refused":
        return elsewhere
    if record_for(project, url) is not None:
        return "claimroom up, or any claimroom command, starts it again with its data (claimroom started it)"
    if named:
        return (
            "start that Redis again (with its data); claimroom did not start it, so it will not start "
            "one in its place; claimroom up starts a new empty store there"
        )
    return "claimroom up (starts one here)"


def _store_checks(url: str, project: Path, named: bool) -> list[Check]:
    """Reachability, latency, persistence, eviction policy, notifications, memory."""
    try:
        port_of(url)  # port 0 would quietly reach 6379
    except BadInput as exc:
        return [Check("store", FAIL, str(exc), "fix CLAIMROOM_URL (or --url)")]
    shown = redacted(url)
    found = probe(url)
    if not found.ok:
        fix = _down_fix(url, project, named, found.problem)
        return [Check("store", FAIL, f"{shown} does not answer ({found.message})", fix)]
    checks = [Check("store", OK, f"{shown} answers")]
    c = client(url)
    try:
        info: dict[str, Any] = c.info("all")
        try:
            flags = str(c.config_get("notify-keyspace-events").get("notify-keyspace-events", ""))
            saves = str(c.config_get("save").get("save", ""))
        except rexc.ResponseError:  # CONFIG renamed or refused (managed Redis)
            flags, saves = "?", "?"
    except (rexc.RedisError, OSError) as exc:
        return [Check("store", FAIL, f"{shown} answers PING but not INFO ({exc})", "check the server's ACLs")]
    finally:
        c.close()
    version = str(info.get("redis_version", "?"))
    checks.append(Check("version", OK, f"Redis {version}"))
    latency = found.latency_ms
    if latency > C.health_latency_warn_ms:
        checks.append(
            Check("latency", WARN, f"PING took {latency:.0f} ms", "use a Redis closer to the agents")
        )
    else:
        checks.append(Check("latency", OK, f"PING {latency:.1f} ms"))
    checks.append(_persistence(info, saves))
    policy = str(info.get("maxmemory_policy", "?"))
    if policy == "noeviction":
        checks.append(Check("eviction", OK, "maxmemory-policy noeviction"))
    else:
        checks.append(
            Check(
                "eviction",
                FAIL,
                f"maxmemory-policy {policy}: Redis may evict keys, i.e. lose tasks and claims",
                "redis-cli CONFIG SET maxmemory-policy noeviction (and put it in redis.conf)",
            )
        )
    checks.append(_notifications(flags))
    used, cap = info.get("used_memory"), info.get("maxmemory")
    if isinstance(used, int) and isinstance(cap, int) and cap > 0 and used / cap > C.health_memory_warn_ratio:
        checks.append(
            Check(
                "memory",
                WARN,
                f"{used / 2**20:.0f} of {cap / 2**20:.0f} MiB used",
                "raise maxmemory, or clear finished boards",
            )
        )
    elif isinstance(used, int):
        checks.append(
            Check("memory", OK, f"{used / 2**20:.1f} MiB used, {info.get('connected_clients')} clients")
        )
    return checks


def _persistence(info: dict[str, Any], saves: str) -> Check:
    if info.get("aof_enabled") in (1, "1"):
        if info.get("aof_last_write_status", "ok") != "ok":
            return Check("persistence", FAIL, "append-only file: the last write failed", "check the disk")
        return Check("persistence", OK, "append-only file on")
    if saves not in ("", "?"):
        return Check(
            "persistence",
            WARN,
            f"snapshots only (save {saves}): a crash loses the changes since the last one",
            "redis-cli CONFIG SET appendonly yes (and put it in redis.conf)",
        )
    return Check(
        "persistence",
        WARN if saves == "?" else FAIL,
        "persistence unknown (CONFIG refused)"
        if saves == "?"
        else "no persistence: a restart loses the board",
        "redis-cli CONFIG SET appendonly yes (and put it in redis.conf)",
    )


def _notifications(flags: str) -> Check:
    wanted = C.keyspace_events_merged("" if flags == "?" else flags)
    fix = f"redis-cli CONFIG SET notify-keyspace-events {wanted}"
    if flags == "?":
        return Check("notifications", WARN, "could not read notify-keyspace-events (CONFIG refused)", fix)
    if C.keyspace_events_on(flags):
        return Check("notifications", OK, f"notify-keyspace-events {flags}")
    return Check(
        "notifications",
        WARN,
        f"notify-keyspace-events {flags or '(none)'}: views wake up later (they still reconcile)",
        fix,
    )


def _docker() -> Check:
    c, problem = docker_redis.engine()
    if c is None:
        return Check("docker", WARN, problem, "needed only to auto-start a store in a container")
    try:
        version = c.version().get("Version", "?")
    except Exception:  # a version string is a nicety; reachability was already shown
        version = "?"
    finally:
        c.close()
    return Check("docker", OK, f"Docker engine {version} reachable")


def _redis_server() -> Check:
    binary = shutil.which("redis-server")
    if binary is None:
        return Check(
            "redis-server",
            WARN,
            "redis-server is not on PATH",
            "apt-get install redis-server (needed only to auto-start a store without Docker)",
        )
    try:
        said = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        said = ""
    return Check("redis-server", OK, said.strip().split(" sha=")[0] or binary)


def _started(project: Path) -> list[Check]:
    """One check for each store claimroom started for the project."""
    checks = []
    for record in read_started(project):
        if record.kind in C.topology_kinds:
            state = topology_state(record)
            running = state == "running"
        elif record.kind == "docker":
            state = docker_redis.state(record.container)
            running = state == "running"
        else:  # the project has one redis-server: the running one is this record's
            pid = local_server.running_pid(project)
            running = pid is not None
            state = f"running, pid {pid}" if running else "not running"
        if running:
            checks.append(Check("started", OK, f"{record.label}: {state} ({record.where})"))
            continue
        if record.stopped:
            state += ", stopped on purpose"
        fix = "claimroom up, or any claimroom command using that store, starts it again with its data"
        checks.append(Check("started", WARN, f"{record.label}: {state} ({record.where})", fix))
    return checks


# --- private: what claimroom started and wrote is the owner's alone ------------------------

_MAKE_PRIVATE = "claimroom down && claimroom up (starts it again with the project's password; data kept)"
_SHOWN_PATHS = 3  # loose files named in a finding; the rest counted


def _paths(found: list[Path]) -> str:
    names = ", ".join(str(p) for p in found[:_SHOWN_PATHS])
    more = len(found) - _SHOWN_PATHS
    return names + (f" and {more} more" if more > 0 else "")


def _private_store(record: Started) -> Check:
    """Whether a store claimroom started requires a password (and, in Docker, stays on 127.0.0.1)."""
    if not record.password:
        return Check(
            "private",
            WARN,
            f"{record.label} takes connections without a password (started by an older claimroom): "
            "any user of this machine can read and change the board, task payloads included",
            _MAKE_PRIVATE,
        )
    # A topology: its first sentinel (or seed node), which requires the password too.
    url = local_url(record.port) if record.kind in C.topology_kinds else record.url
    bare = probe(with_password(url, ""))
    if bare.ok:  # the record says password, the server does not ask for one
        return Check("private", WARN, f"{record.label} answers without a password", _MAKE_PRIVATE)
    said = "requires a password" if bare.problem == "auth" else "requires a password (when it runs)"
    if record.kind == "docker":
        hosts = docker_redis.published_on(record.container)
        if hosts and any(h != "127.0.0.1" for h in hosts):
            return Check(
                "private",
                WARN,
                f"{record.label} is published on {', '.join(h or '0.0.0.0' for h in hosts)}: other "
                "machines can reach it",
                f"docker rm -f {record.container} (its volume {record.volume} stays), then claimroom up",
            )
        said += ", published on 127.0.0.1 only"
    return Check("private", OK, f"{record.label} {said}")


def _private_files(project: Path, target: str) -> list[Check]:
    """Whether ``.claimroom/`` and the file board hold nothing other users may read."""
    checks = []
    folder = infra_dir(project, create=False)
    if folder.is_dir():
        found = private.loose(folder)
        if found:
            checks.append(
                Check(
                    "private",
                    WARN,
                    f"{len(found)} files and folders in {folder} are open to other users: {_paths(found)}",
                    f"chmod -R go= {folder} (claimroom down && claimroom up does it too)",
                )
            )
        else:
            checks.append(Check("private", OK, f"everything in {folder} is the owner's alone"))
    if scheme(target) == "file":
        try:
            db = db_path(target)
        except BadInput:
            return checks
        if folder.resolve() not in db.resolve().parents:
            found = [
                p for p in (db, *(db.with_name(db.name + e) for e in ("-wal", "-shm"))) if private.is_loose(p)
            ]
            if found:
                checks.append(
                    Check(
                        "private",
                        WARN,
                        f"the file board is open to other users: {_paths(found)}",
                        f"chmod go= {' '.join(str(p) for p in found)}",
                    )
                )
    return checks


def _read_status(url: str, namespace: str) -> ReaperStatus:
    async def read() -> ReaperStatus:
        async with Store.from_url(url, namespace) as store:
            return await store.reaper_status()

    return asyncio.run(read())


def _reaper(url: str, namespace: str) -> Check:
    """Whether recovery runs on the board without waiting for someone to call claim.

    Warns when there are live claims and no reaper pass within ``reaper_stale_intervals``
    of the last reaper's own interval (at least ``reaper_stale_min_s``): then an expired
    lease is found only when some agent next claims, and on a quiet board never.
    """
    if scheme(url) == "file" and not db_path(url).exists():
        return Check("reaper", OK, "no board yet")
    try:
        status = _read_status(url, namespace)
    except ClaimroomError as exc:
        return Check("reaper", WARN, f"could not read board {namespace!r}: {exc}")
    claims = f"{status.live_claims} live claim{'' if status.live_claims == 1 else 's'}"
    if status.overdue_ms > 1000:
        claims += f", one {ms_text(status.overdue_ms)} past its deadline"
    if status.running:
        return Check("reaper", OK, f"{status.last_pass()}; {claims}")
    if status.live_claims == 0:
        return Check("reaper", OK, f"no live claims ({status.last_pass()})")
    stale = status.stale_after_ms / 1000
    said = status.last_pass() if status.last is not None else "no reaper pass was ever recorded"
    return Check(
        "reaper",
        WARN,
        f"{claims} and no reaper pass within {stale:g} s ({said}): expired leases are found "
        "only when an agent next claims",
        START_ONE + " (claim --wait also reaps while it waits)",
    )


def doctor(
    url: str | None,
    *,
    project: Path,
    default_port: int = C.default_redis_port,
    namespace: str = "default",
) -> list[Check]:
    """Check the store (the one ``url`` names, else the project's), the reaper on board
    ``namespace``, and the setup around it."""
    config_check, config = _config(project)
    checks = [config_check]
    remembered = config.get("fallback_url")
    target = url or (remembered if isinstance(remembered, str) and remembered else local_url(default_port))
    target = known_url(project, target)  # the started store's password, when the URL lacks it
    if scheme(target) == "file":
        checks.append(
            Check(
                "store",
                WARN,
                f"file-based coordination in {target}: agents on this machine only",
                "to move to Redis: claimroom up with Redis available, then claimroom migrate "
                f'--from {target} --to redis://127.0.0.1:{default_port}/0 and remove "fallback_url" '
                "from the config",
            )
        )
    else:
        checks.extend(_store_checks(target, project, named=bool(url)))
    if not any(c.name == "store" and c.status == FAIL for c in checks):
        if scheme(target) != "file":
            checks.extend(topology_checks(target, namespace))
        checks.append(_reaper(target, namespace))
    records = read_started(project)
    checks.extend(_started(project))
    checks.extend(_private_store(r) for r in records)
    checks.extend(_private_files(project, target))
    docker_check, server_check = _docker(), _redis_server()
    checks += [docker_check, server_check]
    down = any(c.name == "store" and c.status == FAIL for c in checks)
    if down and docker_check.status != OK and server_check.status != OK:
        checks.append(
            Check(
                "auto-start",
                FAIL,
                "no way to start a store here: no Docker engine and no redis-server",
                "apt-get install redis-server, then claimroom up (or claimroom up --allow-file-fallback)",
            )
        )
    return checks
