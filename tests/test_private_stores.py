"""The stores claimroom starts are private: a generated password, loopback only, owner-only files.

Real redis-server processes and a real Docker engine (the test image, see infra_image.py);
each test has its own project directory and a free port, and stops what it started.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import secrets
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from infra_agents import eventually
from infra_image import TEST_IMAGE, docker_engine, name
from pilot_wait import until
from rich.console import Console
from textual.widgets import Static
from waiting import until_logged

from claimroom.core.infra import (
    HealthMonitor,
    StartOptions,
    docker_redis,
    doctor,
    down,
    local_server,
    resolve,
    up,
)
from claimroom.core.infra.probe import local_url, password_of, with_password
from claimroom.core.infra.project import (
    infra_dir,
    password_path,
    project_password,
    read_password,
    read_started,
    record_started,
)
from claimroom.core.infra.stores import known_url
from claimroom.core.local_redis import free_port
from claimroom.core.store import Store
from claimroom.core.storeurl import scrubbed
from claimroom.tui.app import ControlRoom
from claimroom.tui.launch import Finder
from claimroom.tui.storepane import StorePane

__all__ = ["docker_engine", "name"]  # fixtures: imported for pytest to find

LOCAL = StartOptions(methods=("local",))
CLAIMROOM = str(Path(sys.executable).parent / "claimroom")
SECRET = "sk-live-" + secrets.token_hex(12)  # a payload secret: must never be readable by another user


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "project"
    home.mkdir()
    yield home
    down(home)  # whatever claimroom started for it, stopped by its pid file or container name


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def not_private(root: Path) -> dict[str, str]:
    """Every file under ``root`` that is not 0600 and every folder that is not 0700."""
    found = {}
    for folder, _dirs, files in os.walk(root):
        for entry in [Path(folder), *(Path(folder) / f for f in files)]:
            want = 0o700 if entry.is_dir() else 0o600
            if mode(entry) != want:
                found[str(entry.relative_to(root))] = oct(mode(entry))
    return found


def raw(port: int, *commands: bytes, host: str = "127.0.0.1") -> list[bytes]:
    """Each command's first reply line, on one plain connection (no client library between)."""
    replies = []
    with socket.create_connection((host, port), 2) as s, s.makefile("rb") as f:
        for command in commands:
            s.sendall(command + b"\r\n")
            replies.append(f.readline().strip())
    return replies


NS = "private"  # each test has its own store


async def add_secret(url: str) -> str:
    async with Store.from_url(url, NS) as store:
        return await store.add("deploy", payload={"api_key": SECRET})


async def payload_of(url: str, task: str) -> Any:
    async with Store.from_url(url, NS) as store:
        return (await store.get(task)).payload


def contains_secret(root: Path) -> bool:
    return any(SECRET.encode() in p.read_bytes() for p in root.rglob("*") if p.is_file())


def wait_idle(r: Any) -> None:
    """Wait until no background rewrite or snapshot runs (they write new files)."""
    deadline = time.monotonic() + 20
    while True:
        info = r.info("persistence")
        busy = ("aof_rewrite_in_progress", "rdb_bgsave_in_progress", "aof_rewrite_scheduled")
        if not any(info.get(key) for key in busy):
            return
        assert time.monotonic() < deadline, "the rewrite did not finish"
        time.sleep(0.05)


def private_checks(project: Path, url: str | None = None, port: int | None = None) -> list[Any]:
    checks = doctor(url, project=project, default_port=port or free_port())
    return [c for c in checks if c.name == "private"]


# --- the password ----------------------------------------------------------------------------


def test_a_local_store_requires_its_password_and_everything_it_writes_is_the_owners(project: Path) -> None:
    port = free_port()
    got = resolve(None, project=project, default_port=port, options=LOCAL)
    password = password_of(got.url)
    assert got.url == local_url(port, password) and len(password) >= 40
    # Kept 0600 in a 0700 folder; the URL handed out carries it, what is shown hides it.
    assert read_password(project) == password and mode(password_path(project)) == 0o600
    assert mode(project / ".claimroom") == 0o700
    assert got.to_json()["url"] == f"redis://:***@127.0.0.1:{port}/0"
    assert [r.password for r in read_started(project)] == [password]

    # Without it: refused (NOAUTH), and a wrong one too; with it: served.
    assert raw(port, b"PING") == [b"-NOAUTH Authentication required."]
    assert raw(port, b"AUTH not-it", b"PING")[0].startswith(b"-WRONGPASS")
    assert raw(port, b"AUTH " + password.encode(), b"PING") == [b"+OK", b"+PONG"]

    # A payload secret reaches the append-only file, a rewrite and a snapshot: all owner-only.
    asyncio.run(add_secret(got.url))
    folder = project / ".claimroom" / "redis"
    until_logged(got.url)  # everysec holds a write back while an earlier fsync is slow
    assert contains_secret(folder / "data")  # in the append-only file, as written
    with redis.Redis.from_url(got.url) as r:
        r.bgrewriteaof()  # a new base file (an RDB preamble) and a new incremental file
        wait_idle(r)
        r.bgsave()
        wait_idle(r)
    assert (folder / "data" / "dump.rdb").exists() and (folder / "redis.log").stat().st_size > 0
    assert not_private(project / ".claimroom") == {}

    # Nowhere on a command line: not in the server's, not in anything ps shows.
    pid = local_server.running_pid(project)
    assert pid is not None
    assert password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    everything = subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True, text=True, check=True)
    assert password not in everything.stdout
    assert "requirepass" in (folder / "redis.conf").read_text()  # it is in the 0600 config instead

    [check] = private_checks(project, port=port)[:1]
    assert (check.status, check.detail) == ("ok", f"redis-server on 127.0.0.1:{port} requires a password")
    assert all(c.status == "ok" for c in private_checks(project, port=port))


async def test_a_restart_keeps_the_password_and_down_still_stops_it(project: Path) -> None:
    port = free_port()
    got = await asyncio.to_thread(resolve, None, project=project, default_port=port, options=LOCAL)
    password = password_of(got.url)
    bare = f"redis://127.0.0.1:{port}/0"
    task = await add_secret(got.url)
    await asyncio.to_thread(until_logged, got.url)
    pid = local_server.running_pid(project)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    # The monitor is given the URL without the password (as CLAIMROOM_URL may be) and finds it.
    monitor = HealthMonitor(bare, project=project, interval_s=0.1)
    assert monitor.url == got.url
    stop = asyncio.Event()
    watching = asyncio.create_task(monitor.run(stop))
    try:
        await eventually(lambda: monitor.restarts == 1 and bool(monitor.latest and monitor.latest.ok))
    finally:
        stop.set()
        await watching
    assert read_password(project) == password and read_started(project)[0].password == password
    assert raw(port, b"PING") == [b"-NOAUTH Authentication required."]
    assert await payload_of(got.url, task) == {"api_key": SECRET}  # its data came back with it
    assert not_private(project / ".claimroom") == {}
    said = await asyncio.to_thread(down, project)
    assert said.startswith("stopped redis-server") and local_server.running_pid(project) is None


def test_the_cli_finds_the_password_and_up_prints_it_only_where_asked(project: Path) -> None:
    port = free_port()
    (project / ".claimroom").mkdir(mode=0o700)
    (project / ".claimroom" / "config.json").write_text('{"auto_start": ["local"]}')
    env = dict(os.environ, CLAIMROOM_HOME=str(project), CLAIMROOM_URL=f"redis://127.0.0.1:{port}/0")
    env["CLAIMROOM_NAMESPACE"] = "t" + uuid.uuid4().hex[:8]

    piped = subprocess.run([CLAIMROOM, "up"], env=env, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    password = read_password(project)
    # Into a pipe (``export CLAIMROOM_URL=$(claimroom up | head -n1)``): the whole URL.
    assert piped.stdout.splitlines()[0] == f"redis://:{password}@127.0.0.1:{port}/0"
    assert password not in piped.stderr

    # Commands that name the store without the password (or name none) use it on their own.
    added = subprocess.run([CLAIMROOM, "add", "t1"], env=env, capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    assert password not in added.stdout + added.stderr

    # On a terminal: hidden, with where it is.
    primary, secondary = pty.openpty()
    try:
        shown = subprocess.run(
            [CLAIMROOM, "up"], env=env, stdout=secondary, stderr=subprocess.PIPE, text=True, timeout=60
        )
        os.close(secondary)
        out = b""
        while chunk := _read(primary):
            out += chunk
    finally:
        os.close(primary)
    assert shown.returncode == 0, shown.stderr
    text = out.decode()
    assert text.startswith(f"redis://:***@127.0.0.1:{port}/0") and password not in text
    assert str(password_path(project)) in text

    as_json = subprocess.run([CLAIMROOM, "up", "--json"], env=env, capture_output=True, text=True, timeout=60)
    said = json.loads(as_json.stdout)
    assert said["url"] == f"redis://:***@127.0.0.1:{port}/0" and password not in as_json.stdout
    assert said["password_file"] == str(password_path(project))

    checked = subprocess.run([CLAIMROOM, "doctor"], env=env, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert password not in checked.stdout + checked.stderr and ":***@" in checked.stdout


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:  # the other end closed: Linux says EIO
        return b""


def test_agents_making_the_password_at_once_agree_on_one(project: Path) -> None:
    start = threading.Barrier(8)
    made: list[str] = []

    def make() -> None:
        start.wait()
        made.append(project_password(project))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 1 and made[0] == read_password(project)
    assert mode(password_path(project)) == 0o600
    assert sorted(p.name for p in infra_dir(project).iterdir()) == [".gitignore", "redis.password"]  # no temp
    assert not_private(project / ".claimroom") == {}


def test_a_password_file_that_is_not_one_is_bad_input(project: Path) -> None:
    infra_dir(project)
    password_path(project).write_text("two words\n")
    from claimroom.core.errors import BadInput

    with pytest.raises(BadInput, match="must hold one password") as err:
        project_password(project)
    assert err.value.exit_code == 2 and "two words" not in str(err.value)


def test_scrubbed_hides_a_password_as_written_and_as_a_url_quotes_it() -> None:
    said = "args: --requirepass a/b+c url redis://:a%2Fb%2Bc@127.0.0.1:1/0"
    assert scrubbed(said, "a/b+c") == "args: --requirepass *** url redis://:***@127.0.0.1:1/0"
    assert scrubbed(said, "") == said


# --- a store started before stores had passwords ----------------------------------------------


def old_store(project: Path, port: int) -> str:
    """A redis-server as an older claimroom left it: no password, files others may read."""
    infra_dir(project)
    started = local_server.start(project, port, "")
    record_started(project, started)
    for path in [project / ".claimroom", *(project / ".claimroom").rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return started.url


def test_an_old_store_without_a_password_still_works_doctor_warns_and_up_makes_it_private(
    project: Path,
) -> None:
    port = free_port()
    url = old_store(project, port)
    assert url == f"redis://127.0.0.1:{port}/0"
    task = asyncio.run(add_secret(url))
    assert resolve(None, project=project, default_port=port).url == url  # still found as it is
    assert known_url(project, url) == url

    checks = private_checks(project, port=port)
    store = next(c for c in checks if "password" in c.detail)
    assert store.status == "warn" and "without a password" in store.detail
    assert store.fix.startswith("claimroom down && claimroom up")
    files = next(c for c in checks if "open to other users" in c.detail)
    assert files.status == "warn" and "chmod -R go=" in files.fix

    # A restart behind the back of processes that hold its URL keeps it as it was.
    until_logged(url)
    pid = local_server.running_pid(project)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    asyncio.run(_restart_once(project, url))
    assert raw(port, b"PING") == [b"+PONG"] and read_started(project)[0].password == ""

    # The fix doctor names: down, then up.
    down(project)
    got = up(None, project=project, default_port=port, options=LOCAL)
    password = read_password(project)
    assert got.url == local_url(port, password) and "now requires the project's password" in got.detail
    assert raw(port, b"PING") == [b"-NOAUTH Authentication required."]
    assert known_url(project, url) == got.url  # CLAIMROOM_URL without the password keeps working

    assert asyncio.run(payload_of(got.url, task)) == {"api_key": SECRET}
    assert contains_secret(project / ".claimroom" / "redis" / "data")  # the same data
    assert not_private(project / ".claimroom") == {}  # narrowed at the start
    assert all(c.status == "ok" for c in private_checks(project, port=port))


async def _restart_once(project: Path, url: str) -> None:
    monitor = HealthMonitor(url, project=project, interval_s=0.1)
    stop = asyncio.Event()
    watching = asyncio.create_task(monitor.run(stop))
    try:
        await eventually(lambda: monitor.restarts == 1 and bool(monitor.latest and monitor.latest.ok))
    finally:
        stop.set()
        await watching


# --- the file store ---------------------------------------------------------------------------


async def board_files_while_open(url: str, folder: Path) -> dict[str, int]:
    """Each file of the board in ``folder`` and its mode, seen while a store has it open (SQLite
    removes the -wal and -shm files when the last connection closes)."""
    async with Store.from_url(url, NS) as store:
        await store.add("deploy", payload={"api_key": SECRET})
        await store.counts()  # a read too: the -shm file is in use
        assert contains_secret(folder)
        return {p.name: mode(p) for p in sorted(folder.iterdir())}


BOARD_FILES = [f"claimroom.db{end}" for end in ("", "-lock", "-shm", "-wal")]


def test_the_file_board_its_wal_and_the_project_folder_are_the_owners(project: Path) -> None:
    got = resolve(
        None, project=project, allow_file_fallback=True, default_port=free_port(), options=StartOptions(())
    )
    assert got.how == "file"
    board = project / ".claimroom" / "board"
    seen = asyncio.run(board_files_while_open(got.url, board))
    assert seen == dict.fromkeys(BOARD_FILES, 0o600)
    assert not_private(project / ".claimroom") == {}
    assert all(c.status == "ok" for c in private_checks(project))


def test_a_board_in_a_folder_the_user_names_is_made_owner_only_and_doctor_names_a_loose_one(
    tmp_path: Path, project: Path
) -> None:
    folder = tmp_path / "shared-board"
    folder.mkdir()
    url = folder.as_uri()
    assert asyncio.run(board_files_while_open(url, folder)) == dict.fromkeys(BOARD_FILES, 0o600)

    (folder / "claimroom.db").chmod(0o644)  # as an older claimroom made it
    [loose] = [c for c in private_checks(project, url) if c.status != "ok"]
    assert loose.status == "warn" and str(folder / "claimroom.db") in loose.detail
    assert loose.fix == f"chmod go= {folder / 'claimroom.db'}"


# --- Docker -----------------------------------------------------------------------------------


def docker_options(name: str) -> StartOptions:
    return StartOptions(methods=("docker",), image=TEST_IMAGE, container=name, volume=name)


def test_the_container_is_on_loopback_only_and_wants_the_password_on_the_docker_network_too(
    project: Path, docker_engine: Any, name: str
) -> None:
    port = free_port()
    got = resolve(None, project=project, default_port=port, options=docker_options(name))
    password = read_password(project)
    assert got.how == "docker" and got.url == local_url(port, password)
    c = docker_engine.containers.get(name)
    assert c.attrs["HostConfig"]["PortBindings"] == {
        "6379/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    }
    assert c.attrs["NetworkSettings"]["Ports"]["6379/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]

    assert raw(port, b"PING") == [b"-NOAUTH Authentication required."]
    # From the Docker network (the container's own address, not the published port).
    inside = c.attrs["NetworkSettings"]["IPAddress"]
    assert inside and not inside.startswith("127.")
    assert raw(6379, b"PING", host=inside) == [b"-NOAUTH Authentication required."]
    assert raw(6379, b"AUTH " + password.encode(), b"PING", host=inside) == [b"+OK", b"+PONG"]

    # The host's ps shows the container's redis-server by its process title, not its arguments.
    host_pid = c.attrs["State"]["Pid"]
    assert password.encode() not in Path(f"/proc/{host_pid}/cmdline").read_bytes()

    # Its data lives in the volume, under Docker's data root, which other users cannot enter.
    asyncio.run(add_secret(got.url))
    mountpoint = Path(docker_engine.volumes.get(name).attrs["Mountpoint"])
    assert any(not mode(folder) & 0o001 for folder in mountpoint.parents), mountpoint

    checks = private_checks(project, port=port)
    mine = next(c for c in checks if name in c.detail)
    assert mine.status == "ok" and "requires a password, published on 127.0.0.1 only" in mine.detail


async def test_a_restarted_container_keeps_its_password(project: Path, docker_engine: Any, name: str) -> None:
    port = free_port()
    got = await asyncio.to_thread(
        resolve, None, project=project, default_port=port, options=docker_options(name)
    )
    await asyncio.to_thread(docker_engine.containers.get(name).kill)
    monitor = HealthMonitor(with_password(got.url, ""), project=project, interval_s=0.1)
    stop = asyncio.Event()
    watching = asyncio.create_task(monitor.run(stop))
    try:
        await eventually(lambda: monitor.restarts == 1 and bool(monitor.latest and monitor.latest.ok), 30)
    finally:
        stop.set()
        await watching
    assert raw(port, b"PING") == [b"-NOAUTH Authentication required."]
    assert raw(port, b"AUTH " + password_of(got.url).encode(), b"PING") == [b"+OK", b"+PONG"]
    said = await asyncio.to_thread(down, project)
    assert said.startswith(f"stopped docker container {name}")


def test_an_old_container_without_a_password_is_made_again_with_one_by_up(
    project: Path, docker_engine: Any, name: str
) -> None:
    port = free_port()
    spec = docker_redis.DockerSpec(port=port, image=TEST_IMAGE, container=name, volume=name)
    started, _ = docker_redis.ensure(spec)  # as an older claimroom ran it: no password
    infra_dir(project)
    record_started(project, started)
    task = asyncio.run(add_secret(started.url))
    assert raw(port, b"PING") == [b"+PONG"]
    [warned] = [c for c in private_checks(project, port=port) if name in c.detail]
    assert warned.status == "warn" and warned.fix.startswith("claimroom down && claimroom up")

    down(project)
    got = up(None, project=project, default_port=port, options=docker_options(name))
    assert got.detail.startswith(f"made docker container {name} again")
    assert raw(port, b"PING") == [b"-NOAUTH Authentication required."]
    assert asyncio.run(payload_of(got.url, task)) == {"api_key": SECRET}  # the volume's data, kept
    assert "--requirepass" in docker_engine.containers.get(name).attrs["Config"]["Cmd"]
    [ok] = [c for c in private_checks(project, port=port) if name in c.detail]
    assert ok.status == "ok"


# --- the control room -------------------------------------------------------------------------


async def test_the_control_room_uses_the_password_on_its_own_and_never_shows_it(project: Path) -> None:
    port = free_port()
    got = await asyncio.to_thread(up, None, project=project, default_port=port, options=LOCAL)
    password = password_of(got.url)
    bare = f"redis://127.0.0.1:{port}/0"  # CLAIMROOM_URL as a user writes it: no password
    app = ControlRoom(finder=Finder(bare, NS, project, None, free_port(), LOCAL), health_interval_s=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.attached and app.snapshot is not None, 20)
        assert app.store.url == got.url  # connected with it
        await pilot.press("8")
        pane = app.query_one(StorePane)
        await until(pilot, lambda: pane.facts is not None and pane.facts.running and bool(pane.history), 10)
        console = Console(width=200, record=True, file=io.StringIO())
        for widget in app.screen.query(Static):
            console.print(widget.render())
        screen = console.export_text()
        assert f"redis://:***@127.0.0.1:{port}/0" in screen and password not in screen
        assert pane.facts is not None and pane.facts.kind == "local"  # steered as claimroom's own
        assert all(password not in s.url + s.message for s in pane.history)
