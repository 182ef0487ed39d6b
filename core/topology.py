"""Where a board is served: the store's topology as ``Store.topology`` reads it.

One server, a Sentinel-watched master, or one slot of a Redis Cluster (``redis/topology.py``
reads them); the file store has none. The same dataclass feeds ``claimroom topology``, the
control room's store pane and ``doctor``. Addresses are ``host:port`` as the servers report
them; times are on the store's clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from . import constants as C

MASTER, REPLICA, SENTINEL = "master", "replica", "sentinel"
KINDS = ("single", "sentinel", "cluster", "file")


@dataclass(frozen=True)
class Node:
    """One server of the topology, as the read found it.

    ``up``: it answers (a sentinel asked directly, the board's master) or nobody reports it
    down (replicas, other cluster nodes). ``link``: a replica's link to its master ("ok",
    "err", or its master's word while it syncs: "wait_bgsave"...), a cluster node's bus link
    ("connected", "disconnected"), a sentinel's answer ("answers", "unreachable", "does not
    know it"). ``flags``: what the servers flag it with (s_down, o_down, disconnected, fail,
    pfail...). ``offset``: replication offset (a
    master's own, a replica's as reported); ``lag_s``: seconds since a replica's last
    acknowledgement, as its master reports it. ``slots``: a cluster master's slot ranges
    (inclusive). ``master``: a replica's master. ``names_master``: the master a sentinel
    names. ``note``: why a node could not be asked, in one line.
    """

    role: str
    address: str
    up: bool
    link: str = ""
    flags: tuple[str, ...] = ()
    offset: int | None = None
    lag_s: int | None = None
    slots: tuple[tuple[int, int], ...] = ()
    master: str = ""
    serves_board: bool = False
    names_master: str = ""
    node_id: str = ""
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "address": self.address,
            "up": self.up,
            "link": self.link,
            "flags": list(self.flags),
            "offset": self.offset,
            "lag_s": self.lag_s,
            "slots": [list(r) for r in self.slots],
            "master": self.master,
            "serves_board": self.serves_board,
            "names_master": self.names_master,
            "node_id": self.node_id,
            "note": self.note,
        }

    def shape(self) -> tuple[Any, ...]:
        """What a watcher reprints on: all but the offsets and lags, which move all the time."""
        return (self.role, self.address, self.up, self.link, self.flags, self.slots, self.master,
                self.serves_board, self.names_master, self.note)  # fmt: skip


@dataclass(frozen=True)
class Topology:
    """The store's servers and which one serves the board.

    ``kind``: "single", "sentinel", "cluster" or "file" (no nodes). ``master``: the address
    serving the board ("" when unknown). ``service``: the master's name the sentinels
    watch. ``slot``: the board's Cluster slot (its hash tag's). ``epoch``: the token epoch
    (``constants.epoch_key``): 0 before the first claim, None when the master could not be
    read; ``epoch_current``: whether it began with the process serving now (False: the next
    claim begins epoch + 1). ``quorum``: the sentinels' quorum. ``cluster_state``,
    ``slots_assigned``, ``slots_ok``: CLUSTER INFO's. ``problems``: what could not be read,
    one line each (the nodes say which are down).
    """

    kind: str
    master: str = ""
    service: str = ""
    slot: int | None = None
    epoch: int | None = None
    epoch_since_ms: int | None = None
    epoch_current: bool | None = None
    quorum: int | None = None
    cluster_state: str = ""
    slots_assigned: int | None = None
    slots_ok: int | None = None
    nodes: tuple[Node, ...] = ()
    problems: tuple[str, ...] = field(default=())

    def of_role(self, role: str) -> list[Node]:
        return [n for n in self.nodes if n.role == role]

    def board_node(self) -> Node | None:
        """The node serving the board, when one was found."""
        return next((n for n in self.nodes if n.serves_board), None)

    def board_replicas(self) -> list[Node]:
        """The replicas of the board's master."""
        return [n for n in self.of_role(REPLICA) if n.master == self.master]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "master": self.master,
            "service": self.service,
            "slot": self.slot,
            "epoch": self.epoch,
            "epoch_since_ms": self.epoch_since_ms,
            "epoch_current": self.epoch_current,
            "quorum": self.quorum,
            "cluster_state": self.cluster_state,
            "slots_assigned": self.slots_assigned,
            "slots_ok": self.slots_ok,
            "nodes": [n.to_json() for n in self.nodes],
            "problems": list(self.problems),
        }

    def shape(self) -> tuple[Any, ...]:
        """What a watcher compares to decide whether to show it again."""
        return (self.kind, self.master, self.service, self.slot, self.epoch, self.epoch_since_ms,
                self.epoch_current, self.quorum, self.cluster_state, self.slots_assigned,
                self.slots_ok, tuple(n.shape() for n in self.nodes), self.problems)  # fmt: skip


# --- the words people read (the CLI and doctor; the control room draws its own) ---------------


def slot_ranges(slots: tuple[tuple[int, int], ...]) -> str:
    return ",".join(f"{lo}-{hi}" if hi != lo else str(lo) for lo, hi in slots)


def when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def epoch_text(t: Topology) -> str:
    """The token epoch in a few words."""
    if t.epoch is None:
        return "token epoch unknown (the master was not read)"
    if t.epoch == 0:
        return "no token epoch yet (no claim so far)"
    said = f"token epoch {t.epoch}"
    if t.epoch_since_ms:
        said += f" since {when(t.epoch_since_ms)}"
    if t.epoch_current is False:
        said += f" (begun by an earlier process: the next claim begins epoch {t.epoch + 1})"
    return said


def headline(t: Topology) -> str:
    """The first line: the kind, the board's master, the epoch."""
    if t.kind == "file":
        return "file store: one machine, no replicas, no failover"
    master = t.master or "unknown"
    if t.kind == "sentinel":
        quorum = f", quorum {t.quorum}" if t.quorum is not None else ""
        head = f"sentinel {t.service}: master {master}{quorum}"
    elif t.kind == "cluster":
        slots = ""
        if t.slots_ok is not None:
            slots = f", {t.slots_ok}/{C.cluster_slots} slots ok"
        head = f"cluster: master {master} (this board: slot {t.slot}), state {t.cluster_state or '?'}{slots}"
    else:
        head = f"single: master {master}"
    return f"{head}; {epoch_text(t)}"


def node_text(n: Node, t: Topology) -> str:
    """One node on one line: role, address, state, then what else is known."""
    state = "up" if n.up else "DOWN"
    parts = [f"{n.role:<8} {n.address:<21} {state:<4}"]
    if n.slots:
        parts.append(f"slots {slot_ranges(n.slots)}")
    if n.role == REPLICA:
        if n.master and (t.kind == "cluster" or n.master != t.master):
            parts.append(f"of {n.master}")
        if n.link:
            parts.append(f"link {n.link}")
        if n.lag_s is not None:
            parts.append(f"lag {n.lag_s}s")
    if n.offset is not None:
        parts.append(f"offset {n.offset}")
    if n.role == SENTINEL:
        if n.link and n.link != "answers":
            parts.append(n.link)
        if n.names_master:
            parts.append(f"names {n.names_master}")
    if n.flags:
        parts.append(",".join(n.flags))
    if n.note:
        parts.append(f"({n.note})")
    if n.serves_board:
        parts.append(f"(this board: slot {t.slot})" if t.slot is not None else "(this board)")
    return "  ".join(parts)


def lines(t: Topology) -> list[str]:
    """The whole topology for people: the headline, one line per node, then any problem."""
    return [headline(t), *(node_text(n, t) for n in t.nodes), *(f"problem: {p}" for p in t.problems)]
