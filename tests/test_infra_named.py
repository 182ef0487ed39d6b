"""A store named in CLAIMROOM_URL that goes down: never replaced by an empty one.

The real CLI in subprocesses, real redis-server processes the tests own (append-only, each
in its own temp directory, on a free port), CLAIMROOM_HOME pointing at a temp project.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from infra_agents import eventually, private_url
from waiting import until_logged, until_sync

from claimroom.core.errors import BadInput
from claimroom.core.infra import HealthMonitor, HealthStatus, doctor, down
from claimroom.core.infra.local_server import is_redis_process, read_pid
from claimroom.core.infra.probe import port_of
from claimroom.core.infra.project import Started, read_started
from claimroom.core.infra.stores import record_for
from claimroom.core.local_redis import die_with_parent, free_port

CLAIMROOM = str(Path(sys.executable).parent / "claimroom")


class OwnRedis:
    """The user's own Redis: append-only, its own data directory, started and killed by the test."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OwnRedis:
        self.folder.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is needed for these tests"
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
                "--appendonly", "yes", "--save", "", "--logfile", str(self.folder / "redis.log")]  # fmt: skip
        self.process = subprocess.Popen(args, preexec_fn=die_with_parent)
        deadline = time.monotonic() + 10
        while not listening(self.port):
            assert self.process.poll() is None, (self.folder / "redis.log").read_text()
            assert time.monotonic() < deadline, "the user's redis-server did not start"
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "project"
    home.mkdir()
    yield home
    down(home)  # whatever claimroom started for it, stopped by its pid file


def env_for(project: Path, url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(CLAIMROOM_HOME=str(project), CLAIMROOM_URL=url, CLAIMROOM_NAMESPACE="t" + uuid.uuid4().hex[:8])
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLAIMROOM, *args], env=env, capture_output=True, text=True, timeout=60)


def only_local_starts(project: Path) -> None:
    """The project's config: start stores only as a local redis-server (no Docker image to pull)."""
    (project / ".claimroom").mkdir(exist_ok=True)
    (project / ".claimroom" / "config.json").write_text('{"auto_start": ["local"]}')


def test_the_users_own_store_that_died_is_not_replaced(project: Path, tmp_path: Path) -> None:
    port = free_port()
    theirs = OwnRedis(tmp_path / "their-redis", port).start()
    try:
        env = env_for(project, f"redis://127.0.0.1:{port}/0")
        added = cli(env, "add", "their task")
        assert added.returncode == 0, added.stderr
        task = added.stdout.strip()
        until_logged(f"redis://127.0.0.1:{port}/0")  # everysec: the task on disk before the kill
        theirs.kill()

        for args in (("complete", task, "--token", "1"), ("ls",)):
            p = cli(env, *args)
            assert p.returncode == 5, (args, p.stdout, p.stderr)
            said = p.stderr
            assert f"store unavailable at redis://127.0.0.1:{port}/0: nothing listens there" in said
            assert "not a store claimroom started" in said
            assert f"start that Redis again on 127.0.0.1:{port}" in said  # how to start it
            assert "claimroom up" in said
            assert said.count("\n") == 1 and p.stdout == ""
        store = next(c for c in doctor(env["CLAIMROOM_URL"], project=project) if c.name == "store")
        assert store.status == "fail" and "claimroom did not start it" in store.fix
        # Nothing was started in its place.
        assert not listening(port)
        assert not (project / ".claimroom" / "redis").exists()
        assert read_started(project) == []

        theirs.start()  # their Redis gets its port back, with its data
        listed = cli(env, "ls")
        assert listed.returncode == 0 and task in listed.stdout, listed.stderr
    finally:
        theirs.stop()


def test_a_store_claimroom_started_comes_back_with_its_data_and_never_empty(project: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    only_local_starts(project)
    env = env_for(project, url)
    up = cli(env, "up")
    assert up.returncode == 0, up.stderr
    # Printed whole (stdout is a pipe here) for agents outside the project; the rest use url as it is.
    assert up.stdout.startswith(private_url(project, port) + "\n"), up.stdout
    assert f"started redis-server on 127.0.0.1:{port}" in up.stdout
    [record] = read_started(project)
    assert (record.kind, record.port, record.stopped) == ("local", port, False)
    task = cli(env, "add", "kept task").stdout.strip()
    until_logged(private_url(project, port))

    pid = read_pid(Path(record.pid_file))
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    until_sync(lambda: not is_redis_process(pid), "the killed redis-server gone")
    listed = cli(env, "ls")  # an ordinary command brings back the store claimroom started
    assert listed.returncode == 0 and task in listed.stdout, listed.stderr
    assert read_pid(Path(record.pid_file)) not in (None, pid)

    # Stopped cleanly (its pid file goes with it): it still comes back with its data.
    assert down(project).startswith("stopped redis-server")
    assert read_started(project)[0].stopped
    checks = doctor(url, project=project)
    assert any(c.name == "started" and "stopped on purpose" in c.detail for c in checks)
    assert any(c.name == "store" and "starts it again with its data" in c.fix for c in checks)
    listed = cli(env, "ls")
    assert listed.returncode == 0 and task in listed.stdout, listed.stderr
    assert not read_started(project)[0].stopped

    # Its data gone: not started empty in its place; `claimroom up` may, when asked.
    down(project)
    shutil.rmtree(project / ".claimroom" / "redis" / "data")
    p = cli(env, "ls")
    assert p.returncode == 5, p.stderr
    assert "its data directory" in p.stderr and "is gone" in p.stderr
    assert "claimroom up to start an empty store there" in p.stderr
    assert not listening(port)
    up = cli(env, "up")
    assert up.returncode == 0, up.stderr
    assert cli(env, "ls").stdout == ""  # empty, as asked


def test_port_0_and_a_missing_port_are_not_6379(project: Path) -> None:
    assert port_of("redis://127.0.0.1/0") is None
    with pytest.raises(BadInput, match="port 0 names no store"):
        port_of("redis://127.0.0.1:0/0")
    with pytest.raises(BadInput, match="out of range") as refused:
        port_of("redis://:secret@127.0.0.1:99999/0")
    assert "secret" not in str(refused.value)
    only_local_starts(project)
    # A record for 6379 is not the store a URL without a port names.
    (project / ".claimroom" / "started.json").write_text(
        json.dumps({"stores": [Started("local", "redis://127.0.0.1:6379/0", 6379).to_json()]})
    )
    assert record_for(project, "redis://127.0.0.1/0") is None

    # 127.0.0.2: a local address where nothing listens on 6379 either, so nothing here
    # reaches the Redis a developer may run on 127.0.0.1:6379.
    p = cli(env_for(project, "redis://127.0.0.2:0/0"), "up")
    assert p.returncode == 2, p.stderr
    assert "port 0 names no store" in p.stderr
    p = cli(env_for(project, "redis://127.0.0.2/0"), "up")
    assert p.returncode == 5, p.stderr
    assert "the URL names no port" in p.stderr and "redis://127.0.0.1:6379/0" in p.stderr
    assert not (project / ".claimroom" / "redis").exists()


def test_up_at_another_machine_starts_nothing(project: Path) -> None:
    only_local_starts(project)
    p = cli(env_for(project, "redis://192.0.2.1:7413/0"), "up")  # TEST-NET-1: never answers
    assert p.returncode == 5, p.stderr
    assert "on another machine, so claimroom does not start it" in p.stderr
    assert not (project / ".claimroom" / "redis").exists() and read_started(project) == []


def test_an_old_single_record_file_is_read_as_a_list(project: Path) -> None:
    port = free_port()
    only_local_starts(project)
    env = env_for(project, f"redis://127.0.0.1:{port}/0")
    assert cli(env, "up").returncode == 0
    [record] = read_started(project)
    old = record.to_json()
    del old["stopped"]
    (project / ".claimroom" / "started.json").write_text(json.dumps(old))  # as claimroom wrote it before
    assert read_started(project) == [record]
    assert down(project).startswith("stopped redis-server")
    assert cli(env, "ls").returncode == 0  # still known as claimroom's: brought back


async def test_the_health_monitor_does_not_restart_a_store_whose_data_is_gone(project: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    only_local_starts(project)
    assert cli(env_for(project, url), "up").returncode == 0
    pid = read_pid(project / ".claimroom" / "redis" / "redis.pid")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    shutil.rmtree(project / ".claimroom" / "redis" / "data")
    statuses: list[HealthStatus] = []
    monitor = HealthMonitor(url, project=project, interval_s=0.1, on_status=statuses.append)
    stop = asyncio.Event()
    watching = asyncio.create_task(monitor.run(stop))
    try:
        await eventually(lambda: any(s.error == "restart-failed" for s in statuses), what="a failed restart")
        failed = next(s for s in statuses if s.error == "restart-failed")
        assert "its data directory" in failed.message and "is gone" in failed.message
        assert not listening(port) and monitor.restarts == 0
    finally:
        stop.set()
        await watching
