"""Auto-start through a local redis-server (real processes): start, kill, recover, race."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from infra_agents import eventually, private_url, race, shown_url
from waiting import until_logged

from claimroom.core import constants as C
from claimroom.core.errors import StoreUnavailable
from claimroom.core.infra import HealthMonitor, HealthStatus, StartOptions, doctor, down, resolve
from claimroom.core.infra.local_server import is_redis_process, running_pid
from claimroom.core.local_redis import LocalRedis, free_port
from claimroom.core.models import State
from claimroom.core.store import Store

LOCAL = StartOptions(methods=("local",))


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    down(tmp_path)  # stops, by its pid file, the server a test started


def test_start_from_nothing_with_a_local_redis_server(project: Path) -> None:
    port = free_port()
    got = resolve(None, project=project, default_port=port, options=LOCAL)
    assert (got.how, got.url, got.started) == ("local", private_url(project, port), True)
    folder = project / ".claimroom" / "redis"
    pid = running_pid(project)
    assert pid is not None and (folder / "redis.pid").exists() and (folder / "redis.log").exists()
    with redis.Redis.from_url(got.url, decode_responses=True) as r:
        assert r.config_get("appendonly")["appendonly"] == "yes"
        assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert C.keyspace_events_on(r.config_get("notify-keyspace-events")["notify-keyspace-events"])
        assert r.config_get("dir")["dir"] == str(folder / "data")
        assert r.config_get("bind")["bind"] == "127.0.0.1"
    assert resolve(None, project=project, default_port=port, options=LOCAL).how == "found"
    assert all(
        c.status == "ok" for c in doctor(None, project=project, default_port=port) if c.name != "docker"
    )
    said = down(project)
    assert f"stopped redis-server (pid {pid})" in said
    assert not is_redis_process(pid)
    assert down(project).startswith("nothing to stop")


async def test_killed_local_server_is_a_clear_error_then_recovers_with_nothing_lost(project: Path) -> None:
    port = free_port()
    url = resolve(None, project=project, default_port=port, options=LOCAL).url
    store = Store.from_url(url, "t" + uuid.uuid4().hex[:8])
    statuses: list[HealthStatus] = []
    monitor = HealthMonitor(url, project=project, interval_s=0.1, on_status=statuses.append)
    stop = asyncio.Event()
    watching: asyncio.Task[None] | None = None
    try:
        ids = [await store.add(f"task {i}") for i in range(10)]
        claim = await store.claim("a1")
        assert claim is not None
        up = await monitor.check()
        assert up.state == "up" and up.persistence == "aof" and up.clients and up.latency_ms is not None

        await asyncio.to_thread(until_logged, url)
        pid = running_pid(project)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await eventually(lambda: not is_redis_process(pid), what="the kill")
        with pytest.raises(StoreUnavailable) as err:
            await store.add("while down")
        assert err.value.exit_code == 5
        said = str(err.value)
        assert f"store unavailable at {shown_url(port)}" in said and "claimroom up" in said

        watching = asyncio.create_task(monitor.run(stop))
        await eventually(lambda: monitor.restarts == 1 and statuses[-1].state == "up", what="the restart")
        seen = [s.state for s in statuses]
        assert seen.index("down") < seen.index("restarting") < seen.index("up")
        assert running_pid(project) not in (None, pid)
        # Nothing lost: every task is there, and the claim made before goes on with its token.
        assert {t.id for t in await store.tasks(limit=100)} == set(ids)
        await store.heartbeat(claim.task.id, claim.token, progress=0.5)
        await store.complete(claim.task.id, claim.token)
        counts = await store.counts()
        assert counts[State.DONE] == 1 and counts[State.QUEUED] == 9
    finally:
        stop.set()
        if watching is not None:
            await watching
        await store.close()


@pytest.mark.heavy
def test_racing_agents_start_one_local_server(project: Path) -> None:
    port = free_port()
    results = race(6, project, port, "local")
    hows = sorted(r["how"] for r in results)
    assert hows == ["found"] * 5 + ["local"], results
    assert {r["url"] for r in results} == {shown_url(port)}
    log = (project / ".claimroom" / "redis" / "redis.log").read_text()
    assert log.count("Ready to accept connections") == 1


async def test_monitor_reconnects_to_a_store_it_did_not_start_without_restarting_it(
    project: Path, tmp_path: Path
) -> None:
    server = LocalRedis.start(tmp_path / "theirs")
    statuses: list[HealthStatus] = []
    monitor = HealthMonitor(server.url, project=project, interval_s=0.05, on_status=statuses.append)
    stop = asyncio.Event()
    watching = asyncio.create_task(monitor.run(stop))
    try:
        await eventually(lambda: bool(statuses) and statuses[-1].state == "up", what="up")
        server.stop()
        await eventually(lambda: statuses[-1].state == "down", what="down")
        downs = sum(s.state == "down" for s in statuses)
        # A few more probes, backing off, and still down.
        await eventually(lambda: sum(s.state == "down" for s in statuses) >= downs + 2, what="more probes")
        server = LocalRedis.start(tmp_path / "theirs", port=server.port)
        await eventually(lambda: statuses[-1].state == "up", what="reconnected")
        assert "restarting" not in [s.state for s in statuses] and monitor.restarts == 0
    finally:
        stop.set()
        await watching
        server.stop()
