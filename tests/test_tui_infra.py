"""The control room's infrastructure, driven through Pilot: finding the store inside the app,
the consent dialog for file-based coordination, and the store pane over a Docker container
and a redis-server that claimroom started (a real engine, real processes).

Each test has its own project directory, passes a free port as the "default local port"
(so nothing looks at 6379), and for Docker its own container and volume, removed after.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from infra_image import TEST_IMAGE, docker_engine, name
from pilot_wait import dialog_open, focused_id
from pilot_wait import until as wait_until
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Button, Static

from claimroom.core.infra import HealthStatus, StartOptions, down, file_board_url, up
from claimroom.core.infra import local_server as local
from claimroom.core.local_redis import free_port
from claimroom.tui.app import ControlRoom, run_resolving
from claimroom.tui.dialogs import ChoiceDialog
from claimroom.tui.launch import Finder
from claimroom.tui.storepane import StorePane

__all__ = ["docker_engine", "name"]  # fixtures: imported for pytest to find

SIZE = (120, 40)
NO_START = StartOptions(methods=())  # nothing may be started: resolution ends at the consent question


async def until(pilot: Pilot[int], cond: Callable[[], object], timeout_s: float = 15.0) -> None:
    """``pilot_wait.until`` with a longer default: starting containers and servers takes time."""
    await wait_until(pilot, cond, timeout_s)


def finder(project: Path, port: int, options: StartOptions = NO_START, url: str | None = None) -> Finder:
    return Finder(url, "t" + uuid.uuid4().hex[:10], project, None, port, options)


def config_file(project: Path) -> Path:
    return project / ".claimroom" / "config.json"


def text_of(app: ControlRoom, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def drawn(app: ControlRoom, selector: str) -> str:
    """What a Static shows, as plain text (its renderable may be a table)."""
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(app.screen.query_one(selector, Static).content)
    return console.export_text()


def header(app: ControlRoom) -> str:
    return str(app.query_one("#status", Static).render())


def since(history: Iterable[HealthStatus], mark: HealthStatus) -> list[HealthStatus]:
    """The statuses after ``mark`` in a pane's health history (all, if it has scrolled out)."""
    seen = list(history)
    after = [i for i, status in enumerate(seen) if status is mark]
    return seen[after[-1] + 1 :] if after else seen


async def confirm(pilot: Pilot[int], app: ControlRoom, key: str, *answer: str) -> str:
    """Press ``key`` on the store pane, check the dialog defaults to Cancel, then answer it
    with the keys ``answer`` (the choice's letter, or Tab and Enter)."""
    await pilot.press(key)
    await until(pilot, lambda: dialog_open(app))
    assert focused_id(app) == "cancel"  # Cancel first and focused
    said = text_of(app, "#dialog-targets")
    await pilot.press(*answer)
    return said


# --- finding the store, and consent -------------------------------------------------------


async def test_consent_to_files_uses_the_file_board_and_remembers_it(tmp_path: Path) -> None:
    port = free_port()
    app = ControlRoom(finder=finder(tmp_path, port), operator="lead")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_open(app), 10)
        assert focused_id(app) == "cancel"
        assert f"127.0.0.1:{port}: nothing listens there" in text_of(app, "#dialog-targets")  # what was tried
        assert "agents on this machine" in text_of(app, "#dialog-note")
        assert not config_file(tmp_path).exists()  # nothing decided while the question is open
        await pilot.press("tab")  # before the store is found, the dialog's keys still move it
        assert focused_id(app) == "choice-files"
        await pilot.press("enter")
        await until(pilot, lambda: app.attached and app.snapshot is not None, 10)
        assert app.resolution is not None and app.resolution.how == "file"
        assert app.store.url == file_board_url(tmp_path) == app.resolution.url
        assert "file: file-based coordination in" in header(app)  # which store, and why
        await pilot.press("8")
        pane = app.query_one(StorePane)
        await until(pilot, lambda: pane.history and pane.history[-1].state == "file")
        assert pane.facts is not None and not pane.facts.managed  # a file board has no server to steer
        assert all(pane.query_one(f"#store-{op}", Button).disabled for op in ("start", "stop", "restart"))
        await pilot.press("R")
        assert not isinstance(app.screen, ChoiceDialog)
        assert any("no server to start or stop" in n for n in app.notices)
    remembered = json.loads(config_file(tmp_path).read_text())
    assert remembered == {"allow_file_fallback": True, "fallback_url": file_board_url(tmp_path)}


async def test_consent_by_its_letter(tmp_path: Path) -> None:
    app = ControlRoom(finder=finder(tmp_path, free_port()), operator="lead")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: dialog_open(app), 10)
        await pilot.press("u")  # "[u] Use files (this machine only)"
        await until(pilot, lambda: app.attached, 10)
        assert app.resolution is not None and app.resolution.how == "file"
    assert json.loads(config_file(tmp_path).read_text())["allow_file_fallback"] is True


async def test_cancel_means_no_fallback_exit_code_5_and_nothing_written(tmp_path: Path) -> None:
    port = free_port()
    app = ControlRoom(finder=finder(tmp_path, port))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: dialog_open(app), 10)
        await pilot.press("enter")  # Cancel has the focus
        await until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 5
    assert not app.attached
    assert f"127.0.0.1:{port}: nothing listens there" in app.exit_message
    assert "file-based coordination was declined" in app.exit_message
    assert "claimroom up --allow-file-fallback" in app.exit_message  # what to do
    assert not config_file(tmp_path).exists()
    assert not (tmp_path / ".claimroom" / "board").exists()


async def test_a_named_store_that_is_down_is_never_replaced(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    app = ControlRoom(finder=finder(tmp_path, free_port(), url=url))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.return_code is not None, 10)
    assert app.return_code == 5
    assert "does not switch to another store" in app.exit_message
    assert not config_file(tmp_path).exists()


def test_run_resolving_refuses_bad_input_with_exit_code_2(tmp_path: Path) -> None:
    assert run_resolving(None, "bad namespace!", project=tmp_path, allow_file_fallback=None) == 2
    assert run_resolving(None, "ns", project=tmp_path, allow_file_fallback=None, theme="solarized") == 2
    assert not (tmp_path / ".claimroom").exists()


# --- the store pane over what claimroom started ----------------------------------------------


def started_at(docker_engine: Any, name: str) -> str:
    return str(docker_engine.containers.get(name).attrs["State"]["StartedAt"])


async def test_store_pane_shows_the_container_and_restarts_it(
    tmp_path: Path, docker_engine: Any, name: str
) -> None:
    options = StartOptions(methods=("docker",), image=TEST_IMAGE, container=name, volume=name)
    app = ControlRoom(finder=finder(tmp_path, free_port(), options), operator="lead", health_interval_s=0.2)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.attached, 30)
            assert app.resolution is not None and app.resolution.how == "docker"
            assert f"docker: started docker container {name}" in header(app)
            await pilot.press("8")
            pane = app.query_one(StorePane)
            await until(pilot, lambda: pane.facts is not None and pane.facts.running, 10)
            facts = pane.facts
            assert facts is not None
            assert (facts.kind, facts.name, facts.image, facts.where) == ("docker", name, TEST_IMAGE, name)
            assert facts.started_at is not None  # the pane's uptime
            assert any("Ready to accept connections" in line for line in facts.logs)  # its recent log
            await until(pilot, lambda: pane.history and pane.history[-1].persistence == "aof")
            latest = pane.history[-1]
            assert latest.state == "up" and latest.latency_ms is not None and latest.clients
            assert latest.used_memory_bytes

            before = started_at(docker_engine, name)
            said = await confirm(pilot, app, "R", "r")  # "[r] Restart"
            assert name in said
            await until(pilot, lambda: pane.last_action.startswith("restarted"), 30)
            assert started_at(docker_engine, name) != before
            assert docker_engine.containers.get(name).status == "running"
            await until(pilot, lambda: pane.facts is not None and pane.facts.running and not pane.busy, 10)
            await until(pilot, lambda: not app.link.status.outage, 10)  # the board reconnected

            # A container that dies behind claimroom's back: the app's health monitor restarts it.
            await asyncio.to_thread(docker_engine.containers.get(name).kill)
            await until(pilot, lambda: pane.history[-1].restarts == 1 and pane.history[-1].state == "up", 30)
            assert "restarting" in [s.state for s in pane.history]
            assert docker_engine.containers.get(name).status == "running"
            assert any("back" in n for n in app.notices)
    finally:
        down(tmp_path)


async def test_local_server_stop_and_start_from_the_pane(tmp_path: Path) -> None:
    project, port = tmp_path, free_port()
    app = ControlRoom(finder=finder(project, port, StartOptions(methods=("local",))), health_interval_s=0.2)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.attached, 20)
            assert app.resolution is not None and app.resolution.how == "local"
            await pilot.press("8")
            pane = app.query_one(StorePane)
            await until(pilot, lambda: pane.facts is not None and pane.facts.running, 10)
            assert pane.facts is not None and pane.facts.kind == "local"
            pid = pane.facts.pid
            assert pid is not None and pane.query_one("#store-start", Button).disabled

            await confirm(pilot, app, "D", "escape")  # Escape: nothing happens
            await pilot.pause(0.3)  # no condition to wait for: a look a while on that it did not
            assert local.is_redis_process(pid) and not pane.held_down
            await confirm(pilot, app, "D", "tab", "enter")
            await until(pilot, lambda: pane.held_down and pane.facts is not None and not pane.facts.running)
            assert not local.is_redis_process(pid)
            # The health monitor sees it down (two probes more), and leaves it stopped.
            stopped = pane.history[-1]
            await until(pilot, lambda: len(since(pane.history, stopped)) >= 2)
            assert [s.state for s in since(pane.history, stopped)][:2] == ["down", "down"]
            assert local.running_pid(project) is None and pane.history[-1].state == "down"
            assert not pane.query_one("#store-start", Button).disabled
            assert pane.query_one("#store-restart", Button).disabled

            await confirm(pilot, app, "U", "s")  # "[s] Start"
            await until(pilot, lambda: pane.facts is not None and pane.facts.running and not pane.held_down)
            assert local.running_pid(project) is not None
            await until(pilot, lambda: pane.history[-1].state == "up")

        # Read-only: the same server (found running, and still claimroom's), but no controls.
        readonly = ControlRoom(finder=finder(project, port), readonly=True)
        async with readonly.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: readonly.attached, 20)
            await pilot.press("8")
            pane = readonly.query_one(StorePane)
            await until(pilot, lambda: pane.facts is not None and pane.facts.running, 10)
            assert all(pane.query_one(f"#store-{op}", Button).disabled for op in ("start", "stop", "restart"))
            await pilot.press("D")
            assert not isinstance(readonly.screen, ChoiceDialog)
            assert any("read-only" in n for n in readonly.notices)
    finally:
        down(project)


async def test_store_pane_lists_every_store_claimroom_started(
    tmp_path: Path, docker_engine: Any, name: str
) -> None:
    docker_port, local_port = free_port(), free_port()
    in_docker = StartOptions(methods=("docker",), image=TEST_IMAGE, container=name, volume=name)
    used = f"redis://127.0.0.1:{local_port}/0"
    try:
        up(f"redis://127.0.0.1:{docker_port}/0", project=tmp_path, options=in_docker)
        up(used, project=tmp_path, options=StartOptions(methods=("local",)))
        app = ControlRoom(finder=finder(tmp_path, free_port(), url=used), health_interval_s=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.attached, 20)
            await pilot.press("8")
            pane = app.query_one(StorePane)
            await until(pilot, lambda: pane.facts is not None and pane.facts.running, 10)
            assert pane.facts is not None and pane.facts.kind == "local"  # the one in use
            other = f"docker container {name} on 127.0.0.1:{docker_port}: running (volume {name})"
            assert pane.facts.others == (other,)
            await until(pilot, lambda: "also started" in drawn(app, "#store-facts"))
            assert f"docker container {name} on 127.0.0.1:{docker_port}" in drawn(app, "#store-facts")
    finally:
        down(tmp_path)
