"""``doctor``'s look at the topology: which servers hold the board, and whether a failover can save it.

For a Sentinel or Cluster URL: the master answers; its replicas are connected (none: a
failover has nothing to promote, and the board goes with the master); enough sentinels
answer to agree on a failover, and they name one master; the cluster's state is ok with
every slot served. For one server it only names it.
"""

from __future__ import annotations

import asyncio

from .. import constants as C
from ..errors import ClaimroomError
from ..store import Store
from ..topology import SENTINEL, Node, Topology, epoch_text, slot_ranges
from .checks import FAIL, OK, WARN, Check


def _read(url: str, namespace: str) -> Topology:
    async def read() -> Topology:
        async with Store.from_url(url, namespace) as store:
            return await store.topology()

    return asyncio.run(read())


def topology_checks(url: str, namespace: str) -> list[Check]:
    """The topology of the store at ``url`` (read as board ``namespace`` sees it), checked."""
    try:
        t = _read(url, namespace)
    except ClaimroomError as exc:
        return [Check("topology", FAIL, f"could not read the topology: {exc}")]
    return checks_of(t)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _names(nodes: list[Node]) -> str:
    return ", ".join(n.address for n in nodes)


def checks_of(t: Topology) -> list[Check]:
    """What ``doctor`` says about a topology already read."""
    if t.kind == "file":
        return []
    replicas = t.board_replicas()
    if t.kind == "single":
        said = f"one Redis server at {t.master}, {_count(len(replicas), 'replica')}"
        return [Check("topology", OK, said)]
    if t.kind == "sentinel":
        sentinels = t.of_role(SENTINEL)
        said = (
            f"Redis Sentinel, master name {t.service!r}: master {t.master or 'unknown'}, "
            f"{_count(len(replicas), 'replica')}, {_count(len(sentinels), 'sentinel')}"
        )
    else:
        masters = [n for n in t.nodes if n.role == "master" and n.slots]
        said = (
            f"Redis Cluster: {_count(len(masters), 'master')}, "
            f"{_count(len(t.nodes) - len(masters), 'other node')}; this board is slot {t.slot} "
            f"on {t.master or 'no master'}"
        )
    checks = [Check("topology", OK, said), _master(t), _replicas(t)]
    checks.append(_sentinels(t) if t.kind == "sentinel" else _cluster(t))
    board = t.board_node()
    if board is not None and board.up:  # else the master check said it; the rest are refusals
        checks += [Check("topology", WARN, p, "check the server's ACLs") for p in t.problems]
    return checks


def _master(t: Topology) -> Check:
    board = t.board_node()
    if board is not None and board.up:
        return Check("master", OK, f"{board.address} serves the board; {epoch_text(t)}")
    said = f"the board's master {t.master} does not answer" if t.master else "no master serves the board"
    said = next((p for p in t.problems if "does not answer" in p), said)
    if t.kind == "sentinel":
        fix = "the sentinels fail over to a replica once they agree it is down; else start it again"
    else:
        fix = "the cluster fails over to a replica after cluster-node-timeout; else start it again"
    return Check("master", FAIL, said, fix)


def _replicas(t: Topology) -> Check:
    replicas = t.board_replicas()
    linked = [r for r in replicas if r.up]
    down = [r for r in replicas if not r.up]
    if not linked:
        return Check(
            "replicas",
            WARN,
            f"no replica of {t.master or 'the master'} is connected: if it fails, there is nothing to "
            "promote and the board is lost with it",
            "start a replica of the master (replicaof HOST PORT), better two",
        )
    lags = [r.lag_s for r in linked if r.lag_s is not None]
    lag = f", lag {min(lags)}-{max(lags)} s" if lags and min(lags) != max(lags) else ""
    lag = lag or (f", lag {lags[0]} s" if lags else "")
    said = f"{len(linked)} of {len(replicas)} replicas of {t.master} connected{lag}"
    if down:
        return Check("replicas", WARN, f"{said}; down: {_names(down)}", f"bring {_names(down)} back")
    if t.kind == "cluster":  # a master of another slot range without a replica stops the whole cluster
        bare = [
            m
            for m in t.nodes
            if m.role == "master" and m.slots and not any(r.up and r.master == m.address for r in t.nodes)
        ]
        if bare:
            which = "; ".join(f"{m.address} (slots {slot_ranges(m.slots)})" for m in bare)
            return Check(
                "replicas",
                WARN,
                f"{said}; but no replica serves {which}: if it fails, the cluster stops (every board)",
                "add a replica to each master (redis-cli --cluster add-node --cluster-slave)",
            )
    return Check("replicas", OK, said)


def _sentinels(t: Topology) -> Check:
    sentinels = t.of_role(SENTINEL)
    answering = [s for s in sentinels if s.up and s.names_master]
    silent = [s for s in sentinels if s not in answering]
    # A failover needs the quorum to see the master down and a majority to authorize it.
    needed = max(t.quorum or 1, len(sentinels) // 2 + 1)
    said = f"{len(answering)} of {len(sentinels)} sentinels answer"
    said += f" (quorum {t.quorum}; a failover needs {needed})"
    if silent:
        said += f"; no answer from {_names(silent)}"
    if len(answering) < needed:
        return Check(
            "sentinels",
            WARN,
            f"{said}: a failover cannot be agreed, so losing the master loses the board",
            f"start the sentinels that do not answer ({_names(silent)})",
        )
    named = sorted({s.names_master for s in answering})
    if len(named) > 1:
        who = "; ".join(f"{_names([s for s in answering if s.names_master == m])} name {m}" for m in named)
        return Check(
            "sentinels",
            WARN,
            f"the sentinels disagree on the master: {who}",
            "a failover may be under way: look again in a moment; if it lasts, check each sentinel's config",
        )
    return Check("sentinels", WARN if silent else OK, f"{said}; all name {named[0]}",
                 f"start {_names(silent)}" if silent else "")  # fmt: skip


def _cluster(t: Topology) -> Check:
    total = C.cluster_slots
    ok = t.cluster_state == "ok" and t.slots_ok == total and t.slots_assigned == total
    said = f"cluster_state {t.cluster_state or '?'}, {t.slots_ok}/{total} slots served"
    if t.slots_assigned is not None and t.slots_assigned != total:
        said += f", {t.slots_assigned} assigned"
    if ok:
        return Check("cluster", OK, said)
    return Check(
        "cluster",
        FAIL,
        f"{said}: boards on the missing slots cannot be used",
        "start the failed masters again, or let their replicas take over; "
        "redis-cli --cluster check HOST:PORT names the slots",
    )
