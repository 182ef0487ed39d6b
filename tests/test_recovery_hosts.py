"""Recovery that does not wait for a claim: every long-lived claimroom process hosts the reaper.

A dead agent's lease must be recovered while the board is quiet (no one claims), as long
as any control room (not read-only), ``claim --wait`` or ``reap --loop`` runs; the reaper
heartbeat says who reaped; ``up`` and ``doctor`` report on it. Real stores on both
backends, the real app through Pilot, real CLI processes; every wait is on a condition
with a deadline.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from oldboards import undo_since_7
from textual.pilot import Pilot

from claimroom.core import constants as C
from claimroom.core.infra import Check as DoctorCheck
from claimroom.core.infra import doctor
from claimroom.core.local_redis import LocalRedis, free_port
from claimroom.core.models import State
from claimroom.core.reaper import Reaper, ReaperId, ReaperStatus
from claimroom.core.store import Store, TaskSpec
from claimroom.tui.app import ControlRoom

CLAIMROOM = str(Path(sys.executable).parent / "claimroom")
SIZE = (120, 40)
TTL_S = 0.5


Check = Callable[[], "bool | Awaitable[bool]"]


async def holds(check: Check) -> bool:
    result = check()
    return bool(await result) if inspect.isawaitable(result) else bool(result)


async def eventually(check: Check, timeout_s: float, what: str, pilot: Pilot[int] | None = None) -> None:
    """Wait until ``check()`` holds (letting ``pilot``'s app run meanwhile); fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not await holds(check):
        if loop.time() > end:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        await (pilot.pause(0.02) if pilot is not None else asyncio.sleep(0.02))


@pytest.fixture
async def app_store(store_url: str, namespace: str) -> AsyncIterator[Store]:
    """The control room's own connection (the app closes it on exit)."""
    s = Store.from_url(store_url, namespace)
    yield s
    await s.close()


@pytest.fixture
def env(store_url: str, namespace: str, tmp_path: Path) -> dict[str, str]:
    """For ``claimroom`` processes on the test's board, with a project of their own."""
    out = dict(os.environ)
    out["CLAIMROOM_URL"], out["CLAIMROOM_NAMESPACE"] = store_url, namespace
    home = tmp_path / "project"
    home.mkdir(exist_ok=True)
    out["CLAIMROOM_HOME"] = str(home)
    return out


async def dead_agents_claims(store: Store) -> tuple[str, str, int]:
    """Two claims whose agent goes silent: early work, and late work (progress 0.8).
    Returns their ids and the later of their deadlines."""
    early, late = await store.add("early work"), await store.add("late work")
    first = await store.claim("gone", ttl_s=TTL_S)
    await store.register("gone-too")
    second = await store.claim("gone-too", ttl_s=TTL_S)
    assert first is not None and second is not None and {first.task.id, second.task.id} == {early, late}
    held = second if second.task.id == late else first
    deadline = await store.heartbeat(late, held.token, progress=0.8, ttl_s=TTL_S)
    return early, late, max(deadline, first.deadline_ms if held is second else second.deadline_ms)


async def recovered(store: Store, *ids: str) -> bool:
    states = [(await store.get(t)).state for t in ids]
    return State.CLAIMED not in states


# --- the control room -------------------------------------------------------------------------


async def test_control_room_recovers_a_dead_agents_lease_while_nobody_claims(
    store: Store, app_store: Store
) -> None:
    app = ControlRoom(app_store, reap_interval_s=0.1)
    async with app.run_test(size=SIZE) as pilot:
        # The claims are made once the control room reaps (it leads, a pass done): rule 5
        # is about a running host, not how long a loaded machine takes to start one.
        reaper = app.reaper
        await eventually(lambda: reaper is not None and reaper.passes > 0, 30, "the app reaping", pilot)
        early, late, deadline = await dead_agents_claims(store)
        await eventually(lambda: recovered(store, early, late), TTL_S + 10, "recovered", pilot)
        assert app.reaper is not None and app.reaper.leading
    assert (await store.get(early)).state is State.QUEUED  # early work goes back to the queue
    assert (await store.get(late)).state is State.ORPHANED  # late work waits for an operator
    status = await store.reaper_status()
    assert status.last is not None and status.last.reaped_by is not None
    assert (status.last.reaped_by.kind, status.last.reaped_by.pid) == ("tui", os.getpid())
    reaped = status.last.reaped  # the last pass that recovered something (one or both of them)
    assert reaped.requeued + reaped.orphaned and set(reaped.requeued + reaped.orphaned) <= {early, late}
    assert status.last.reaped_ms - deadline <= 1000  # rule 5: within TTL + 1 s, on the store's clock
    # Closing the app handed the leader lease over: another process leads at once.
    assert await store._lead("next", C.reaper_lease_ms)


async def test_readonly_control_room_does_not_reap(store: Store, app_store: Store) -> None:
    early, late, deadline = await dead_agents_claims(store)
    app = ControlRoom(app_store, readonly=True, reap_interval_s=0.1)
    async with app.run_test(size=SIZE) as pilot:

        async def looked_well_after() -> bool:  # the app read the board 1 s past the deadline
            snap = app.snapshot
            return snap is not None and snap.store_ms > deadline + 1000

        await eventually(looked_well_after, TTL_S + 8, "a snapshot after the deadline", pilot)
        assert app.reaper is None or not app.reaper.leading
    assert (await store.get(early)).state is State.CLAIMED
    assert (await store.get(late)).state is State.CLAIMED
    assert (await store.reaper_status()).last is None


redis_only = pytest.mark.parametrize("backend", ["redis"], indirect=True)


@redis_only
async def test_the_reapers_lease_renewals_do_not_refresh_the_control_room(
    store: Store, app_store: Store
) -> None:
    # Renewing the lease (SET ... PX) sends an "expire" key event each pass: not a change of
    # the board. The app refreshes on hints, so it must not count those.
    snaps = 0
    app = ControlRoom(app_store, readonly=True)  # watches; the reaper below is someone else's
    reaper = store.reaping("reap-loop", interval_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await eventually(lambda: app.snapshot is not None, 5, "first snapshot", pilot)
        seen = app._on_snapshot

        def counting(snap):  # type: ignore[no-untyped-def]
            nonlocal snaps
            snaps += 1
            seen(snap)

        app.link.on_snapshot = counting
        async with reaper:
            await eventually(lambda: reaper.passes >= 20, 10, "20 passes", pilot)
    assert snaps <= 2  # the reconcile timer (every 3 s) at most; not one per pass


# --- claim --wait and reap --loop -------------------------------------------------------------


def claimroom(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [CLAIMROOM, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


async def test_claim_wait_hosts_the_reaper_while_it_waits(store: Store, env: dict[str, str]) -> None:
    # A claim that returns at once never starts the reaper.
    await store.add("at once", queue="other")
    fast = await asyncio.to_thread(
        subprocess.run,
        [CLAIMROOM, "claim", "--agent", "quick", "--queue", "other", "--wait", "30", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert fast.returncode == 0, fast.stderr
    assert (await store.reaper_status()).last is None

    early, late, _ = await dead_agents_claims(store)
    waiter = claimroom(env, "claim", "--agent", "waiter", "--queue", "other", "--wait", "60", "--json")
    try:

        async def reaped_by_the_waiter() -> bool:
            status = await store.reaper_status()
            return (
                await recovered(store, early, late)
                and status.last is not None
                and (status.last.by.kind, status.last.by.pid) == ("claim-wait", waiter.pid)
            )

        await eventually(reaped_by_the_waiter, TTL_S + 10, "recovered, with the waiter reaping")
        assert waiter.poll() is None  # still waiting: the reaper ran beside the wait
        assert (await store.get(early)).state is State.QUEUED
        assert (await store.get(late)).state is State.ORPHANED
        tid = await store.add("for the waiter", queue="other")
        out, err = await asyncio.to_thread(waiter.communicate, timeout=30)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()
    assert waiter.returncode == 0, err
    assert json.loads(out)["task"]["id"] == tid
    assert await store._lead("next", C.reaper_lease_ms)  # it handed the lease over on its way out


async def test_reap_loop_records_its_passes_and_hands_over_on_ctrl_c(
    store: Store, env: dict[str, str]
) -> None:
    early, late, _ = await dead_agents_claims(store)
    loop = claimroom(env, "reap", "--loop", "--interval", "0.1")
    try:

        async def reaped_by_the_loop() -> bool:
            status = await store.reaper_status()
            by = status.last.reaped_by if status.last is not None else None
            mine = by is not None and (by.kind, by.pid, by.interval_ms) == ("reap-loop", loop.pid, 100)
            return mine and await recovered(store, early, late)

        await eventually(reaped_by_the_loop, TTL_S + 10, "recovered by reap --loop")
        loop.send_signal(signal.SIGINT)
        _, err = await asyncio.to_thread(loop.communicate, timeout=30)
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.communicate()
    assert loop.returncode == 130, err
    assert await store._lead("next", C.reaper_lease_ms)


# --- the reaper itself ------------------------------------------------------------------------


async def test_a_stopped_reaper_hands_over_at_once(store_url: str, namespace: str) -> None:
    first, second = Store.from_url(store_url, namespace), Store.from_url(store_url, namespace)
    a = first.reaping("tui", interval_s=0.05)
    b = second.reaping("claim-wait", interval_s=0.05)
    try:
        async with a:
            await eventually(lambda: a.passes > 0, 5, "the first leads")
            async with b:
                await eventually(lambda: b.leading is False and a.passes > 3, 5, "b stands by")
                assert b.passes == 0
                loop = asyncio.get_running_loop()
                stopped = loop.time()
                await a.stop()
                await eventually(lambda: b.passes > 0, 2, "b takes over")
                # Well before the leader lease (5 s) would have run out.
                assert loop.time() - stopped < C.reaper_lease_ms / 1000 / 2
                status = await second.reaper_status()
                assert status.last is not None and status.last.by.kind == "claim-wait"
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("backend", ["redis", "file"])
async def test_the_reaper_outlives_a_store_outage(backend: str, tmp_path: Path, namespace: str) -> None:
    # The store is down when the reaper starts, then comes up: the host never sees an error.
    server: LocalRedis | None = None
    if backend == "redis":
        port = free_port()
        url = f"redis://127.0.0.1:{port}/0"
    else:
        folder = tmp_path / "not-yet"
        url = folder.as_uri()
    said: list[str] = []
    store = Store.from_url(url, namespace)
    reaper = Reaper(store, "mcp", interval_s=0.05, report=said.append)
    try:
        reaper.start()
        await eventually(lambda: reaper.failures >= 3, 10, "failed passes")
        assert reaper._task is not None and not reaper._task.done()  # still running, not crashed
        assert len(said) == 1 and "a pass failed" in said[0] and "unavailable" in said[0]
        if backend == "redis":
            server = await asyncio.to_thread(LocalRedis.start, tmp_path / "redis", port)
        else:
            folder.mkdir()
        await eventually(lambda: reaper.passes > 0, 15, "passes after the outage")
        assert reaper.failures == 0 and "answers again" in said[-1]
        status = await store.reaper_status()
        assert status.last is not None and status.last.by.kind == "mcp"
        await reaper.stop()
    finally:
        await reaper.stop()
        await store.close()
        if server is not None:
            server.stop()


async def test_reaper_input_is_checked(store: Store) -> None:
    from claimroom.core.errors import BadInput

    for interval in (0, -1, float("nan"), C.max_reap_interval_s + 1):
        with pytest.raises(BadInput):
            store.reaping("tui", interval_s=interval)
    with pytest.raises(BadInput):
        store.reaping("Bad Kind")
    with pytest.raises(BadInput):
        await store.reap(by=ReaperId("tui", "host\x1b[2J", 1))
    assert (await store.reaper_status()).last is None


# --- what up and doctor say -------------------------------------------------------------------


def reaper_check(url: str, project: Path, namespace: str) -> DoctorCheck:
    checks = doctor(url, project=project, namespace=namespace)
    return next(c for c in checks if c.name == "reaper")


async def test_doctor_warns_when_no_reaper_runs_beside_live_claims(
    store: Store, store_url: str, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()

    def check():  # type: ignore[no-untyped-def]
        return asyncio.to_thread(reaper_check, store_url, project, namespace)

    assert (await check()).status == "ok"  # nothing claimed: nothing to recover
    await store.add("long job")
    assert await store.claim("ada", ttl_s=60) is not None
    never = await check()
    assert never.status == "warn" and "1 live claim" in never.detail and "ever recorded" in never.detail
    assert "reap --loop" in never.fix

    await store.reap(by=ReaperId.here("reap-loop", 0.5))
    fresh = await check()
    assert fresh.status == "ok" and "by reap-loop@" in fresh.detail

    monkeypatch.setattr(C, "reaper_stale_min_s", 0.2)

    async def stale() -> bool:
        return not (await store.reaper_status()).running

    await eventually(stale, 5, "the heartbeat goes stale")
    old = await check()
    assert old.status == "warn" and "by reap-loop@" in old.detail and "reap --loop" in old.fix


async def test_up_says_how_recovery_is_provided(store: Store, env: dict[str, str]) -> None:
    def up() -> dict:  # type: ignore[type-arg]
        p = subprocess.run([CLAIMROOM, "up", "--json"], env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)  # type: ignore[no-any-return]

    before = (await asyncio.to_thread(up))["recovery"]
    assert before["last_pass"] is None and before["running"] is False
    plain = await asyncio.to_thread(
        subprocess.run, [CLAIMROOM, "up"], env=env, capture_output=True, text=True, timeout=60
    )
    assert "recovery: expired leases are recovered inside every claim" in plain.stdout
    assert "no reaper has run" in plain.stdout and "claimroom reap --loop" in plain.stdout

    await store.reap(by=ReaperId.here("tui", 0.5))
    after = (await asyncio.to_thread(up))["recovery"]
    assert after["running"] is True and after["last_pass"]["kind"] == "tui"
    plain = await asyncio.to_thread(
        subprocess.run, [CLAIMROOM, "up"], env=env, capture_output=True, text=True, timeout=60
    )
    assert "last pass" in plain.stdout and "by tui@" in plain.stdout


# --- the file store: its audit trail is trimmed by the reaper, bounded per pass -----------------


file_only = pytest.mark.parametrize("backend", ["file"], indirect=True)


def audit_rows(store_url: str, namespace: str) -> int:
    from claimroom.core.file.schema import db_path

    with sqlite3.connect(db_path(store_url)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM events WHERE ns = ?", (namespace,)).fetchone()[0])


@file_only
async def test_the_control_rooms_reaper_trims_the_file_audit_trail_a_bounded_step_a_pass(
    store: Store, app_store: Store, store_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (Redis caps its stream as each event is written: XADD MAXLEN ~.)
    monkeypatch.setattr(C, "audit_max_len", 100)
    monkeypatch.setattr(C, "file_audit_trim_slack", 50)
    monkeypatch.setattr(C, "file_audit_trim_batch", 40)
    await store.add_many([TaskSpec(f"task {i}") for i in range(400)])
    assert audit_rows(store_url, namespace) == 400
    await store.reap()
    assert audit_rows(store_url, namespace) == 360  # one pass: at most file_audit_trim_batch

    app = ControlRoom(app_store, reap_interval_s=0.05)
    async with app.run_test(size=SIZE) as pilot:

        async def trimmed() -> bool:
            return audit_rows(store_url, namespace) < C.audit_max_len + C.file_audit_trim_slack

        await eventually(trimmed, 10, "the audit trail trimmed by the control room's reaper", pilot)
    assert [e.title for e in await store.tasks(limit=1)] == ["task 0"]  # only the audit trail shrank
    events = await store.events(count=1000)
    assert events[-1].type == "added" and len(events) >= C.audit_max_len


@file_only
async def test_a_board_of_the_previous_schema_gains_the_reaper_table(store_url: str, namespace: str) -> None:
    from claimroom.core.file.schema import SCHEMA_VERSION, db_path

    async with Store.from_url(store_url, namespace) as s:
        tid = await s.add("made before the upgrade")
    with sqlite3.connect(db_path(store_url)) as conn:  # as claimroom with schema 3 left it
        conn.execute("DROP TABLE reaper")
        for table in ("finished", "retention_due", "retention", "cursors"):  # and schema 5's
            conn.execute(f"DROP TABLE {table}")
        conn.execute("ALTER TABLE agents DROP COLUMN auto")
        conn.execute("ALTER TABLE agents DROP COLUMN session")  # and schema 7's
        conn.execute("DROP TABLE tokens")
        undo_since_7(conn)  # and everything after 7
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")
    async with Store.from_url(store_url, namespace) as s:
        assert (await s.get(tid)).title == "made before the upgrade"
        await s.reap(by=ReaperId.here("reap", 0))
        status: ReaperStatus = await s.reaper_status()
        assert status.last is not None and status.last.by.kind == "reap" and status.last.passes == 1
    with sqlite3.connect(db_path(store_url)) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == str(
            SCHEMA_VERSION
        )
