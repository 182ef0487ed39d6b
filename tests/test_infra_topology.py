"""``claimroom up --sentinel`` / ``--cluster`` and ``claimroom down``: the real CLI in subprocesses.

CLAIMROOM_HOME points at a temp project; the topology's processes are daemonized (they
outlive the command) and every one of them is checked gone after ``down``, by the pids
recorded in its topology.json. Readiness is checked with redis-py's own clients.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from claimroom.core.infra import down
from claimroom.core.infra.project import read_password, read_started
from claimroom.core.local_redis import free_port, is_redis_process
from claimroom.core.local_topology import LocalCluster, LocalSentinel, attach

pytestmark = pytest.mark.heavy

CLAIMROOM = str(Path(sys.executable).parent / "claimroom")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "project"
    home.mkdir()
    yield home
    down(home)  # whatever a failed test left running, stopped by its recorded pids


def cli(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("CLAIMROOM_URL", "CLAIMROOM_NAMESPACE")}
    environ.update(CLAIMROOM_HOME=str(project), **env)
    return subprocess.run([CLAIMROOM, *args], env=environ, capture_output=True, text=True, timeout=120)


def up(project: Path, *args: str) -> dict[str, Any]:
    done = cli(project, "up", "--json", *args)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def alive(pids: list[int]) -> list[int]:
    return [p for p in pids if is_redis_process(p)]


def test_up_sentinel_runs_finds_and_down_stops_every_process(project: Path) -> None:
    first = cli(project, "up", "--sentinel")  # into a pipe: the whole URL on the first line
    assert first.returncode == 0, first.stderr
    url, detail = first.stdout.splitlines()[:2]
    password = read_password(project)
    folder = project / ".claimroom" / "sentinel"
    topo = attach(folder)
    assert isinstance(topo, LocalSentinel) and topo.password == password
    hosts = ",".join(s.address for s in topo.sentinels)
    assert url == f"redis+sentinel://:{password}@{hosts}/claimroom/0?sentinel_password={password}"
    assert detail.startswith("started a Redis Sentinel topology on 127.0.0.1: master 127.0.0.1:")
    [record] = read_started(project)
    assert (record.kind, record.url, record.directory) == ("sentinel", url, str(folder))
    pids = topo.pids()
    assert len(pids) == 6 and alive(pids) == pids  # they outlived the command

    sentinel = Sentinel(
        [("127.0.0.1", s.port) for s in topo.sentinels],
        sentinel_kwargs={"password": password, "socket_timeout": 1},
        password=password,
        socket_timeout=1,
    )
    try:
        _, port = sentinel.discover_master("claimroom")
        assert len(sentinel.discover_slaves("claimroom")) == 2
        with redis.Redis(port=port, password=password, decode_responses=True) as r:
            assert r.execute_command("ROLE")[0] == "master"
            assert r.config_get("appendonly")["appendonly"] == "yes"
            r.set("kept", "across down and up")
            assert r.execute_command("WAIT", 2, 5000) == 2
    finally:
        for c in sentinel.sentinels:
            c.close()

    # A second up finds it (as does a plain up: it is the project's store now).
    again = up(project, "--sentinel")
    assert (again["how"], again["started"]) == ("sentinel", False)
    assert again["url"] == url.replace(password, "***") and again["password_file"]
    assert up(project)["how"] == "sentinel" and attach(folder).pids() == pids

    said = cli(project, "down")
    assert said.returncode == 0 and said.stdout.startswith("stopped the Redis Sentinel topology"), said
    assert alive(pids) == []
    assert cli(project, "down").stdout.startswith("nothing to stop")

    # Up again: the same processes' ports and data, new pids.
    back = up(project, "--sentinel")
    assert back["started"] is True and back["detail"].startswith("started again 6 of the 6 processes")
    revived = attach(folder)
    assert [n.port for n in revived.processes] == [n.port for n in topo.processes]
    with redis.Redis(port=revived.master().port, password=password, decode_responses=True) as r:
        assert r.get("kept") == "across down and up"
    assert cli(project, "down").returncode == 0 and alive(revived.pids()) == []


def test_up_cluster_then_up_mends_a_dead_node(project: Path) -> None:
    first = cli(project, "up", "--cluster")
    assert first.returncode == 0, first.stderr
    url = first.stdout.splitlines()[0]
    password = read_password(project)
    topo = attach(project / ".claimroom" / "cluster")
    assert isinstance(topo, LocalCluster)
    seeds = ",".join(n.address for n in topo.nodes[:3])
    assert url == f"redis+cluster://:{password}@{seeds}"
    client = RedisCluster(host="127.0.0.1", port=topo.nodes[0].port, password=password)
    try:
        assert client.cluster_info()["cluster_state"] == "ok"
        flags = sorted(n["flags"].replace("myself,", "") for n in client.cluster_nodes().values())
        assert flags == ["master"] * 3 + ["slave"] * 3
        client.set("a", "1")
    finally:
        client.close()

    replica = next(n for n in topo.refresh() if n.role == "replica")
    os.kill(replica.pid, signal.SIGKILL)
    mended = up(project)  # a plain up restarts the one that died
    assert mended["how"] == "cluster" and mended["detail"].startswith("started again 1 of the 6 processes")
    now = attach(project / ".claimroom" / "cluster")
    assert now.state() == "running" and now.node(replica.port).pid != replica.pid
    pids = now.pids()
    said = cli(project, "down")
    assert said.returncode == 0 and "stopped the Redis Cluster" in said.stdout
    assert "6 processes" in said.stdout
    assert alive(pids) == []


def test_up_refuses_a_second_store_and_conflicting_flags(project: Path) -> None:
    both = cli(project, "up", "--sentinel", "--cluster")
    assert both.returncode == 2 and both.stdout == ""
    assert both.stderr.count("\n") == 1 and "not allowed with argument --sentinel" in both.stderr

    # The project's store is a redis-server claimroom started: no topology beside it.
    (project / ".claimroom").mkdir()
    (project / ".claimroom" / "config.json").write_text('{"auto_start": ["local"]}')
    port = free_port()
    local = cli(project, "up", CLAIMROOM_URL=f"redis://127.0.0.1:{port}/0")
    assert local.returncode == 0, local.stderr
    refused = cli(project, "up", "--sentinel")
    assert refused.returncode == 5 and refused.stderr.count("\n") == 1
    assert f"this project's store is the redis-server on 127.0.0.1:{port}" in refused.stderr
    assert "Fix: claimroom down" in refused.stderr
    assert not (project / ".claimroom" / "sentinel").exists()

    # A URL naming another store, with --cluster: bad input, nothing started.
    named = cli(project, "up", "--cluster", CLAIMROOM_URL=f"redis://127.0.0.1:{port}/0")
    assert named.returncode == 2 and "CLAIMROOM_URL (or --url) names redis://" in named.stderr
    assert not (project / ".claimroom" / "cluster").exists()

    # Once that store is down on purpose, the topology may take its place.
    assert cli(project, "down").returncode == 0
    started = up(project, "--cluster")
    assert started["started"] is True and [r.kind for r in read_started(project)] == ["local", "cluster"]


def test_up_without_redis_server_is_one_line(project: Path, tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    done = cli(project, "up", "--sentinel", PATH=str(empty))
    assert done.returncode == 5 and done.stderr.count("\n") == 1
    assert "redis-server is not installed" in done.stderr
    assert read_started(project) == []
