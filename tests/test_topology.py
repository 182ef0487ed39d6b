"""``Store.topology`` on real topologies: one server (with a replica), Redis Sentinel, Redis
Cluster, and a failover followed by the same Store object, no restart.

What the read names is checked against the servers themselves (ROLE, CLUSTER KEYSLOT, the
topology's own processes), never against the read alone. The shared topologies
(``sentinel_topology``, ``cluster_topology``) are only read; a test that kills a master
starts its own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis
from conftest import TOPOLOGY_PASSWORD
from waiting import until

from claimroom.core import constants as C
from claimroom.core.errors import StoreUnavailable
from claimroom.core.infra.topology_checks import checks_of
from claimroom.core.local_redis import LocalRedis, free_port
from claimroom.core.local_topology import LocalCluster, LocalSentinel
from claimroom.core.store import Store
from claimroom.core.topology import MASTER, REPLICA, SENTINEL, Node, Topology, lines

pytestmark = pytest.mark.heavy


def client(port: int, password: str = "") -> redis.Redis:
    return redis.Redis(port=port, password=password or None, decode_responses=True, socket_timeout=2)


def addresses(nodes: list[Node]) -> set[str]:
    return {n.address for n in nodes}


async def claimed_token(store: Store) -> int:
    await store.add("work")
    got = await store.claim("agent-" + uuid.uuid4().hex[:8])
    assert got is not None
    return got.token


@pytest.fixture
def ns() -> str:
    return "topo" + uuid.uuid4().hex[:10]


@pytest.fixture
async def sentinel_store(sentinel_topology: LocalSentinel, ns: str) -> AsyncIterator[Store]:
    async with Store.from_url(sentinel_topology.url, ns) as store:
        yield store


@pytest.fixture
def own_sentinel(tmp_path: Path) -> Iterator[LocalSentinel]:
    with LocalSentinel.start(tmp_path / "sentinel", password=TOPOLOGY_PASSWORD) as topo:
        yield topo


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster.start(tmp_path / "cluster", password=TOPOLOGY_PASSWORD) as topo:
        yield topo


# --- one server ------------------------------------------------------------------------------


async def test_one_server_names_itself_and_its_replica(ns: str, tmp_path: Path) -> None:
    main, replica = LocalRedis.start(tmp_path / "main"), LocalRedis.start(tmp_path / "replica")
    try:
        with client(main.port) as r:
            r.config_set("repl-diskless-sync-delay", 0)  # the replica's first sync at once (default 5 s)
        here, there = f"127.0.0.1:{main.port}", f"127.0.0.1:{replica.port}"
        async with Store.from_url(main.url, ns) as store:
            before = await store.topology()
            assert (before.kind, before.master, before.slot, before.epoch) == ("single", here, None, 0)
            assert before.nodes == (before.board_node(),) and before.nodes[0].role == MASTER
            token = await claimed_token(store)
            with client(replica.port) as r:
                r.execute_command("REPLICAOF", "127.0.0.1", main.port)

            async def linked() -> Topology | None:
                t = await store.topology()
                return t if any(n.address == there and n.up for n in t.board_replicas()) else None

            t = await until(linked, "the replica listed as connected")
            assert [n.role for n in t.nodes if n.address == there] == [REPLICA]
            assert (t.board_replicas()[0].master, t.board_replicas()[0].link) == (here, "ok")
            assert (t.epoch, t.epoch_current) == (1, True) and t.epoch_since_ms
            assert token >= (t.epoch_since_ms - C.epoch_base_ms) * C.epoch_tokens_per_ms  # the epoch's floor
    finally:
        replica.stop()
        main.stop()


async def test_a_server_that_does_not_answer_is_store_unavailable(ns: str) -> None:
    async with Store.from_url(f"redis://127.0.0.1:{free_port()}/0", ns) as store:
        with pytest.raises(StoreUnavailable):
            await store.topology()


async def test_the_file_store_has_no_nodes(tmp_path: Path, ns: str) -> None:
    async with Store.from_url(tmp_path.as_uri(), ns) as store:
        t = await store.topology()
    assert (t.kind, t.nodes, t.master) == ("file", (), "")
    assert lines(t) == ["file store: one machine, no replicas, no failover"]
    assert checks_of(t) == []


# --- Sentinel ---------------------------------------------------------------------------------


async def test_sentinel_names_the_master_its_replicas_and_the_sentinels(
    sentinel_topology: LocalSentinel, sentinel_store: Store
) -> None:
    await claimed_token(sentinel_store)
    t = await sentinel_store.topology()
    master = sentinel_topology.master()
    assert (t.kind, t.service, t.master, t.quorum) == ("sentinel", "claimroom", master.address, 2)
    with client(master.port, TOPOLOGY_PASSWORD) as r:
        assert r.execute_command("ROLE")[0] == "master"
    assert t.board_node() is not None and t.board_node().address == master.address  # type: ignore[union-attr]
    others = [n for n in sentinel_topology.nodes if n is not master]
    assert addresses(t.board_replicas()) == addresses(others)  # type: ignore[arg-type]
    assert all(n.up for n in t.board_replicas())
    sentinels = t.of_role(SENTINEL)
    assert addresses(sentinels) == {s.address for s in sentinel_topology.sentinels}
    assert all(s.up and s.names_master == master.address for s in sentinels)
    assert t.epoch is not None and t.epoch >= 1 and t.epoch_current is True
    first = lines(t)[0]
    assert first.startswith(f"sentinel claimroom: master {master.address}, quorum 2; token epoch {t.epoch}")


async def test_a_sentinel_that_does_not_answer_shows_as_such(
    sentinel_topology: LocalSentinel, ns: str
) -> None:
    # One more sentinel address in the URL, where nothing listens.
    dead = f"127.0.0.1:{free_port()}"
    url = sentinel_topology.url.replace("@", f"@{dead},", 1)
    async with Store.from_url(url, ns) as store:
        t = await store.topology()
    silent = [s for s in t.of_role(SENTINEL) if s.address == dead]
    assert len(silent) == 1 and not silent[0].up and silent[0].link == "unreachable" and silent[0].note
    assert t.master == sentinel_topology.master().address  # the others still answer


def waited(url: str, replicas: int) -> str:
    """``url`` with WAIT for ``replicas``: what was written before a kill is on the replica
    promoted (replication is asynchronous; without it the board may be gone after)."""
    return url + ("&" if "?" in url else "?") + f"wait={replicas}&wait_ms=1000"


async def test_sentinel_failover_is_followed_by_the_same_store(own_sentinel: LocalSentinel, ns: str) -> None:
    async with Store.from_url(waited(own_sentinel.url, 2), ns) as store:
        old_token = await claimed_token(store)
        before = await store.topology()
        old = own_sentinel.master()
        assert before.master == old.address and before.epoch == 1
        own_sentinel.kill_master()
        try:  # while the master is gone: bounded, and never anything but StoreUnavailable
            during = await store.topology()
            assert during.board_node() is None or not during.board_node().up  # type: ignore[union-attr]
        except StoreUnavailable:
            pass
        new = own_sentinel.wait_failover(old.port)
        assert new.address != old.address

        async def moved() -> Topology | None:
            try:
                t = await store.topology()
            except StoreUnavailable:
                return None
            return t if t.master == new.address and t.board_node() and t.board_node().up else None  # type: ignore[union-attr]

        after = await until(moved, "the new master named", C.topology_failover_timeout_s)
        assert after.epoch == 1 and after.epoch_current is False  # no claim on the new master yet
        assert old.address not in addresses([n for n in after.board_replicas() if n.up])
        new_token = await until(lambda: _claim_or_none(store), "a claim on the new master", 20)
        assert new_token > old_token
        later = await store.topology()
        assert (later.master, later.epoch, later.epoch_current) == (new.address, 2, True)


async def _claim_or_none(store: Store) -> int | None:
    try:
        return await claimed_token(store)
    except StoreUnavailable:
        return None


# --- Cluster ----------------------------------------------------------------------------------


async def test_cluster_names_the_boards_slot_and_every_masters_slots(
    cluster_topology: LocalCluster, ns: str
) -> None:
    shards = cluster_topology.masters()
    want_slots = {f"127.0.0.1:{s.port}": s.slots for s in shards}
    want_replicas = {f"127.0.0.1:{s.port}": {f"127.0.0.1:{p}" for p in s.replicas} for s in shards}

    def agrees(t: Topology) -> bool:
        """The board's master knows what the cluster's first node knows: a node learns by
        gossip that another has become a replica, so a young cluster's views differ a while."""
        slots = {n.address: n.slots for n in t.of_role(MASTER) if n.slots}
        replicas = {m: {n.address for n in t.of_role(REPLICA) if n.master == m} for m in want_replicas}
        return (
            slots == want_slots
            and replicas == want_replicas
            and not [n for n in t.of_role(MASTER) if not n.slots and n.up]
        )

    async with Store.from_url(cluster_topology.url, ns) as store:
        await claimed_token(store)
        t = await until(lambda: _agreeing(store, agrees), "the board's master seeing the whole cluster")
    with client(shards[0].port, TOPOLOGY_PASSWORD) as r:
        slot = int(r.execute_command("CLUSTER", "KEYSLOT", C.events_key(ns)))
    owner = next(s for s in shards if any(lo <= slot <= hi for lo, hi in s.slots))
    assert (t.kind, t.slot, t.master) == ("cluster", slot, f"127.0.0.1:{owner.port}")
    assert (t.cluster_state, t.slots_assigned, t.slots_ok) == ("ok", C.cluster_slots, C.cluster_slots)
    assert [n.address for n in t.nodes if n.serves_board] == [t.master]
    assert t.epoch is not None and t.epoch >= 1 and t.epoch_current is True
    board_line = next(line for line in lines(t) if line.startswith(f"master   {t.master} "))
    assert board_line.endswith(f"(this board: slot {slot})") and "slots " in board_line


async def _agreeing(store: Store, check: Callable[[Topology], bool]) -> Topology | None:
    t = await store.topology()
    return t if check(t) else None


async def test_cluster_failover_is_followed_by_the_same_store(own_cluster: LocalCluster, ns: str) -> None:
    async with Store.from_url(waited(own_cluster.url, 1), ns) as store:
        old_token = await claimed_token(store)
        # A young cluster's master may not know its replica yet (gossip): wait until it does.
        before = await until(
            lambda: _agreeing(store, lambda t: any(n.up for n in t.board_replicas())), "the master's replica"
        )
        old_port = int(before.master.rsplit(":", 1)[1])
        replicas = {n.address for n in before.board_replicas()}
        own_cluster.kill_master(old_port)
        try:  # the seeds still answer: the old master shows as down
            during = await store.topology()
            assert during.master == before.master and not during.board_node().up  # type: ignore[union-attr]
        except StoreUnavailable:
            pass
        new = own_cluster.wait_failover(old_port)
        assert new.address in replicas

        async def moved() -> Topology | None:
            try:
                t = await store.topology()
            except StoreUnavailable:
                return None
            return t if t.master == new.address and t.board_node() and t.board_node().up else None  # type: ignore[union-attr]

        after = await until(moved, "the new master named", C.topology_failover_timeout_s)
        assert after.slot == before.slot and after.epoch_current is False
        gone = [n for n in after.nodes if n.address == before.master]
        assert len(gone) == 1 and not gone[0].up and "fail" in gone[0].flags
        new_token = await until(lambda: _claim_or_none(store), "a claim on the new master", 20)
        assert new_token > old_token
        later = await store.topology()
        assert (later.master, later.epoch, later.epoch_current) == (new.address, 2, True)


# --- doctor's reading of a topology (the same read; the checks are pure) ----------------------


def test_doctor_checks_of_a_sentinel_topology(sentinel_topology: LocalSentinel, ns: str) -> None:
    from claimroom.core.infra.topology_checks import topology_checks

    found = {c.name: c for c in topology_checks(sentinel_topology.url, ns)}
    master = sentinel_topology.master().address
    assert found["topology"].status == "ok" and "Redis Sentinel" in found["topology"].detail
    assert found["master"].status == "ok" and master in found["master"].detail
    assert found["replicas"].status == "ok" and "2 of 2 replicas" in found["replicas"].detail
    assert found["sentinels"].status == "ok" and "3 of 3 sentinels answer" in found["sentinels"].detail


def test_doctor_warns_without_replicas_and_without_enough_sentinels(tmp_path: Path, ns: str) -> None:
    from claimroom.core.infra.topology_checks import topology_checks

    with LocalSentinel.start(tmp_path / "bare", password=TOPOLOGY_PASSWORD, replicas=0) as topo:
        found = {c.name: c for c in topology_checks(topo.url, ns)}
        assert found["replicas"].status == "warn" and "no replica" in found["replicas"].detail
        assert found["sentinels"].status == "ok"
        for s in topo.sentinels[:2]:
            topo.kill(s)
        found = {c.name: c for c in topology_checks(topo.url, ns)}
    assert found["sentinels"].status == "warn"
    assert "1 of 3 sentinels answer" in found["sentinels"].detail and found["sentinels"].fix
    assert found["master"].status == "ok"  # the store still reaches it through the live sentinel


def test_doctor_fails_a_cluster_with_slots_unserved() -> None:
    half = C.cluster_slots // 2
    t = Topology(
        "cluster", "127.0.0.1:7001", slot=12, epoch=1, cluster_state="fail",
        slots_assigned=C.cluster_slots, slots_ok=half,
        nodes=(Node(MASTER, "127.0.0.1:7001", True, slots=((0, half - 1),), serves_board=True),
               Node(MASTER, "127.0.0.1:7002", False, flags=("fail",), slots=((half, C.cluster_slots - 1),)),
               Node(REPLICA, "127.0.0.1:7003", True, master="127.0.0.1:7001")),
    )  # fmt: skip
    found = {c.name: c for c in checks_of(t)}
    assert found["cluster"].status == "fail" and f"{half}/{C.cluster_slots} slots" in found["cluster"].detail
    assert found["master"].status == "ok"
    assert found["replicas"].status == "warn" and "127.0.0.1:7002" in found["replicas"].detail


def test_doctor_warns_when_the_sentinels_disagree() -> None:
    t = Topology(
        "sentinel", "127.0.0.1:7001", service="s", quorum=2, epoch=1,
        nodes=(Node(MASTER, "127.0.0.1:7001", True, serves_board=True),
               Node(REPLICA, "127.0.0.1:7002", True, master="127.0.0.1:7001"),
               *(Node(SENTINEL, f"127.0.0.1:2637{i}", True, names_master=m)
                 for i, m in enumerate(["127.0.0.1:7001", "127.0.0.1:7001", "127.0.0.1:7002"]))),
    )  # fmt: skip
    found = {c.name: c for c in checks_of(t)}
    assert found["sentinels"].status == "warn" and "disagree" in found["sentinels"].detail


async def test_no_sentinel_answering_is_store_unavailable(ns: str) -> None:
    url = f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{free_port()}/claimroom"
    async with Store.from_url(url, ns) as store:
        with pytest.raises(StoreUnavailable):
            await store.topology()


def test_doctor_fails_a_master_that_does_not_answer() -> None:
    master = "127.0.0.1:7001"
    gone = f"the master {master} does not answer (ConnectionError: refused)"
    t = Topology(
        "sentinel", master, service="s", quorum=2, problems=(gone,),
        nodes=(Node(MASTER, "127.0.0.1:7001", False, flags=("s_down",), serves_board=True),
               Node(REPLICA, "127.0.0.1:7002", True, master="127.0.0.1:7001"),
               *(Node(SENTINEL, f"127.0.0.1:2637{i}", True, names_master=master) for i in range(3))),
    )  # fmt: skip
    found = {c.name: c for c in checks_of(t)}
    assert (found["master"].status, found["master"].detail) == ("fail", gone)
    assert "fail over" in found["master"].fix
    assert found["sentinels"].status == "ok" and [c.name for c in checks_of(t)].count("topology") == 1
