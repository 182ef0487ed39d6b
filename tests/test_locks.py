"""Path locks mean one thing on both backends: holds per (agent, task) with their own mode,
one spelling per path, no glob that locks nothing, and task-bound locks that live exactly
as long as their claim. Every test runs on Redis and on the file store and reads the board
back through ``Store.locks()`` and through who may lock what.
"""

from __future__ import annotations

import os
import sqlite3
import unicodedata
from pathlib import Path

import pytest
from oldboards import undo_since_7
from waiting import clock_past

from claimroom.core import constants, lockpath
from claimroom.core.errors import BadInput, Conflict, NotFound, WrongState
from claimroom.core.file.schema import SCHEMA_VERSION
from claimroom.core.migrate import migrate
from claimroom.core.models import Lock
from claimroom.core.redis.store import RedisStore
from claimroom.core.store import Store

Shape = list[tuple[str, bool, list[tuple[str, str, bool]]]]


def shape(locks: list[Lock]) -> Shape:
    """Locks without their times: path, shared, and each hold's (agent, task, shared)."""
    return [(lk.path, lk.shared, [(h.agent, h.task, h.shared) for h in lk.holders]) for lk in locks]


async def claims(store: Store, agent: str, n: int, ttl_s: float = 60) -> list[tuple[str, int]]:
    """``n`` new tasks claimed by ``agent``: their ids and tokens."""
    await store.register(agent, max_claims=n)
    out = []
    for i in range(n):
        tid = await store.add(f"task {i}")
        c = await store.claim(agent, ttl_s=ttl_s)
        assert c is not None and c.task.id == tid
        out.append((tid, c.token))
    return out


# --- holds are per (agent, task) ----------------------------------------------------------


@pytest.mark.parametrize("ends_first", [0, 1])
async def test_one_claim_ending_leaves_the_agents_other_hold(store: Store, ends_first: int) -> None:
    both = await claims(store, "ada", 2)
    for tid, _token in both:
        await store.lock(["src"], "ada", task=tid)
    ended, other = both[ends_first], both[1 - ends_first]
    await store.complete(*ended)
    assert shape(await store.locks()) == [("src", False, [("ada", other[0], False)])]
    with pytest.raises(Conflict, match="src is locked by ada"):
        await store.lock(["src/app.py"], "bob")
    await store.complete(*other)
    assert await store.locks() == []
    await store.lock(["src/app.py"], "bob")


async def test_an_untied_hold_outlives_a_claims_hold_on_the_same_path(store: Store) -> None:
    ((tid, token),) = await claims(store, "ada", 1)
    await store.lock(["docs"], "ada")
    await store.lock(["docs"], "ada", task=tid)
    await store.release(tid, token)
    assert shape(await store.locks()) == [("docs", False, [("ada", "", False)])]
    with pytest.raises(Conflict, match="docs is locked by ada"):
        await store.lock(["docs/index.md"], "bob", shared=True)


async def test_unlock_drops_every_hold_of_the_agent_or_only_one_tasks(store: Store) -> None:
    (t1, _), (t2, _) = await claims(store, "ada", 2)
    for task in ("", t1, t2):
        await store.lock(["src", "docs"], "ada", task=task)
    assert await store.unlock(["src"], "ada", task=t1) == ["src"]
    assert shape(await store.locks())[1] == ("src", False, [("ada", "", False), ("ada", t2, False)])
    assert await store.unlock(["src"], "ada", task="") == ["src"]
    assert await store.unlock(["src"], "ada", task=t1) == []  # already gone
    assert await store.unlock(["src", "docs"], "ada") == ["docs", "src"]
    assert await store.locks() == []


# --- the mode belongs to the hold ----------------------------------------------------------


@pytest.mark.parametrize("exclusive", [0, 1])
async def test_a_shared_hold_leaves_the_agents_exclusive_hold_exclusive(store: Store, exclusive: int) -> None:
    both = await claims(store, "ada", 2)
    for i, (tid, _token) in enumerate(both):
        await store.lock(["src"], "ada", task=tid, shared=i != exclusive)
    ex_task, sh_task = both[exclusive][0], both[1 - exclusive][0]
    (lk,) = await store.locks()
    assert not lk.shared
    assert sorted((h.task, h.shared) for h in lk.holders) == sorted([(ex_task, False), (sh_task, True)])
    with pytest.raises(Conflict, match="src is locked by ada"):
        await store.lock(["src/app.py"], "bob", shared=True)
    # When the exclusive hold's claim ends, the shared one is what is left.
    await store.complete(*both[exclusive])
    assert shape(await store.locks()) == [("src", True, [("ada", sh_task, True)])]
    await store.lock(["src/app.py"], "bob", shared=True)
    with pytest.raises(Conflict, match=r"src/app\.py is locked by bob"):
        await store.lock(["src/app.py"], "carol")
    with pytest.raises(Conflict, match="src is locked by ada"):
        await store.lock(["src/lib.py"], "carol")


async def test_taking_a_hold_again_replaces_its_mode(store: Store) -> None:
    await store.lock(["README.md"], "ada", shared=True)
    await store.lock(["README.md"], "ada")
    assert shape(await store.locks()) == [("README.md", False, [("ada", "", False)])]
    with pytest.raises(Conflict):
        await store.lock(["README.md"], "bob", shared=True)


# --- one path, one lock ------------------------------------------------------------------


def spellings(root: Path) -> list[str]:
    return [
        "src/café.py",
        "./src/café.py",
        f"{root}/src/café.py",
        f"{root}//src/./café.py",
        "src//café.py",
        "src\\café.py",
        "src/lib/../café.py",
        unicodedata.normalize("NFD", "src/café.py"),
        "src/café.py/",
    ]


@pytest.mark.parametrize("index", range(9))
async def test_every_spelling_of_a_path_is_one_lock(store: Store, tmp_path: Path, index: int) -> None:
    names = spellings(tmp_path)
    assert len(set(names)) == len(names)  # nine different strings
    await store.lock([names[index]], "ada", root=tmp_path)
    assert shape(await store.locks()) == [("src/café.py", False, [("ada", "", False)])]
    for other in names:
        with pytest.raises(Conflict, match=r"src/café\.py is locked by ada"):
            await store.lock([other], "bob", root=tmp_path)
    assert await store.unlock([names[-1 - index]], "ada", root=tmp_path) == ["src/café.py"]
    assert await store.locks() == []


async def test_a_root_reached_through_a_symlink_is_the_same_project(store: Store, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    await store.lock([f"{real}/src/app.py"], "ada", root=tmp_path / "link")
    with pytest.raises(Conflict, match=r"src/app\.py is locked by ada"):
        await store.lock([f"{tmp_path}/link/src"], "bob", root=real)


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/etc/passwd", "outside the project"),
        ("{root}/../elsewhere/x.py", "outside the project"),
        ("{root}x/y.py", "outside the project"),  # a sibling whose name starts like the root's
        ("../x.py", "leaves the project"),
        ("src/../../x.py", "leaves the project"),
        ("src\\..\\..\\x.py", "leaves the project"),
        ("{root}", "names no file or directory"),
        ("{root}/.", "names no file or directory"),
        ("./", "names no file or directory"),
        ("**", "names no file or directory"),
    ],
)
async def test_paths_outside_the_project_are_refused(
    store: Store, tmp_path: Path, path: str, why: str
) -> None:
    with pytest.raises(BadInput, match=why):
        await store.lock([path.format(root=tmp_path)], "ada", root=tmp_path)
    assert await store.locks() == []


async def test_an_absolute_path_needs_the_project_root(store: Store) -> None:
    with pytest.raises(BadInput, match="absolute: give it from the project root"):
        await store.lock(["/srv/app/src/x.py"], "ada")


async def test_case_is_kept_on_a_case_sensitive_filesystem(store: Store, tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    assert not lockpath.case_insensitive(str(tmp_path))  # ext4, tmpfs: App.py and app.py are two files
    await store.lock(["src/App.py"], "ada", root=tmp_path)
    await store.lock(["src/app.py"], "bob", root=tmp_path)
    assert [lk.path for lk in await store.locks()] == ["src/App.py", "src/app.py"]


# --- globs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["src/app/**", "src/app/**/", "./src/app/**"])
async def test_a_directory_glob_is_the_directory_lock(store: Store, spelling: str) -> None:
    await store.lock([spelling], "ada")
    assert shape(await store.locks()) == [("src/app", False, [("ada", "", False)])]
    for inside in ("src/app/x.py", "src/app/deep/y.py", "src/app", "src"):
        with pytest.raises(Conflict, match="locked by ada"):
            await store.lock([inside], "bob")
    await store.lock(["src/application.py"], "bob")


GLOBS = ["*.py", "src/*.py", "src/app?.py", "src/**/x.py", "src/*/**", "**/*.py"]


@pytest.mark.parametrize("glob", GLOBS)
async def test_other_globs_are_refused(store: Store, glob: str) -> None:
    with pytest.raises(BadInput, match="is a glob"):
        await store.lock([glob], "ada")
    with pytest.raises(BadInput, match="is a glob"):
        await store.unlock([glob], "ada")
    assert await store.locks() == []


async def test_brackets_are_part_of_a_name_not_a_glob(store: Store) -> None:
    with pytest.raises(BadInput, match=r"'src/\*\.py' is a glob"):
        await store.lock(["app/[slug]/page.tsx", "src/*.py"], "ada")
    assert await store.locks() == []
    await store.lock(["app/[slug]/page.tsx"], "ada")
    assert [lk.path for lk in await store.locks()] == ["app/[slug]/page.tsx"]
    with pytest.raises(Conflict, match=r"app/\[slug\]/page\.tsx is locked by ada"):
        await store.lock(["app/[slug]"], "bob")
    await store.lock(["app/[id]"], "bob")


# --- a task-bound lock lives as long as its claim ---------------------------------------------


async def test_a_task_bound_lock_expires_with_its_claim_not_after_a_ttl(store: Store) -> None:
    ((tid, token),) = await claims(store, "ada", 1, ttl_s=3600)
    expires = await store.lock(["src"], "ada", task=tid)
    deadline = (await store.get(tid)).deadline_ms
    assert expires == deadline  # an hour: longer than any lock ttl default
    (lk,) = await store.locks()
    assert lk.holders[0].expires_ms == deadline
    # A heartbeat moves the claim's deadline, and the lock's with it, either way.
    new = await store.heartbeat(tid, token, ttl_s=7200)
    assert [h.expires_ms for lk in await store.locks() for h in lk.holders] == [new]
    new = await store.heartbeat(tid, token, ttl_s=600)
    assert [h.expires_ms for lk in await store.locks() for h in lk.holders] == [new]
    new = await store.extend(tid, token, 100, "lead")
    assert [h.expires_ms for lk in await store.locks() for h in lk.holders] == [new]


async def test_a_heartbeated_claim_keeps_its_lock_and_a_silent_one_loses_it(store: Store) -> None:
    ((tid, token),) = await claims(store, "ada", 1, ttl_s=1)
    await store.lock(["src"], "ada", task=tid)
    claimed = await store.get(tid)
    beat, deadline = claimed.claimed_ms, claimed.deadline_ms
    while beat < claimed.deadline_ms + 500:  # longer than the lease, kept alive by heartbeats
        beat = await clock_past(store, beat + 300)  # a heartbeat every 0.3 s on the store's clock
        deadline = await store.heartbeat(tid, token)
        with pytest.raises(Conflict, match="src is locked by ada"):
            await store.lock(["src/app.py"], "bob")
    await clock_past(store, deadline)  # silent past its deadline: the claim is over, and so is the lock
    assert await store.locks() == []
    await store.lock(["src/app.py"], "bob")  # before any reaper ran
    assert (await store.get(tid)).state.value == "claimed"
    report = await store.reap()
    assert report.requeued == (tid,)
    assert [lk.path for lk in await store.locks()] == ["src/app.py"]


async def test_a_task_bound_lock_takes_no_ttl(store: Store) -> None:
    ((tid, _),) = await claims(store, "ada", 1)
    with pytest.raises(BadInput, match="lasts as long as the claim"):
        await store.lock(["src"], "ada", task=tid, ttl_s=30)
    assert await store.locks() == []


async def test_a_task_bound_lock_needs_a_live_claim_of_that_agent(store: Store) -> None:
    ((tid, _token),) = await claims(store, "ada", 1, ttl_s=0.2)
    with pytest.raises(WrongState, match=f"does not hold task {tid}"):
        await store.lock(["src"], "bob", task=tid)
    with pytest.raises(NotFound):
        await store.lock(["src"], "ada", task="t999")
    await clock_past(store, (await store.get(tid)).deadline_ms)  # not yet reaped: no claim to lock for
    with pytest.raises(WrongState, match=f"does not hold task {tid}"):
        await store.lock(["src"], "ada", task=tid)
    assert await store.locks() == []


@pytest.mark.parametrize("action", ["kill", "reassign", "cancel"])
async def test_an_operators_move_ends_the_claims_holds_only(store: Store, action: str) -> None:
    ((tid, token),) = await claims(store, "ada", 1)
    await store.register("bob")
    await store.lock(["src", "docs"], "ada", task=tid)
    await store.lock(["docs"], "ada", shared=True)
    await store.act(action, tid, "claimed", token, "lead", agent="bob")
    assert shape(await store.locks()) == [("docs", True, [("ada", "", True)])]
    await store.lock(["docs/guide.md"], "bob", shared=True)
    await store.lock(["src"], "bob")


def test_case_insensitive_detection_reads_the_filesystem(tmp_path: Path) -> None:
    """On this machine's filesystem two spellings are two files; the probe must say so,
    and a root with nothing in it (nothing to probe) counts as case-sensitive."""
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not lockpath.case_insensitive(str(empty))
    (tmp_path / "Readme").write_text("x")
    assert os.path.exists(tmp_path / "Readme") and not os.path.exists(tmp_path / "rEADME")
    assert not lockpath.case_insensitive(str(tmp_path))


# --- carried across stores and versions --------------------------------------------------------


async def test_migration_carries_each_holds_mode_task_and_lifetime(
    store: Store, backend: str, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    (t1, _), (t2, k2) = await claims(store, "ada", 2)
    await store.lock(["src"], "ada", task=t1)
    await store.lock(["src"], "ada", task=t2, shared=True)
    await store.lock(["docs"], "ada", shared=True)
    await store.lock(["docs"], "bob", shared=True)
    before = await store.locks()
    other = redis_url if backend == "file" else (tmp_path / "other").as_uri()
    (tmp_path / "other").mkdir()
    async with Store.from_url(other, namespace + "-moved") as dst:
        await migrate(store, dst)
        assert await dst.locks() == before  # modes, tasks and expiry times alike
        await dst.complete(t2, k2)
        assert shape(await dst.locks()) == [
            ("docs", True, [("ada", "", True), ("bob", "", True)]),
            ("src", False, [("ada", t1, False)]),
        ]
        with pytest.raises(Conflict, match="src is locked by ada"):
            await dst.lock(["src/x.py"], "bob", shared=True)


# The lock tables of a board written before holds had their own mode (file schema 1).
SCHEMA_1_LOCKS = """
DROP TABLE holds;
CREATE TABLE locks (
  ns TEXT NOT NULL, path TEXT NOT NULL, mode TEXT NOT NULL, PRIMARY KEY (ns, path)
) WITHOUT ROWID;
CREATE TABLE holds (
  ns TEXT NOT NULL, path TEXT NOT NULL, agent TEXT NOT NULL, expires_ms INTEGER NOT NULL,
  task TEXT NOT NULL DEFAULT '', PRIMARY KEY (ns, path, agent)
) WITHOUT ROWID;
CREATE INDEX holds_task ON holds (ns, task) WHERE task <> '';
CREATE INDEX holds_expiry ON holds (ns, expires_ms);
DROP INDEX tasks_cancelled_by;
ALTER TABLE tasks DROP COLUMN cancelled_by;
DROP TABLE cascades;
DROP TABLE reaper;
ALTER TABLE agents DROP COLUMN auto;
DROP TABLE finished;
DROP TABLE retention_due;
DROP TABLE retention;
DROP TABLE cursors;
ALTER TABLE agents DROP COLUMN session;
DROP TABLE tokens;
UPDATE meta SET value = '1' WHERE key = 'schema';
"""


async def test_a_board_of_file_schema_1_keeps_its_locks(tmp_path: Path) -> None:
    folder = tmp_path / "board"
    folder.mkdir()
    async with Store.from_url(folder.as_uri(), "ns") as s:
        ((tid, token),) = await claims(s, "ada", 1, ttl_s=3600)
        deadline = (await s.get(tid)).deadline_ms
    conn = sqlite3.connect(folder / constants.file_db_name)
    try:
        undo_since_7(conn)  # and everything after 7 (below: everything after 1)
        conn.executescript(SCHEMA_1_LOCKS)
        soon = deadline - 3_000_000  # schema 1 gave a task's lock its own 300 s ttl
        conn.executemany("INSERT INTO locks VALUES ('ns', ?, ?)", [("docs", "shared"), ("src", "exclusive")])
        conn.executemany(
            "INSERT INTO holds VALUES ('ns', ?, ?, ?, ?)",
            [("docs", "ada", soon, ""), ("docs", "bob", soon, ""), ("src", "ada", soon, tid)],
        )
        conn.commit()
    finally:
        conn.close()
    async with Store.from_url(folder.as_uri(), "ns") as s:
        assert shape(await s.locks()) == [
            ("docs", True, [("ada", "", True), ("bob", "", True)]),
            ("src", False, [("ada", tid, False)]),
        ]
        held = {(lk.path, h.agent): h.expires_ms for lk in await s.locks() for h in lk.holders}
        assert held == {("docs", "ada"): soon, ("docs", "bob"): soon, ("src", "ada"): deadline}
        await s.complete(tid, token)
        assert [lk.path for lk in await s.locks()] == ["docs"]
    conn = sqlite3.connect(folder / constants.file_db_name)
    try:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (
            str(SCHEMA_VERSION),
        )
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'locks'").fetchall() == []
    finally:
        conn.close()


async def test_a_redis_lock_written_before_holds_had_modes_reads_as_untied(redis_store: Store) -> None:
    """Such a hash (one ``mode`` for the path, ``h:<agent>`` and ``t:<agent>``) keeps its
    mode and ttl and counts as untied; when its last hold goes, its old fields go too."""
    assert isinstance(redis_store, RedisStore)
    # Raw keys on purpose: this stages a hash an older claimroom wrote, which no API writes.
    r, ns = redis_store._redis, redis_store.namespace
    sec, usec = await r.time()
    expires = int(sec) * 1000 + int(usec) // 1000 + 60_000
    await r.hset(constants.lock_key(ns, "docs"), mapping={"mode": "shared", "h:ada": expires, "t:ada": "t1"})
    await r.zadd(constants.locks_key(ns), {"docs": expires})
    await r.zadd(constants.lockpaths_key(ns), {"docs": 0})
    assert shape(await redis_store.locks()) == [("docs", True, [("ada", "", True)])]
    await redis_store.lock(["docs/a.md"], "bob", shared=True)
    with pytest.raises(Conflict, match="docs is locked by ada"):
        await redis_store.lock(["docs/b.md"], "carol")
    assert await redis_store.unlock(["docs"], "ada") == ["docs"]
    assert await r.exists(constants.lock_key(ns, "docs")) == 0
    assert await r.zrange(constants.lockpaths_key(ns), 0, -1) == ["docs/a.md"]


def test_a_hostile_absolute_path_costs_no_walk_per_part(tmp_path: Path) -> None:
    """Thousands of parts under an absolute path are refused (or taken) without a realpath
    per part: the fuzz test once ran out of its 10 s on such a path."""
    deep = "/" + "/".join(["a"] * 3000)
    with pytest.raises(BadInput, match="longer than"):
        lockpath.normal(deep, tmp_path)
    outside = "/" + "/".join(["a"] * 400)
    with pytest.raises(BadInput, match="outside the project"):
        lockpath.normal(outside, tmp_path)
