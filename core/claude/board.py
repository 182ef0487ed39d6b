"""What the PreToolUse hook reads from the board, read with as little start-up as possible.

The hook runs before every edit, as a new process: it imports no Store (redis-py alone
costs ~110 ms to import) and reads with ``core/resp.py`` on Redis and a read-only SQLite
connection on the file board. It reads only: which live holds cover one path (the path,
a directory above it, anything under it: what a lock on it would clash with, see
``lua/lock-1.lua``), and the titles of the tasks they belong to. Both backends' lock
layouts are read here and nowhere else outside the backends themselves.
"""

from __future__ import annotations

from typing import NamedTuple

from .. import constants as C
from ..lockhash import holds_in

under_limit = 100  # holds under a path looked at (rule 10: bounded work); a file has none


class Hold(NamedTuple):
    """One live hold that covers a path."""

    path: str
    agent: str
    task: str
    shared: bool


def _around(path: str) -> list[str]:
    """``path`` and every directory above it, nearest first."""
    out = [path]
    while "/" in out[-1]:
        out.append(out[-1].rsplit("/", 1)[0])
    return out


def holds_covering(
    url: str, namespace: str, paths: list[str], timeout_s: float
) -> tuple[dict[str, list[Hold]], dict[str, str]]:
    """The live holds that cover each of ``paths`` (normalised), and their tasks' titles."""
    if url.split("://", 1)[0].lower() == "file":
        return _file_holds(url, namespace, paths, timeout_s)
    return _redis_holds(url, namespace, paths, timeout_s)


def _redis_holds(
    url: str, ns: str, paths: list[str], timeout_s: float
) -> tuple[dict[str, list[Hold]], dict[str, str]]:
    from ..resp import Connection

    with Connection(url, timeout_s, C.events_key(ns)) as r:
        first: list[tuple[object, ...]] = [("TIME",)]
        for path in paths:
            first.append(
                ("ZRANGEBYLEX", C.lockpaths_key(ns), f"[{path}/", f"({path}0", "LIMIT", 0, under_limit)
            )
            first += [("HGETALL", C.lock_key(ns, p)) for p in _around(path)]
        replies = r.pipeline(first)
        now_ms = int(replies[0][0]) * 1000 + int(replies[0][1]) // 1000
        at = 1
        found: dict[str, list[Hold]] = {}
        for path in paths:
            above = _around(path)
            under = list(replies[at])
            hashes = list(replies[at + 1 : at + 1 + len(above)])
            at += 1 + len(above)
            if under:
                hashes += r.pipeline([("HGETALL", C.lock_key(ns, p)) for p in under])
            holds = []
            for p, flat in zip([*above, *under], hashes, strict=True):
                fields = dict(zip(flat[::2], flat[1::2], strict=True))
                holds += [
                    Hold(p, a, t, shared) for a, t, expires, shared in holds_in(fields) if expires > now_ms
                ]
            found[path] = holds
        tasks = sorted({h.task for holds in found.values() for h in holds if h.task})
        titles = r.pipeline([("HGET", C.task_key(ns, t), "title") for t in tasks]) if tasks else []
    return found, {t: title or "" for t, title in zip(tasks, titles, strict=True)}


def _file_holds(
    url: str, ns: str, paths: list[str], timeout_s: float
) -> tuple[dict[str, list[Hold]], dict[str, str]]:
    import sqlite3

    from ..file.schema import NOW_SQL, db_path, unavailable

    db = db_path(url)
    if not db.exists():
        return {p: [] for p in paths}, {}  # no board yet: nothing is locked
    try:
        conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=timeout_s)
    except sqlite3.Error as exc:
        raise unavailable(db, exc) from None
    found: dict[str, list[Hold]] = {}
    try:
        now = conn.execute(NOW_SQL).fetchone()[0]
        for path in paths:
            above = _around(path)
            marks = ",".join("?" * len(above))
            rows = conn.execute(
                "SELECT path, agent, task, shared FROM holds WHERE ns = ? AND expires_ms > ? "
                f"AND path IN ({marks}) UNION ALL SELECT path, agent, task, shared FROM ("
                "  SELECT * FROM holds WHERE ns = ? AND expires_ms > ? AND path > ? AND path < ? LIMIT ?)",
                (ns, now, *above, ns, now, f"{path}/", f"{path}0", under_limit),
            ).fetchall()
            found[path] = [Hold(str(p), str(a), str(t), bool(sh)) for p, a, t, sh in rows]
        tasks = sorted({h.task for holds in found.values() for h in holds if h.task})
        titles = dict(
            conn.execute(
                f"SELECT id, title FROM tasks WHERE ns = ? AND id IN ({','.join('?' * len(tasks))})",
                (ns, *tasks),
            ).fetchall()
            if tasks
            else []
        )
    except sqlite3.Error as exc:
        raise unavailable(db, exc) from None
    finally:
        conn.close()
    return found, {t: str(titles.get(t, "")) for t in tasks}
