"""The file store's transaction and the row helpers under every operation.

``Tx`` is one write transaction on one namespace (``runner.TxRunner._sync_tx``);
``Refused`` is an operation's refusal with one of the scripts' error codes. The file
store's modules build on each other in layers, each importing only those below it: ``tx``,
then ``retention`` (the finished index), ``states`` (a task entering a state), ``cascade``,
and the operations (``ops``, ``claim``, ``admin``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from .. import constants as C
from ..errors import ErrorCode
from .schema import NOW_SQL, dumps

Row = sqlite3.Row


class Refused(Exception):
    """An operation refused with one of the scripts' error codes."""

    def __init__(self, code: ErrorCode, *detail: str) -> None:
        super().__init__(code, *detail)
        self.code = code
        self.detail = list(detail)


class Tx:
    """One transaction on one namespace, with the store's clock read once at its start.

    Queries use named parameters; ``:ns`` is always bound to the namespace.
    """

    def __init__(self, conn: sqlite3.Connection, ns: str) -> None:
        self.conn = conn
        self.ns = ns
        self.now: int = conn.execute(NOW_SQL).fetchone()[0]
        self.changed = False  # set by anything the scripts announce on the hints channel
        self.claimable = False  # set by what they announce to waiting claimers (claimable, wake:)
        # Cascades (file_cascade): how many more tasks this transaction may look at, and
        # what its cascades did (the reap pass reports it).
        self.cascade_left = C.cascade_batch
        self.cascade_log: dict[str, list[str]] = {"cancelled": [], "restored": []}
        # Called as a task ends (done, dead, cancelled), inside its state change as lib.lua's
        # enter calls plan_settle: its plan parent's rollup (file_plan.settle; set by the runner).
        self.ended: Callable[[Tx, str, str], None] | None = None
        self.rolling_back = ""  # the planner whose claim's rollback runs (lib.lua's plan_rolling_back)

    def run(self, sql: str, **params: Any) -> sqlite3.Cursor:
        return self.conn.execute(sql, {"ns": self.ns, **params})

    def one(self, sql: str, **params: Any) -> Row | None:
        row: Row | None = self.run(sql, **params).fetchone()
        return row

    def all(self, sql: str, **params: Any) -> list[Row]:
        return list(self.run(sql, **params).fetchall())

    def counter(self, name: str) -> int:
        row = self.one("SELECT value FROM counters WHERE ns = :ns AND name = :name", name=name)
        return int(row[0]) if row else 0

    def incr(self, name: str, by: int = 1) -> int:
        row = self.one(
            "INSERT INTO counters (ns, name, value) VALUES (:ns, :name, :by) "
            "ON CONFLICT (ns, name) DO UPDATE SET value = value + excluded.value RETURNING value",
            name=name,
            by=by,
        )
        assert row is not None
        return int(row[0])

    def audit(
        self,
        etype: str,
        task: str = "",
        agent: str = "",
        token: int = 0,
        data: dict[str, Any] | None = None,
        operator: str = "",
    ) -> None:
        """The audit event of a change, in the change's own transaction (rule 4)."""
        self.run(
            "INSERT INTO events (ns, seq, type, at_ms, task, agent, token, operator, data) "
            "VALUES (:ns, :seq, :type, :at, :task, :agent, :token, :op, :data)",
            seq=self.incr("event"), type=etype, at=self.now, task=task, agent=agent, token=token,
            op=operator, data="" if data is None else dumps(data),
        )  # fmt: skip
        self.changed = True

    def finish(self) -> int | None:
        """Count the change so views wake (the hints channel's twin), and work that may have
        become claimable so waiting claimers wake (the claimable channel's); the changes
        counter's new value, or None when nothing changed."""
        if self.claimable:
            self.claimable = False
            self.incr("claimable")
        if not self.changed:
            return None
        self.changed = False
        return self.incr("changes")


def split(s: str) -> list[str]:
    return [x for x in s.split(",") if x]


def load_task(tx: Tx, tid: str) -> Row | None:
    return tx.one("SELECT * FROM tasks WHERE ns = :ns AND id = :id", id=tid)


def set_task(tx: Tx, tid: str, **fields: Any) -> None:
    cols = ", ".join(f"{k} = :{k}" for k in fields)
    tx.run(f"UPDATE tasks SET {cols} WHERE ns = :ns AND id = :id_", id_=tid, **fields)


# The capability sets in use but the empty one, which is not counted (count_sig); '' is there
# on a board an older claimroom counted it on.
SIGS = "SELECT sig FROM sigs WHERE ns = :ns AND sig <> ''"


# Kept with the row helpers rather than the claim index in ``states``: retention's removal
# of a dead task counts down too, and retention sits below ``states``.
def count_sig(tx: Tx, sig: str, by: int) -> None:
    """One more (1) or one fewer (-1) unfinished task needing ``sig``; the empty set is not
    counted (as lib.lua's count_sig: the cap leaves it out)."""
    if sig == "":
        return
    left = tx.one(
        "INSERT INTO sigs (ns, sig, tasks) VALUES (:ns, :s, :by) ON CONFLICT (ns, sig)"
        " DO UPDATE SET tasks = tasks + excluded.tasks RETURNING tasks",
        s=sig,
        by=by,
    )
    if left is not None and left[0] <= 0:
        tx.run("DELETE FROM sigs WHERE ns = :ns AND sig = :s", s=sig)
