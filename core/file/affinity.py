"""Consistent-hash affinity in the file store: ``lua/lib.lua``'s ring, route, steal_due and
ring_reap in SQL (the why is in ``core/affinity.py``).

The ring is the ``ring`` table (one row per virtual node, ordered by point then member as a
Redis sorted set orders them); ``agents.ring`` says an agent is on it. A routed task keeps
``state = 'queued'`` with ``steal_ms > 0`` and its ``owner``: the partial index
``tasks_owned`` is its owner's index, ``tasks_steal`` the steal times, and ``tasks_ready``
(the claim index's source) holds only rows with ``steal_ms = 0``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import affinity
from .. import constants as C
from .tx import Row, Tx, split

# The owner index: one seek in tasks_owned (the WHERE terms repeat its predicate).
OWN = (
    "SELECT id, state, priority, seq, attempts, assigned, queue, requires, owner, steal_ms FROM tasks"
    " INDEXED BY tasks_owned WHERE ns = :ns AND owner = :a AND state = 'queued' AND assigned = ''"
    " AND steal_ms > 0 ORDER BY priority DESC, seq LIMIT :n"
)
STEAL_DUE = (
    "SELECT * FROM tasks INDEXED BY tasks_steal WHERE ns = :ns AND state = 'queued' AND assigned = ''"
    " AND steal_ms > 0 AND steal_ms <= :now ORDER BY steal_ms LIMIT :n"
)
NEXT_STEAL = (
    "SELECT MIN(steal_ms) FROM tasks INDEXED BY tasks_steal WHERE ns = :ns AND state = 'queued'"
    " AND assigned = '' AND steal_ms > 0"
)
ANY_STEAL_DUE = (
    "SELECT EXISTS (SELECT 1 FROM tasks INDEXED BY tasks_steal WHERE ns = :ns AND state = 'queued'"
    " AND assigned = '' AND steal_ms > 0 AND steal_ms <= :now)"
    " OR EXISTS (SELECT 1 FROM agents INDEXED BY agents_live WHERE ns = :ns AND ring = 1"
    " AND last_seen_ms <= :gone)"
)
_live_ms = int(C.affinity_live_s * 1000)


def due(tx: Tx) -> bool:
    """Whether steal_due or ring_reap has work: one cheap look on their indexes."""
    row = tx.one(ANY_STEAL_DUE, now=tx.now, gone=tx.now - _live_ms)
    return row is not None and bool(row[0])


def touch(tx: Tx, agent: str) -> None:
    """An agent just seen (its last_seen_ms already written): on the ring if not yet."""
    if tx.one("UPDATE agents SET ring = 1 WHERE ns = :ns AND name = :a AND ring = 0 RETURNING 1", a=agent):
        for p, m in affinity.members(agent):
            tx.run(
                "INSERT OR IGNORE INTO ring (ns, point, member, agent) VALUES (:ns, :p, :m, :a)",
                p=p,
                m=m,
                a=agent,
            )


def drop(tx: Tx, agent: str) -> None:
    tx.run("DELETE FROM ring WHERE ns = :ns AND agent = :a", a=agent)
    tx.run("UPDATE agents SET ring = 0 WHERE ns = :ns AND name = :a", a=agent)


def owner(tx: Tx, key: str, requires: str) -> str | None:
    """The first live agent clockwise from ``key`` that can take ``requires`` (bounded walk)."""
    rows = tx.all(
        "SELECT point, member FROM ring WHERE ns = :ns AND point >= :p ORDER BY point, member LIMIT :n",
        p=affinity.point(key),
        n=C.affinity_walk_max,
    )
    if len(rows) < C.affinity_walk_max:
        rows += tx.all(
            "SELECT point, member FROM ring WHERE ns = :ns ORDER BY point, member LIMIT :n",
            n=C.affinity_walk_max - len(rows),
        )

    def usable(agent: str) -> bool:
        a = tx.one("SELECT caps, last_seen_ms FROM agents WHERE ns = :ns AND name = :a", a=agent)
        return (
            a is not None
            and a["last_seen_ms"] > tx.now - _live_ms
            and affinity.can_take(split(a["caps"]), requires)
        )

    return affinity.first_usable((str(r["member"]) for r in rows), usable)


def route(tx: Tx, t: Row, steal: int | None = None) -> dict[str, Any]:
    """The owner and steal time of a task entering queued, unassigned (fields for its UPDATE):
    {} for a task without an affinity key; steal_ms 0 when it goes to its ready set."""
    key, after, requires = _fields(tx, t, "affinity", "steal_after_ms", "requires")
    if not key:
        return {}
    delay = int(C.affinity_steal_delay_s * 1000) if after < 0 else after
    found = owner(tx, key, requires) if delay > 0 else None
    if found is None:
        return {"owner": "", "steal_ms": 0}
    tx.claimable = True  # the owner's waiting claims
    return {"owner": found, "steal_ms": steal or tx.now + delay}


def waits_for_owner(tx: Tx, t: Row) -> bool:
    """Whether a queued, unassigned task waits in its owner's index, not its ready set."""
    return bool(_fields(tx, t, "steal_ms")[0] > 0)


def _fields(tx: Tx, t: Row, *names: str) -> list[Any]:
    # The claim's rows carry only some columns (states.PICK): read what they lack.
    have = t.keys()
    if all(n in have for n in names):
        return [t[n] for n in names]
    row = tx.one(f"SELECT {', '.join(names)} FROM tasks WHERE ns = :ns AND id = :id", id=t["id"])
    assert row is not None
    return [row[n] for n in names]


Ready = Callable[[Tx, str, str, int, int], None]  # states.ready_entered


def steal_due(tx: Tx, ready: Ready) -> None:
    """Tasks whose owner did not claim them within their steal delay become anyone's."""
    for t in tx.all(STEAL_DUE, now=tx.now, n=C.reap_batch):
        tx.run("UPDATE tasks SET steal_ms = 0 WHERE ns = :ns AND id = :id", id=t["id"])
        ready(tx, t["queue"], t["requires"], t["priority"], t["seq"])


def ring_reap(tx: Tx, ready: Ready) -> list[str]:
    """Agents not seen within the live window leave the ring (bounded, as lib.lua's); some of
    each one's waiting tasks go to their keys' new owners, keeping their steal time."""
    gone = [
        str(r[0])
        for r in tx.all(
            "SELECT name FROM agents INDEXED BY agents_live WHERE ns = :ns AND ring = 1"
            " AND last_seen_ms <= :gone ORDER BY last_seen_ms LIMIT :n",
            gone=tx.now - _live_ms,
            n=C.affinity_leave_batch,
        )
    ]
    for agent in gone:
        drop(tx, agent)
        rows = tx.all(
            OWN.replace("SELECT id,", "SELECT affinity, steal_after_ms, id,"),
            a=agent,
            n=C.affinity_move_batch,
        )
        for t in rows:
            more = route(tx, t, steal=t["steal_ms"])
            tx.run(
                "UPDATE tasks SET owner = :o, steal_ms = :s WHERE ns = :ns AND id = :id",
                o=more.get("owner", ""),
                s=more.get("steal_ms", 0),
                id=t["id"],
            )
            if not more.get("steal_ms"):
                ready(tx, t["queue"], t["requires"], t["priority"], t["seq"])
    return gone


def own_head(tx: Tx, agent: str, caps: set[str], queues: list[str]) -> Row | None:
    """The best task waiting for ``agent`` as its owner in a chosen, open queue that it can
    take: the first of at most ``affinity_scan_max`` (lib.lua's claim does the same)."""
    for t in tx.all(OWN, a=agent, n=C.affinity_scan_max):
        if queues and t["queue"] not in queues:
            continue
        if tx.one("SELECT 1 FROM paused WHERE ns = :ns AND queue = :q", q=t["queue"]) is not None:
            continue
        if affinity.can_take(caps, t["requires"]):
            return t
    return None


def next_steal(tx: Tx) -> int | None:
    row = tx.one(NEXT_STEAL)
    return None if row is None or row[0] is None else int(row[0])


def owned(tx: Tx) -> dict[str, int]:
    """How many tasks wait for each agent as their owner (through tasks_owned)."""
    rows = tx.all(
        "SELECT owner, COUNT(*) FROM tasks INDEXED BY tasks_owned WHERE ns = :ns AND state = 'queued'"
        " AND assigned = '' AND steal_ms > 0 GROUP BY owner"
    )
    return {str(r[0]): int(r[1]) for r in rows}
