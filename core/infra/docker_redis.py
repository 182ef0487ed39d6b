"""A Redis container through the Docker SDK: named, labelled, on 127.0.0.1, with a volume.

Every function here blocks (Docker API calls over HTTP); async callers run them in a
thread (``asyncio.to_thread``, or a Textual thread worker).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .. import constants as C
from ..errors import StartFailed
from .probe import local_url, wait_until_up
from .project import Started

_CONTAINER_PORT = "6379/tcp"
_DATA_DIR = "/data"  # where the official image keeps its data (and declares its volume)


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

    def command(self) -> list[str]:
        args = ["redis-server", "--dir", _DATA_DIR, "--port", "6379"]
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


def published_port(container: Any) -> int | None:
    bindings = (container.attrs.get("HostConfig") or {}).get("PortBindings") or {}
    for binding in bindings.get(_CONTAINER_PORT) or []:
        port = binding.get("HostPort")
        if port:
            return int(port)
    return None


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


def _create(client: Any, spec: DockerSpec) -> Any:
    _ensure_image(client, spec)
    _ensure_volume(client, spec)
    return client.containers.create(
        spec.image,
        command=spec.command(),
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
    return container


def _tail(container: Any) -> str:
    try:
        logs = container.logs(tail=5).decode("utf-8", "replace").strip().splitlines()
    except _errors():
        return ""
    return logs[-1] if logs else ""


def ensure(spec: DockerSpec) -> tuple[Started, str]:
    """Run the container for ``spec`` (create, start or reuse it) and wait until it answers.

    Returns what was started and one line saying what happened; ``StartFailed`` otherwise.
    """
    client, problem = engine()
    if client is None:
        raise StartFailed(problem)
    import docker.errors

    name = spec.container_name
    try:
        container = _existing(client, spec)
        created = False
        if container is None:
            try:
                container = _create(client, spec)
                created = True
            except docker.errors.APIError as exc:
                container = _existing(client, spec) if exc.status_code == 409 else None
                if container is None:  # 409: another process created it a moment ago
                    raise
        container.reload()
        if container.status == "running":
            action = f"reused running docker container {name}"
        else:
            try:
                container.start()
            except docker.errors.APIError as exc:
                if created:  # a container that never ran: leave no wreck behind
                    container.remove(force=True)
                raise StartFailed(f"container {name} did not start ({exc.explanation or exc})") from None
            action = (
                f"started docker container {name} (image {spec.image}, volume {spec.volume_name})"
                if created
                else f"started existing docker container {name}"
            )
        url = local_url(spec.port, spec.password)
        probe = wait_until_up(url, spec.start_timeout_s)
        if not probe.ok:
            last = _tail(container)
            raise StartFailed(
                f"container {name} runs but Redis does not answer on 127.0.0.1:{spec.port} "
                f"({probe.message}){'; its log: ' + last if last else ''}"
            )
    except StartFailed:
        raise
    except _errors() as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StartFailed(f"docker: {first}") from None
    finally:
        client.close()
    started = Started(
        kind="docker",
        url=url,
        port=spec.port,
        container=name,
        volume=spec.volume_name,
        image=spec.image,
        password=spec.password,
    )
    return started, action


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


def stop(container: str, volume: str = "") -> str:
    """Stop the container (data stays in its volume); one line saying what happened."""
    client, problem = engine()
    if client is None:
        raise StartFailed(f"cannot stop container {container}: {problem}")
    import docker.errors

    try:
        found = client.containers.get(container)
        if found.status != "running":
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
