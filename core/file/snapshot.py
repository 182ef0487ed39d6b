"""What the file store gives views: the board snapshot and the database's facts
(``Store.snapshot``, ``server_facts``).

A snapshot is one read transaction: the counts per state and per queue are ``GROUP BY``
queries over the state and ready indexes (exact, and without building a row per task),
and each table reads only its ``rows`` most urgent rows through an index in that order.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from .. import constants as C
from ..bidding import Auction
from ..models import Agent, Lock, ServerInfo, State
from ..snapshot import PlanTree, Snapshot, by_review_time, queue_rows
from . import affinity as file_affinity
from . import bidding as file_bidding
from . import servers as file_servers
from .admin import locks_of
from .schema import AGENT_COLUMNS, event_of, task_of
from .tx import Tx


def _by(tx: Tx, sql: str, **params: object) -> dict[str, int]:
    return {str(r[0]): int(r[1]) for r in tx.all(sql, **params)}


def _marks(prefix: str, values: list[str]) -> tuple[str, dict[str, str]]:
    """``:p0, :p1, ...`` for an IN list, and their bindings."""
    named = {f"{prefix}{k}": v for k, v in enumerate(values)}
    return ", ".join(":" + k for k in named), named


def _agents(tx: Tx, n: int) -> list[Agent]:
    rows = tx.all("SELECT * FROM agents WHERE ns = :ns ORDER BY name LIMIT :n", n=n)
    marks, named = _marks("a", [r["name"] for r in rows])
    held: dict[str, list[str]] = {}
    if named:
        claimed = tx.all(
            f"SELECT agent, id FROM tasks WHERE ns = :ns AND state = 'claimed' AND agent IN ({marks})",
            **named,
        )
        for agent, tid in claimed:
            held.setdefault(agent, []).append(tid)
    owned = file_affinity.owned(tx)
    return [
        Agent.from_fields(
            {**{k: str(r[k]) for k in AGENT_COLUMNS}, "owned": str(owned.get(r["name"], 0))},
            tuple(sorted(held.get(r["name"], []))),
        )
        for r in rows
    ]


def _locks(tx: Tx, n: int) -> list[Lock]:
    """The first ``n`` live locks by path, with their live holds."""
    paths = [
        r[0]
        for r in tx.all(
            "SELECT DISTINCT path FROM holds WHERE ns = :ns AND expires_ms > :now ORDER BY path LIMIT :n",
            now=tx.now,
            n=n,
        )
    ]
    if not paths:
        return []
    marks, named = _marks("p", paths)
    rows = tx.all(
        "SELECT path, agent, task, shared, expires_ms FROM holds "
        f"WHERE ns = :ns AND expires_ms > :now AND path IN ({marks}) ORDER BY path, agent, task",
        now=tx.now,
        **named,
    )
    return locks_of(rows, tx.now)


def read(tx: Tx, want: frozenset[str], n: int, event_count: int) -> Snapshot:
    """The snapshot of ``tx``'s namespace: ``want`` the sections, ``n`` rows per table."""
    found = _by(tx, "SELECT state, COUNT(*) FROM tasks WHERE ns = :ns GROUP BY state")
    # The literal WHERE terms let SQLite count through the partial indexes (ready, deadline).
    ready = _by(
        tx,
        "SELECT queue, COUNT(*) FROM tasks WHERE ns = :ns AND state = 'queued' AND assigned = ''"
        " AND steal_ms = 0 GROUP BY queue",
    )
    claimed = _by(tx, "SELECT queue, COUNT(*) FROM tasks WHERE ns = :ns AND state = 'claimed' GROUP BY queue")
    review = _by(tx, "SELECT queue, COUNT(*) FROM tasks WHERE ns = :ns AND state = 'review' GROUP BY queue")
    paused = [r[0] for r in tx.all("SELECT queue FROM paused WHERE ns = :ns")]
    agents_total = _by(tx, "SELECT 'n', COUNT(*) FROM agents WHERE ns = :ns")["n"]
    locks_total = _by(
        tx, "SELECT 'n', COUNT(DISTINCT path) FROM holds WHERE ns = :ns AND expires_ms > :now", now=tx.now
    )["n"]
    claims: list[sqlite3.Row] = []
    orphans: list[sqlite3.Row] = []
    events: list[sqlite3.Row] = []
    if "claims" in want:
        claims = tx.all(
            "SELECT * FROM tasks WHERE ns = :ns AND state = 'claimed' ORDER BY deadline_ms, seq LIMIT :n", n=n
        )
    if "orphans" in want:
        orphans = tx.all(
            "SELECT * FROM tasks WHERE ns = :ns AND state = 'orphaned' ORDER BY seq DESC LIMIT :n", n=n
        )
        if len(orphans) < n:
            orphans += tx.all(
                "SELECT * FROM tasks WHERE ns = :ns AND state = 'dead' ORDER BY seq DESC LIMIT :n",
                n=n - len(orphans),
            )
    reviews: list[sqlite3.Row] = []
    if "review" in want:
        # Read in creation order through tasks_state, as Redis reads state:review.
        reviews = tx.all("SELECT * FROM tasks WHERE ns = :ns AND state = 'review' ORDER BY seq LIMIT :n", n=n)
    if "events" in want:
        events = tx.all("SELECT * FROM events WHERE ns = :ns ORDER BY seq DESC LIMIT :n", n=event_count)
    return Snapshot(
        store_ms=tx.now,
        counts={s: found.get(s.value, 0) for s in State},
        queues=queue_rows(ready, claimed, paused, review),
        claims=tuple(map(task_of, claims)),
        orphans=tuple(map(task_of, orphans)),
        agents=tuple(_agents(tx, n)) if "agents" in want else (),
        agents_total=agents_total,
        locks=tuple(_locks(tx, n)) if "locks" in want else (),
        locks_total=locks_total,
        events=tuple(event_of(r) for r in reversed(events)),
        servers=tuple(sorted((ServerInfo.from_json(r) for r in file_servers.live(tx)), key=lambda s: s.id)),
        sections=want,
        queue_claims_exact=True,
        auctions=tuple(
            Auction(r["id"], r["title"], r["queue"], r["close_ms"], tuple(bids))
            for r, bids in file_bidding.auctions(tx, min(n, C.auctions_view_max))
        )
        if "auctions" in want
        else (),
        reviews=by_review_time(map(task_of, reviews), n),
        plans=_plans(tx) if "plans" in want else (),
    )


def _plans(tx: Tx) -> tuple[PlanTree, ...]:
    """The newest unfinished plans with their first subtasks, through the partial indexes
    of plan parents (tasks_plans) and of each plan's subtasks (tasks_plan)."""
    parents = tx.all(
        "SELECT * FROM tasks WHERE ns = :ns AND plan_total > 0 AND state NOT IN ('done', 'dead', 'cancelled')"
        " ORDER BY seq DESC LIMIT :n",
        n=C.snapshot_plans,
    )
    kids = "SELECT * FROM tasks WHERE ns = :ns AND plan = :p AND plan <> '' ORDER BY seq LIMIT :m"
    return tuple(
        PlanTree(task_of(p), tuple(map(task_of, tx.all(kids, p=p["id"], m=C.snapshot_plan_subtasks))))
        for p in parents
    )


_SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def _size(path: Path) -> str:
    """A file's size in the units Redis's INFO uses (``used_memory_human``), or "none"."""
    try:
        size = float(os.stat(path).st_size)
    except FileNotFoundError:
        return "none"
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.2f}{unit}"
        size /= 1024
    raise AssertionError("unreachable")


def facts(tx: Tx, path: Path) -> dict[str, str]:
    """The database's facts for the store pane, in the order to show them."""
    conn: sqlite3.Connection = tx.conn
    schema = tx.one("SELECT value FROM meta WHERE key = 'schema'")
    return {
        "sqlite_version": sqlite3.sqlite_version,
        "database": str(path),
        "database_size": _size(path),
        "wal_size": _size(path.with_name(path.name + "-wal")),
        "journal_mode": str(conn.execute("PRAGMA journal_mode").fetchone()[0]),
        "synchronous": _SYNCHRONOUS.get(int(conn.execute("PRAGMA synchronous").fetchone()[0]), "?"),
        "page_size": str(conn.execute("PRAGMA page_size").fetchone()[0]),
        "schema_version": "?" if schema is None else str(schema[0]),
        "busy_timeout_s": f"{C.file_busy_timeout_s:g}",
    }
