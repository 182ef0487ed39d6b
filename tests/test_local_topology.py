"""Local Redis Sentinel and Redis Cluster topologies (core/local_topology.py): real processes.

Each test that kills or restarts a node starts a topology of its own; the shared ones
(``sentinel_topology``, ``cluster_topology`` in conftest.py) are only read. Roles,
replication and failovers are checked with redis-py's own clients (``redis.sentinel``,
``redis.cluster``), never through the topology's own view alone.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel
from waiting import until_sync

from claimroom.core import local_topology
from claimroom.core.errors import BadInput, StoreUnavailable
from claimroom.core.local_redis import is_redis_process
from claimroom.core.local_topology import LocalCluster, LocalSentinel, Node, attach

pytestmark = pytest.mark.heavy

PASSWORD = "s3cret-topology"


def gone(nodes: list[Node]) -> list[int]:
    """The pids among ``nodes`` that still run a redis-server on their port."""
    return [n.pid for n in nodes if is_redis_process(n.pid, n.port)]


def role(port: int, password: str = PASSWORD) -> list[Any]:
    with redis.Redis(port=port, password=password or None, decode_responses=True) as r:
        return list(r.execute_command("ROLE"))


@pytest.fixture
def sentinel_client() -> Iterator[list[Sentinel]]:
    """Sentinel clients a test makes, closed afterwards (their pools hold sockets)."""
    made: list[Sentinel] = []
    yield made
    for s in made:
        for c in s.sentinels:
            c.close()


def sentinel_of(topo: LocalSentinel, made: list[Sentinel]) -> Sentinel:
    s = Sentinel(
        [("127.0.0.1", n.port) for n in topo.sentinels],
        sentinel_kwargs={"password": PASSWORD, "socket_timeout": 1},
        password=PASSWORD,
        socket_timeout=1,
    )
    made.append(s)
    return s


def test_sentinel_starts_replicates_fails_over_and_stops(
    tmp_path: Path, sentinel_client: list[Sentinel]
) -> None:
    topo = LocalSentinel.start(tmp_path / "sentinel", password=PASSWORD)
    try:
        s1, s2, s3 = (n.port for n in topo.sentinels)
        assert topo.url == (
            f"redis+sentinel://:{PASSWORD}@127.0.0.1:{s1},127.0.0.1:{s2},127.0.0.1:{s3}/claimroom/0"
            f"?sentinel_password={PASSWORD}"
        )
        assert [n.role for n in topo.nodes] == ["master", "replica", "replica"]
        master, *replicas = topo.nodes
        sentinel = sentinel_of(topo, sentinel_client)
        assert sentinel.discover_master("claimroom") == ("127.0.0.1", master.port)
        assert sorted(p for _, p in sentinel.discover_slaves("claimroom")) == sorted(n.port for n in replicas)
        assert role(master.port)[0] == "master"
        for n in replicas:
            said = role(n.port)
            assert said[:3] == ["slave", "127.0.0.1", master.port] and said[3] == "connected"
        # Config files are the owner's alone: they hold the password.
        for n in topo.processes:
            assert n.conf.stat().st_mode & 0o077 == 0
            assert PASSWORD not in " ".join(Path(f"/proc/{n.pid}/cmdline").read_text().split("\0"))

        # Replication: written on the master, acknowledged by both replicas, read on each.
        with closing(sentinel.master_for("claimroom", decode_responses=True)) as m:
            m.set("k", "before the failover")
            assert m.execute_command("WAIT", 2, 5000) == 2
        for n in replicas:
            with redis.Redis(port=n.port, password=PASSWORD, decode_responses=True) as r:
                assert r.get("k") == "before the failover"

        killed = topo.kill_master()
        assert killed is master and killed.role == "down" and not is_redis_process(killed.pid)
        new = topo.wait_failover(killed.port)
        assert new in replicas and new.role == "master"
        assert sentinel.discover_master("claimroom") == ("127.0.0.1", new.port)
        with closing(sentinel.master_for("claimroom", decode_responses=True)) as m:
            assert m.get("k") == "before the failover"
            m.set("k", "after the failover")

        # The killed master comes back as a replica of the new one, with what it missed.
        back = topo.restart(killed)
        assert back is killed and back.role == "replica" and back.pid != 0
        assert role(back.port)[:3] == ["slave", "127.0.0.1", new.port]
        with redis.Redis(port=back.port, password=PASSWORD, decode_responses=True) as r:
            until_sync(lambda: r.get("k") == "after the failover", "the old master catching up")
        assert topo.master() is new
        state = json.loads((topo.directory / "topology.json").read_text())
        assert {n["port"]: n["pid"] for n in state["nodes"]} == {n.port: n.pid for n in topo.nodes}
    finally:
        ended = topo.stop()
    assert len(ended) == 6 and gone(topo.processes) == []
    assert all(n.role == "down" for n in topo.processes)


def test_cluster_starts_with_every_slot_fails_over_and_stops(tmp_path: Path) -> None:
    topo = LocalCluster.start(tmp_path / "cluster", password=PASSWORD)
    try:
        assert len(topo.nodes) == 6
        p1, p2, p3 = (n.port for n in topo.nodes[:3])
        assert topo.url == f"redis+cluster://:{PASSWORD}@127.0.0.1:{p1},127.0.0.1:{p2},127.0.0.1:{p3}"
        shards = topo.masters()
        assert len(shards) == 3 and all(len(s.replicas) == 1 for s in shards)
        slots = sorted(r for s in shards for r in s.slots)
        assert slots[0][0] == 0 and slots[-1][1] == 16383
        assert sum(hi - lo + 1 for lo, hi in slots) == 16384
        for n in topo.nodes:
            with redis.Redis(port=n.port, password=PASSWORD, decode_responses=True) as r:
                info = r.execute_command("CLUSTER", "INFO")
            assert "cluster_state:ok" in info and "cluster_slots_assigned:16384" in info
            assert role(n.port)[0] == ("master" if n.port in {s.port for s in shards} else "slave")
        for s in shards:
            assert role(s.replicas[0])[:3] == ["slave", "127.0.0.1", s.port]

        client = RedisCluster(host="127.0.0.1", port=p1, password=PASSWORD, decode_responses=True)
        try:
            keys = [f"key{i}" for i in range(30)]  # spread over all three masters
            assert {client.keyslot(k) // 5461 for k in keys} == {0, 1, 2}
            for k in keys:
                client.set(k, k.upper())
            victim = shards[1]
            # Replication is asynchronous: kill only once the victim's replica has its keys.
            mine = [k for k in keys if any(lo <= client.keyslot(k) <= hi for lo, hi in victim.slots)]
            with closing(redis.Redis(port=victim.replicas[0], password=PASSWORD, decode_responses=True)) as r:
                r.execute_command("READONLY")
                until_sync(lambda: all(r.get(k) == k.upper() for k in mine), "the replica to hold the keys")
            killed = topo.kill_master(victim.port)
            assert killed.role == "down" and not is_redis_process(killed.pid)
            new = topo.wait_failover(killed.port)
            assert new.port == victim.replicas[0] and new.role == "master"
            assert role(new.port)[0] == "master"
            now = topo.masters()
            assert victim.port not in {s.port for s in now}
            assert next(s for s in now if s.port == new.port).slots == victim.slots
            client.close()
            client = RedisCluster(host="127.0.0.1", port=p1, password=PASSWORD, decode_responses=True)
            assert [client.get(k) for k in keys] == [k.upper() for k in keys]  # nothing lost

            back = topo.restart(killed)
            assert back.role == "replica" and role(back.port)[:3] == ["slave", "127.0.0.1", new.port]
            assert next(s for s in topo.masters() if s.port == new.port).replicas == (back.port,)
        finally:
            client.close()
        with pytest.raises(BadInput, match="is not a master"):
            topo.kill_master(back.port)
    finally:
        ended = topo.stop()
    assert len(ended) == 6 and gone(topo.nodes) == []


def test_a_detached_topology_outlives_its_starter_and_is_stopped_by_pid(tmp_path: Path) -> None:
    """What ``claimroom up`` relies on: started daemonized by a process that then exits, found
    again from its topology.json, stopped by the pids recorded there."""
    folder = tmp_path / "sentinel"
    starter = (
        "import sys; from pathlib import Path; from claimroom.core.local_topology import LocalSentinel; "
        "LocalSentinel.start(Path(sys.argv[1]), password='pw', detached=True, persistent=True)"
    )
    subprocess.run([sys.executable, "-c", starter, str(folder)], check=True, timeout=120)
    topo = attach(folder)
    try:
        assert isinstance(topo, LocalSentinel) and topo.state() == "running"
        assert all(n.pid_file.exists() for n in topo.processes)
        assert topo.master().role == "master"
        assert [n.role for n in topo.refresh()].count("replica") == 2
        with redis.Redis(port=topo.master().port, password="pw", decode_responses=True) as r:
            assert r.config_get("appendonly")["appendonly"] == "yes"
    finally:
        topo.stop()
    assert topo.state() == "not running" and gone(topo.processes) == []
    again = attach(folder)
    assert again.state() == "not running"
    assert again.revive() and again.state() == "running"  # every process back, from its config
    assert again.master().role == "master"
    again.stop()
    assert gone(again.processes) == []


def test_redis_server_missing_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    for start in (LocalSentinel.start, LocalCluster.start):
        with pytest.raises(StoreUnavailable) as err:
            start(tmp_path / "t")
        assert str(err.value).startswith("redis-server is not installed") and "\n" not in str(err.value)
    assert not (tmp_path / "t").exists()


def test_a_node_that_does_not_come_up_names_its_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        real = local_topology.free_ports
        monkeypatch.setattr(local_topology, "free_ports", lambda n: [busy, *real(n - 1)])
        with pytest.raises(StoreUnavailable) as err:
            LocalSentinel.start(tmp_path / "s", password="pw")
    said = str(err.value)
    assert f"redis-server on 127.0.0.1:{busy}" in said and "\n" not in said
    assert str(tmp_path / "s" / f"node-{busy}" / "redis.log") in said and "Address already in use" in said
    left = attach(tmp_path / "s")
    assert gone(left.processes) == []  # what did start was stopped


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="at least 3 masters"):
        LocalCluster.start(tmp_path / "c", masters=2)
    with pytest.raises(BadInput, match="quorum"):
        LocalSentinel.start(tmp_path / "s", quorum=4)
    with pytest.raises(BadInput, match="password"):
        LocalSentinel.start(tmp_path / "s", password="two words")


def test_the_shared_fixtures_answer(sentinel_topology: LocalSentinel, cluster_topology: LocalCluster) -> None:
    master = sentinel_topology.master()
    assert master.role == "master" and role(master.port, sentinel_topology.password)[0] == "master"
    assert sentinel_topology.url.startswith("redis+sentinel://")
    assert len(cluster_topology.masters()) == 3 and cluster_topology.url.startswith("redis+cluster://")
