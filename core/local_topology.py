"""Local Redis Sentinel and Redis Cluster topologies: real ``redis-server`` processes on free loopback ports.

``LocalSentinel``: one master, its replicas and three sentinels (``redis-server CONF
--sentinel``: no ``redis-sentinel`` binary is needed). ``LocalCluster``: masters and their
replicas with ``cluster-enabled``, joined by ``redis-cli --cluster create``. Both start,
kill a master, wait for the failover, bring a node back and stop, always by PID.

Each process has a folder of its own under the topology's directory (its config, log and
data; a cluster node's ``nodes.conf``), and ``topology.json`` there lists every process
(port, pid, role as last seen), so another process can ``attach`` to stop or mend it.
Tests and benchmarks own their processes: they die with the process that started them
(``die_with_parent``). ``claimroom up`` starts them ``detached`` (daemonized, with a pid
file) so that they outlive the command. A password, when given, is in the config files
(0600), never on a command line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import redis

from . import constants as C
from .errors import BadInput, StoreUnavailable
from .local_nodes import (
    DOWN,
    MASTER,
    REPLICA,
    SENTINEL,
    STATE_FILE,
    Node,
    Topology,
    check_password,
    conf_string,
    free_ports,
    make_folder,
    read_state,
    role_of,
)
from .local_redis import redis_binary

__all__ = [
    "DOWN",
    "MASTER",
    "REPLICA",
    "SENTINEL",
    "STATE_FILE",
    "LocalCluster",
    "LocalSentinel",
    "Node",
    "Shard",
    "Topology",
    "attach",
]


@dataclass(frozen=True)
class Shard:
    """A cluster master as CLUSTER NODES shows it: its id, port, slot ranges and replicas' ports."""

    id: str
    port: int
    slots: tuple[tuple[int, int], ...]
    replicas: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "port": self.port,
            "slots": [list(r) for r in self.slots],
            "replicas": list(self.replicas),
        }


# --- Redis Sentinel -----------------------------------------------------------------------------


@dataclass(eq=False)
class LocalSentinel(Topology):
    """A master, its replicas and the sentinels that watch them (master name ``claimroom``)."""

    kind: ClassVar[str] = "sentinel"

    sentinels: list[Node] = field(default_factory=list)
    master_name: str = C.topology_master_name

    @property
    def processes(self) -> list[Node]:
        return [*self.nodes, *self.sentinels]

    @property
    def url(self) -> str:
        """``redis+sentinel://[:PASSWORD@]127.0.0.1:S1,...,127.0.0.1:S3/claimroom/0[?sentinel_password=...]``."""
        hosts = ",".join(s.address for s in self.sentinels)
        query = f"?sentinel_password={quote(self.password, safe='')}" if self.password else ""
        return f"redis+sentinel://{self._auth()}{hosts}/{self.master_name}/0{query}"

    @classmethod
    def start(
        cls,
        directory: Path | None = None,
        password: str = "",
        down_after_ms: int = C.sentinel_down_after_ms,
        failover_timeout_ms: int = C.sentinel_failover_timeout_ms,
        *,
        replicas: int = 2,
        sentinels: int = C.sentinel_count,
        quorum: int = C.sentinel_quorum,
        persistent: bool = False,
        detached: bool = False,
        timeout_s: float = C.topology_start_timeout_s,
    ) -> LocalSentinel:
        """Start it and wait until every sentinel names the master, sees its replicas in sync and
        the other sentinels (SENTINEL CKQUORUM); ``StoreUnavailable`` with a log's tail when not."""
        redis_binary()
        check_password(password)
        if replicas < 0 or sentinels < 1 or not 1 <= quorum <= sentinels:
            raise BadInput("a sentinel topology needs replicas >= 0 and 1 <= quorum <= sentinels")
        folder, owns = make_folder(directory, "claimroom-sentinel-")
        ports = free_ports(1 + replicas + sentinels)
        data = [
            Node(p, folder / f"node-{p}", MASTER if i == 0 else REPLICA)
            for i, p in enumerate(ports[: 1 + replicas])
        ]
        watchers = [Node(p, folder / f"sentinel-{p}", SENTINEL) for p in ports[1 + replicas :]]
        settings = {
            "down_after_ms": down_after_ms,
            "failover_timeout_ms": failover_timeout_ms,
            "parallel_syncs": C.sentinel_parallel_syncs,
            "quorum": quorum,
        }
        topo = cls(folder, password, data, detached, persistent, settings, owns, watchers)
        try:
            topo._start_all(data[0], timeout_s, fresh=True)
        except BaseException:
            topo._owns_dir = False  # keep the logs the error names
            topo.stop()
            raise
        return topo

    def _extra_json(self) -> dict[str, Any]:
        return {"master_name": self.master_name, "sentinels": [s.to_json() for s in self.sentinels]}

    def _stop_order(self) -> list[Node]:
        return [*self.sentinels, *self.nodes]  # no failover while the data nodes go

    def _write_data(self, node: Node, master: Node) -> None:
        lines = self._data_conf(node)
        if node is not master:
            lines.append(f"replicaof 127.0.0.1 {master.port}")
        self._write_conf(node, lines)
        node.role = MASTER if node is master else REPLICA

    def _write_sentinel(self, node: Node, master: Node) -> None:
        name, s = self.master_name, self.settings
        lines = self._base_conf(node)
        lines += [
            f"sentinel monitor {name} 127.0.0.1 {master.port} {s['quorum']}",
            f"sentinel down-after-milliseconds {name} {s['down_after_ms']}",
            f"sentinel failover-timeout {name} {s['failover_timeout_ms']}",
            f"sentinel parallel-syncs {name} {s['parallel_syncs']}",
        ]
        if self.password:  # data nodes and sentinels share it (requirepass above: also between sentinels)
            lines.append(f"sentinel auth-pass {name} {conf_string(self.password)}")
        # What a sentinel would learn in its first seconds (hello messages every 2 s, INFO every
        # 10 s), written in: its id, the other sentinels by theirs, the replicas. It starts agreed.
        lines.append(f"sentinel myid {_sentinel_id(node)}")
        lines += [
            f"sentinel known-sentinel {name} 127.0.0.1 {o.port} {_sentinel_id(o)}"
            for o in self.sentinels
            if o is not node
        ]
        lines += [f"sentinel known-replica {name} 127.0.0.1 {n.port}" for n in self.nodes if n is not master]
        self._write_conf(node, lines)

    def _start_all(self, master: Node, timeout_s: float, *, fresh: bool) -> None:
        """Start the dead data nodes (``master`` first), then the dead sentinels; wait until agreed."""
        dead = [n for n in self.nodes if not n.alive()]
        for n in sorted(dead, key=lambda n: n is not master):
            self._write_data(n, master)
        self._start_nodes(dead, timeout_s)
        replicas = [n for n in self.nodes if n is not master]
        self._wait("the replicas syncing", lambda: self._replicas_synced(replicas), timeout_s, self.nodes)
        down = [s for s in self.sentinels if not s.alive()]
        for s in down:
            if (
                fresh or not s.conf.exists()
            ):  # a sentinel rewrites its own config: on a restart it keeps what it learnt
                self._write_sentinel(s, master)
        self._start_nodes(down, timeout_s)
        self._wait("the sentinels agreeing", lambda: self._unsettled(master), timeout_s, self.processes)
        self.refresh()

    def _unsettled(self, master: Node) -> str:
        """What a sentinel does not see yet ("" when every one names ``master``, its replicas, the others)."""
        replicas = sum(1 for n in self.nodes if n is not master and n.alive())
        for s in self.sentinels:
            with self.client(s.port) as r:
                _, port = r.sentinel_get_master_addr_by_name(self.master_name)
                if int(port) != master.port:
                    return f"{s.name} names 127.0.0.1:{port} as master, not {master.address}"
                seen = [
                    x
                    for x in r.sentinel_slaves(self.master_name)
                    if not x["is_sdown"] and not x["is_disconnected"] and x.get("master-link-status") == "ok"
                ]
                if len(seen) < replicas:
                    return f"{s.name} sees {len(seen)} of {replicas} replicas"
                peers = [
                    x
                    for x in r.sentinel_sentinels(self.master_name)
                    if not x["is_sdown"] and not x["is_disconnected"]
                ]
                if len(peers) < len(self.sentinels) - 1:
                    return f"{s.name} sees {len(peers)} of {len(self.sentinels) - 1} other sentinels"
                r.sentinel_ckquorum(self.master_name)  # ResponseError (caught by _wait) when not
        return ""

    def master(self) -> Node:
        """The master a sentinel names now (the first that answers); ``StoreUnavailable`` when none does."""
        for s in self.sentinels:
            if not s.alive():
                continue
            try:
                with self.client(s.port) as r:
                    _, port = r.sentinel_get_master_addr_by_name(self.master_name)
                return self.node(int(port))
            except (redis.RedisError, OSError):
                continue
        raise StoreUnavailable(f"no sentinel of {self.directory} answers")

    def refresh(self) -> list[Node]:
        """Ask every data node its role (ROLE); the data nodes, roles updated ("down" when dead)."""
        for n in self.nodes:
            n.role = role_of(self, n)
        for s in self.sentinels:
            s.role = SENTINEL if s.alive() else DOWN
        self.save()
        return self.nodes

    def kill_master(self) -> Node:
        """SIGKILL the process of the master the sentinels name; returns it (role "down")."""
        return self.kill(self.master())

    def wait_failover(self, old_port: int, timeout_s: float = C.topology_failover_timeout_s) -> Node:
        """Wait until every live sentinel names one new master (not ``old_port``) that answers
        ROLE as master; returns it."""

        def missing() -> str:
            named = set()
            for s in self.sentinels:
                if s.alive():
                    with self.client(s.port) as r:
                        named.add(int(r.sentinel_get_master_addr_by_name(self.master_name)[1]))
            if len(named) != 1 or old_port in named:
                return f"the sentinels name {sorted(named)} as master"
            node = self.node(named.pop())
            return "" if role_of(self, node) == MASTER else f"{node.name} does not answer ROLE as master yet"

        watched = [s for s in self.sentinels if s.alive()]
        self._wait(f"a failover from 127.0.0.1:{old_port}", missing, timeout_s, watched)
        self.refresh()
        return self.master()

    def restart(self, node: Node, timeout_s: float = C.topology_start_timeout_s) -> Node:
        """Bring a killed process back: a data node as a replica of the current master (the
        master itself when the sentinels still name it), a sentinel from its own config."""
        if node.alive():
            raise BadInput(f"{node.name} is running")
        if node.sentinel:
            self._start_nodes([node], timeout_s)
            node.role = SENTINEL
            self.save()
            return node
        master = self.master()
        self._write_data(node, master)
        self._start_nodes([node], timeout_s)
        if node is not master:
            self._wait(f"{node.name} syncing", lambda: self._replicas_synced([node]), timeout_s, [node])
        node.role = role_of(self, node)
        self.save()
        return node

    def revive(self, timeout_s: float = C.topology_start_timeout_s) -> list[Node]:
        """Start every process that is not running (the master the sentinels knew first, the
        others as its replicas, then the sentinels) and wait until they agree; those started."""
        dead = [n for n in self.processes if not n.alive()]
        if not dead:
            return []
        try:
            master = self.master()
        except StoreUnavailable:
            master = self.node(self._master_from_configs())
        self._start_all(master, timeout_s, fresh=False)
        return dead

    def _master_from_configs(self) -> int:
        """The master port in the sentinels' own configs (the one of the newest config epoch)."""
        best = (-1, self.nodes[0].port)
        name = re.escape(self.master_name)
        for s in self.sentinels:
            text = s.conf.read_text() if s.conf.exists() else ""
            monitor = re.search(rf"^sentinel monitor {name} \S+ (\d+)", text, re.M)
            epoch = re.search(rf"^sentinel config-epoch {name} (\d+)", text, re.M)
            if monitor:
                best = max(best, (int(epoch.group(1)) if epoch else 0, int(monitor.group(1))))
        return best[1]

    @classmethod
    def attach(cls, directory: Path) -> LocalSentinel:
        """The topology whose ``topology.json`` is in ``directory`` (to read, mend or stop it)."""
        data = read_state(directory, cls.kind)
        topo = cls(
            directory,
            str(data.get("password", "")),
            [Node.from_json(n, directory) for n in data["nodes"]],
            bool(data.get("detached")),
            bool(data.get("persistent")),
            dict(data.get("settings", {})),
            False,
            [Node.from_json(n, directory) for n in data.get("sentinels", [])],
            str(data.get("master_name", C.topology_master_name)),
        )
        return topo


# --- Redis Cluster ------------------------------------------------------------------------------


@dataclass(eq=False)
class LocalCluster(Topology):
    """Masters and their replicas, ``cluster-enabled``, every slot assigned."""

    kind: ClassVar[str] = "cluster"

    masters_count: int = 3
    _killed: dict[int, Shard] = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        """``redis+cluster://[:PASSWORD@]127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3``: the first masters'
        ports, as seeds (a client learns the rest from any of them)."""
        return (
            f"redis+cluster://{self._auth()}{','.join(n.address for n in self.nodes[: self.masters_count])}"
        )

    @classmethod
    def start(
        cls,
        directory: Path | None = None,
        masters: int = 3,
        replicas_per_master: int = 1,
        password: str = "",
        *,
        node_timeout_ms: int = C.cluster_node_timeout_ms,
        persistent: bool = False,
        detached: bool = False,
        timeout_s: float = C.topology_start_timeout_s,
    ) -> LocalCluster:
        """Start the nodes, join them (``redis-cli --cluster create``) and wait until every node
        says cluster_state:ok with all slots assigned and every replica is in sync."""
        redis_binary()
        check_password(password)
        if masters < 3 or replicas_per_master < 0:
            raise BadInput("a cluster needs at least 3 masters (and replicas_per_master >= 0)")
        cli = shutil.which("redis-cli")
        if cli is None:
            raise StoreUnavailable(
                "redis-cli is not installed; install it (Debian: apt-get install redis-tools)"
            )
        folder, owns = make_folder(directory, "claimroom-cluster-")
        count = masters * (1 + replicas_per_master)
        ports = free_ports(2 * count)  # a client port and a bus port each
        nodes = [
            Node(p, folder / f"node-{p}", MASTER if i < masters else REPLICA, bus_port=b)
            for i, (p, b) in enumerate(zip(ports[:count], ports[count:], strict=True))
        ]
        settings = {"node_timeout_ms": node_timeout_ms, "replicas_per_master": replicas_per_master}
        topo = cls(folder, password, nodes, detached, persistent, settings, owns, masters)
        try:
            for n in nodes:
                topo._write_node(n)
            topo._start_nodes(nodes, timeout_s)
            topo._create(cli, replicas_per_master, timeout_s)
            topo._wait("the cluster forming", topo._unsettled, timeout_s, nodes)
            topo.refresh()
        except BaseException:
            topo._owns_dir = False  # keep the logs the error names
            topo.stop()
            raise
        return topo

    def _extra_json(self) -> dict[str, Any]:
        return {"masters": self.masters_count}

    def _write_node(self, node: Node) -> None:
        lines = [
            *self._data_conf(node),
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",  # in the node's own folder (its dir)
            f"cluster-port {node.bus_port}",
            f"cluster-node-timeout {self.settings['node_timeout_ms']}",
        ]
        self._write_conf(node, lines)

    def _create(self, cli: str, replicas: int, timeout_s: float) -> None:
        env = dict(os.environ)
        env.pop("REDISCLI_AUTH", None)
        if self.password:
            env["REDISCLI_AUTH"] = self.password  # never on the command line, where ps shows it
        args = [cli, "--cluster", "create", *(n.address for n in self.nodes)]
        args += ["--cluster-replicas", str(replicas), "--cluster-yes"]
        try:
            done = subprocess.run(
                args, capture_output=True, text=True, timeout=timeout_s, env=env, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StoreUnavailable(f"redis-cli --cluster create did not finish ({exc})") from None
        if done.returncode != 0:
            said = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
            raise StoreUnavailable(
                f"redis-cli --cluster create failed: {said[-1] if said else done.returncode}"
            )

    def _unsettled(self) -> str:
        """What is not ready yet ("" when every live node says ok with all slots and knows every
        other live node, and every live replica is in sync)."""
        live = self.running()
        for n in live:
            with self.client(n.port) as r:
                info = _cluster_info(r)
            if info.get("cluster_state") != "ok":
                return f"{n.name} says cluster_state:{info.get('cluster_state')}"
            if int(info.get("cluster_slots_assigned", 0)) != C.cluster_slots:
                return f"{n.name} has {info.get('cluster_slots_assigned')} slots assigned"
            if int(info.get("cluster_known_nodes", 0)) < len(live):
                return f"{n.name} knows {info.get('cluster_known_nodes')} of {len(live)} nodes"
        shards = self.masters()
        others = [n for n in live if n.port not in {s.port for s in shards}]
        listed = sum(len(s.replicas) for s in shards)
        if listed != len(others):
            return f"the cluster lists {listed} replicas, {len(others)} nodes serve no slots"
        return self._replicas_synced(others)

    def view(self) -> list[dict[str, Any]]:
        """CLUSTER NODES of the first live node that answers, parsed: id, port, flags, master_id, slots."""
        for n in self.running():
            try:
                with self.client(n.port) as r:
                    text = r.execute_command("CLUSTER", "NODES")
            except (redis.RedisError, OSError):
                continue
            return [_parse_node_line(line) for line in str(text).splitlines() if line.strip()]
        raise StoreUnavailable(f"no node of the cluster in {self.directory} answers")

    def masters(self) -> list[Shard]:
        """The masters serving slots (failed ones left out), by their first slot."""
        view = self.view()
        shards = []
        for m in view:
            if "master" in m["flags"] and "fail" not in m["flags"] and m["slots"]:
                replicas = tuple(
                    x["port"] for x in view if x["master_id"] == m["id"] and "fail" not in x["flags"]
                )
                shards.append(Shard(m["id"], m["port"], tuple(m["slots"]), tuple(sorted(replicas))))
        return sorted(shards, key=lambda s: s.slots[0][0])

    def refresh(self) -> list[Node]:
        """Every node's role (ROLE) and id; the data nodes, roles updated ("down" when dead)."""
        for n in self.nodes:
            n.role = role_of(self, n)
            if n.role != DOWN and not n.node_id:
                with contextlib.suppress(redis.RedisError, OSError), self.client(n.port) as r:
                    n.node_id = str(r.execute_command("CLUSTER", "MYID"))
        self.save()
        return self.nodes

    def kill_master(self, port: int | None = None) -> Node:
        """SIGKILL a master (``port``, default the one serving slot 0); returns it (role "down")."""
        shards = self.masters()
        shard = shards[0] if port is None else next((s for s in shards if s.port == port), None)
        if shard is None:
            served = ", ".join(str(s.port) for s in shards)
            raise BadInput(f"127.0.0.1:{port} is not a master of this cluster (masters: {served})")
        self._killed[shard.port] = shard
        return self.kill(self.node(shard.port))

    def wait_failover(self, killed_port: int, timeout_s: float = C.topology_failover_timeout_s) -> Node:
        """Wait until a replica of the killed master serves its slots and every live node says
        cluster_state:ok; returns that replica, now a master."""
        shard = self._killed.get(killed_port)
        if shard is None:
            raise BadInput(f"127.0.0.1:{killed_port} was not killed through kill_master")
        first = shard.slots[0][0]

        def owner() -> Shard | None:
            return next((s for s in self.masters() if any(lo <= first <= hi for lo, hi in s.slots)), None)

        def missing() -> str:
            now = owner()
            if now is None or now.port not in shard.replicas:
                who = now.port if now else "nobody"
                return f"slot {first} is served by {who}, not by a replica of {killed_port}"
            if role_of(self, self.node(now.port)) != MASTER:
                return f"127.0.0.1:{now.port} does not answer ROLE as master yet"
            return self._unsettled()

        self._wait(f"a failover from 127.0.0.1:{killed_port}", missing, timeout_s, [])
        self.refresh()
        found = owner()
        assert found is not None  # missing() just found it
        return self.node(found.port)

    def restart(self, node: Node, timeout_s: float = C.topology_start_timeout_s) -> Node:
        """Bring a killed node back with its ``nodes.conf`` (a failed-over master returns as a replica)."""
        if node.alive():
            raise BadInput(f"{node.name} is running")
        self._write_node(node)
        self._start_nodes([node], timeout_s)
        self._wait("the cluster taking the node back", self._unsettled, timeout_s, [node])
        node.role = role_of(self, node)
        self.save()
        return node

    def revive(self, timeout_s: float = C.topology_start_timeout_s) -> list[Node]:
        """Start every node that is not running (each with its ``nodes.conf``) and wait until the
        cluster is ok; those started."""
        dead = [n for n in self.nodes if not n.alive()]
        if not dead:
            return []
        for n in dead:
            self._write_node(n)
        self._start_nodes(dead, timeout_s)
        self._wait("the cluster forming again", self._unsettled, timeout_s, self.nodes)
        self.refresh()
        return dead

    @classmethod
    def attach(cls, directory: Path) -> LocalCluster:
        """The cluster whose ``topology.json`` is in ``directory`` (to read, mend or stop it)."""
        data = read_state(directory, cls.kind)
        return cls(
            directory,
            str(data.get("password", "")),
            [Node.from_json(n, directory) for n in data["nodes"]],
            bool(data.get("detached")),
            bool(data.get("persistent")),
            dict(data.get("settings", {})),
            False,
            int(data.get("masters", 3)),
        )


def _sentinel_id(node: Node) -> str:
    """A sentinel's run id (40 hex digits), fixed by its port: written in every sentinel's config."""
    return hashlib.sha1(f"claimroom sentinel {node.port}".encode()).hexdigest()


def _cluster_info(r: Any) -> dict[str, str]:
    text = str(r.execute_command("CLUSTER", "INFO"))
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _parse_node_line(line: str) -> dict[str, Any]:
    """One CLUSTER NODES line: ``id ip:port@bus[,host] flags master ping pong epoch link slot...``."""
    parts = line.split()
    port = int(parts[1].split("@", 1)[0].rsplit(":", 1)[1] or 0)
    slots = []
    for item in parts[8:]:
        if item.startswith("["):  # a slot being imported or migrated
            continue
        lo, _, hi = item.partition("-")
        slots.append((int(lo), int(hi or lo)))
    return {
        "id": parts[0],
        "port": port,
        "flags": parts[2].split(","),
        "master_id": "" if parts[3] == "-" else parts[3],
        "link": parts[7],
        "slots": slots,
    }


def attach(directory: Path) -> LocalSentinel | LocalCluster:
    """The topology (either kind) recorded in ``directory``."""
    try:
        kind = json.loads((directory / STATE_FILE).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = None
    return LocalCluster.attach(directory) if kind == LocalCluster.kind else LocalSentinel.attach(directory)
