"""The file store's retention: the SQL twins of ``lua/retain-1.lua``, ``lua/retention-1.lua``
and the finished index that ``lib.lua``'s ``enter``/``leave`` keep (the why is written there).

``entered`` runs inside ``states.enter`` for every state change; ``retain`` is one
retention step of the reaper pass, in its own transaction, bounded as the script is.
"""

from __future__ import annotations

from .. import constants as C
from ..retention import BOARD, decoded, encoded
from .messages import trim as trim_messages
from .tx import Row, Tx, count_sig, split


def kind_of(state: str) -> str | None:
    """Retention's kind of a finished state: "done", or "failed" for dead and cancelled."""
    if state == "done":
        return "done"
    if state in ("dead", "cancelled"):
        return "failed"
    return None


def _count(tx: Tx, kind: str, queue: str, by: int) -> None:
    """``by`` more (or fewer) finished tasks, not held, in a queue: due for a look now.
    (retention_due.n is what ZCARD of the finished set is on Redis: COUNT would cost O(n).)"""
    tx.run(
        "INSERT INTO retention_due (ns, kind, queue, n, due_ms) VALUES (:ns, :k, :q, :by, 0)"
        " ON CONFLICT (ns, kind, queue) DO UPDATE SET n = n + :by, due_ms = 0",
        k=kind,
        q=queue,
        by=by,
    )


def entered(tx: Tx, t: Row, new: str) -> None:
    """Keep the finished index as a task moves from ``t['state']`` to ``new``."""
    try:
        old = t["state"]
    except IndexError:  # a claim's pick reads no state: it was queued
        old = "queued"
    if kind_of(old) and old != new:
        gone = tx.one(
            "DELETE FROM finished WHERE ns = :ns AND id = :id RETURNING kind, queue, held", id=t["id"]
        )
        if gone is not None and not gone["held"]:
            _count(tx, gone["kind"], gone["queue"], -1)
    kind = kind_of(new)
    if kind and old != new:
        index(tx, t["id"], kind, t["queue"], tx.incr("finished"))


def index(tx: Tx, tid: str, kind: str, queue: str, fin: int) -> None:
    """A task that finished (kind "done" or "failed") joins its queue's finished index at ``fin``."""
    tx.run(
        "INSERT OR REPLACE INTO finished (ns, id, kind, queue, fin) VALUES (:ns, :id, :k, :q, :fin)",
        id=tid,
        k=kind,
        q=queue,
        fin=fin,
    )
    _count(tx, kind, queue, 1)


# --- settings (retention-1.lua) ------------------------------------------------------------


def stored(tx: Tx, scope: str) -> dict[str, int]:
    row = tx.one("SELECT settings FROM retention WHERE ns = :ns AND scope = :s", s=scope)
    return decoded(None if row is None else str(row[0]))


def settings_of(tx: Tx, queue: str | None) -> tuple[dict[str, int], dict[str, int]]:
    return stored(tx, BOARD), {} if queue is None else stored(tx, queue)


def set_settings(tx: Tx, scope: str, changes: dict[str, int], reset: bool) -> None:
    own = {} if reset else stored(tx, scope)
    own.update(changes)
    if own:
        tx.run(
            "INSERT OR REPLACE INTO retention (ns, scope, settings) VALUES (:ns, :s, :v)",
            s=scope,
            v=encoded(own),
        )
    else:
        tx.run("DELETE FROM retention WHERE ns = :ns AND scope = :s", s=scope)
    if scope != BOARD:
        tx.run("UPDATE retention_due SET due_ms = 0 WHERE ns = :ns AND queue = :q", q=scope)
    tx.audit("retention", data={"scope": scope, "settings": own})


DEFAULT_STORED = {
    "done_ms": int(C.retention_done_s * 1000),
    "done_count": C.retention_done_count,
    "failed_ms": int(C.retention_failed_s * 1000),
    "failed_count": C.retention_failed_count,
    "events_ms": int(C.retention_events_s * 1000),
    "events_bytes": C.retention_events_bytes,
    "agents_ms": int(C.retention_agents_s * 1000),
}


def due_now(tx: Tx, n: int) -> int:
    """Up to ``n`` queues, looked at later, now due for a look; how many."""
    return tx.run(
        "UPDATE retention_due SET due_ms = 0 WHERE ns = :ns AND (kind, queue) IN"
        " (SELECT kind, queue FROM retention_due WHERE ns = :ns AND due_ms > 0 LIMIT :n)",
        n=n,
    ).rowcount


def _limits(tx: Tx) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """The board's settings over the defaults, and a cache for the queues'."""
    board = {k: int(v) for k, v in DEFAULT_STORED.items()}
    board.update(stored(tx, BOARD))
    return board, {}


# --- retain-1.lua --------------------------------------------------------------------------


class _Step:
    """One retention step's budget and counts."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx
        self.budget = C.retention_batch
        self.removed = self.agents = self.trimmed = 0
        self.more = False
        self.board, self.queues = _limits(tx)

    def settings(self, queue: str) -> dict[str, int]:
        if queue not in self.queues:
            self.queues[queue] = {**self.board, **stored(self.tx, queue)}
        return self.queues[queue]


def _release(tx: Tx, dep: str) -> None:
    """``dep`` lost a dependent: a done task held only for its dependents is removable again."""
    if tx.one("SELECT 1 FROM dependents WHERE ns = :ns AND dep = :d LIMIT 1", d=dep) is not None:
        return
    row = tx.one("SELECT kind, queue FROM finished WHERE ns = :ns AND id = :id AND held = 1", id=dep)
    if row is None:
        return
    tx.run("UPDATE finished SET held = 0 WHERE ns = :ns AND id = :id", id=dep)
    _count(tx, row["kind"], row["queue"], 1)


def _remove(tx: Tx, t: Row) -> None:
    tid = t["id"]
    tx.run("DELETE FROM tasks WHERE ns = :ns AND id = :id", id=tid)
    tx.run("DELETE FROM finished WHERE ns = :ns AND id = :id", id=tid)
    tx.run("DELETE FROM dependents WHERE ns = :ns AND dep = :id", id=tid)
    tx.run("DELETE FROM cascades WHERE ns = :ns AND id = :id", id=tid)
    tx.run("DELETE FROM holds WHERE ns = :ns AND task = :id AND task <> ''", id=tid)
    for dep in split(t["after"]):
        tx.run("DELETE FROM dependents WHERE ns = :ns AND dep = :d AND id = :id", d=dep, id=tid)
        _release(tx, dep)
    if t["state"] == "dead":  # still counted as unfinished for its capability set
        count_sig(tx, t["requires"], -1)


def _visit(step: _Step, kind: str, queue: str) -> None:
    """One queue's finished tasks of one kind, oldest first, until one is to be kept or the
    budget is spent; then when to look at it next."""
    tx = step.tx
    s = step.settings(queue)
    keep_ms, keep_n = s[kind + "_ms"], s[kind + "_count"]
    row = tx.one("SELECT n FROM retention_due WHERE ns = :ns AND kind = :k AND queue = :q", k=kind, q=queue)
    n = n0 = 0 if row is None else int(row[0])
    due = tx.now + int(C.retention_recheck_s * 1000)
    stop = False
    rows = tx.all(
        "SELECT f.id, t.state, t.queue, t.updated_ms, t.after, t.requires FROM finished AS f"
        " INDEXED BY finished_order"
        " LEFT JOIN tasks AS t ON t.ns = f.ns AND t.id = f.id"
        " WHERE f.ns = :ns AND f.kind = :k AND f.queue = :q AND f.held = 0 ORDER BY f.fin LIMIT :n",
        k=kind,
        q=queue,
        n=step.budget,
    )
    for r in rows:
        if step.budget <= 0:
            break
        if r["state"] is None or kind_of(r["state"]) != kind or r["queue"] != queue:
            tx.run("DELETE FROM finished WHERE ns = :ns AND id = :id", id=r["id"])  # left behind
            n -= 1
        else:
            old = keep_ms >= 0 and r["updated_ms"] <= tx.now - keep_ms
            over = keep_n >= 0 and n > keep_n
            if not old and not over:
                if keep_ms >= 0:
                    due = min(due, r["updated_ms"] + keep_ms)
                stop = True
                break
            if tx.one("SELECT 1 FROM dependents WHERE ns = :ns AND dep = :d LIMIT 1", d=r["id"]) is not None:
                if kind == "done":
                    # Kept while a task on the board depends on it (_release).
                    tx.run("UPDATE finished SET held = 1 WHERE ns = :ns AND id = :id", id=r["id"])
                    n -= 1
                else:
                    due, stop = tx.now + 1000, True  # its cascade is under way
                    break
            else:
                _remove(tx, r)
                step.removed += 1
                n -= 1
        step.budget -= 1
    if not stop:
        due, step.more = tx.now, True  # the budget ran out before a task to keep
    # By how many it shrank (a removal may meanwhile have released a task into it: _release).
    left = tx.one(
        "UPDATE retention_due SET n = n - :gone, due_ms = :d WHERE ns = :ns AND kind = :k AND queue = :q"
        " RETURNING n",
        gone=n0 - n,
        d=due,
        k=kind,
        q=queue,
    )
    if left is None or left[0] <= 0:
        tx.run("DELETE FROM retention_due WHERE ns = :ns AND kind = :k AND queue = :q", k=kind, q=queue)


def _agents(step: _Step) -> None:
    """Agents a claim registered, holding nothing, not seen for the board's horizon."""
    tx = step.tx
    idle_ms = step.board["agents_ms"]
    if idle_ms < 0:
        return
    row = tx.one("SELECT value FROM cursors WHERE ns = :ns AND name = 'agents'")
    after = "" if row is None else str(row[0])
    found = tx.all(
        "SELECT name, auto, last_seen_ms, registered_ms FROM agents WHERE ns = :ns AND name > :a"
        " ORDER BY name LIMIT :n",
        a=after,
        n=C.retention_agents_batch,
    )
    for a in found:
        if not a["auto"] or max(a["last_seen_ms"], a["registered_ms"]) > tx.now - idle_ms:
            continue
        busy = tx.one(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE ns = :ns AND agent = :a AND state = 'claimed')"
            " OR EXISTS (SELECT 1 FROM tasks INDEXED BY tasks_assigned WHERE ns = :ns AND assigned = :a"
            " AND state = 'queued' AND assigned <> '')"
            " OR EXISTS (SELECT 1 FROM tasks INDEXED BY tasks_owned WHERE ns = :ns AND owner = :a"
            " AND state = 'queued' AND assigned = '' AND steal_ms > 0)",
            a=a["name"],
        )
        if busy is not None and not busy[0]:
            tx.run("DELETE FROM agents WHERE ns = :ns AND name = :a", a=a["name"])
            tx.run("DELETE FROM ring WHERE ns = :ns AND agent = :a", a=a["name"])  # as affinity.drop
            step.agents += 1
    last = str(found[-1]["name"]) if len(found) == C.retention_agents_batch else ""
    tx.run("INSERT OR REPLACE INTO cursors (ns, name, value) VALUES (:ns, 'agents', :v)", v=last)


def _events(step: _Step) -> None:
    """The audit trail: its horizon, then its size (estimated from the oldest rows, as
    Redis's MEMORY USAGE samples the oldest nodes), at most ``retention_events_batch`` rows."""
    tx, batch = step.tx, C.retention_events_batch
    head = tx.one("SELECT seq, at_ms FROM events WHERE ns = :ns ORDER BY seq LIMIT 1")
    if head is None:
        return
    first = int(head["seq"])
    if step.board["events_ms"] >= 0 and head["at_ms"] < tx.now - step.board["events_ms"]:
        cutoff = tx.now - step.board["events_ms"]
        upto = tx.one(
            "SELECT MAX(seq), COUNT(*) FROM"
            " (SELECT seq, at_ms FROM events WHERE ns = :ns ORDER BY seq LIMIT :n) WHERE at_ms < :cut",
            n=batch,
            cut=cutoff,
        )
        if upto is not None and upto[0] is not None:
            step.trimmed += tx.run("DELETE FROM events WHERE ns = :ns AND seq <= :s", s=upto[0]).rowcount
            step.more = step.more or upto[1] >= batch
            first = int(upto[0]) + 1
    budget, left = step.board["events_bytes"], batch
    if budget < 0:
        return
    # Trimming to the share of the count that fits assumes events of one size; when the
    # oldest were smaller, the next look (up to 4 here) trims again.
    for _ in range(4):
        count = tx.counter("event") - first + 1
        sample = tx.one(
            "SELECT AVG(length(CAST(data AS BLOB)) + length(type) + length(task) + length(agent)"
            " + length(operator) + length(ns) + 32)"
            " FROM (SELECT * FROM events WHERE ns = :ns ORDER BY seq LIMIT 1000)"
        )
        if count <= 0 or sample is None or sample[0] is None or count * float(sample[0]) <= budget:
            return
        if left <= 0:
            step.more = True
            return
        size = count * float(sample[0])
        cut = min(count - int(count * budget / size), left)
        n = tx.run("DELETE FROM events WHERE ns = :ns AND seq < :s", s=first + cut).rowcount
        step.trimmed, left, first = step.trimmed + n, left - n, first + cut
        if n == 0:
            return


def retain(tx: Tx) -> tuple[int, int, int, bool]:
    """One retention step: (tasks removed, agents removed, events trimmed, more due now)."""
    step = _Step(tx)
    due = tx.all(
        "SELECT kind, queue FROM retention_due WHERE ns = :ns AND due_ms <= :now ORDER BY due_ms LIMIT :n",
        now=tx.now,
        n=C.retention_queues_batch,
    )
    for d in due:
        if step.budget <= 0:
            break
        _visit(step, d["kind"], d["queue"])
    if (
        tx.one("SELECT 1 FROM retention_due WHERE ns = :ns AND due_ms <= :now LIMIT 1", now=tx.now)
        is not None
    ):
        step.more = True
    _agents(step)
    _events(step)
    gone, more = trim_messages(tx, step.board["events_ms"])  # with the audit trail's horizon
    step.more = step.more or more
    tx.changed = tx.changed or gone > 0
    if step.removed or step.agents:
        tx.changed = True  # views look again (the hints channel's twin)
    return step.removed, step.agents, step.trimmed, step.more
