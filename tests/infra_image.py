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


def build_test_image(client: Any, tag: str = TEST_IMAGE) -> None:
    """Import an image holding the host's redis-server and its libraries (a few MB)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed, so the test image cannot be built")
    real = os.path.realpath(binary)
    with tempfile.TemporaryDirectory(prefix="claimroom-image-") as folder:
        root = Path(folder)
        # Under its own name: redis decides what to be (server or checker) by argv[0].
        copies = {"/usr/bin/redis-server": real, **{lib: lib for lib in _libraries(real)}}
        for dest_path, src in copies.items():
            dest = root / dest_path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.realpath(src), dest)
        (root / "data").mkdir()
        (root / "tmp").mkdir()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(root, arcname=".")
        repo, version = tag.rsplit(":", 1)
        client.api.import_image_from_data(
            buf.getvalue(), repository=repo, tag=version, changes=['CMD ["/usr/bin/redis-server"]']
        )


def ensure_test_image(client: Any, tag: str = TEST_IMAGE) -> str:
    import docker.errors

    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        build_test_image(client, tag)
    return tag


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
