"""Which store to use, starting one when none runs: shared by the CLI, MCP server and control room.

``CLAIMROOM_URL`` (or ``--url``), when given, names the one store; it is never silently
replaced by another, since agents split across two stores would duplicate work. When it
is down and on this machine it is started there. When no URL is given: a Redis on the
default local port, else one started (a Docker container, else a ``redis-server`` under
``.claimroom/redis/``), else, only with the user's explicit yes, a file board under
``.claimroom/board/`` -- which the project then keeps using, for the same reason.

Everything here blocks (probes, Docker calls, process starts): async callers use a thread.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import constants as C
from ..errors import BadInput, StartFailed, StoreUnavailable
from ..redis_store import redacted
from . import docker_redis, local_server
from .probe import Probe, is_local, local_url, password_of, port_of, probe, scheme
from .project import (
    Started,
    clear_started,
    infra_dir,
    load_config,
    read_started,
    start_lock,
    update_config,
    write_started,
)

METHODS = ("docker", "local")
Ask = Callable[[str], bool]


@dataclass(frozen=True)
class StartOptions:
    """How a store may be started: which ways, in order, and the container's particulars."""

    methods: tuple[str, ...] = METHODS
    image: str = C.default_redis_image
    container: str = ""  # "" -> claimroom-redis (or claimroom-redis-PORT off the default port)
    volume: str = ""
    pull: bool = True

    @classmethod
    def from_config(cls, config: Mapping[str, Any], env: Mapping[str, str] | None = None) -> StartOptions:
        """Options from the project's config (``redis_image``, ``auto_start``) and environment."""
        import os

        environ = os.environ if env is None else env
        image = environ.get(C.env_redis_image) or config.get("redis_image") or C.default_redis_image
        methods = config.get("auto_start", list(METHODS))
        if not isinstance(methods, list) or any(m not in METHODS for m in methods):
            raise BadInput(f'"auto_start" in the config must be a list of {", ".join(METHODS)}')
        if not isinstance(image, str) or not image:
            raise BadInput('"redis_image" in the config must be an image name such as redis:7')
        return cls(methods=tuple(methods), image=image)


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
        folder.mkdir(exist_ok=True)
    return folder.as_uri()


def _why(p: Probe) -> str:
    return {
        "refused": "nothing listens there",
        "auth": "a Redis answers but wants a password",
        "timeout": "no answer in time",
        "not-redis": "something that is not Redis listens there",
        "closed": "something there dropped the connection",
    }.get(p.problem, p.message or p.problem)


# --- starting -----------------------------------------------------------------------


def _start_one(
    method: str, project: Path, port: int, password: str, opts: StartOptions
) -> tuple[Started, str]:
    if method == "docker":
        spec = docker_redis.DockerSpec(
            port=port,
            image=opts.image,
            container=opts.container,
            volume=opts.volume,
            password=password,
            pull=opts.pull,
        )
        return docker_redis.ensure(spec)
    started = local_server.start(project, port, password)
    return started, f"started redis-server on 127.0.0.1:{port}, data in {started.directory}"


def _start(url: str, project: Path, opts: StartOptions, tried: list[str]) -> Resolution | None:
    """Start a store answering at ``url`` (local) by the first method that works; call under the lock."""
    port, password = port_of(url), password_of(url)
    for method in opts.methods:
        try:
            started, action = _start_one(method, project, port, password, opts)
        except StartFailed as exc:
            tried.append(f"{'Docker' if method == 'docker' else 'redis-server'}: {exc}")
            continue
        write_started(project, started)
        return Resolution(url, method, action, started=True, tried=tuple(tried))
    return None


def started_here(project: Path, url: str) -> bool:
    """Whether ``url`` is the store claimroom started for ``project`` (and has not stopped)."""
    record = read_started(project)
    return record is not None and is_local(url) and record.port == port_of(url)


def restart(project: Path, url: str) -> str | None:
    """Bring back a store claimroom started for ``project`` at ``url``; None if it started none there.

    Used by the health monitor when the store stops answering. Returns what was done, or
    "" when the store answered again before anything had to be done.
    """
    record = read_started(project)
    if record is None or not started_here(project, url):
        return None
    opts = StartOptions(
        image=record.image or C.default_redis_image, container=record.container, volume=record.volume
    )
    with start_lock(project):
        if probe(url).ok:
            return ""
        _, action = _start_one(record.kind, project, record.port, record.password, opts)
        return action


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
) -> Resolution:
    """The store to use (see the module's docstring); ``StoreUnavailable`` with what to do when none.

    ``url``: CLAIMROOM_URL / --url, or None. ``allow_file_fallback``: True for an explicit
    yes, False for an explicit no, None to go by the remembered answer or ``ask`` (only
    when ``interactive``; default: a y/N prompt on stderr/stdin).
    """
    config = load_config(project)
    opts = options or StartOptions.from_config(config)
    if url:
        return _resolve_named(url, project, opts)
    remembered = config.get("fallback_url")
    if isinstance(remembered, str) and remembered:
        if remembered == file_board_url(project):
            file_board_url(project, create=True)
        return Resolution(
            remembered,
            "file",
            f"file-based coordination in {remembered} (this project fell back to files earlier; "
            'to use Redis: claimroom migrate, then remove "fallback_url" from .claimroom/config.json)',
        )
    default = local_url(default_port)
    found = probe(default)
    if found.ok:
        return Resolution(default, "found", f"a Redis answers on 127.0.0.1:{default_port}")
    tried = [f"127.0.0.1:{default_port}: {_why(found)}"]
    if found.problem == "refused":
        with start_lock(project):
            again = probe(default)  # another agent may have started it while we waited
            if again.ok:
                return Resolution(default, "found", f"a Redis answers on 127.0.0.1:{default_port}")
            started = _start(default, project, opts, tried)
            if started is not None:
                return started
            # Another project's claimroom (its own start lock) may have won the port meanwhile.
            if probe(default).ok:
                return Resolution(default, "found", f"a Redis answers on 127.0.0.1:{default_port}")
    elif found.problem == "auth":
        tried.append(f"set CLAIMROOM_URL=redis://:PASSWORD@127.0.0.1:{default_port}/0 to use it")
    return _fallback(project, tried, config, allow_file_fallback, interactive, ask)


def _resolve_named(url: str, project: Path, opts: StartOptions) -> Resolution:
    kind = scheme(url)
    if kind == "file":
        return Resolution(url, "file", "the file board CLAIMROOM_URL names")
    if kind not in ("redis", "rediss", "unix"):
        raise BadInput(f"unsupported store URL {redacted(url)}: use redis://HOST:PORT or file:///DIR")
    shown = redacted(url)
    first = probe(url)
    if first.ok:
        return Resolution(url, "configured", f"{shown} answers ({first.latency_ms:.1f} ms)")
    keep = (
        "claimroom does not switch to another store while CLAIMROOM_URL names this one "
        "(agents on two stores would duplicate work)"
    )
    if not is_local(url) or first.problem != "refused":
        where = "on this machine" if is_local(url) or kind == "unix" else "on another machine"
        raise StoreUnavailable(
            f"store unavailable at {shown} ({_why(first)}; {first.message}); it is {where}, so claimroom "
            f"does not start it; {keep}. Fix: start Redis there, or point CLAIMROOM_URL at a running "
            "Redis for every agent"
        )
    tried = [f"{shown}: {_why(first)}"]
    with start_lock(project):
        again = probe(url)
        if again.ok:
            return Resolution(url, "configured", f"{shown} answers ({again.latency_ms:.1f} ms)")
        started = _start(url, project, opts, tried)
    if started is not None:
        return started
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
) -> Resolution:
    """``claimroom up``: make sure the store runs (starting it if need be); same rules as ``resolve``."""
    return resolve(
        url,
        project=project,
        allow_file_fallback=allow_file_fallback,
        interactive=interactive,
        default_port=default_port,
        options=options,
        ask=ask,
    )


def down(project: Path) -> str:
    """``claimroom down``: stop the store claimroom started for this project; one line saying what."""
    record = read_started(project)
    if record is None:
        if load_config(project).get("fallback_url"):
            return "nothing to stop: this project coordinates through files"
        return f"nothing to stop: claimroom started no store for {project}"
    infra_dir(project)
    with start_lock(project):
        if record.kind == "docker":
            try:
                said = docker_redis.stop(record.container, record.volume)
            except StartFailed as exc:
                raise StoreUnavailable(str(exc)) from None
        else:
            said = local_server.stop(Path(record.pid_file))
        clear_started(project)
    return said
