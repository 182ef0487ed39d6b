"""What is particular to the file store (SQLite in WAL mode, one machine): many processes
on one database file, a writer killed mid-write, a missing, read-only or full directory,
a database held by another process, several namespaces in one file, and moving a whole
board to Redis and back. The behaviour every backend shares is the conformance suite
(every test taking ``store`` runs on both backends).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from waiting import Waits, clock_past, until, until_sync, waits_announced

from claimroom.core import constants
from claimroom.core.errors import BadInput, Conflict, LeaseLost, StoreUnavailable
from claimroom.core.file.store import FileStore
from claimroom.core.file.worker import Handoff
from claimroom.core.migrate import migrate
from claimroom.core.models import Event, State
from claimroom.core.store import Store, TaskSpec

pytestmark = pytest.mark.slow
CLAIMROOM = str(Path(sys.executable).parent / "claimroom")


def board_dir(tmp_path: Path, name: str = "board") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


def integrity(folder: Path) -> str:
    with contextlib.closing(sqlite3.connect(folder / constants.file_db_name)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def holds_the_writer_turn(pid: int, folder: Path, *, waiting: bool = False) -> bool:
    """Whether process ``pid`` holds the board's writer turn (its flock on the queue file,
    taken before ``BEGIN IMMEDIATE`` and let go after ``COMMIT``), or with ``waiting``
    sleeps in flock for it, as the kernel lists it: looking takes no lock, so it changes
    nothing for the writer."""
    inode = os.stat(folder / f"{constants.file_db_name}-lock").st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if waiting != (fields[1:2] == ["->"]):
            continue
        fields = [f for f in fields if f != "->"]
        if fields[1:2] == ["FLOCK"] and fields[4] == str(pid) and fields[5].endswith(f":{inode}"):
            return True
    return False


def spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@contextlib.contextmanager
def spawned(code: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``spawn``, and on the way out, a failed assertion's too, the process killed if it
    still runs, reaped and its pipes closed. (Pipes left to the garbage collector fail a
    later test, whichever collects them: ResourceWarning is an error here.)"""
    proc = spawn(code, *args)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        with proc:  # closes the pipes, waits for it
            pass


# --- many processes on one file ---------------------------------------------------------

WORKER = r"""
import asyncio, json, random, sys
from claimroom.core.models import State
from claimroom.core.store import Store

async def main(url, ns, name, total):
    rng = random.Random(name)
    done = []
    async with Store.from_url(url, ns) as s:
        await s.register(name)  # tells the parent this process is up
        while True:
            c = await s.claim(name, ttl_s=60, wait_s=0.5)
            if c is None:
                if (await s.counts())[State.DONE] >= total:
                    break
                continue
            if rng.random() < 0.1:
                await s.release(c.task.id, c.token)  # so some tasks are claimed twice
                continue
            await s.complete(c.task.id, c.token, {"by": name})
            done.append([c.task.id, c.token])
    print(json.dumps(done))

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


@pytest.mark.heavy
async def test_16_processes_complete_5000_tasks_exactly_once(tmp_path: Path, namespace: str) -> None:
    url, total, procs = board_dir(tmp_path).as_uri(), 5_000, 16
    async with Store.from_url(url, namespace) as admin:
        with contextlib.ExitStack() as started:
            workers = [
                started.enter_context(spawned(WORKER, url, namespace, f"p{i:02d}", str(total)))
                for i in range(procs)
            ]
            deadline = time.monotonic() + 30
            while len(await admin.agents()) < procs:  # all up, so they really race
                assert time.monotonic() < deadline, "worker processes did not start"
                assert all(w.poll() is None for w in workers), [w.stderr.read() for w in workers if w.stderr]
                await asyncio.sleep(0.05)
            ids = []
            for start in range(0, total, 1_000):
                ids += await admin.add_many(
                    [TaskSpec(f"job {i}", priority=i % 3) for i in range(start, start + 1_000)]
                )
            outs = await asyncio.gather(*(asyncio.to_thread(w.communicate, timeout=80) for w in workers))
        assert all(w.returncode == 0 for w in workers), [err for _, err in outs if err]
        reported = [tuple(pair) for out, _ in outs for pair in json.loads(out)]
        assert all(json.loads(out) for out, _ in outs), "a process never got any work"

        events = await admin.events(count=10_000_000)
        per: dict[str, list[Event]] = defaultdict(list)
        for e in events:
            per[e.task].append(e)
        tokens: list[int] = []
        for tid in ids:
            live: int | None = None
            completed = 0
            for e in per[tid]:
                if e.type == "claimed":
                    assert live is None, f"{tid} claimed twice at once"
                    live = e.token
                    tokens.append(e.token)
                elif e.type in ("completed", "released"):
                    assert e.token == live, f"{tid}: {e.type} with a stale token"
                    live = None
                    completed += e.type == "completed"
            assert completed == 1, f"{tid} completed {completed} times"
        assert len(tokens) == len(set(tokens)) > total  # unique, and some tasks were re-claimed
        assert {(e.task, e.token) for e in events if e.type == "completed"} == set(reported)
        assert len(reported) == total
        assert (await admin.counts())[State.DONE] == total
    assert integrity(tmp_path / "board") == "ok"


# --- kill -9 in the middle of writes ----------------------------------------------------------

WRITER = r"""
import asyncio, os, sys
from claimroom.core.store import Store, TaskSpec

async def main(url, ns, big):
    # An agent of its own: an agent holds one claim at a time, and the claim of the writer
    # killed before this one keeps its agent at capacity until its lease ends.
    me = f"writer{os.getpid()}"
    async with Store.from_url(url, ns) as s:
        n = 0
        while True:
            ids = await s.add_many([TaskSpec(f"b{n}-{i}", payload={"pad": "x" * 500}) for i in range(50)])
            print("added", ids[0], ids[-1], flush=True)
            c = await s.claim(me, ttl_s=0.5)
            print("claimed", c.task.id, c.token, flush=True)
            await s.heartbeat(c.task.id, c.token, progress=0.2)
            await s.complete(c.task.id, c.token, {"n": n})
            print("done", c.task.id, c.token, flush=True)
            n += 1
            if big and n % 5 == 0:  # a long transaction, to be killed in the middle of
                print("big", n, n, flush=True)
                big = [TaskSpec(f"big{os.getpid()}.{n}-{i}", payload={"pad": "y" * 500}) for i in range(5000)]
                ids = await s.add_many(big)
                print("added", ids[0], ids[-1], flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] == "big"))
"""


@pytest.mark.heavy
async def test_kill_9_mid_writes_loses_and_corrupts_nothing(tmp_path: Path, namespace: str) -> None:
    folder = board_dir(tmp_path)
    url = folder.as_uri()
    added: list[tuple[int, int]] = []
    done: dict[str, int] = {}
    for round_ in range(3):
        with spawned(WRITER, url, namespace, "big" if round_ == 0 else "") as writer:
            assert writer.stdout is not None
            for lines, line in enumerate(writer.stdout, 1):  # well into its writes, then kill it
                word, a, b = line.split()
                if word == "added":
                    added.append((int(a[1:]), int(b[1:])))
                elif word == "done":
                    done[a] = int(b)
                elif word == "big" and round_ == 0:
                    # Inside its 5000-task batch (its next write after saying "big"). The
                    # batch is written add_chunk tasks per transaction, and under load the
                    # first chunks can commit before the kill lands.
                    in_big = functools.partial(holds_the_writer_turn, writer.pid, folder)
                    until_sync(in_big, "the big transaction", every_s=0.002)
                    break
                if lines >= 60 + 37 * round_:
                    break
            assert writer.poll() is None, writer.stderr.read() if writer.stderr else ""
            writer.send_signal(signal.SIGKILL)

    assert integrity(folder) == "ok"
    async with Store.from_url(url, namespace) as s:
        tasks = await s.tasks(limit=1_000_000)
        counts = await s.counts()
        events = await s.events(count=10_000_000)
        # Batches are atomic: whole batches only, and every batch a writer saw is there.
        assert len(tasks) % 50 == 0 and sum(counts.values()) == len(tasks)
        big: dict[str, int] = defaultdict(int)
        for t in tasks:
            if t.title.startswith("big"):
                big[t.title.split("-")[0]] += 1
        # A big batch is written in chunks of add_chunk, each atomic: whole chunks only.
        assert all(n % constants.add_chunk == 0 and n <= 5000 for n in big.values()), big
        have = {int(t.id[1:]) for t in tasks}
        for first, last in added:
            assert set(range(first, last + 1)) <= have
        # Every completion a writer was told about stands, audited once with its token.
        by_id = {t.id: t for t in tasks}
        for tid, token in done.items():
            assert by_id[tid].state is State.DONE and by_id[tid].token == token
        completed = [(e.task, e.token) for e in events if e.type == "completed"]
        assert len(completed) == len(set(completed)) == counts[State.DONE]
        assert set(done.items()) <= set(completed)
        # State and audit together: one "added" per task, and the last claim or end agrees.
        assert sorted(e.task for e in events if e.type == "added") == sorted(by_id)
        for t in tasks:
            if t.state is State.CLAIMED:
                last = [e for e in events if e.task == t.id][-1]
                assert last.type == "claimed" and last.token == t.token

        # A claim the killed writer held comes back after its lease; work goes on.
        await clock_past(s, max((t.deadline_ms for t in tasks if t.state is State.CLAIMED), default=0))
        assert set((await s.reap()).requeued) == {t.id for t in tasks if t.state is State.CLAIMED}
        for _ in range(20):
            c = await s.claim("rescuer")
            assert c is not None
            await s.complete(c.task.id, c.token)
        assert (await s.counts())[State.DONE] == counts[State.DONE] + 20
    assert integrity(folder) == "ok"


# --- the directory: missing, read-only, full ----------------------------------------------------


async def test_missing_directory_is_a_clear_error_and_creates_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "nowhere" / "board"
    async with Store.from_url(folder.as_uri(), "x") as s:
        with pytest.raises(StoreUnavailable) as exc:
            await s.add("x")
    message = str(exc.value)
    assert "does not exist" in message and f"mkdir -p {folder}" in message and "\n" not in message
    assert exc.value.exit_code == 5
    assert not (tmp_path / "nowhere").exists()

    env = dict(os.environ, CLAIMROOM_URL=folder.as_uri(), CLAIMROOM_NAMESPACE="x")
    p = subprocess.run([CLAIMROOM, "add", "x"], env=env, capture_output=True, text=True, timeout=30)
    assert p.returncode == 5
    assert len(p.stderr.strip().splitlines()) == 1 and "does not exist" in p.stderr
    assert "Traceback" not in p.stderr


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make a directory read-only: a read-only bind mount as root (root ignores modes)."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.iterdir()]}
        for p in modes:
            p.chmod(0o555 if p == folder else 0o444)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


async def test_read_only_directory_is_a_clear_error_and_changes_nothing(tmp_path: Path) -> None:
    empty, full = board_dir(tmp_path, "empty"), board_dir(tmp_path, "full")
    async with Store.from_url(full.as_uri(), "x") as s:
        ids = await s.add_many([TaskSpec("a"), TaskSpec("b"), TaskSpec("c")])
    with read_only(empty), read_only(full):
        for folder in (empty, full):
            async with Store.from_url(folder.as_uri(), "x") as s:
                with pytest.raises(StoreUnavailable) as exc:
                    await s.add("d")
                assert "read-only" in str(exc.value) and str(folder) in str(exc.value)
                assert "\n" not in str(exc.value) and exc.value.exit_code == 5
        assert list(empty.iterdir()) == []
    assert integrity(full) == "ok"
    async with Store.from_url(full.as_uri(), "x") as s:
        assert [t.id for t in await s.tasks()] == ids
        assert len(await s.events()) == 3


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


async def test_full_disk_is_a_clear_error_and_writes_nothing_half(tmp_path: Path) -> None:
    folder = board_dir(tmp_path)
    with small_disk(folder, "2m"):
        async with Store.from_url(folder.as_uri(), "x") as s:
            first = await s.add("before")
            filler = folder / "filler"
            free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
            filler.write_bytes(b"\0" * max(0, free - 300_000))
            added = [first]
            with pytest.raises(StoreUnavailable) as exc:
                for i in range(200):
                    added.append(await s.add(f"big {i}", payload={"pad": "x" * 16_000}))
            assert "full" in str(exc.value) and "\n" not in str(exc.value) and exc.value.exit_code == 5
            assert len(added) > 1  # it did take some before the disk filled up

            # Nothing half-written: exactly the adds that returned, each with its event.
            assert [t.id for t in await s.tasks(limit=1_000)] == added
            assert [e.task for e in await s.events()] == added
            filler.unlink()
            added.append(await s.add("after"))
            c = await s.claim("w")
            assert c is not None and c.task.id == first
            await s.complete(c.task.id, c.token)
        assert integrity(folder) == "ok"


# --- another process holds the database ------------------------------------------------------


@contextlib.asynccontextmanager
async def ticking() -> AsyncIterator[list[int]]:
    """A 10 ms ticker on the event loop; yields ``[ticks so far]``: how far the loop ran on."""
    ticks = [0]

    async def ticker() -> None:
        while True:
            await asyncio.sleep(0.01)
            ticks[0] += 1

    beat = asyncio.create_task(ticker())
    try:
        yield ticks
    finally:
        beat.cancel()


def timer_lateness(seconds: float) -> asyncio.Task[float]:
    """A timer of ``seconds`` started now on this event loop; how late it fired: what the
    machine's load adds to any timeout of that length started now (the store's "store
    busy" timer is one), so that a test of a timeout's accuracy measures the store, not
    the machine."""
    loop = asyncio.get_running_loop()
    due = loop.time() + seconds

    async def late() -> float:
        await asyncio.sleep(seconds)
        return loop.time() - due

    return asyncio.create_task(late())


async def test_a_held_database_is_store_busy_and_never_hangs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "file_busy_timeout_s", 0.5)
    folder = board_dir(tmp_path)
    async with Store.from_url(folder.as_uri(), "x") as s:
        tid = await s.add("a")
        holder = sqlite3.connect(folder / constants.file_db_name, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            async with ticking() as ticks:
                start = time.monotonic()
                with pytest.raises(StoreUnavailable) as exc:
                    await s.add("b")
                elapsed = time.monotonic() - start
                assert 0.5 <= elapsed < 2.0
                assert str(exc.value).startswith("store busy") and exc.value.exit_code == 5
                assert ticks[0] > 20  # the event loop ran on while the store waited
                # Readers are not blocked by a writer (WAL).
                assert (await s.get(tid)).state is State.QUEUED
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert [t.id for t in await s.tasks()] == [tid]
        assert await s.add("b") == "t2"


async def test_a_writer_stuck_holding_the_queue_is_store_busy_then_the_turn_passes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writers queue on an flock'd side file. A claimroom writer that stopped while holding
    it (here: another open file description holding the lock) makes others fail with "store
    busy" within the timeout, never hang; once it lets go, the next writer goes at once
    (the abandoned turn was handed on, not kept)."""
    monkeypatch.setattr(constants, "file_busy_timeout_s", 0.5)
    folder = board_dir(tmp_path)
    async with Store.from_url(folder.as_uri(), "x") as s:
        tid = await s.add("a")
        lock_file = folder / f"{constants.file_db_name}-lock"
        assert lock_file.exists()
        fd = os.open(lock_file, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            start = time.monotonic()
            with pytest.raises(StoreUnavailable) as exc:
                await s.claim("w")
            assert 0.5 <= time.monotonic() - start < 2.0
            assert str(exc.value).startswith("store busy") and exc.value.exit_code == 5
            fcntl.flock(fd, fcntl.LOCK_UN)
            start = time.monotonic()
            claim = await s.claim("w")
            assert claim is not None and claim.task.id == tid
            assert time.monotonic() - start < 0.4
        finally:
            os.close(fd)
        await s.complete(tid, claim.token)
        assert [e.type for e in await s.events(task=tid)] == ["added", "claimed", "completed"]


BUSY_S = 1.5  # a shorter "store busy" timeout for the in-process tests of its accuracy


async def test_store_busy_comes_at_the_timeout_when_the_writer_turn_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that waits for a turn another process never gives fails once, at the
    timeout: closing the store does not wait behind the abandoned wait a second time."""
    monkeypatch.setattr(constants, "file_busy_timeout_s", BUSY_S)
    folder = board_dir(tmp_path)
    async with Store.from_url(folder.as_uri(), "x") as s:
        await s.add("a")
    fd = os.open(folder / f"{constants.file_db_name}-lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        late = timer_lateness(BUSY_S)
        start = time.monotonic()
        with pytest.raises(StoreUnavailable) as exc:
            async with Store.from_url(folder.as_uri(), "x") as s:
                await s.add("b")
        elapsed = time.monotonic() - start
        slack = await late
    finally:
        os.close(fd)
    assert str(exc.value).startswith("store busy")
    assert BUSY_S * 0.9 <= elapsed <= BUSY_S * 1.1 + slack, (elapsed, slack)


async def test_store_busy_counts_the_wait_for_the_turn_and_for_sqlite_as_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The turn comes late (another claimroom writer), then SQLite's own lock is held (a
    writer that does not queue, e.g. a sqlite3 shell): one timeout for both waits."""
    monkeypatch.setattr(constants, "file_busy_timeout_s", BUSY_S)
    folder = board_dir(tmp_path)
    async with Store.from_url(folder.as_uri(), "x") as s:
        await s.add("a")
        holder = sqlite3.connect(folder / constants.file_db_name, isolation_level=None)
        try:
            with turn_held_for(folder, BUSY_S * 0.6):
                holder.execute("BEGIN IMMEDIATE")
                late = timer_lateness(BUSY_S)
                start = time.monotonic()
                with pytest.raises(StoreUnavailable) as exc:
                    await s.add("b")
                elapsed = time.monotonic() - start
                slack = await late
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert str(exc.value).startswith("store busy")
        assert BUSY_S * 0.9 <= elapsed <= BUSY_S * 1.1 + slack, (elapsed, slack)
        assert await s.add("c") == "t2"  # "b" was never added


HOLD_TURN = r"""
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


def test_the_cli_says_store_busy_at_the_documented_time(tmp_path: Path) -> None:
    """The real command, the real timeout: another process holds the writer turn; ``add``
    exits 5 "store busy" file_busy_timeout_s (within 10 %) after it started waiting for the
    turn, not twice that. Both ends are seen as they happen (the kernel lists the command
    asleep in flock; its one line on stderr), so this measures the timeout, not how long
    the machine takes to start a command."""
    folder = board_dir(tmp_path)
    env = dict(os.environ, CLAIMROOM_URL=folder.as_uri(), CLAIMROOM_NAMESPACE="x")
    env["CLAIMROOM_HOME"] = str(tmp_path)
    first = subprocess.run([CLAIMROOM, "add", "first"], env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr

    holder = spawn(HOLD_TURN, str(folder / f"{constants.file_db_name}-lock"))
    add = None
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        add = subprocess.Popen(
            [CLAIMROOM, "add", "second"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        waits = functools.partial(holds_the_writer_turn, add.pid, folder, waiting=True)
        until_sync(waits, "the command waiting for the writer turn", timeout_s=60, every_s=0.002)
        waiting = time.monotonic()
        assert add.stderr is not None
        said = add.stderr.readline()
        waited = time.monotonic() - waiting
        _, rest = add.communicate(timeout=60)
    finally:
        holder.kill()
        holder.communicate()
        if add is not None and add.poll() is None:
            add.kill()
            add.communicate()
    assert add.returncode == 5, said + rest
    assert said.startswith("claimroom: store busy") and rest == ""
    assert f"more than {constants.file_busy_timeout_s:g} s" in said
    timeout = constants.file_busy_timeout_s
    assert timeout * 0.9 <= waited <= timeout * 1.1, waited


def open_files_under(folder: Path) -> list[str]:
    out = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith(str(folder)):
                out.append(target)
    return out


async def test_a_write_whose_turn_is_free_runs_at_once_and_close_lets_go_of_every_file(
    tmp_path: Path,
) -> None:
    """No thread hop when nobody holds the writer turn (the hop cost as much CPU as the
    transaction); the store still closes everything it opened, so a directory it used can
    be unmounted."""
    folder = board_dir(tmp_path)
    s = Store.from_url(folder.as_uri(), "x")
    assert isinstance(s, FileStore)
    tid = await s.add("a")
    c = await s.claim("w")
    assert c is not None
    await s.complete(tid, c.token)
    assert s._worker is None  # all three ran on this thread: no worker was ever started
    assert open_files_under(folder)  # the database and the writer-queue file are open
    await s.close()
    assert open_files_under(folder) == []
    async with Store.from_url(folder.as_uri(), "x") as s:
        assert isinstance(s, FileStore)
        assert (await s.get(tid)).state is State.DONE
        assert s._worker is not None  # a read runs on the worker thread
    assert open_files_under(folder) == []


@contextlib.contextmanager
def turn_held_for(folder: Path, seconds: float) -> Iterator[None]:
    """Another writer (another open file description of the queue file) holds the writer
    turn, and lets go after ``seconds``."""
    with turn_held(folder) as let_go:
        timer = threading.Timer(seconds, let_go)
        timer.start()
        try:
            yield
        finally:
            timer.join()


@contextlib.contextmanager
def turn_held(folder: Path) -> Iterator[Callable[[], None]]:
    """Another writer holds the writer turn until the test calls what this yields (or the
    block ends): the test lets go when its write is known to be waiting, whatever the load."""
    fd = os.open(folder / f"{constants.file_db_name}-lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield functools.partial(fcntl.flock, fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


real_wait = Handoff.wait  # a write's caller waiting for its turn (tests below wrap it)


async def test_a_short_wait_for_the_turn_hands_it_to_the_caller_a_long_one_frees_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker sleeps in flock for the turn; if it comes within file_turn_block_s, the
    caller (still waiting on its own thread) is handed the turn and runs the work itself.
    If not, the caller's loop runs on and the worker does the work."""
    folder = board_dir(tmp_path)
    async with Store.from_url(folder.as_uri(), "x") as s:
        assert isinstance(s, FileStore)
        await s.add("a")  # the queue file exists
        here = threading.get_ident()

        def whose_thread(tx: object) -> int:
            return threading.get_ident()

        # The turn comes while the caller waits (let go as the wait starts; a generous
        # block, so that a loaded machine's slow thread wake-up cannot make it "late").
        with monkeypatch.context() as patched, turn_held(folder) as let_go:
            handed: list[bool] = []

            def turn_comes_now(handoff: Handoff, timeout_s: float) -> bool:
                let_go()
                handed.append(real_wait(handoff, timeout_s))
                return handed[-1]

            patched.setattr(constants, "file_turn_block_s", 30.0)
            patched.setattr(Handoff, "wait", turn_comes_now)
            assert await s._write(whose_thread) == here  # handed over
            assert handed == [True]

        # The turn comes after the block: the loop runs on (ten ticks while the write
        # waits) and the worker does the write.
        async with ticking() as ticks:
            with turn_held(folder) as let_go:
                write = asyncio.create_task(s._write(whose_thread))
                await asyncio.sleep(0)  # it asks for the turn, waits the block, then awaits
                seen = ticks[0]
                await until(lambda: ticks[0] >= seen + 10, "ten ticks of the loop while the write waits")
                assert not write.done()
                let_go()
                assert await write != here  # done on the worker thread
        c = await s.claim("w")  # and the store goes on as usual
        assert c is not None


@pytest.mark.parametrize("handed_over", [True, False], ids=["turn-handed-over", "turn-came-later"])
async def test_an_interrupted_wait_for_the_turn_drops_the_work_and_keeps_no_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handed_over: bool
) -> None:
    """Ctrl+C while a write waits for its turn: the write never happens (even once the
    turn comes), and the turn is not kept, so the next write goes through. The turn comes
    while the caller waits (handed over, then the interrupt), or after its wait ended."""
    folder = board_dir(tmp_path)
    async with Store.from_url(folder.as_uri(), "x") as s:
        await s.add("a")
        handed: list[bool] = []

        with turn_held(folder) as let_go:

            def interrupted(handoff: Handoff, timeout_s: float) -> bool:
                if handed_over:
                    let_go()
                handed.append(real_wait(handoff, timeout_s))
                raise KeyboardInterrupt  # (came later: the turn comes once this is handled)

            if handed_over:  # a generous block: a slow thread wake-up cannot make it "late"
                monkeypatch.setattr(constants, "file_turn_block_s", 30.0)
            monkeypatch.setattr(Handoff, "wait", interrupted)
            with pytest.raises(KeyboardInterrupt):
                await s.add("b")
        monkeypatch.undo()
        assert handed == [handed_over]
        # The worker runs its jobs in order: past this one, it is past the dropped write
        # too, whose turn has so come (the holder let go) and gone.
        await s._call(lambda call: None)
        start = time.monotonic()
        assert await s.add("c") == "t2"  # "b" was never added
        # At once, not after a wait for a turn nobody gives back ("store busy" at the timeout).
        assert time.monotonic() - start < constants.file_busy_timeout_s / 2
        assert [t.title for t in await s.tasks()] == ["a", "c"]


def test_a_handoff_goes_to_exactly_one_side() -> None:
    early = Handoff()
    assert early.hand_over()  # the turn came before the caller started waiting
    assert early.wait(0)
    late = Handoff()
    assert not late.wait(0.01)  # the caller stopped waiting first ...
    assert not late.hand_over()  # ... so the worker keeps the turn and does the work


# --- one file, several boards; waiting across processes ------------------------------------------


async def test_namespaces_share_a_file_but_nothing_else(tmp_path: Path) -> None:
    url = board_dir(tmp_path).as_uri()
    async with Store.from_url(url, "one") as one, Store.from_url(url, "two") as two:
        assert await one.add("a") == "t1"
        assert await two.add("b") == "t1"  # each board numbers its own tasks
        c1, c2 = await one.claim("w"), await two.claim("w")
        assert c1 is not None and c2 is not None and c1.token == c2.token == 1
        await one.lock(["src"], "w")
        await two.lock(["src"], "other")  # locks are per board
        await one.pause("default", "op")
        assert await two.paused() == set()
        assert [e.type for e in await two.events()] == ["added", "registered", "claimed", "locked"]
        assert (await two.get("t1")).title == "b"


# It says when it starts waiting (tests/waiting.py), and its periodic re-check is ten
# minutes away: only the change can wake it in time.
CLAIMER = r"""
import asyncio, json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from waiting import announce_waits
from claimroom.core import constants
from claimroom.core.store import Store
constants.wait_recheck_s = 600.0
announce_waits(Path(sys.argv[3]))

async def main(url):
    async with Store.from_url(url, "x") as s:
        await s.register("waiter")
        c = await s.claim("waiter", wait_s=10)
        print(json.dumps({"task": c.task.id, "at": time.time(), "cpu": time.process_time()}))

asyncio.run(main(sys.argv[1]))
"""


async def test_a_waiting_claimer_in_another_process_wakes_at_once_and_idles(tmp_path: Path) -> None:
    url = board_dir(tmp_path).as_uri()
    async with Store.from_url(url, "x") as s:
        marker = tmp_path / "waits"
        with spawned(CLAIMER, url, str(Path(__file__).parent), str(marker)) as waiter:
            await until(
                lambda: waits_announced(marker) or waiter.poll() is not None, "the claimer waiting", 30
            )
            assert waiter.poll() is None, waiter.communicate()
            # The behaviour under test: it idles this long without spinning (its CPU time below).
            await asyncio.sleep(1.5)
            tid = await s.add("fresh")
            added = time.time()
            out, err = await asyncio.to_thread(waiter.communicate, timeout=20)
    got = json.loads(out)
    assert got["task"] == tid, err
    assert got["at"] - added < 0.3  # woken by the change, at once
    assert got["cpu"] < 1.5  # start-up and imports included: the wait itself did not spin


async def test_follow_sees_changes_from_another_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = board_dir(tmp_path).as_uri()
    async with Store.from_url(url, "x") as reader, Store.from_url(url, "x") as writer:
        await writer.add("old")
        stream = reader.follow(after="$")

        async def first() -> Event:
            return await anext(stream)

        waits = Waits(reader, monkeypatch)
        pending = asyncio.create_task(first())
        await waits.reach(1)  # it has read to the end and waits for a change
        tid = await writer.add("new")
        event = await asyncio.wait_for(pending, 2)
        assert (event.type, event.task) == ("added", tid)
        await stream.aclose()


async def test_wait_for_change_on_a_fresh_board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = board_dir(tmp_path).as_uri()
    async with Store.from_url(url, "x") as viewer, Store.from_url(url, "x") as writer:
        assert await viewer.wait_for_change(0.1) is False
        waits = Waits(viewer, monkeypatch)
        waiting = asyncio.create_task(viewer.wait_for_change(5))
        await waits.reach(1)
        start = time.monotonic()
        await writer.add("x")
        assert await waiting is True and time.monotonic() - start < 0.3


async def test_a_file_that_is_not_a_board_is_a_clear_error(tmp_path: Path) -> None:
    folder = board_dir(tmp_path)
    (folder / constants.file_db_name).write_bytes(b"not a database at all" * 100)
    async with Store.from_url(folder.as_uri(), "x") as s:
        with pytest.raises(StoreUnavailable) as exc:
            await s.add("x")
    assert "not a claimroom database" in str(exc.value) and exc.value.exit_code == 5


def test_file_urls() -> None:
    assert isinstance(Store.from_url("file:///tmp/some/dir", "x"), FileStore)
    assert isinstance(Store.from_url("file://localhost/tmp/some/dir", "x"), FileStore)
    for bad in ("file://relative/dir", "file:///tmp/dir?mode=ro", "file:relative"):
        with pytest.raises(BadInput):
            Store.from_url(bad, "x")


# --- moving a board: Redis -> file -> Redis ----------------------------------------------------------


async def build_board(s: Store) -> dict[str, int]:
    """A board with a task in every state, live claims, locks, agents, a paused queue."""
    await s.register("builder", ["py", "gpu"], max_claims=10)
    await s.register("flaky")
    ids = await s.add_many(
        [
            TaskSpec("done", priority=9),
            TaskSpec("live", priority=8, payload={"k": [1, 2]}),
            TaskSpec("after live", after=["$1"], parent="$1"),
            TaskSpec("retrying", priority=7, max_attempts=5, queue="ml"),  # ml ends up paused
            TaskSpec("dead", priority=6, max_attempts=1),
            TaskSpec("orphan", priority=5),
            TaskSpec("cancelled"),
            TaskSpec("gpu work", requires=["gpu"], queue="ml"),
            TaskSpec("plain", affinity="repo-a"),
        ]
    )
    tokens = {}
    c = await s.claim("builder")
    assert c is not None
    await s.complete(c.task.id, c.token, {"ok": True})
    live = await s.claim("builder", ttl_s=300)
    assert live is not None and live.task.title == "live"
    tokens["live"] = live.token
    await s.heartbeat(live.task.id, live.token, progress=0.3, stage="half", checkpoint="cp1")
    await s.lock(["src/app", "README.md"], "builder", task=live.task.id)
    await s.lock(["docs"], "builder", shared=True)
    await s.lock(["docs"], "flaky", shared=True)
    r = await s.claim("builder")
    assert r is not None
    await s.fail(r.task.id, r.token, "transient")
    d = await s.claim("builder")
    assert d is not None
    await s.fail(d.task.id, d.token, "fatal", fatal=True)
    o = await s.claim("builder", ttl_s=0.2)
    assert o is not None
    await clock_past(s, await s.heartbeat(o.task.id, o.token, progress=0.9))
    await s.reap()
    await s.act("cancel", ids[6], State.QUEUED, 0, "op")
    await s.act("reassign", ids[8], State.QUEUED, 0, "op", agent="flaky")
    await s.pause("ml", "op")
    return tokens


async def snapshot(s: Store) -> tuple[object, ...]:
    events = [(e.type, e.at_ms, e.task, e.agent, e.token, e.operator, e.data) for e in await s.events()]
    return (await s.tasks(), await s.agents(), await s.locks(), await s.paused(), await s.counts(), events)


async def test_migration_round_trip_keeps_every_task_token_and_event(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    file_url = board_dir(tmp_path).as_uri()
    async with (
        Store.from_url(redis_url, namespace) as red,
        Store.from_url(file_url, namespace) as filed,
        Store.from_url(redis_url, namespace + "b") as back,
    ):
        tokens = await build_board(red)
        before = await snapshot(red)

        counts = await migrate(red, filed)
        assert counts["tasks"] == 9 and counts["events"] == len(before[-1])  # type: ignore[arg-type]
        assert await snapshot(filed) == before
        await migrate(filed, back)
        assert await snapshot(back) == before

        # Into a board that is not empty: refused, and nothing changes.
        with pytest.raises(Conflict):
            await migrate(filed, back)
        assert await snapshot(back) == before

        # Both copies are live boards: the claim goes on under its token, and new tokens
        # are greater than every one handed out before the move.
        for s in (filed, back):
            with pytest.raises(LeaseLost):
                await s.heartbeat("t2", tokens["live"] - 1)
            await s.heartbeat("t2", tokens["live"], progress=0.6)
            assert await s.complete("t2", tokens["live"]) == ["t3"]
            assert [lk.path for lk in await s.locks()] == ["docs"]
            highest = max(e.token for e in await s.events())
            nxt = await s.claim("builder")
            assert nxt is not None and nxt.task.id == "t3" and nxt.token > highest
            mine = await s.claim("flaky")
            assert mine is not None and mine.task.title == "plain"  # reassigned to it
        assert await snapshot(red) == before  # the source is left as it was


async def test_merge_renumbers_tasks_after_the_destination(tmp_path: Path, namespace: str) -> None:
    src_url, dst_url = board_dir(tmp_path, "src").as_uri(), board_dir(tmp_path, "dst").as_uri()
    async with Store.from_url(src_url, namespace) as src, Store.from_url(dst_url, namespace) as dst:
        await src.add_many([TaskSpec("a"), TaskSpec("b", after=["$0"], parent="$0")])
        await dst.add_many([TaskSpec("x"), TaskSpec("y"), TaskSpec("z")])
        await src.lock(["src"], "alice")
        with pytest.raises(Conflict):
            await migrate(src, dst)
        await dst.lock(["src/app.py"], "bob")
        with pytest.raises(Conflict) as exc:
            await migrate(src, dst, merge=True)  # alice's "src" would cover bob's file
        assert "bob" in str(exc.value)
        await dst.unlock(["src/app.py"], "bob")
        await migrate(src, dst, merge=True)
        b = await dst.get("t5")
        assert (b.title, b.after, b.parent, b.state) == ("b", ("t4",), "t4", State.BLOCKED)
        assert [e.task for e in await dst.events() if e.type == "added"] == ["t1", "t2", "t3", "t4", "t5"]
        assert await dst.add("new") == "t6"
