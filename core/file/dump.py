"""The file store's whole-board export and import (the dump format is in ``migrate``)."""

from __future__ import annotations

import sqlite3
from itertools import groupby
from typing import Any

from .. import constants as C
from ..dump import (
    FORMAT,
    VERSION,
    Board,
    LockDump,
    dumped_holds,
    in_auction,
    lock_clash,
    not_empty,
    renumbered,
    waits_for_owner,
)
from ..errors import Conflict
from ..models import LockHold
from ..retention import decoded, encoded
from . import affinity as file_affinity
from . import messages as file_messages
from . import retention as file_retention
from .schema import (
    AGENT_COLUMNS,
    EVENT_COLUMNS,
    TASK_COLUMNS,
    TASK_INTS,
    rebuild_claim_index,
    task_fields,
)
from .tx import Tx, split


def _strs(row: sqlite3.Row, names: tuple[str, ...]) -> dict[str, str]:
    """Fields as strings, the empty ones left out (as a Redis hash never holds them)."""
    return {k: str(row[k]) for k in names if str(row[k]) not in ("", "0") or k in ("name", "type")}


def export(tx: Tx, namespace: str) -> Board:
    """The whole board of ``tx``'s namespace, from the transaction's one snapshot."""
    rows = tx.all(
        "SELECT path, agent, task, shared, expires_ms FROM holds WHERE ns = :ns ORDER BY path, agent, task"
    )
    locks: list[LockDump] = [
        {"path": path, "holds": dumped_holds(LockHold(r[1], r[4], r[2], bool(r[3])) for r in group)}
        for path, group in groupby(rows, key=lambda r: str(r[0]))
    ]
    messages, reads = file_messages.dumped(tx)
    return {
        "format": FORMAT,
        "version": VERSION,
        "namespace": namespace,
        "now_ms": str(tx.now),
        "counters": {
            "task": str(tx.counter("task")),
            "token": str(tx.counter("token")),
            "message": str(tx.counter("message")),
        },
        "messages": messages,
        "reads": reads,
        "tasks": [task_fields(r) for r in tx.all("SELECT * FROM tasks WHERE ns = :ns ORDER BY seq")],
        "agents": [
            _strs(r, AGENT_COLUMNS) for r in tx.all("SELECT * FROM agents WHERE ns = :ns ORDER BY name")
        ],
        "locks": locks,
        "events": [
            _strs(r, EVENT_COLUMNS) for r in tx.all("SELECT * FROM events WHERE ns = :ns ORDER BY seq")
        ],
        "paused": [r[0] for r in tx.all("SELECT queue FROM paused WHERE ns = :ns ORDER BY queue")],
        "queues": [r[0] for r in tx.all("SELECT queue FROM queues WHERE ns = :ns ORDER BY queue")],
        "retention": {
            r["scope"]: decoded(r["settings"])
            for r in tx.all("SELECT scope, settings FROM retention WHERE ns = :ns ORDER BY scope")
        },
        "bids": [
            {
                "task": r["task"],
                "agent": r["agent"],
                "cost": repr(float(r["cost"])),
                "at_ms": str(r["at_ms"]),
                "ttl_ms": str(r["ttl_ms"]),
            }
            for r in tx.all(
                "SELECT b.* FROM bids b JOIN auctions a ON a.ns = b.ns AND a.task = b.task"
                " JOIN tasks t ON t.ns = b.ns AND t.id = b.task"
                " WHERE b.ns = :ns AND t.state = 'blocked' AND t.waiting <= 0 ORDER BY b.task, b.agent"
            )
        ],
    }


def _count(tx: Tx, table: str) -> int:
    row = tx.one(f"SELECT COUNT(*) FROM {table} WHERE ns = :ns")
    return int(row[0]) if row else 0


def load(tx: Tx, namespace: str, url: str, board: Board, merge: bool) -> dict[str, int]:
    """Write a whole board into ``tx``'s namespace; ``Conflict`` (nothing written) when
    the namespace is not empty and ``merge`` is off, or a merged lock would clash."""
    sizes = {k: _count(tx, k) for k in ("tasks", "agents", "events", "holds", "paused")}
    if any(sizes.values()):
        if not merge:
            raise not_empty(namespace, url, sizes["tasks"], sizes["agents"], sizes["events"])
        board = renumbered(board, tx.counter("task"))
        clash = lock_clash(board["locks"], export(tx, namespace)["locks"], tx.now)
        if clash:
            raise Conflict(clash)
    owners = {a["name"] for a in board["agents"]}
    already = {str(r[0]) for r in tx.all("SELECT name FROM agents WHERE ns = :ns")}
    for t in board["tasks"]:
        _load_task(tx, t, owners)
    for a in board["agents"]:
        tx.run(
            "INSERT OR IGNORE INTO agents (ns, name, caps, max_claims, last_seen_ms, registered_ms,"
            " consecutive_failures, breaker_open_until_ms, auto, session) VALUES (:ns, :name, :caps, :m,"
            " :seen, :reg, :fails, :until, :auto, :session)",
            name=a["name"], caps=a.get("caps", ""), m=int(a.get("max_claims") or C.default_max_claims),
            seen=int(a.get("last_seen_ms") or 0), reg=int(a.get("registered_ms") or 0),
            fails=int(a.get("consecutive_failures") or 0), until=int(a.get("breaker_open_until_ms") or 0),
            auto=int(a.get("auto") or 0), session=a.get("session", ""),
        )  # fmt: skip
        if a["name"] not in already:
            # On the ring as last seen: the reaper takes it off when that was too long ago.
            file_affinity.touch(tx, a["name"])
    for lk in board["locks"]:
        for h in lk["holds"]:
            tx.run(
                "INSERT OR REPLACE INTO holds (ns, path, agent, task, shared, expires_ms) "
                "VALUES (:ns, :p, :a, :t, :s, :e)",
                p=lk["path"], a=h["agent"], t=h["task"], s=h["mode"] == "shared", e=int(h["expires_ms"]),
            )  # fmt: skip
    for e in board["events"]:
        tx.run(
            "INSERT INTO events (ns, seq, type, at_ms, task, agent, token, operator, data) "
            "VALUES (:ns, :seq, :type, :at, :task, :agent, :token, :op, :data)",
            seq=tx.incr("event"), type=e["type"], at=int(e.get("at_ms") or 0), task=e.get("task", ""),
            agent=e.get("agent", ""), token=int(e.get("token") or 0), op=e.get("operator", ""),
            data=e.get("data", ""),
        )  # fmt: skip
    for q in board["paused"]:
        tx.run("INSERT OR IGNORE INTO paused (ns, queue) VALUES (:ns, :q)", q=q)
    for b in board.get("bids", []):
        tx.run(
            "INSERT OR REPLACE INTO bids (ns, task, agent, cost, at_ms, ttl_ms)"
            " VALUES (:ns, :t, :a, :c, :at, :ttl)",
            t=b["task"], a=b["agent"], c=float(b["cost"]), at=int(b["at_ms"]), ttl=int(b["ttl_ms"]),
        )  # fmt: skip
    # The claim index follows the tasks (board["queues"] is not written: it would bring back
    # queues with nothing claimable).
    rebuild_claim_index(tx.conn, tx.ns)
    for scope, settings in board.get("retention", {}).items():
        # A destination's own settings win over the incoming ones (merge).
        tx.run(
            "INSERT OR IGNORE INTO retention (ns, scope, settings) VALUES (:ns, :s, :v)",
            s=scope,
            v=encoded(settings),
        )
    top = int(board["counters"].get("message") or 0)
    file_messages.load(tx, board.get("messages", []), board.get("reads", []), top)
    for name in ("task", "token"):
        wanted, have = int(board["counters"].get(name) or 0), tx.counter(name)
        if wanted > have:
            tx.incr(name, wanted - have)
    tx.changed = tx.claimable = True
    return {k: len(board[k]) for k in ("tasks", "agents", "locks", "events", "paused")}


def _load_task(tx: Tx, t: dict[str, str], owners: set[str]) -> None:
    row: dict[str, Any] = {k: int(t.get(k) or 0) if k in TASK_INTS else t.get(k, "") for k in TASK_COLUMNS}
    row["progress"] = float(t.get("progress") or 0)
    row["max_attempts"] = int(t.get("max_attempts") or C.default_max_attempts)
    # Affinity: a task waiting for its owner keeps waiting (until its steal time) when the
    # board brings that owner; else it is anyone's now.
    row["steal_ms"] = int(t["steal_ms"]) if waits_for_owner(t, owners) else 0
    row["steal_after_ms"] = int(t.get("steal_after_ms") or -1)
    names = ", ".join(TASK_COLUMNS)
    values = ", ".join(":" + k for k in TASK_COLUMNS)
    tx.run(f"INSERT INTO tasks (ns, {names}) VALUES (:ns, {values})", **row)
    kind = file_retention.kind_of(row["state"])
    if kind:
        # Retention's index (file_retention.entered), in the order they finished, before every
        # task that finishes here later (those are numbered from 1 by the "finished" counter).
        file_retention.index(tx, row["id"], kind, row["queue"], row["updated_ms"] - C.finished_import_offset)
    if in_auction(t):
        tx.run(
            "INSERT OR REPLACE INTO auctions (ns, task, close_ms) VALUES (:ns, :t, :c)",
            t=row["id"],
            c=row["bid_close_ms"],
        )
    # Every dependency, done or not: a done task never completes again, so the extra rows
    # never count down anyone's wait.
    for dep in split(row["after"]):
        tx.run("INSERT OR IGNORE INTO dependents (ns, dep, id) VALUES (:ns, :d, :id)", d=dep, id=row["id"])
