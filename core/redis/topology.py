"""The Redis side of ``Store.topology``: one server, a Sentinel-watched master, a Cluster slot.

What the board's master says comes through the store's own client (``connect.client``:
the master it finds anew per connection, so a read after a failover reaches the new one):
INFO replication (its replicas, their lag), its run_id, the token epoch, and on a Cluster
CLUSTER NODES and CLUSTER INFO. Sentinels are asked directly, each on a short-lived
connection of its own; so are a Cluster's seed nodes when the board's master does not
answer. Every part is bounded by ``topology_read_timeout_s`` and the parts run side by side:
a dead node shows as down, a sentinel that does not answer as "unreachable". Only when
nothing answers at all does the read fail (a ``ConnectionError``: the store's guard makes
it ``StoreUnavailable``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from .. import constants as C
from ..endpoints import Endpoint
from ..topology import MASTER, REPLICA, SENTINEL, Node, Topology
from .connect import reason

T = TypeVar("T")
_FAILED = (rexc.RedisError, OSError)  # OSError: TimeoutError too (asyncio.timeout raises it)


def address(host: object, port: object) -> str:
    h = str(host)
    return f"[{h}]:{port}" if ":" in h else f"{h}:{port}"


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


async def _bounded(call: Callable[[], Awaitable[T]]) -> T:
    async with asyncio.timeout(C.topology_read_timeout_s):
        return await call()


def _short_lived(host: str, port: int, username: str, password: str, db: int = 0) -> Any:
    """A client for one question to one server: no retries, every wait bounded."""
    return aioredis.Redis(
        host=host,
        port=port,
        db=db,
        username=username or None,
        password=password or None,
        socket_timeout=C.topology_read_timeout_s,
        socket_connect_timeout=C.topology_read_timeout_s,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


# --- the board's master, through the store's own client ------------------------------------


@dataclass
class _Facts:
    """What the board's master said (``error`` when it did not answer)."""

    replication: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    epoch: dict[str, str] | None = None  # None: not read
    cluster_nodes: str = ""
    cluster_info: str = ""
    error: BaseException | None = None
    refused: list[str] = field(default_factory=list)  # commands the server refused (ACLs)

    @property
    def ok(self) -> bool:
        return self.error is None


async def _master_facts(r: Any, namespace: str, cluster: bool) -> _Facts:
    async def ask() -> list[Any]:
        pipe = r.pipeline(transaction=False)
        pipe.info("replication")
        pipe.info("server")
        pipe.hgetall(C.epoch_key(namespace))
        if cluster:
            pipe.execute_command("CLUSTER", "NODES")
            pipe.execute_command("CLUSTER", "INFO")
        return list(await pipe.execute(raise_on_error=False))

    try:
        replies = await _bounded(ask)
    except _FAILED as exc:
        return _Facts(error=exc)
    facts = _Facts()
    names = ["INFO replication", "INFO server", "HGETALL epoch", "CLUSTER NODES", "CLUSTER INFO"]
    for i, reply in enumerate(replies):
        if isinstance(reply, rexc.ConnectionError | rexc.TimeoutError):
            return _Facts(error=reply)
        if isinstance(reply, Exception):  # an ACL or a renamed command: say so, read the rest
            facts.refused.append(f"the master refused {names[i]} ({reply})")
            replies[i] = None
    replication, server, epoch, *more = replies
    facts.replication = dict(replication or {})
    facts.run_id = str((server or {}).get("run_id", ""))
    if epoch is not None:
        facts.epoch = {str(k): str(v) for k, v in epoch.items()}
    if cluster:
        facts.cluster_nodes, facts.cluster_info = (str(x) if x is not None else "" for x in more)
    return facts


async def _facts_asking_directly(facts: _Facts, master: str, where: Endpoint, namespace: str) -> _Facts:
    """When the store's own client did not reach the master in time (it may still be finding
    it: redis-py tries each listed sentinel, with retries, before the next), ask the master
    the sentinels or the cluster name on a connection of its own; the first facts otherwise."""
    if facts.ok or not master:
        return facts
    host, _, port = master.rpartition(":")
    client = _short_lived(host.strip("[]"), int(port), where.username, where.password, where.db)
    try:
        direct = await _master_facts(client, namespace, where.kind == "cluster")
    finally:
        await client.aclose()
    if not direct.ok:
        return facts
    direct.refused.insert(
        0, f"the store's own connection did not reach {master} ({reason(facts.error or Exception())}); "
        "it answered when asked directly",
    )  # fmt: skip
    return direct


def _epoch(facts: _Facts) -> dict[str, Any]:
    """The Topology fields of the token epoch."""
    if facts.epoch is None:
        return {}
    n = _int(facts.epoch.get("n")) or 0
    since = _int(facts.epoch.get("since_ms"))
    current = facts.epoch.get("run_id") == facts.run_id if n else None
    return {"epoch": n, "epoch_since_ms": since, "epoch_current": current}


def _replica_stats(facts: _Facts) -> dict[str, tuple[int | None, int | None, str]]:
    """The master's view of its replicas: address -> (offset, lag in s, state)."""
    found = {}
    for key, value in facts.replication.items():
        if key.startswith("slave") and isinstance(value, dict) and "ip" in value:
            found[address(value["ip"], value.get("port"))] = (
                _int(value.get("offset")),
                _int(value.get("lag")),
                str(value.get("state", "")),
            )
    return found


def _link(state: str) -> str:
    """A replica's link as its master reports it, in the sentinels' word when it is up."""
    return "ok" if state == "online" else state  # else: wait_bgsave, send_bulk...


def _problems(facts: _Facts, master: str) -> list[str]:
    said = list(facts.refused)
    if facts.error is not None:
        who = f"the master {master}" if master else "the master"
        said.insert(0, f"{who} does not answer ({reason(facts.error)})")
    return said


# --- one server ------------------------------------------------------------------------------


async def _single(r: Any, namespace: str) -> Topology:
    facts = await _master_facts(r, namespace, cluster=False)
    if facts.error is not None:
        raise facts.error
    kwargs = r.connection_pool.connection_kwargs
    here = str(kwargs.get("path") or address(kwargs.get("host", "localhost"), kwargs.get("port", 6379)))
    repl = facts.replication
    own_offset = _int(repl.get("master_repl_offset"))
    nodes = []
    problems = list(facts.refused)
    if repl.get("role") == "slave":  # the URL names a replica: the board is read-only there
        upstream = address(repl.get("master_host", "?"), repl.get("master_port", "?"))
        link = str(repl.get("master_link_status", ""))
        nodes.append(Node(MASTER, upstream, link == "up", note="the master of the server the URL names"))
        nodes.append(
            Node(REPLICA, here, True, link=link, offset=_int(repl.get("slave_repl_offset")),
                 master=upstream, serves_board=True)
        )  # fmt: skip
        problems.append(f"{here} is a replica of {upstream}: the board cannot be written there")
    else:
        nodes.append(Node(MASTER, here, True, offset=own_offset, serves_board=True))
        for where, (offset, lag, state) in sorted(_replica_stats(facts).items()):
            up = state == "online"
            nodes.append(Node(REPLICA, where, up, link=_link(state), offset=offset, lag_s=lag, master=here))
    return Topology("single", here, nodes=tuple(nodes), problems=tuple(problems), **_epoch(facts))


# --- Sentinel --------------------------------------------------------------------------------


@dataclass
class _SentinelView:
    """What one sentinel said about the service (``error`` when it did not answer)."""

    address: str
    names: str = ""  # the master it gives clients (GET-MASTER-ADDR-BY-NAME)
    master: dict[str, Any] | None = None  # SENTINEL MASTER: flags, quorum, config-epoch
    replicas: list[dict[str, Any]] = field(default_factory=list)
    sentinels: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    reached: bool = False  # it answered (even if only to say it does not know the service)


async def _ask_sentinel(host: str, port: int, where: Endpoint) -> _SentinelView:
    view = _SentinelView(address(host, port))
    client = _short_lived(host, port, "", where.sentinel_password)

    async def ask() -> list[Any]:
        pipe = client.pipeline(transaction=False)
        pipe.sentinel_get_master_addr_by_name(where.service)
        pipe.sentinel_master(where.service)
        pipe.sentinel_slaves(where.service)
        pipe.sentinel_sentinels(where.service)
        return list(await pipe.execute())

    try:
        named, view.master, view.replicas, view.sentinels = await _bounded(ask)
        view.names, view.reached = (address(*named) if named else ""), True
    except rexc.ResponseError as exc:
        view.error, view.reached = f"{where.service!r}: {exc}", True
    except _FAILED as exc:
        view.error = reason(exc)
    finally:
        await client.aclose()
    return view


def _flags(raw: object, drop: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f for f in str(raw or "").split(",") if f and f not in drop)


def _sentinel_replicas(best: _SentinelView, master: str, facts: _Facts) -> list[Node]:
    """The replicas the sentinels list and those the master reports: the master's word on
    whether one is connected wins (a sentinel looks every 10 s; the master knows now)."""
    stats = _replica_stats(facts)
    listed = {address(x["ip"], x["port"]): x for x in best.replicas}
    nodes = []
    for at in sorted(set(listed) | set(stats)):
        if at == master:  # the replica being promoted, listed until the sentinels switch
            continue
        x = listed.get(at, {})
        flags = _flags(x.get("flags"), ("slave",))
        host = str(x.get("master-host", "?"))
        upstream = "" if host == "?" else address(host, x.get("master-port", "?"))  # "?": not linked yet
        offset, lag, state = stats.get(at, (_int(x.get("slave-repl-offset")), None, ""))
        if at in stats:  # connected to the master now, whatever a sentinel saw before
            up, link, upstream = state == "online", _link(state), master
            flags = tuple(f for f in flags if f not in ("s_down", "o_down", "disconnected"))
        else:
            up = not any(f in flags for f in ("s_down", "o_down", "disconnected"))
            link = str(x.get("master-link-status", ""))
        nodes.append(Node(REPLICA, at, up, link, flags, offset, lag, master=upstream))
    return nodes


def _switched(v: _SentinelView) -> bool:
    """Whether the sentinel's own record of the master is the one it names (no failover half-done)."""
    return v.master is not None and address(v.master["ip"], v.master["port"]) == v.names


async def _sentinel(r: Any, where: Endpoint, namespace: str) -> Topology:
    asked = [address(h, p) for h, p in where.hosts]
    views_of, facts = await asyncio.gather(
        asyncio.gather(*(_ask_sentinel(h, p, where) for h, p in where.hosts)),
        _master_facts(r, namespace, cluster=False),
    )
    views = list(views_of)
    answered = [v for v in views if v.master is not None]
    if not answered and facts.error is not None:
        raise facts.error
    # The view of the newest configuration (a sentinel that missed a failover lags behind).
    best = max(
        answered, key=lambda v: (_switched(v), _int((v.master or {}).get("config-epoch")) or 0), default=None
    )
    peers = best.sentinels if best else []
    others = [s for s in peers if address(s["ip"], s["port"]) not in asked]
    if others:  # sentinels the URL does not list, found through the others: ask them too
        views += await asyncio.gather(*(_ask_sentinel(str(s["ip"]), int(s["port"]), where) for s in others))
    master = best.names if best else ""
    facts = await _facts_asking_directly(facts, master, where, namespace)
    nodes: list[Node] = []
    if best is not None and best.master is not None and master:
        m = best.master
        # Its flags are the master's only once the sentinel has switched to the one it names.
        same = address(m["ip"], m["port"]) == master
        flags = _flags(m.get("flags"), ("master", "master_down")) if same else ("failover",)
        if facts.ok:  # a sentinel's link to it may lag its switch; the store's own link is up
            flags = tuple(f for f in flags if f != "disconnected")
        offset = _int(facts.replication.get("master_repl_offset"))
        nodes.append(Node(MASTER, master, facts.ok, flags=flags, offset=offset, serves_board=True))
        nodes += _sentinel_replicas(best, master, facts)
    drop = ("sentinel", "master_down")  # master_down: its vote in the last failover, long over
    peer_flags = {address(s["ip"], s["port"]): _flags(s.get("flags"), drop) for s in peers}
    for v in views:
        link = "answers" if v.master is not None else ("unreachable" if not v.reached else "does not know it")
        flags = peer_flags.get(v.address, ())
        nodes.append(Node(SENTINEL, v.address, v.reached, link, flags, names_master=v.names, note=v.error))
    problems = _problems(facts, master)
    if not answered:
        problems.insert(0, "no sentinel answers: the master cannot be found after a failover")
    quorum = _int(best.master.get("quorum")) if best and best.master else None
    return Topology("sentinel", master, service=where.service, quorum=quorum, nodes=tuple(nodes),
                    problems=tuple(problems), **_epoch(facts))  # fmt: skip


# --- Cluster ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ClusterNode:
    id: str
    address: str
    flags: tuple[str, ...]
    master_id: str
    link: str
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return "fail" in self.flags or "fail?" in self.flags


_ROLE_FLAGS = ("myself", "master", "slave", "noflags")  # said by the role and the address already


def parse_nodes(text: str) -> list[_ClusterNode]:
    """CLUSTER NODES: ``id ip:port@bus[,hostname] flags master ping pong epoch link slot...``."""
    found = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        host, _, port = parts[1].split("@", 1)[0].rpartition(":")
        slots = []
        for item in parts[8:]:
            if item.startswith("["):  # a slot being migrated or imported
                continue
            lo, _, hi = item.partition("-")
            if lo.isdigit() and (hi or lo).isdigit():
                slots.append((int(lo), int(hi or lo)))
        flags = tuple(parts[2].split(","))
        master_id = "" if parts[3] == "-" else parts[3]
        found.append(_ClusterNode(parts[0], address(host, port), flags, master_id, parts[7], tuple(slots)))
    return found


def _cluster_info(text: str) -> dict[str, str]:
    return dict(line.strip().split(":", 1) for line in text.splitlines() if ":" in line)


async def _ask_seed(host: str, port: int, where: Endpoint) -> tuple[str, str] | None:
    client = _short_lived(host, port, where.username, where.password)

    async def ask() -> list[Any]:
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("CLUSTER", "NODES")
        pipe.execute_command("CLUSTER", "INFO")
        return list(await pipe.execute())

    try:
        nodes, info = await _bounded(ask)
        return str(nodes), str(info)
    except _FAILED:
        return None
    finally:
        await client.aclose()


async def _cluster(r: Any, where: Endpoint, namespace: str) -> Topology:
    slot = key_slot(C.events_key(namespace).encode())
    facts = await _master_facts(r, namespace, cluster=True)
    problems: list[str] = []
    nodes_text, info_text = facts.cluster_nodes, facts.cluster_info
    if not facts.ok or not nodes_text:
        # The board's master is gone (a failover under way) or refused: ask the seeds.
        seen = await asyncio.gather(*(_ask_seed(h, p, where) for h, p in where.hosts))
        got = next((s for s in seen if s is not None), None)
        if got is None:
            raise facts.error or rexc.ConnectionError("no node of the cluster answers CLUSTER NODES")
        nodes_text, info_text = got
    parsed = parse_nodes(nodes_text)
    by_id = {n.id: n for n in parsed}
    holders = [n for n in parsed if n.is_master and any(lo <= slot <= hi for lo, hi in n.slots)]
    board = next((n for n in holders if not n.failed), holders[0] if holders else None)
    master = board.address if board else ""
    if board is not None and not board.failed:
        facts = await _facts_asking_directly(facts, master, where, namespace)
    problems += _problems(facts, master)
    if board is None:
        problems.append(f"no master serves slot {slot}")
    lags = _replica_stats(facts) if facts.ok else {}
    masters = sorted((n for n in parsed if n.is_master), key=lambda n: (not n.slots, n.slots, n.address))
    nodes: list[Node] = []

    def node(n: _ClusterNode, role: str) -> Node:
        up = not n.failed and n.link == "connected"
        serves = n is board
        if serves and not facts.ok:
            up = False
        offset = _int(facts.replication.get("master_repl_offset")) if serves and facts.ok else None
        upstream = by_id.get(n.master_id)
        lag_offset, lag, _state = lags.get(n.address, (None, None, ""))
        return Node(
            role, n.address, up, link=n.link,
            flags=tuple("pfail" if f == "fail?" else f for f in n.flags if f not in _ROLE_FLAGS),
            offset=offset if role == MASTER else lag_offset, lag_s=lag, slots=n.slots,
            master=upstream.address if upstream else "", serves_board=serves, node_id=n.id,
        )  # fmt: skip

    placed = set()
    for m in masters:
        nodes.append(node(m, MASTER))
        placed.add(m.id)
        for x in sorted((x for x in parsed if x.master_id == m.id), key=lambda x: x.address):
            nodes.append(node(x, REPLICA))
            placed.add(x.id)
    nodes += [node(x, REPLICA) for x in parsed if x.id not in placed]
    info = _cluster_info(info_text)
    return Topology(
        "cluster", master, slot=slot, cluster_state=info.get("cluster_state", ""),
        slots_assigned=_int(info.get("cluster_slots_assigned")), slots_ok=_int(info.get("cluster_slots_ok")),
        nodes=tuple(nodes), problems=tuple(problems), **_epoch(facts),
    )  # fmt: skip


async def read(r: Any, where: Endpoint, namespace: str) -> Topology:
    """The topology of the store ``r`` (the store's client) reaches at ``where``."""
    if where.kind == "sentinel":
        return await _sentinel(r, where, namespace)
    if where.kind == "cluster":
        return await _cluster(r, where, namespace)
    return await _single(r, namespace)
