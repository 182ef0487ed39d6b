"""Which store to use, starting one when none runs: shared by the CLI, MCP server and control room.

``CLAIMROOM_URL`` (or ``--url``), when given, names the one store; it is never silently
replaced by another, since agents split across two stores would duplicate work. When it
is down, an ordinary command brings it back only if claimroom started that store for this
project before (same port and password, its own data: ``stores.revive``); an explicit
``claimroom up`` may also start one from nothing, at a local URL that spells out its port.
Anything else is ``StoreUnavailable`` (exit 5) with what to do. When no URL is given: a
Redis on the default local port, else the store claimroom started there before, else a
new one (a Docker container, else a ``redis-server`` under ``.claimroom/redis/``), else,
only with the user's explicit yes, a file board under ``.claimroom/board/`` -- which the
project then keeps using, for the same reason.

Everything here blocks (probes, Docker calls, process starts): async callers use a thread.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import constants as C
from .. import private
from ..endpoints import CLUSTER, SENTINEL, endpoint
from ..errors import BadInput, StoreUnavailable
from ..projectdir import newest_topology, remembered_fallback
from ..storeurl import redacted
from .probe import Probe, is_local, local_url, password_of, port_of, probe, scheme, with_password
from .project import infra_dir, load_config, start_lock, update_config
from .stores import (
    StartOptions,
    data_gone,
    data_problem,
    known_url,
    new_password,
    record_for,
    revive,
    start_new,
)
from .topology import recorded_topology, up_topology

Ask = Callable[[str], bool]


@dataclass(frozen=True)
class Resolution:
    """The store to use and how it was chosen.

    ``how``: "configured" (the given URL answered), "found" (a Redis on the default port),
    "docker" / "local" (claimroom started or revived it), "file" (the file board).
    """

    url: str
    how: str
    detail: str
    started: bool = False
    tried: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "url": redacted(self.url),
            "how": self.how,
            "detail": self.detail,
            "started": self.started,
            "tried": list(self.tried),
        }


def file_board_url(project: Path, *, create: bool = False) -> str:
    """The URL of the project's file board (``.claimroom/board``), made when ``create``."""
    folder = (project / C.infra_dirname / C.file_board_dirname).resolve()
    if create:
        infra_dir(project)
        private.make_dir(folder)
    return folder.as_uri()


def _why(p: Probe) -> str:
    return {
        "refused": "nothing listens there",
        "auth": "a Redis answers but wants a password",
        "timeout": "no answer in time",
        "not-redis": "something that is not Redis listens there",
        "closed": "something there dropped the connection",
    }.get(p.problem, p.message or p.problem)


# --- starting -------------------------------------------------------------------------


def _bring_up(
    url: str, project: Path, opts: StartOptions, *, new: bool, explicit: bool, tried: list[str]
) -> Resolution | None:
    """Under the start lock: the store claimroom started at ``url`` back, with its data; else,
    when ``new``, a new one; None when neither happened (``tried`` then says why).

    A recorded store whose data is gone is ``StoreUnavailable``, unless ``explicit``
    (``claimroom up``), which starts an empty store there.
    """
    record = record_for(project, url)
    if record is not None:
        lost = data_problem(project, record)
        if not lost:
            # Only ``claimroom up`` gives a store started before passwords existed one.
            running, action = revive(project, record, opts, make_private=explicit)
            url = with_password(url, running.password)
            return Resolution(url, record.kind, action, started=True, tried=tuple(tried))
        if not explicit:
            raise data_gone(project, record, lost)
        tried.append(f"{record.label} (claimroom started it before): {lost}")
    elif not new:
        return None
    port = port_of(url)
    assert port is not None  # callers start only at a port the URL spells out
    failures: list[str] = []
    password = new_password(project, url)
    url = with_password(url, password)
    started = start_new(project, port, password, opts, failures)
    tried.extend(failures)
    if started is None:
        return None
    method, action = started
    if failures:  # say why the first choice did not work, in what the user sees
        action += f" (tried first: {'; '.join(failures)})"
    return Resolution(url, method, action, started=True, tried=tuple(tried))


# --- consent to the file board -----------------------------------------------------


def _prompt(question: str) -> bool:
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def _guidance(project: Path, tried: list[str], declined: bool) -> str:
    board = project / C.infra_dirname / C.file_board_dirname
    said = " (file-based coordination was declined before)" if declined else ""
    return (
        f"no store for {project}: tried {'; '.join(tried)}{said}. "
        f"Fix: claimroom up --allow-file-fallback (coordinate through files in {board}, "
        "agents on this machine only); or install redis-server (apt-get install redis-server) or "
        "start Docker, then claimroom up; or set CLAIMROOM_URL to a running Redis"
    )


def _fallback(
    project: Path,
    tried: list[str],
    config: Mapping[str, Any],
    allow: bool | None,
    interactive: bool,
    ask: Ask | None,
) -> Resolution:
    board = file_board_url(project)
    consent = allow
    source = "--allow-file-fallback"
    if consent is None and isinstance(config.get("allow_file_fallback"), bool):
        consent = bool(config["allow_file_fallback"])
        source = "the answer remembered in .claimroom/config.json"
    if consent is None and interactive:
        question = (
            f"No Redis could be found or started ({'; '.join(tried)}). "
            f"Coordinate through files in {board} instead (agents on this machine only)?"
        )
        consent = (ask or _prompt)(question)
        source = "your answer"
        update_config(project, allow_file_fallback=consent)
    if not consent:
        raise StoreUnavailable(_guidance(project, tried, declined=consent is False))
    # Remembered, and kept: once agents coordinate through files, a Redis appearing later
    # must not split them across two stores (claimroom migrate moves the board over).
    update_config(project, allow_file_fallback=True, fallback_url=board)
    file_board_url(project, create=True)
    return Resolution(board, "file", f"file-based coordination in {board} ({source})", tried=tuple(tried))


# --- the entry points -----------------------------------------------------------------


def resolve(
    url: str | None,
    *,
    project: Path,
    allow_file_fallback: bool | None = None,
    interactive: bool = False,
    default_port: int = C.default_redis_port,
    options: StartOptions | None = None,
    ask: Ask | None = None,
    explicit: bool = False,
) -> Resolution:
    """The store to use (see the module's docstring); ``StoreUnavailable`` with what to do when none.

    ``url``: CLAIMROOM_URL / --url, or None. ``allow_file_fallback``: True for an explicit
    yes, False for an explicit no, None to go by the remembered answer or ``ask`` (only
    when ``interactive``; default: a y/N prompt on stderr/stdin). ``explicit``: this is
    ``claimroom up``, which may start a store from nothing at a named URL.
    """
    config = load_config(project)
    opts = options or StartOptions.from_config(config)
    if url:
        return _resolve_named(url, project, opts, explicit)
    remembered = remembered_fallback(config)
    if remembered:
        if remembered == file_board_url(project):
            file_board_url(project, create=True)
        return Resolution(
            remembered,
            "file",
            f"file-based coordination in {remembered} (this project fell back to files earlier; "
            'to use Redis: claimroom migrate, then remove "fallback_url" from .claimroom/config.json)',
        )
    topology = newest_topology(project)
    if topology is not None:  # claimroom up --sentinel / --cluster made it the project's store
        return Resolution(*recorded_topology(project, topology, explicit=explicit))
    default = known_url(project, local_url(default_port))
    found = probe(default)
    if found.ok:
        return Resolution(default, "found", f"a Redis answers on 127.0.0.1:{default_port}")
    tried = [f"127.0.0.1:{default_port}: {_why(found)}"]
    if _maybe_ours(found, default):
        with start_lock(project):
            # Another agent may have started it while we waited (with a password we now know).
            default = known_url(project, default)
            found = probe(default)
            if found.ok:
                return Resolution(default, "found", f"a Redis answers on 127.0.0.1:{default_port}")
            tried = [f"127.0.0.1:{default_port}: {_why(found)}"]
            if found.problem == "refused":
                started = _bring_up(default, project, opts, new=True, explicit=explicit, tried=tried)
                if started is not None:
                    return started
                # Another project's claimroom (its own start lock) may have won the port meanwhile.
                if probe(default).ok:
                    return Resolution(default, "found", f"a Redis answers on 127.0.0.1:{default_port}")
    if found.problem == "auth":
        tried.append(f"set CLAIMROOM_URL=redis://:PASSWORD@127.0.0.1:{default_port}/0 to use it")
    return _fallback(project, tried, config, allow_file_fallback, interactive, ask)


def _maybe_ours(found: Probe, url: str) -> bool:
    """Whether a store claimroom starts for this project may answer at ``url`` once the start
    lock is ours: nothing listens yet, or one wants a password the URL lacks (another agent
    is starting it, and its record with the password is written before the lock is let go)."""
    return found.problem == "refused" or (found.problem == "auth" and not password_of(url))


def _not_startable(url: str, found: Probe, keep: str) -> StoreUnavailable:
    """The error for a named store that is not down in a way claimroom may mend."""
    where = "on this machine" if is_local(url) or scheme(url) == "unix" else "on another machine"
    return StoreUnavailable(
        f"store unavailable at {redacted(url)} ({_why(found)}; {found.message}); it is {where}, so "
        f"claimroom does not start it; {keep}. Fix: start Redis there, or point CLAIMROOM_URL at a "
        "running Redis for every agent"
    )


def _resolve_named(given: str, project: Path, opts: StartOptions, explicit: bool) -> Resolution:
    url = known_url(project, given)
    kind = scheme(url)
    if kind == "file":
        return Resolution(url, "file", "the file board CLAIMROOM_URL names")
    if kind not in ("redis", "rediss", "unix", SENTINEL, CLUSTER):
        raise BadInput(f"unsupported store URL {redacted(url)}: use redis://HOST:PORT or file:///DIR")
    port = port_of(url) if kind != "unix" else None  # port 0, or no port number: BadInput
    record = newest_topology(project) if kind in (SENTINEL, CLUSTER) else None
    if record is not None and endpoint(record.url).hosts == endpoint(url).hosts:
        # The topology `up --sentinel/--cluster` started here (its URL, with its password).
        return Resolution(*recorded_topology(project, record, explicit=explicit))
    shown = redacted(url)
    first = probe(url)
    if first.ok:
        return Resolution(url, "configured", f"{shown} answers ({first.latency_ms:.1f} ms)")
    keep = (
        "claimroom does not switch to another store while CLAIMROOM_URL names this one "
        "(agents on two stores would duplicate work)"
    )
    if kind in (SENTINEL, CLUSTER):  # many servers: only `up --sentinel/--cluster` starts them
        raise _not_startable(url, first, keep)
    if not is_local(url) or not _maybe_ours(first, url):
        raise _not_startable(url, first, keep)
    if port is None:
        raise StoreUnavailable(
            f"store unavailable at {shown} (nothing listens there); the URL names no port, and claimroom "
            f"starts a store only at a port the URL spells out; {keep}. Fix: start Redis there, or write "
            f"the port (redis://127.0.0.1:{C.default_redis_port}/0) and run claimroom up"
        )
    tried = [f"{shown}: {_why(first)}"]
    with start_lock(project):
        url = known_url(project, given)  # another agent may have started it while we waited
        again = probe(url)
        if again.ok:
            return Resolution(url, "configured", f"{shown} answers ({again.latency_ms:.1f} ms)")
        if again.problem != "refused":
            raise _not_startable(url, again, keep)
        started = _bring_up(url, project, opts, new=explicit, explicit=explicit, tried=tried)
    if started is not None:
        return started
    if not explicit:
        raise StoreUnavailable(
            f"store unavailable at {shown}: nothing listens there, and it is not a store claimroom "
            f"started for {project}, so no command starts one in its place (an empty store where "
            f"yours answered would split the agents); {keep}. Fix: start that Redis again on "
            f"127.0.0.1:{port} (with its data), or point CLAIMROOM_URL at a running Redis for every "
            "agent; or, for a new empty store that claimroom runs there, claimroom up"
        )
    if probe(url).ok:  # started meanwhile by a claimroom of another project
        return Resolution(url, "configured", f"{shown} answers")
    raise StoreUnavailable(
        f"store unavailable at {shown}: tried {'; '.join(tried)}; {keep}. Fix: install redis-server "
        "(apt-get install redis-server) or start Docker, then claimroom up; or point CLAIMROOM_URL "
        "at a running Redis for every agent"
    )


def up(
    url: str | None,
    *,
    project: Path,
    allow_file_fallback: bool | None = None,
    interactive: bool = False,
    default_port: int = C.default_redis_port,
    options: StartOptions | None = None,
    ask: Ask | None = None,
    topology: str | None = None,
) -> Resolution:
    """``claimroom up``: make sure the store runs, starting it if need be, even from nothing at a
    named local URL (``resolve`` with ``explicit``); with ``topology`` ("sentinel", "cluster"),
    the project's local topology of that kind (``topology.up_topology``)."""
    if topology is not None:
        return Resolution(*up_topology(project, topology, url))
    return resolve(
        url,
        project=project,
        allow_file_fallback=allow_file_fallback,
        interactive=interactive,
        default_port=default_port,
        options=options,
        ask=ask,
        explicit=True,
    )
