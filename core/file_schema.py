"""The file store's database: its location, schema, connection set-up and error messages.

One SQLite database (WAL mode) per directory holds every namespace; each row carries its
namespace. State indexes are partial indexes over ``tasks.state``, so moving a task
between states is one UPDATE and no index can disagree with the row (the Redis backend
keeps its sorted sets in step by hand in ``lua/lib.lua``).

Every time is the store's clock: SQLite's own ``'now'`` read inside the transaction (the
machine's real-time clock, as Redis ``TIME`` is the server's), never the caller's
``time.time``, so a client with a skewed or patched clock cannot move a deadline.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from . import constants as C
from .errors import BadInput, StoreUnavailable

# 2: the claim index (heads, sigs; capsigs and queues kept exact), tasks_parent by spawn_token
SCHEMA_VERSION = 2

# Partial indexes are used only when a query repeats their WHERE terms literally, so the
# queries in file_ops.py spell out e.g. "state = 'queued' AND assigned = ''".
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
  ns TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (ns, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tasks (
  ns TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, title TEXT NOT NULL,
  state TEXT NOT NULL, queue TEXT NOT NULL, priority INTEGER NOT NULL,
  requires TEXT NOT NULL DEFAULT '', after TEXT NOT NULL DEFAULT '',
  parent TEXT NOT NULL DEFAULT '', affinity TEXT NOT NULL DEFAULT '',
  payload TEXT NOT NULL DEFAULT '', max_attempts INTEGER NOT NULL DEFAULT 3,
  attempts INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
  expiries INTEGER NOT NULL DEFAULT 0, waiting INTEGER NOT NULL DEFAULT 0,
  spawn_token INTEGER NOT NULL DEFAULT 0, assigned TEXT NOT NULL DEFAULT '',
  agent TEXT NOT NULL DEFAULT '', token INTEGER NOT NULL DEFAULT 0,
  deadline_ms INTEGER NOT NULL DEFAULT 0, claimed_ms INTEGER NOT NULL DEFAULT 0,
  ttl_ms INTEGER NOT NULL DEFAULT 0, progress REAL NOT NULL DEFAULT 0,
  stage TEXT NOT NULL DEFAULT '', checkpoint TEXT NOT NULL DEFAULT '',
  result TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',
  ready_ms INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL DEFAULT 0,
  updated_ms INTEGER NOT NULL DEFAULT 0,
  UNIQUE (ns, id)
);
CREATE INDEX IF NOT EXISTS tasks_seq ON tasks (ns, seq);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks (ns, state, seq);
CREATE INDEX IF NOT EXISTS tasks_ready ON tasks (ns, queue, requires, priority DESC, seq)
  WHERE state = 'queued' AND assigned = '';
CREATE INDEX IF NOT EXISTS tasks_assigned ON tasks (ns, assigned, priority DESC, seq)
  WHERE state = 'queued' AND assigned <> '';
CREATE INDEX IF NOT EXISTS tasks_deadline ON tasks (ns, deadline_ms) WHERE state = 'claimed';
CREATE INDEX IF NOT EXISTS tasks_backoff ON tasks (ns, ready_ms) WHERE state = 'retrying';
CREATE INDEX IF NOT EXISTS tasks_held ON tasks (ns, agent) WHERE state = 'claimed';
CREATE INDEX IF NOT EXISTS tasks_parent ON tasks (ns, parent, spawn_token) WHERE parent <> '';
CREATE TABLE IF NOT EXISTS dependents (
  ns TEXT NOT NULL, dep TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (ns, dep, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queues (ns TEXT NOT NULL, queue TEXT NOT NULL, PRIMARY KEY (ns, queue))
  WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS capsigs (
  ns TEXT NOT NULL, queue TEXT NOT NULL, sig TEXT NOT NULL, PRIMARY KEY (ns, queue, sig)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS paused (ns TEXT NOT NULL, queue TEXT NOT NULL, PRIMARY KEY (ns, queue))
  WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS heads (
  ns TEXT NOT NULL, sig TEXT NOT NULL, queue TEXT NOT NULL, priority INTEGER NOT NULL,
  seq INTEGER NOT NULL, PRIMARY KEY (ns, sig, queue)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS heads_best ON heads (ns, sig, priority DESC, seq);
CREATE TABLE IF NOT EXISTS sigs (
  ns TEXT NOT NULL, sig TEXT NOT NULL, tasks INTEGER NOT NULL, PRIMARY KEY (ns, sig)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agents (
  ns TEXT NOT NULL, name TEXT NOT NULL, caps TEXT NOT NULL DEFAULT '',
  max_claims INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL DEFAULT 0,
  registered_ms INTEGER NOT NULL DEFAULT 0, consecutive_failures INTEGER NOT NULL DEFAULT 0,
  breaker_open_until_ms INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (ns, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS locks (
  ns TEXT NOT NULL, path TEXT NOT NULL, mode TEXT NOT NULL, PRIMARY KEY (ns, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS holds (
  ns TEXT NOT NULL, path TEXT NOT NULL, agent TEXT NOT NULL, expires_ms INTEGER NOT NULL,
  task TEXT NOT NULL DEFAULT '', PRIMARY KEY (ns, path, agent)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS holds_task ON holds (ns, task) WHERE task <> '';
CREATE INDEX IF NOT EXISTS holds_expiry ON holds (ns, expires_ms);
CREATE TABLE IF NOT EXISTS events (
  ns TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, at_ms INTEGER NOT NULL,
  task TEXT NOT NULL DEFAULT '', agent TEXT NOT NULL DEFAULT '', token INTEGER NOT NULL DEFAULT 0,
  operator TEXT NOT NULL DEFAULT '', data TEXT NOT NULL DEFAULT '', PRIMARY KEY (ns, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_task ON events (ns, task, seq) WHERE task <> '';
CREATE TABLE IF NOT EXISTS leases (
  ns TEXT NOT NULL, name TEXT NOT NULL, holder TEXT NOT NULL, expires_ms INTEGER NOT NULL,
  PRIMARY KEY (ns, name)
) WITHOUT ROWID;
"""

# The claim index of one namespace (:ns) made anew from its tasks, as file_ops keeps it:
#   capsigs  (queue, sig) pairs with claimable (queued, unassigned) tasks
#   queues   the queues with claimable tasks
#   heads    per (sig, open queue): the best claimable task's priority and seq
#   sigs     per sig: how many unfinished tasks need it
# Run when a board is upgraded to schema 2 and after a migration writes a board.
REBUILD_CLAIM_INDEX = (
    "DELETE FROM capsigs WHERE ns = :ns",
    "DELETE FROM queues WHERE ns = :ns",
    "DELETE FROM heads WHERE ns = :ns",
    "DELETE FROM sigs WHERE ns = :ns",
    "INSERT INTO capsigs (ns, queue, sig) SELECT DISTINCT ns, queue, requires FROM tasks"
    " WHERE ns = :ns AND state = 'queued' AND assigned = ''",
    "INSERT INTO queues (ns, queue) SELECT DISTINCT ns, queue FROM capsigs WHERE ns = :ns",
    # One row per group: SQLite takes the bare columns from the row holding the MIN.
    "INSERT INTO heads (ns, sig, queue, priority, seq) SELECT ns, requires, queue, priority, seq FROM"
    f" (SELECT ns, requires, queue, priority, seq, MIN(({C.max_priority} - priority) * 4398046511104 + seq)"
    "  FROM tasks WHERE ns = :ns AND state = 'queued' AND assigned = '' GROUP BY queue, requires)"
    " WHERE queue NOT IN (SELECT queue FROM paused WHERE ns = :ns)",
    "INSERT INTO sigs (ns, sig, tasks) SELECT ns, requires, COUNT(*) FROM tasks"
    " WHERE ns = :ns AND state NOT IN ('done', 'cancelled') GROUP BY requires",
)


def rebuild_claim_index(conn: sqlite3.Connection, ns: str) -> None:
    """The claim index of ``ns`` made anew from its tasks, in the caller's transaction."""
    for sql in REBUILD_CLAIM_INDEX:
        conn.execute(sql, {"ns": ns})


# The store's clock in ms, exact integer arithmetic ('now' is fixed within one statement).
NOW_SQL = (
    "SELECT CAST(strftime('%s', 'now') AS INTEGER) * 1000 + CAST(substr(strftime('%f', 'now'), 4) AS INTEGER)"
)

# Task columns in the order of the table; every one is also a field of the exported form.
TASK_COLUMNS = (
    "id", "seq", "title", "state", "queue", "priority", "requires", "after", "parent", "affinity",
    "payload", "max_attempts", "attempts", "failures", "expiries", "waiting", "spawn_token",
    "assigned", "agent", "token", "deadline_ms", "claimed_ms", "ttl_ms", "progress", "stage",
    "checkpoint", "result", "reason", "ready_ms", "created_ms", "updated_ms",
)  # fmt: skip
TASK_INTS = frozenset(
    {"seq", "priority", "max_attempts", "attempts", "failures", "expiries", "waiting", "spawn_token",
     "token", "deadline_ms", "claimed_ms", "ttl_ms", "ready_ms", "created_ms", "updated_ms"}
)  # fmt: skip
AGENT_COLUMNS = (
    "name", "caps", "max_claims", "last_seen_ms", "registered_ms", "consecutive_failures",
    "breaker_open_until_ms",
)  # fmt: skip
EVENT_COLUMNS = ("type", "at_ms", "task", "agent", "token", "operator", "data")


def db_path(url: str) -> Path:
    """The database file a ``file:///abs/dir`` URL names; ``BadInput`` for anything else."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "file":
        raise BadInput(f"not a file URL: {url!r}")
    if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise BadInput(f"file store URL {url!r} needs an absolute directory: file:///abs/dir")
    if parts.query or parts.fragment:
        raise BadInput(f"file store URL {url!r} takes no query or fragment: file:///abs/dir")
    return Path(unquote(parts.path)) / C.file_db_name


def is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: another connection holds what we need; try again."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def unavailable(path: Path, exc: BaseException) -> StoreUnavailable:
    """One line saying what went wrong with the database and what to do about it."""
    text = str(exc)
    code = getattr(exc, "sqlite_errorcode", 0) or 0
    folder = path.parent
    if isinstance(exc, sqlite3.Error) and is_busy(exc):
        return StoreUnavailable(
            f"store busy: {path} stayed locked by another process for more than "
            f"{C.file_busy_timeout_s:g} s; try again, or find the holder with: fuser {path}"
        )
    if code & 0xFF == sqlite3.SQLITE_FULL or "full" in text or getattr(exc, "errno", 0) == 28:
        return StoreUnavailable(
            f"store unavailable: the disk holding {folder} is full (nothing was written); "
            "free some space and retry"
        )
    if code & 0xFF == sqlite3.SQLITE_READONLY or "readonly" in text or "read-only" in text:
        return StoreUnavailable(
            f"store unavailable: {folder} is read-only ({text}); make it writable or point "
            "CLAIMROOM_URL at a writable directory"
        )
    if code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return StoreUnavailable(
            f"store unavailable: {path} is damaged or not a claimroom database ({text}); "
            "move it aside (claimroom starts a new board) or restore a copy"
        )
    if folder.is_dir() and not os.access(folder, os.W_OK):
        return StoreUnavailable(
            f"store unavailable: {folder} is read-only ({text}); make it writable or point "
            "CLAIMROOM_URL at a writable directory"
        )
    return StoreUnavailable(
        f"store unavailable: cannot use {path} ({exc.__class__.__name__}: {text}); check that "
        f"{folder} exists and is writable, or point CLAIMROOM_URL elsewhere"
    )


def connect(path: Path, *, create: bool = True) -> sqlite3.Connection:
    """An open connection in WAL mode with the schema in place; ``StoreUnavailable`` else."""
    folder = path.parent
    if not folder.is_dir():
        what = "is not a directory" if folder.exists() else "does not exist"
        raise StoreUnavailable(
            f"store unavailable: {folder} {what}; create it (mkdir -p {folder}) or point "
            "CLAIMROOM_URL at another directory"
        )
    if not path.exists() and not os.access(folder, os.W_OK):
        raise unavailable(path, sqlite3.OperationalError("attempt to write a readonly database"))
    # timeout=0: the store does its own short, randomised retries for the write lock (see
    # file_store.FileStore._tx), which are much fairer under contention than SQLite's
    # sleeping busy handler, whose sleeps grow to 100 ms.
    conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        # Takes effect only while the file is empty (a board made by an older claimroom
        # keeps its page size; both work).
        conn.execute(f"PRAGMA page_size = {C.file_page_size}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise sqlite3.OperationalError(f"could not switch {path} to WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {C.file_synchronous}")
        if create:
            _ensure_schema(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _ensure_schema(conn: sqlite3.Connection) -> None:
    row = None
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
    if row is None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return
    if int(row[0]) > SCHEMA_VERSION:
        raise StoreUnavailable(
            "store unavailable: this board was written by a newer claimroom (schema "
            f"{row[0]}); upgrade claimroom to use it"
        )
    if int(row[0]) < SCHEMA_VERSION:
        _upgrade(conn)


def _upgrade(conn: sqlite3.Connection) -> None:
    """Schema 1 -> 2: the new tables, and the claim index built once from the tasks."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if int(found[0]) < SCHEMA_VERSION:  # not done meanwhile by another process
            conn.execute("DROP INDEX IF EXISTS tasks_parent")  # now with spawn_token
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            for (ns,) in conn.execute("SELECT DISTINCT ns FROM tasks").fetchall():
                rebuild_claim_index(conn, ns)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def dumps(data: Any) -> str:
    """Compact JSON for audit data (the Redis backend's cjson writes the same values)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def task_fields(row: sqlite3.Row) -> dict[str, str]:
    """A task row in the flat string form ``Task.from_fields`` and exports use ('' omitted)."""
    out: dict[str, str] = {}
    for name in TASK_COLUMNS:
        value = row[name]
        # progress is a REAL: "0.5", "1.0" (Redis holds what Python's repr wrote).
        text = str(value) if name != "progress" else repr(float(value)) if value else ""
        if text not in ("", "0") or name in ("state", "priority", "attempts", "failures", "expiries"):
            out[name] = text
    out.setdefault("waiting", "0")
    return out
