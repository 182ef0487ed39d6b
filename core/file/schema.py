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

from .. import constants as C
from .. import private
from ..errors import BadInput, StoreUnavailable
from ..models import Event, Task

SCHEMA_VERSION = 12

# Path locks: one row per hold, keyed by (path, agent, task) with its own mode; a path is
# locked while it has a row. (Schema 1 had a `locks` table with one mode per path and one
# hold per agent and path; MIGRATIONS[2] turns it into this.)
HOLDS = """
CREATE TABLE IF NOT EXISTS holds (
  ns TEXT NOT NULL, path TEXT NOT NULL, agent TEXT NOT NULL, task TEXT NOT NULL DEFAULT '',
  shared INTEGER NOT NULL DEFAULT 0, expires_ms INTEGER NOT NULL,
  PRIMARY KEY (ns, path, agent, task)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS holds_task ON holds (ns, task) WHERE task <> '';
CREATE INDEX IF NOT EXISTS holds_expiry ON holds (ns, expires_ms);
"""

# Cascades (cascade.py): the dependency whose end cancelled a task, and the work a
# cascade or restore left for the next pass. Schema 3; MIGRATIONS[3] adds it to a board of 2.
CASCADES = """
CREATE INDEX IF NOT EXISTS tasks_cancelled_by ON tasks (ns, cancelled_by, seq) WHERE cancelled_by <> '';
CREATE TABLE IF NOT EXISTS cascades (
  ns TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL, at_ms INTEGER NOT NULL,
  PRIMARY KEY (ns, kind, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cascades_order ON cascades (ns, kind, at_ms, id);
"""

# Retention (retention.py; the why is in lua/retain-1.lua): finished tasks in the order
# they finished, per queue and kind (done, or failed: dead and cancelled), with the done ones
# held for a dependent marked `held`; per queue and kind, how many are not held and when it
# is next due for a look; the settings
# (a JSON object per scope, "*" the board); where the walk over agents is. Schema 6;
# MIGRATIONS[6] adds it to a board of 5 and indexes the tasks that finished before.
RETENTION = """
CREATE TABLE IF NOT EXISTS finished (
  ns TEXT NOT NULL, id TEXT NOT NULL, kind TEXT NOT NULL, queue TEXT NOT NULL, fin INTEGER NOT NULL,
  held INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (ns, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS finished_order ON finished (ns, kind, queue, fin) WHERE held = 0;
CREATE TABLE IF NOT EXISTS retention_due (
  ns TEXT NOT NULL, kind TEXT NOT NULL, queue TEXT NOT NULL, n INTEGER NOT NULL, due_ms INTEGER NOT NULL,
  PRIMARY KEY (ns, kind, queue)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS retention_due_order ON retention_due (ns, due_ms);
CREATE TABLE IF NOT EXISTS retention (
  ns TEXT NOT NULL, scope TEXT NOT NULL, settings TEXT NOT NULL, PRIMARY KEY (ns, scope)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cursors (
  ns TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (ns, name)
) WITHOUT ROWID;
"""

# Partial indexes are used only when a query repeats their WHERE terms literally, so the
# queries in ops.py spell out e.g. "state = 'queued' AND assigned = ''".
SCHEMA = f"""
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
  updated_ms INTEGER NOT NULL DEFAULT 0, cancelled_by TEXT NOT NULL DEFAULT '',
  bid_window_ms INTEGER NOT NULL DEFAULT 0, bid_close_ms INTEGER NOT NULL DEFAULT 0,
  bid_winner TEXT NOT NULL DEFAULT '',
  review_ref TEXT NOT NULL DEFAULT '', review_ms INTEGER NOT NULL DEFAULT 0,
  paths TEXT NOT NULL DEFAULT '', plan TEXT NOT NULL DEFAULT '',
  plan_left INTEGER NOT NULL DEFAULT 0, plan_total INTEGER NOT NULL DEFAULT 0,
  plan_wait INTEGER NOT NULL DEFAULT 0, plan_failed TEXT NOT NULL DEFAULT '',
  plan_depth INTEGER NOT NULL DEFAULT 0,
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
CREATE TABLE IF NOT EXISTS agents (
  ns TEXT NOT NULL, name TEXT NOT NULL, caps TEXT NOT NULL DEFAULT '',
  max_claims INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL DEFAULT 0,
  registered_ms INTEGER NOT NULL DEFAULT 0, consecutive_failures INTEGER NOT NULL DEFAULT 0,
  breaker_open_until_ms INTEGER NOT NULL DEFAULT 0, auto INTEGER NOT NULL DEFAULT 0,
  session TEXT NOT NULL DEFAULT '', PRIMARY KEY (ns, name)
) WITHOUT ROWID;
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
{HOLDS}{CASCADES}{RETENTION}"""

# Statements that bring a board of the schema before the key up to it, in one transaction.
MIGRATIONS: dict[int, str] = {
    2: f"""
ALTER TABLE holds RENAME TO holds_v1;
DROP INDEX IF EXISTS holds_task;
DROP INDEX IF EXISTS holds_expiry;
{HOLDS}
-- One mode per hold (its path's), and a task-bound hold lives as long as its claim.
INSERT INTO holds (ns, path, agent, task, shared, expires_ms)
  SELECT h.ns, h.path, h.agent, h.task, COALESCE(l.mode = 'shared', 0),
    COALESCE((SELECT t.deadline_ms FROM tasks t WHERE t.ns = h.ns AND t.id = h.task
              AND h.task <> '' AND t.state = 'claimed' AND t.agent = h.agent), h.expires_ms)
  FROM holds_v1 h LEFT JOIN locks l ON l.ns = h.ns AND l.path = h.path;
DROP TABLE holds_v1;
DROP TABLE locks
""",
    3: "ALTER TABLE tasks ADD COLUMN cancelled_by TEXT NOT NULL DEFAULT '';" + CASCADES,
}

# Version 4: the reaper heartbeat, one row per namespace (the hash reap-1.lua writes):
# the last pass, and the last pass that recovered something.
REAPER_TABLE = """
CREATE TABLE IF NOT EXISTS reaper (
  ns TEXT NOT NULL PRIMARY KEY, kind TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
  interval_ms INTEGER NOT NULL, at_ms INTEGER NOT NULL, passes INTEGER NOT NULL DEFAULT 0,
  reaped_kind TEXT NOT NULL DEFAULT '', reaped_host TEXT NOT NULL DEFAULT '',
  reaped_pid INTEGER NOT NULL DEFAULT 0, reaped_interval_ms INTEGER NOT NULL DEFAULT 0,
  reaped_ms INTEGER NOT NULL DEFAULT 0, requeued TEXT NOT NULL DEFAULT '',
  orphaned TEXT NOT NULL DEFAULT '', dead TEXT NOT NULL DEFAULT '', promoted TEXT NOT NULL DEFAULT '',
  locks_expired INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""
SCHEMA += REAPER_TABLE

MIGRATIONS[4] = REAPER_TABLE

# Version 5: the claim index (file.states keeps it as lib.lua keeps Redis's), so that a claim
# never reads queue by queue (design rule 10):
#   capsigs  (queue, sig) pairs with claimable (queued, unassigned) tasks; queues: their queues
#   heads    per (sig, open queue): the best claimable task's priority and seq
#   sigs     per sig but '': how many unfinished tasks (not done or cancelled) need it
# and rollback's index by the spawning claim's token.
CLAIM_INDEX = """
CREATE TABLE IF NOT EXISTS heads (
  ns TEXT NOT NULL, sig TEXT NOT NULL, queue TEXT NOT NULL, priority INTEGER NOT NULL,
  seq INTEGER NOT NULL, PRIMARY KEY (ns, sig, queue)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS heads_best ON heads (ns, sig, priority DESC, seq);
CREATE TABLE IF NOT EXISTS sigs (
  ns TEXT NOT NULL, sig TEXT NOT NULL, tasks INTEGER NOT NULL, PRIMARY KEY (ns, sig)
) WITHOUT ROWID;
"""
SCHEMA += CLAIM_INDEX


def claim_index(one_ns: bool) -> str:
    """Statements making the claim index anew from the tasks: of every namespace (a board
    upgraded to version 5), or of the one bound to :ns (a board a migration wrote)."""
    only = "ns = :ns AND " if one_ns else ""
    return f"""
DELETE FROM capsigs WHERE {only}1;
DELETE FROM queues WHERE {only}1;
DELETE FROM heads WHERE {only}1;
DELETE FROM sigs WHERE {only}1;
INSERT INTO capsigs (ns, queue, sig) SELECT DISTINCT ns, queue, requires FROM tasks
  WHERE {only}state = 'queued' AND assigned = '';
INSERT INTO queues (ns, queue) SELECT DISTINCT ns, queue FROM capsigs WHERE {only}1;
INSERT INTO heads (ns, sig, queue, priority, seq) SELECT ns, requires, queue, priority, seq FROM
  (SELECT ns, requires, queue, priority, seq,
     MIN(({C.max_priority} - priority) * {C.ready_priority_step} + seq)
   FROM tasks WHERE {only}state = 'queued' AND assigned = '' GROUP BY ns, queue, requires) AS h
  WHERE NOT EXISTS (SELECT 1 FROM paused AS p WHERE p.ns = h.ns AND p.queue = h.queue);
INSERT INTO sigs (ns, sig, tasks) SELECT ns, requires, COUNT(*) FROM tasks
  WHERE {only}state NOT IN ('done', 'cancelled') AND requires <> '' GROUP BY ns, requires
"""


# (SQLite takes a group's bare columns from the row holding its MIN: each pair's best task.)
MIGRATIONS[5] = (
    CLAIM_INDEX
    + "DROP INDEX IF EXISTS tasks_parent;"
    + "CREATE INDEX tasks_parent ON tasks (ns, parent, spawn_token) WHERE parent <> '';"
    + claim_index(one_ns=False)
)


def rebuild_claim_index(conn: sqlite3.Connection, ns: str) -> None:
    """The claim index of ``ns`` made anew from its tasks, in the caller's transaction."""
    for statement in claim_index(one_ns=True).split(";"):
        if statement.strip():
            conn.execute(statement, {"ns": ns})


# Version 6: retention (RETENTION above); the tasks that finished before are indexed first,
# in creation order (as retain-1.lua's walk on Redis).
MIGRATIONS[6] = (
    "ALTER TABLE agents ADD COLUMN auto INTEGER NOT NULL DEFAULT 0;"
    + RETENTION
    + f"""
INSERT OR IGNORE INTO finished (ns, id, kind, queue, fin)
  SELECT ns, id, CASE state WHEN 'done' THEN 'done' ELSE 'failed' END, queue,
    seq - {C.finished_backfill_offset}
  FROM tasks WHERE state IN ('done', 'dead', 'cancelled');
INSERT OR IGNORE INTO retention_due (ns, kind, queue, n, due_ms)
  SELECT ns, kind, queue, COUNT(*), 0 FROM finished GROUP BY ns, kind, queue
"""
)

# Version 7: bearer tokens (core/tokens.py: the sha256 of each, never the token) and the
# session an agent is (a Claude Code session id, say).
TOKENS = """
CREATE TABLE IF NOT EXISTS tokens (
  ns TEXT NOT NULL, digest TEXT NOT NULL, agent TEXT NOT NULL, role TEXT NOT NULL,
  created_ms INTEGER NOT NULL, hint TEXT NOT NULL, PRIMARY KEY (ns, digest)
) WITHOUT ROWID;
"""
SCHEMA += TOKENS

MIGRATIONS[7] = "ALTER TABLE agents ADD COLUMN session TEXT NOT NULL DEFAULT '';" + TOKENS

# Version 8: messages between agents (messages.py; recipient '' a broadcast) and each
# agent's read marks, deleted with their message.
MESSAGES = """
CREATE TABLE IF NOT EXISTS messages (
  ns TEXT NOT NULL, id INTEGER NOT NULL, sender TEXT NOT NULL, recipient TEXT NOT NULL,
  text TEXT NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (ns, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_box ON messages (ns, recipient, id);
CREATE INDEX IF NOT EXISTS messages_age ON messages (ns, at_ms);
CREATE TABLE IF NOT EXISTS message_reads (
  ns TEXT NOT NULL, agent TEXT NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (ns, agent, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS message_reads_id ON message_reads (ns, id);
"""
SCHEMA += MESSAGES
MIGRATIONS[8] = MESSAGES
# Version 9: bidding (file/bidding.py, the twin of lua/lib.lua's close_auctions): a task's
# window (bid_window_ms), when it closes (bid_close_ms) and who won it; the open windows by
# close time (the Redis `auctions` sorted set), their bids, and the claims won and not yet
# handed to their agent (`won:<agent>`).
BIDDING = """
CREATE TABLE IF NOT EXISTS auctions (
  ns TEXT NOT NULL, task TEXT NOT NULL, close_ms INTEGER NOT NULL, PRIMARY KEY (ns, task)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS auctions_close ON auctions (ns, close_ms);
CREATE TABLE IF NOT EXISTS bids (
  ns TEXT NOT NULL, task TEXT NOT NULL, agent TEXT NOT NULL, cost REAL NOT NULL,
  at_ms INTEGER NOT NULL, ttl_ms INTEGER NOT NULL, PRIMARY KEY (ns, task, agent)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS won (
  ns TEXT NOT NULL, agent TEXT NOT NULL, task TEXT NOT NULL, token INTEGER NOT NULL,
  PRIMARY KEY (ns, agent, task)
) WITHOUT ROWID;
"""
SCHEMA += BIDDING

MIGRATIONS[9] = (
    "ALTER TABLE tasks ADD COLUMN bid_window_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN bid_close_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN bid_winner TEXT NOT NULL DEFAULT '';" + BIDDING
)
# Version 10: consistent-hash affinity (file/affinity.py): a task's owner, when others may
# take it (steal_ms; > 0 while it waits for its owner, which keeps it out of tasks_ready)
# and its own steal delay; the ring and which agents are on it.
AFFINITY = """
ALTER TABLE tasks ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN steal_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN steal_after_ms INTEGER NOT NULL DEFAULT -1;
ALTER TABLE agents ADD COLUMN ring INTEGER NOT NULL DEFAULT 0;
DROP INDEX IF EXISTS tasks_ready;
CREATE INDEX tasks_ready ON tasks (ns, queue, requires, priority DESC, seq)
  WHERE state = 'queued' AND assigned = '' AND steal_ms = 0;
CREATE INDEX tasks_owned ON tasks (ns, owner, priority DESC, seq)
  WHERE state = 'queued' AND assigned = '' AND steal_ms > 0;
CREATE INDEX tasks_steal ON tasks (ns, steal_ms) WHERE state = 'queued' AND assigned = '' AND steal_ms > 0;
CREATE INDEX agents_live ON agents (ns, last_seen_ms) WHERE ring = 1;
CREATE TABLE ring (
  ns TEXT NOT NULL, point INTEGER NOT NULL, member TEXT NOT NULL, agent TEXT NOT NULL,
  PRIMARY KEY (ns, point, member)
) WITHOUT ROWID;
CREATE INDEX ring_agent ON ring (ns, agent);
"""
SCHEMA += AFFINITY
MIGRATIONS[10] = AFFINITY
# Version 11: review (complete --review): what was delivered and when it entered review. A
# task in review is found through tasks_state (its state is 'review'), like every state.
MIGRATIONS[11] = (
    "ALTER TABLE tasks ADD COLUMN review_ref TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE tasks ADD COLUMN review_ms INTEGER NOT NULL DEFAULT 0"
)
# Version 12: hierarchical plans (core/plan.py, file/plan.py): a task's paths, the plan parent
# a subtask rolls up to and a parent's counters; a plan's subtasks and the unfinished plan
# parents are read through their own partial indexes (the control room's plans pane).
PLAN_INDEXES = """
CREATE INDEX IF NOT EXISTS tasks_plan ON tasks (ns, plan, seq) WHERE plan <> '';
CREATE INDEX IF NOT EXISTS tasks_plans ON tasks (ns, seq)
  WHERE plan_total > 0 AND state NOT IN ('done', 'dead', 'cancelled');
"""
SCHEMA += PLAN_INDEXES
MIGRATIONS[12] = (
    "ALTER TABLE tasks ADD COLUMN paths TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE tasks ADD COLUMN plan TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE tasks ADD COLUMN plan_left INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN plan_total INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN plan_wait INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN plan_failed TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE tasks ADD COLUMN plan_depth INTEGER NOT NULL DEFAULT 0;" + PLAN_INDEXES
)

# The store's clock in ms, exact integer arithmetic ('now' is fixed within one statement).
NOW_SQL = (
    "SELECT CAST(strftime('%s', 'now') AS INTEGER) * 1000 + CAST(substr(strftime('%f', 'now'), 4) AS INTEGER)"
)

# Task columns in the order of the table; every one is also a field of the exported form.
TASK_COLUMNS = (
    "id", "seq", "title", "state", "queue", "priority", "requires", "after", "parent", "affinity",
    "payload", "max_attempts", "attempts", "failures", "expiries", "waiting", "spawn_token",
    "assigned", "agent", "token", "deadline_ms", "claimed_ms", "ttl_ms", "progress", "stage",
    "checkpoint", "result", "reason", "ready_ms", "created_ms", "updated_ms", "cancelled_by",
    "bid_window_ms", "bid_close_ms", "bid_winner",
    "owner", "steal_ms", "steal_after_ms",
    "review_ref", "review_ms",
    "paths", "plan", "plan_left", "plan_total", "plan_wait", "plan_failed", "plan_depth",
)  # fmt: skip
TASK_INTS = frozenset(
    {"seq", "priority", "max_attempts", "attempts", "failures", "expiries", "waiting", "spawn_token",
     "token", "deadline_ms", "claimed_ms", "ttl_ms", "ready_ms", "created_ms", "updated_ms",
     "bid_window_ms", "bid_close_ms", "steal_ms", "steal_after_ms", "review_ms",
     "plan_left", "plan_total", "plan_wait", "plan_depth"}
)  # fmt: skip
AGENT_COLUMNS = (
    "name", "caps", "max_claims", "last_seen_ms", "registered_ms", "consecutive_failures",
    "breaker_open_until_ms", "auto", "session",
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
    if not path.exists():
        if not os.access(folder, os.W_OK):
            raise unavailable(path, sqlite3.OperationalError("attempt to write a readonly database"))
        # Made owner-only before SQLite opens it: SQLite gives the -wal and -shm files the
        # database's own mode, so the whole board (task payloads may hold secrets) is private.
        try:
            private.touch(path)
        except OSError as exc:
            raise unavailable(path, exc) from None
    # timeout=0: the store does its own short, randomised retries for the write lock (see
    # runner.TxRunner._attempts), which are much fairer under contention than SQLite's
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
    """Create the schema on a new board, or bring an older board's up to date."""
    if _current(conn):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have done it meanwhile.
        if not _current(conn):
            have = _version(conn)
            steps = [MIGRATIONS[v] for v in range(have + 1, SCHEMA_VERSION + 1)] if have else [SCHEMA]
            for script in steps:
                _run_script(conn, script)
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _current(conn: sqlite3.Connection) -> bool:
    """Whether the board is at this claimroom's schema; ``StoreUnavailable`` when newer."""
    have = _version(conn)
    if have > SCHEMA_VERSION:
        raise StoreUnavailable(
            "store unavailable: this board was written by a newer claimroom (schema "
            f"{have}); upgrade claimroom to use it"
        )
    return have == SCHEMA_VERSION


def _version(conn: sqlite3.Connection) -> int:
    """The board's schema version; 0 for a database without one yet."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        return 0
    return int(row[0]) if row else 0


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


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
        # "0" is left out of the numbers only: an agent, title or owner may be named "0"; and
        # steal_after_ms 0 (no owner preference) is not its default (-1).
        zero = text == "0" and name in TASK_INTS and name != "steal_after_ms"
        if (text and not zero) or name in ("state", "priority", "attempts", "failures", "expiries"):
            out[name] = text
    out.setdefault("waiting", "0")
    return out


def task_of(row: sqlite3.Row) -> Task:
    return Task.from_fields(task_fields(row))


def event_of(row: sqlite3.Row) -> Event:
    return Event(
        id=str(row["seq"]),
        type=row["type"],
        at_ms=row["at_ms"],
        task=row["task"],
        agent=row["agent"],
        token=row["token"],
        operator=row["operator"],
        data=json.loads(row["data"]) if row["data"] else {},
    )
