"""A Redis container through the Docker SDK: named, labelled, on 127.0.0.1, with a volume.

Private: the port is published on the host's 127.0.0.1 only, and Redis requires the
project's password (``--requirepass``), so also from other containers on the Docker network,
which reach the container's own address past the host's loopback. The password is on the
container's command line: only Docker (root, or the docker group, who own the engine
anyway) stores and shows it, and in the host's ``ps`` redis-server replaces its arguments
with its process title as it starts. The data stays in the volume, under Docker's data root
(``/var/lib/docker``), which other users cannot enter.

Every function here blocks (Docker API calls over HTTP); async callers run them in a
thread (``asyncio.to_thread``, or a Textual thread worker).
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from redis.exceptions import RedisError

from .. import constants as C
from ..errors import StartFailed
from ..safetext import shown
from ..storeurl import scrubbed
from .probe import client as redis_client
from .probe import local_url, password_of, probe, with_password
from .project import Started

_CONTAINER_PORT = "6379/tcp"
_DATA_DIR = "/data"  # where the official image keeps its data (and declares its volume)
_LOG_LINE_CHARS = 160  # of a failed container's last log line, in the message


def _errors() -> tuple[type[BaseException], ...]:
    import docker.errors
    import requests

    return (docker.errors.DockerException, requests.RequestException, OSError)


def _socket_problem(base_url: str, timeout_s: float) -> str:
    """Why the engine's socket refuses a connection ("" when it accepts one).

    Checked before the SDK connects: a client the SDK fails to build leaks its socket.
    """
    try:
        if base_url.startswith(("http+unix://", "unix://")):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout_s)
                s.connect(base_url.split("://", 1)[1])
        elif base_url.startswith(("tcp://", "http://", "https://")):
            parts = urlsplit(base_url.replace("tcp://", "http://", 1))
            address = (parts.hostname or "127.0.0.1", parts.port or 2375)
            socket.create_connection(address, timeout_s).close()
        # ssh:// and the like: the SDK finds out.
    except OSError as exc:
        return _engine_problem(exc)
    return ""


def engine(timeout_s: float = C.docker_engine_timeout_s) -> tuple[Any, str]:
    """A connected Docker client and "", or None and why the engine cannot be reached."""
    try:
        import docker
        import docker.utils
    except ImportError:  # the dependency is declared, but a stripped install may lack it
        return None, "the docker Python package is not installed (pip install docker)"
    try:
        base_url = docker.utils.kwargs_from_env().get("base_url") or "unix:///var/run/docker.sock"
    except _errors() as exc:
        return None, f"DOCKER_HOST and friends are not usable ({exc})"
    problem = _socket_problem(str(base_url), timeout_s)
    if problem:
        return None, problem
    try:
        client = docker.from_env(timeout=timeout_s)
    except _errors() as exc:
        return None, _engine_problem(exc)
    try:
        client.ping()
    except _errors() as exc:
        client.close()
        return None, _engine_problem(exc)
    return client, ""


def _engine_problem(exc: BaseException) -> str:
    text = str(exc)
    if "Permission denied" in text or isinstance(exc, PermissionError):
        return "the Docker engine refused this user (add it to the docker group, or run as root)"
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError) or "No such file" in text:
        return "the Docker engine is not running (start it: sudo systemctl start docker)"
    return f"the Docker engine is not reachable ({text.splitlines()[0] if text else type(exc).__name__})"


@dataclass(frozen=True)
class DockerSpec:
    """The container claimroom runs for a port; names default from the port."""

    port: int
    image: str = C.default_redis_image
    container: str = ""
    volume: str = ""
    password: str = ""
    pull: bool = True
    start_timeout_s: float = C.store_start_timeout_s

    @property
    def container_name(self) -> str:
        if self.container:
            return self.container
        if self.port == C.default_redis_port:
            return C.docker_container_name
        return f"{C.docker_container_name}-{self.port}"

    @property
    def volume_name(self) -> str:
        if self.volume:
            return self.volume
        if self.port == C.default_redis_port:
            return C.docker_volume_name
        return f"{C.docker_volume_name}-{self.port}"

    def settings(self) -> list[str]:
        """redis-server's arguments (the program's name is the image's business: ``command_for``)."""
        args = ["--dir", _DATA_DIR, "--port", "6379"]
        # Inside the container Redis listens on all its interfaces; the host side is
        # published on 127.0.0.1 only, which is what keeps it private. Protected mode
        # would refuse the forwarded connections, which come from the bridge gateway.
        args += ["--bind", "0.0.0.0", "--protected-mode", "no"]
        for key, value in C.redis_server_settings:
            args += [f"--{key}", value]
        if self.password:
            args += ["--requirepass", self.password]
        return args

    def labels(self) -> dict[str, str]:
        return {C.docker_label: "true", C.docker_label_port: str(self.port)}


def split_image(image: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag), tag ``latest`` when absent (a registry port is no tag)."""
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return image, "latest"
    return name, tag


def _bindings(container: Any) -> list[dict[str, str]]:
    bindings = (container.attrs.get("HostConfig") or {}).get("PortBindings") or {}
    return list(bindings.get(_CONTAINER_PORT) or [])


def published_port(container: Any) -> int | None:
    for binding in _bindings(container):
        port = binding.get("HostPort")
        if port:
            return int(port)
    return None


def published_hosts(container: Any) -> list[str]:
    """The host addresses the container's Redis port is published on ("" means all of them)."""
    return [str(b.get("HostIp") or "") for b in _bindings(container)]


def command_password(container: Any) -> str:
    """The password the container's Redis was told to require ("" when none)."""
    command = [str(a) for a in (container.attrs.get("Config") or {}).get("Cmd") or []]
    for flag, value in itertools.pairwise(command):
        if flag == "--requirepass":
            return value
    return ""


def _ensure_image(client: Any, spec: DockerSpec) -> None:
    import docker.errors

    try:
        client.images.get(spec.image)
        return
    except docker.errors.ImageNotFound:
        pass
    if not spec.pull:
        raise StartFailed(f"image {spec.image} is not present and pulling is off")
    repo, tag = split_image(spec.image)
    try:
        client.api.timeout = C.docker_pull_timeout_s
        client.images.pull(repo, tag=tag)
    except _errors() as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StartFailed(f"could not pull image {spec.image} ({first})") from None
    finally:
        client.api.timeout = C.docker_engine_timeout_s


def _ensure_volume(client: Any, spec: DockerSpec) -> None:
    import docker.errors

    try:
        client.volumes.get(spec.volume_name)
    except docker.errors.NotFound:
        client.volumes.create(spec.volume_name, labels=spec.labels())


def _runs_server(argv: Sequence[str]) -> bool:
    return bool(argv) and PurePosixPath(argv[0]).name == "redis-server"


def command_for(image: str, config: Mapping[str, Any], settings: list[str]) -> list[str]:
    """The container's command for an image whose ``Config`` (entrypoint, cmd) is ``config``.

    Checked, not assumed: an entrypoint that is redis-server takes the settings alone; no
    entrypoint runs ``redis-server SETTINGS`` as given; a wrapper entrypoint whose default
    command is redis-server (the official image's docker-entrypoint.sh) is given
    ``redis-server SETTINGS`` in its place. Anything else is refused (``StartFailed``):
    claimroom could not tell how to hand Redis its settings.
    """
    entrypoint = [str(a) for a in config.get("Entrypoint") or []]
    cmd = [str(a) for a in config.get("Cmd") or []]
    if _runs_server(entrypoint):
        return settings
    if not entrypoint or _runs_server(cmd):
        return ["redis-server", *settings]
    runs = shown(" ".join(entrypoint + cmd))
    raise StartFailed(
        f"image {image} starts {runs!r}, neither redis-server nor an entrypoint whose command is "
        "redis-server, so claimroom cannot hand Redis its settings; use an image whose entrypoint "
        f"or command is redis-server (such as {C.default_redis_image})"
    )


def _create(client: Any, spec: DockerSpec) -> Any:
    _ensure_image(client, spec)
    config = client.images.get(spec.image).attrs.get("Config") or {}
    command = command_for(spec.image, config, spec.settings())  # before anything is created
    _ensure_volume(client, spec)
    return client.containers.create(
        spec.image,
        command=command,
        name=spec.container_name,
        labels=spec.labels(),
        ports={_CONTAINER_PORT: ("127.0.0.1", spec.port)},
        volumes={spec.volume_name: {"bind": _DATA_DIR, "mode": "rw"}},
        restart_policy={"Name": C.docker_restart_policy},
        detach=True,
    )


def _existing(client: Any, spec: DockerSpec) -> Any:
    import docker.errors

    try:
        container = client.containers.get(spec.container_name)
    except docker.errors.NotFound:
        return None
    name = spec.container_name
    if container.labels.get(C.docker_label) != "true":
        raise StartFailed(
            f"a container named {name} exists that claimroom did not create (remove it: docker rm -f {name})"
        )
    port = published_port(container)
    if port != spec.port:
        raise StartFailed(f"container {name} publishes port {port}, not {spec.port} (docker rm -f {name})")
    if any(host != "127.0.0.1" for host in published_hosts(container)):
        raise StartFailed(
            f"container {name} publishes its port beyond 127.0.0.1 (remove it, its volume stays: "
            f"docker rm -f {name})"
        )
    return container


def _tail(container: Any, password: str) -> str:
    """The container's last log line (escaped for a terminal, the password hidden), or ""."""
    try:
        logs = scrubbed(container.logs(tail=5).decode("utf-8", "replace"), password).strip().splitlines()
    except _errors():
        return ""
    lines = [line.strip() for line in logs if line.strip()]
    last = lines[-1] if lines else ""
    if len(last) > _LOG_LINE_CHARS:  # e.g. an entrypoint echoing the whole command line back
        last = last[: _LOG_LINE_CHARS - 1] + "…"
    return shown(last)


def _restarts(container: Any) -> int:
    return int(container.attrs.get("RestartCount") or 0)


def _crashed(container: Any, restarts_before: int) -> str:
    """How the container ended ("" while it runs): it exited, or Docker restarted it."""
    container.reload()
    state = container.attrs.get("State") or {}
    if container.status in ("exited", "dead") or state.get("Restarting"):
        return f"exited at start (exit code {state.get('ExitCode')})"
    if _restarts(container) > restarts_before:  # running again: its exit code is reset to 0
        return "exited at start (and was restarted by Docker)"
    return ""


def _settings_problem(url: str, unguarded: bool = False) -> str:
    """Why the Redis at ``url`` does not run with claimroom's settings ("" when it does).

    ``unguarded``: it answered without the password it was given (so it ignored that too).
    """
    c = redis_client(url)
    try:
        found = {k: str(v) for k, v in c.config_get("appendonly").items()}
        found |= {k: str(v) for k, v in c.config_get("dir").items()}
    except (RedisError, OSError) as exc:
        return f"answers, but its settings cannot be read ({exc})"
    finally:
        c.close()
    if found.get("appendonly") == "yes" and found.get("dir") == _DATA_DIR and not unguarded:
        return ""
    return (
        f"answers, but not with claimroom's settings (appendonly {found.get('appendonly')}, "
        f"dir {found.get('dir')}{', no password' if unguarded else ''}): the image's entrypoint does "
        "not hand them to redis-server"
    )


def _wait(container: Any, url: str, timeout_s: float, restarts: int) -> str:
    """Wait until the container's Redis answers; "" then, else why not (at once if it exits).

    ``restarts``: Docker's restart count before the start, so a restart after it shows.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        last = probe(url, min(C.probe_timeout_s, max(0.05, deadline - time.monotonic())))
        if last.ok:
            return _settings_problem(url)
        if last.problem == "auth" and password_of(url) and probe(bare := with_password(url, "")).ok:
            return _settings_problem(bare, unguarded=True)
        if crashed := _crashed(container, restarts):
            return crashed
        if time.monotonic() >= deadline:
            return f"did not answer within {timeout_s:g} s ({last.message})"
        time.sleep(0.1)


def _discard(container: Any, spec: DockerSpec) -> str:
    """Stop and remove a container that failed (its volume stays); what was done."""
    try:
        container.remove(force=True)
    except _errors() as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"it could not be removed ({first}): docker rm -f {spec.container_name}"
    return f"it was removed (volume {spec.volume_name} kept)"


def ensure(spec: DockerSpec) -> tuple[Started, str]:
    """Run the container for ``spec`` (create, start or reuse it) and wait until it answers.

    Returns what was started and one line saying what happened; ``StartFailed`` otherwise,
    after removing a container that did not answer in time (so none is left crash-looping).
    """
    engine_client, problem = engine()
    if engine_client is None:
        raise StartFailed(problem)
    try:
        action = _run(engine_client, spec)
    except StartFailed:
        raise
    except _errors() as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StartFailed(f"docker: {first}") from None
    finally:
        engine_client.close()
    started = Started(
        kind="docker",
        url=local_url(spec.port, spec.password),
        port=spec.port,
        container=spec.container_name,
        volume=spec.volume_name,
        image=spec.image,
        password=spec.password,
    )
    return started, action


def _run(engine_client: Any, spec: DockerSpec) -> str:
    import docker.errors

    name = spec.container_name
    container = _existing(engine_client, spec)
    created = remade = False
    if container is not None and command_password(container) != spec.password:
        _remove_stale(container, spec)
        container, remade = None, True
    if container is None:
        try:
            container = _create(engine_client, spec)
            created = True
        except docker.errors.APIError as exc:
            container = _existing(engine_client, spec) if exc.status_code == 409 else None
            if container is None:  # 409: another process created it a moment ago
                raise
    container.reload()
    restarts = _restarts(container)
    if container.status == "running":
        action = f"reused running docker container {name}"
    else:
        try:
            container.start()
        except docker.errors.APIError as exc:
            removed = _discard(container, spec)
            raise StartFailed(
                f"container {name} did not start ({exc.explanation or exc}); {removed}"
            ) from None
        action = (
            f"started docker container {name} (image {spec.image}, volume {spec.volume_name})"
            if created
            else f"started existing docker container {name}"
        )
        if remade:
            action = (
                f"made docker container {name} again to require the password claimroom keeps for it "
                f"(image {spec.image}; its data stays in volume {spec.volume_name})"
            )
    problem = _wait(container, local_url(spec.port, spec.password), spec.start_timeout_s, restarts)
    if problem:
        last = _tail(container, spec.password)
        said = f"its last log line: {last}" if last else "it logged nothing"
        raise StartFailed(f"container {name} {problem}; {said}; {_discard(container, spec)}")
    return action


def _remove_stale(container: Any, spec: DockerSpec) -> None:
    """Remove a stopped container whose Redis has another password (or none), so it is made
    again with the one wanted; its data stays in the volume. A running one is left alone."""
    container.reload()
    if container.status == "running":
        raise StartFailed(
            f"container {spec.container_name} runs with another password than the one claimroom "
            f"recorded for it; stop it (claimroom down, or docker stop {spec.container_name}) and retry"
        )
    container.remove()


def volume_gone(volume: str) -> bool:
    """Whether Docker says the volume does not exist (False when Docker cannot be asked)."""
    engine_client, _ = engine()
    if engine_client is None:
        return False  # starting the container will say why Docker is unreachable
    import docker.errors

    try:
        engine_client.volumes.get(volume)
    except docker.errors.NotFound:
        return True
    except _errors():
        return False
    finally:
        engine_client.close()
    return False


def state(container: str) -> str:
    """The container's state ("running", "exited", ...), "absent", or why Docker is unreachable."""
    client, problem = engine()
    if client is None:
        return problem
    import docker.errors

    try:
        return str(client.containers.get(container).status)
    except docker.errors.NotFound:
        return "absent"
    except _errors() as exc:
        return f"docker: {exc}"
    finally:
        client.close()


def published_on(container: str) -> list[str]:
    """The host addresses the container publishes Redis on ([] when absent or Docker is away)."""
    client, _ = engine()
    if client is None:
        return []
    try:
        return published_hosts(client.containers.get(container))
    except _errors():  # NotFound included: nothing is published
        return []
    finally:
        client.close()


def stop(container: str, volume: str = "") -> str:
    """Stop the container (data stays in its volume); one line saying what happened."""
    client, problem = engine()
    if client is None:
        raise StartFailed(f"cannot stop container {container}: {problem}")
    import docker.errors

    try:
        found = client.containers.get(container)
        if found.status in ("created", "exited", "dead"):  # "restarting" is stopped, or it loops on
            return f"docker container {container} was not running"
        found.stop(timeout=C.docker_stop_timeout_s)
    except docker.errors.NotFound:
        return f"docker container {container} no longer exists"
    except _errors() as exc:
        raise StartFailed(f"cannot stop container {container}: {exc}") from None
    finally:
        client.close()
    kept = f"; its data stays in volume {volume}" if volume else ""
    return f"stopped docker container {container}{kept} (claimroom up starts it again)"
