"""Auto-start through Docker (a real engine, a locally imported Redis image): start, reuse,
stop, a container killed behind claimroom's back, agents racing to start one store.

Each test uses its own container and volume name and a free port, and removes them after.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import redis
from infra_agents import Agent, eventually, private_url, race, shown_url
from infra_image import (
    IGNORES_ARGS,
    NO_ARGS_ENTRYPOINT,
    NOT_REDIS,
    OFFICIAL_SHAPE,
    SERVER_ENTRYPOINT,
    SILENT,
    TEST_IMAGE,
    docker_engine,
    name,
    shaped_images,
)

from claimroom.core import constants as C
from claimroom.core.errors import StoreUnavailable
from claimroom.core.infra import HealthMonitor, HealthStatus, StartOptions, down, resolve, up
from claimroom.core.infra.local_server import running_pid
from claimroom.core.infra.project import read_started
from claimroom.core.local_redis import free_port
from claimroom.core.models import State
from claimroom.core.store import Store

__all__ = ["docker_engine", "name", "shaped_images"]  # fixtures: imported for pytest to find


def options(name: str, image: str = TEST_IMAGE) -> StartOptions:
    # pull stays on: the image is present, so no pull may be attempted (no registry is reachable).
    return StartOptions(methods=("docker",), image=image, container=name, volume=name)


def test_start_from_nothing_through_docker(tmp_path: Path, docker_engine: Any, name: str) -> None:
    port = free_port()
    got = resolve(None, project=tmp_path, default_port=port, options=options(name))
    assert (got.how, got.url, got.started) == ("docker", private_url(tmp_path, port), True)
    assert got.detail.startswith(f"started docker container {name}")

    c = docker_engine.containers.get(name)
    assert c.status == "running"
    assert c.labels["io.claimroom.managed"] == "true" and c.labels["io.claimroom.port"] == str(port)
    host = c.attrs["HostConfig"]
    assert host["PortBindings"]["6379/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert [(m["Type"], m["Name"], m["Destination"]) for m in c.attrs["Mounts"]] == [
        ("volume", name, "/data")
    ]
    with redis.Redis.from_url(got.url, decode_responses=True) as r:
        assert r.config_get("appendonly")["appendonly"] == "yes"
        assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert C.keyspace_events_on(r.config_get("notify-keyspace-events")["notify-keyspace-events"])
        r.set("{claimroom:t}:kept", "yes")

    assert resolve(None, project=tmp_path, default_port=port, options=options(name)).how == "found"
    assert down(tmp_path).startswith(f"stopped docker container {name}")
    c.reload()
    assert c.status == "exited"
    # The next start reuses the container, and its volume kept the data.
    again = resolve(None, project=tmp_path, default_port=port, options=options(name))
    assert again.detail == f"started existing docker container {name}"
    with redis.Redis.from_url(again.url, decode_responses=True) as r:
        assert r.get("{claimroom:t}:kept") == "yes"
    down(tmp_path)


async def test_killed_container_is_restarted_and_agents_carry_on(
    tmp_path: Path, docker_engine: Any, name: str
) -> None:
    url = resolve(None, project=tmp_path, default_port=free_port(), options=options(name)).url
    store = Store.from_url(url, "t" + uuid.uuid4().hex[:8])
    total = 40
    ids = [await store.add(f"task {i}") for i in range(total)]
    statuses: list[HealthStatus] = []
    monitor = HealthMonitor(url, project=tmp_path, interval_s=0.1, on_status=statuses.append)
    stop = asyncio.Event()
    agents = [Agent(store, f"agent-{i}", total) for i in range(3)]
    running = [asyncio.create_task(monitor.run(stop)), asyncio.create_task(store.run_reaper(stop, 0.2))]
    working = [asyncio.create_task(a.run()) for a in agents]
    try:
        await eventually(lambda: sum(len(a.done) for a in agents) >= 8, what="some work done")
        await asyncio.to_thread(docker_engine.containers.get(name).kill)  # behind claimroom's back
        await eventually(lambda: monitor.restarts == 1 and statuses[-1].state == "up", what="restart")
        assert docker_engine.containers.get(name).status == "running"
        await asyncio.wait_for(asyncio.gather(*working), 30)
        assert sum(a.outages for a in agents) > 0  # they did see the outage, and carried on
        counts = await store.counts()
        assert counts[State.DONE] == total and sum(counts.values()) == total
        assert {t.id for t in await store.tasks(state=State.DONE, limit=100)} == set(ids)
        seen = [s.state for s in statuses]
        assert "down" in seen and "restarting" in seen and seen[-1] == "up"
    finally:
        for t in working:
            t.cancel()
        stop.set()
        await asyncio.gather(*running, *working, return_exceptions=True)
        await store.close()
        down(tmp_path)


def test_racing_agents_start_one_container(tmp_path: Path, docker_engine: Any, name: str) -> None:
    port = free_port()
    results = race(6, tmp_path, port, "docker", TEST_IMAGE, name)
    assert sorted(r["how"] for r in results) == ["docker"] + ["found"] * 5, results
    assert {r["url"] for r in results} == {shown_url(port)}
    assert [c.name for c in docker_engine.containers.list(all=True, filters={"name": name})] == [name]
    down(tmp_path)


def test_a_container_claimroom_did_not_create_is_left_alone(
    tmp_path: Path, docker_engine: Any, name: str
) -> None:
    docker_engine.containers.create(TEST_IMAGE, name=name)
    with pytest.raises(StoreUnavailable, match="claimroom did not create"):
        resolve(None, project=tmp_path, default_port=free_port(), options=options(name))
    assert docker_engine.containers.get(name).status == "created"  # untouched


def test_an_image_that_cannot_be_pulled_is_explained(tmp_path: Path, docker_engine: Any, name: str) -> None:
    absent = "claimroom-test-absent-" + uuid.uuid4().hex[:6] + ":0"
    with pytest.raises(StoreUnavailable, match=f"could not pull image {absent}"):
        resolve(None, project=tmp_path, default_port=free_port(), options=options(name, absent))
    with pytest.raises(docker.errors.NotFound):
        docker_engine.containers.get(name)


# --- images that do not take claimroom's command line ---------------------------------------


def quick(name: str, image: str, methods: tuple[str, ...] = ("docker",)) -> StartOptions:
    """Options with a short start timeout: a container that does not answer is given up on soon."""
    return StartOptions(methods=methods, image=image, container=name, volume=name, start_timeout_s=3.0)


def absent(engine: Any, name: str) -> bool:
    import docker.errors

    try:
        engine.containers.get(name)
    except docker.errors.NotFound:
        return True
    return False


def test_a_container_that_exits_is_removed_at_once_and_redis_server_takes_over(
    tmp_path: Path, shaped_images: Any, name: str
) -> None:
    port = free_port()
    began = time.monotonic()
    got = up(
        f"redis://127.0.0.1:{port}/0",
        project=tmp_path,
        options=quick(name, NO_ARGS_ENTRYPOINT, ("docker", "local")),
    )
    took = time.monotonic() - began
    try:
        assert (got.how, got.url, got.started) == ("local", private_url(tmp_path, port), True)
        assert took < 3.0  # seen exiting: the start timeout is not waited out
        # What the user sees says why Docker did not do: the container's last log line.
        assert f"(tried first: Docker: container {name} exited at start (" in got.detail
        assert "its last log line: no-args-entrypoint: unexpected arguments: redis-server --dir /data" in (
            got.detail
        )
        assert f"it was removed (volume {name} kept)" in got.detail
        assert absent(shaped_images, name)  # not left crash-looping
        assert shaped_images.volumes.get(name).name == name  # its volume is kept
        assert [r.kind for r in read_started(tmp_path)] == ["local"]
    finally:
        down(tmp_path)


def test_a_container_that_never_answers_is_removed_after_the_start_timeout(
    tmp_path: Path, shaped_images: Any, name: str
) -> None:
    with pytest.raises(StoreUnavailable) as err:
        up(f"redis://127.0.0.1:{free_port()}/0", project=tmp_path, options=quick(name, SILENT))
    assert f"Docker: container {name} did not answer within 3 s" in str(err.value)
    assert "its last log line:" in str(err.value) and "Ready to accept connections" in str(err.value)
    assert absent(shaped_images, name)
    assert read_started(tmp_path) == []


@pytest.mark.parametrize("image", [OFFICIAL_SHAPE, SERVER_ENTRYPOINT])
def test_official_and_plain_redis_server_images_both_work(
    tmp_path: Path, shaped_images: Any, name: str, image: str
) -> None:
    port = free_port()
    try:
        got = up(f"redis://127.0.0.1:{port}/0", project=tmp_path, options=quick(name, image))
        assert got.how == "docker"
        with redis.Redis.from_url(got.url, decode_responses=True) as r:
            assert r.config_get("appendonly")["appendonly"] == "yes"
            assert r.config_get("dir")["dir"] == "/data"
            assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        command = shaped_images.containers.get(name).attrs["Config"]["Cmd"]
        assert command[0] == ("--dir" if image == SERVER_ENTRYPOINT else "redis-server")
    finally:
        down(tmp_path)


def test_images_that_cannot_take_the_settings_are_refused_with_the_reason(
    tmp_path: Path, shaped_images: Any, name: str
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(StoreUnavailable) as err:
        up(url, project=tmp_path, options=quick(name, NOT_REDIS))
    assert f"image {NOT_REDIS} starts '/bin/false'" in str(err.value)
    assert "cannot hand Redis its settings" in str(err.value)
    assert absent(shaped_images, name)  # refused before anything was created
    with pytest.raises(docker.errors.NotFound):
        shaped_images.volumes.get(name)

    with pytest.raises(StoreUnavailable) as err:
        up(url, project=tmp_path, options=quick(name, IGNORES_ARGS))
    assert "answers, but not with claimroom's settings (appendonly no" in str(err.value)
    assert absent(shaped_images, name)
    assert read_started(tmp_path) == []


def test_down_stops_every_store_claimroom_started(tmp_path: Path, docker_engine: Any, name: str) -> None:
    docker_port, local_port = free_port(), free_port()
    try:
        up(f"redis://127.0.0.1:{docker_port}/0", project=tmp_path, options=options(name))
        up(f"redis://127.0.0.1:{local_port}/0", project=tmp_path, options=StartOptions(methods=("local",)))
        assert [(r.kind, r.port) for r in read_started(tmp_path)] == [
            ("docker", docker_port),
            ("local", local_port),
        ]
        pid = running_pid(tmp_path)
        said = down(tmp_path).splitlines()
        assert said[0].startswith(f"stopped docker container {name}")
        assert said[1].startswith(f"stopped redis-server (pid {pid})")
        assert docker_engine.containers.get(name).status == "exited"
        assert running_pid(tmp_path) is None
        assert all(r.stopped for r in read_started(tmp_path))
        assert down(tmp_path).startswith("nothing to stop")
    finally:
        down(tmp_path)
