"""Docker for the infrastructure tests: an engine to talk to and a Redis image without a registry.

No registry is reachable where the tests run, so the image is made locally: the host's
``redis-server`` and the libraries ``ldd`` lists, imported as ``claimroom-test-redis:7``.
When no engine answers and the tests run as root, a ``dockerd`` is started for the session
(log in a temp file) and stopped afterwards by its PID.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claimroom.core.infra import docker_redis

TEST_IMAGE = "claimroom-test-redis:7"
DOCKERD_START_TIMEOUT_S = 60.0


def _libraries(binary: str) -> list[str]:
    """The shared libraries ``binary`` loads (with the dynamic loader), as absolute paths."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


# Images shaped like the ones users name in CLAIMROOM_REDIS_IMAGE, all from the same files
# (the host's redis-server, a shell, two entrypoint scripts); tag -> Dockerfile-style changes.
# The official redis image: a wrapper script as entrypoint, given "redis-server ..." as its command.
OFFICIAL_SHAPE = "claimroom-test-redis-official:7"
# A plain image whose entrypoint is redis-server itself: it takes the settings as its arguments.
SERVER_ENTRYPOINT = "claimroom-test-redis-entrypoint:7"
# An entrypoint that does not take claimroom's command line: it says so and exits.
NO_ARGS_ENTRYPOINT = "claimroom-test-redis-noargs:7"
# Looks right (command redis-server) but runs Redis with its own settings, ignoring claimroom's.
IGNORES_ARGS = "claimroom-test-redis-ignores:7"
# Runs, but its Redis listens on another port: it never answers where claimroom looks.
SILENT = "claimroom-test-redis-silent:7"
# Runs something else entirely, with no command line claimroom could extend.
NOT_REDIS = "claimroom-test-redis-false:7"
SHAPES: dict[str, list[str]] = {
    OFFICIAL_SHAPE: ['ENTRYPOINT ["docker-entrypoint.sh"]', 'CMD ["redis-server"]'],
    SERVER_ENTRYPOINT: ['ENTRYPOINT ["/usr/bin/redis-server"]'],
    NO_ARGS_ENTRYPOINT: ['ENTRYPOINT ["no-args-entrypoint.sh"]', 'CMD ["redis-server"]'],
    IGNORES_ARGS: [
        'ENTRYPOINT ["/bin/sh", "-c", "exec redis-server --bind 0.0.0.0 --protected-mode no"]',
        'CMD ["redis-server"]',
    ],
    SILENT: ['ENTRYPOINT ["/bin/sh", "-c", "exec redis-server --port 7000"]', 'CMD ["redis-server"]'],
    NOT_REDIS: ['ENTRYPOINT ["/bin/false"]'],
}
# Bumped whenever the scripts below change, so that images built from older ones are rebuilt.
_SHAPES_LABEL, _SHAPES_VERSION = "io.claimroom.test-shapes", "2"
# What the official image's docker-entrypoint.sh does with its arguments, in short.
_OFFICIAL_ENTRYPOINT = """#!/bin/sh
set -e
case "$1" in -*|*.conf) set -- redis-server "$@" ;; esac
exec "$@"
"""
# Both lines on one stream: Docker keeps no order between a container's stdout and stderr.
_NO_ARGS_ENTRYPOINT = """#!/bin/sh
echo "starting the cache with its built-in settings" >&2
echo "no-args-entrypoint: unexpected arguments: $*" >&2
exit 1
"""


def _rootfs(with_shell: bool) -> bytes:
    """A tar of the host's redis-server and its libraries (a few MB); with a shell and scripts."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed, so the test image cannot be built")
    real = os.path.realpath(binary)
    # Under its own name: redis decides what to be (server or checker) by argv[0].
    copies = {"/usr/bin/redis-server": real, **{lib: lib for lib in _libraries(real)}}
    if with_shell:
        shell = os.path.realpath("/bin/sh")
        false = os.path.realpath(shutil.which("false") or "/bin/false")
        copies |= {"/bin/sh": shell, "/bin/false": false}
        copies |= {lib: lib for lib in _libraries(shell) + _libraries(false)}
    with tempfile.TemporaryDirectory(prefix="claimroom-image-") as folder:
        root = Path(folder)
        for dest_path, src in copies.items():
            dest = root / dest_path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.realpath(src), dest)
        if with_shell:
            scripts = root / "usr" / "local" / "bin"
            scripts.mkdir(parents=True)
            for script, text in (
                ("docker-entrypoint.sh", _OFFICIAL_ENTRYPOINT),
                ("no-args-entrypoint.sh", _NO_ARGS_ENTRYPOINT),
            ):
                (scripts / script).write_text(text)
                (scripts / script).chmod(0o755)
        (root / "data").mkdir()
        (root / "tmp").mkdir()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(root, arcname=".")
        return buf.getvalue()


def build_test_image(client: Any, tag: str = TEST_IMAGE) -> None:
    """Import an image holding the host's redis-server and its libraries (a few MB)."""
    repo, version = tag.rsplit(":", 1)
    client.api.import_image_from_data(
        _rootfs(with_shell=False), repository=repo, tag=version, changes=['CMD ["/usr/bin/redis-server"]']
    )


def ensure_test_image(client: Any, tag: str = TEST_IMAGE) -> str:
    import docker.errors

    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        build_test_image(client, tag)
    return tag


def ensure_shaped_images(client: Any) -> None:
    """The images of ``SHAPES`` (kept between runs, like the test image: a few MB each)."""
    import docker.errors

    missing = []
    for tag in SHAPES:
        try:
            if client.images.get(tag).labels.get(_SHAPES_LABEL) != _SHAPES_VERSION:
                missing.append(tag)  # built from older scripts: built again
        except docker.errors.ImageNotFound:
            missing.append(tag)
    if not missing:
        return
    data = _rootfs(with_shell=True)
    for tag in missing:
        repo, version = tag.rsplit(":", 1)
        changes = [*SHAPES[tag], f"LABEL {_SHAPES_LABEL}={_SHAPES_VERSION}"]
        client.api.import_image_from_data(data, repository=repo, tag=version, changes=changes)


def _start_dockerd(log: Path) -> subprocess.Popen[bytes] | None:
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        return None
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [dockerd, "--storage-driver=vfs"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + DOCKERD_START_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        client, _ = docker_redis.engine()
        if client is not None:
            client.close()
            return proc
        time.sleep(0.25)
    _stop(proc)
    return None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Docker client with the test image present; skips only when no engine can be had."""
    client, problem = docker_redis.engine()
    started = None
    if client is None:
        log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
        started = _start_dockerd(log)
        if started is None:
            pytest.skip(f"no Docker engine: {problem}; and none could be started (needs root and dockerd)")
        client, problem = docker_redis.engine()
        assert client is not None, problem
        print(f"started dockerd (pid {started.pid}) for the tests; log: {log}")
    try:
        ensure_test_image(client)
        yield client
    finally:
        client.close()
        if started is not None:
            _stop(started)


@pytest.fixture(scope="session")
def shaped_images(docker_engine: Any) -> Any:
    """The Docker client, with the images of ``SHAPES`` present."""
    ensure_shaped_images(docker_engine)
    return docker_engine


@pytest.fixture
def name(docker_engine: Any) -> Iterator[str]:
    """A unique container and volume name; both are removed after the test."""
    import docker.errors

    unique = "claimroom-test-" + uuid.uuid4().hex[:10]
    yield unique
    with contextlib.suppress(docker.errors.NotFound):
        docker_engine.containers.get(unique).remove(force=True)
    with contextlib.suppress(docker.errors.NotFound):
        docker_engine.volumes.get(unique).remove(force=True)
