"""The package as a user gets it: built into an sdist and a wheel, the wheel installed into a
fresh virtualenv (not editable), and run from outside the source tree.

``./dev`` installs claimroom in editable mode, which imports straight from the tree, so every
other test passes even when the build leaves out a package (core/infra once was: every command
of a real install died with ModuleNotFoundError) or a data file the code loads (Lua, tcss).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP = ("core", "tui", "themes")  # the repository folders that become claimroom.<name>
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
CLAIMROOM = Path(sys.executable).parent / "claimroom"
# Builds and a pip install: the heavy group (tests/conftest.py), which also builds the
# module's dists and virtualenv once, in one worker.
pytestmark = pytest.mark.heavy


def source_files() -> list[str]:
    """What a clean clone of the tree holds: tracked files and new ones .gitignore lets in."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(p for p in listed.split("\0") if p and (ROOT / p).is_file())


def package_files() -> set[str]:
    """Every file under core/, tui/ and themes/, named as it lands in the wheel."""
    return {f"claimroom/{p}" for p in source_files() if p.split("/", 1)[0] in TOP}


@dataclass(frozen=True)
class Dists:
    sdist: Path
    wheel: Path  # built from the sdist, as `python -m build` does
    wheel_from_tree: Path  # built from the tree, as `pip install .` does


@dataclass(frozen=True)
class Venv:
    python: Path
    claimroom: Path


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that could lead Python back to the tree."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "CLAIMROOM_")) and k not in ("VIRTUAL_ENV", "NO_COLOR")
    }
    return env | extra


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    if not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout, to know which files a clean clone would build from")
    # Build from a copy of what a clean clone holds: a build in the tree itself would write
    # claimroom.egg-info there and read back its stale SOURCES.txt.
    base = tmp_path_factory.mktemp("dists")
    src = base / "src"
    for rel in source_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    for flags, out in (([], base / "dist"), (["--wheel"], base / "tree")):
        built = subprocess.run(
            [sys.executable, "-m", "build", *flags, "--outdir", str(out), str(src)],
            cwd=base,
            env=clean_env(),
            capture_output=True,
            text=True,
        )
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (sdist,) = (base / "dist").glob("*.tar.gz")
    (wheel,) = (base / "dist").glob("*.whl")
    (wheel_from_tree,) = (base / "tree").glob("*.whl")
    return Dists(sdist, wheel, wheel_from_tree)


@pytest.fixture(scope="module")
def venv(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh virtualenv with the wheel installed the ordinary way (dependencies from PyPI)."""
    home = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(home)], check=True, env=clean_env())
    python = home / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(dists.wheel)],
        cwd=home,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return Venv(python, home / "bin" / "claimroom")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A working directory outside the source tree."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    assert ROOT not in cwd.parents
    return cwd


def run(
    venv: Venv, cwd: Path, env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv.claimroom), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_version_flag_prints_the_pyproject_version() -> None:
    p = subprocess.run([str(CLAIMROOM), "--version"], capture_output=True, text=True, timeout=30)
    assert (p.returncode, p.stdout, p.stderr) == (0, f"claimroom {VERSION}\n", "")


# The time limits below cover building and installing, which the first test to use the
# fixtures pays for, and longer when a fresh machine's pip cache downloads the dependencies.


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wheel_holds_every_package_file_and_nothing_else(dists: Dists) -> None:
    expected = package_files()
    # Every package and every data file the code loads at run time is there.
    assert {"claimroom/core/infra/__init__.py", "claimroom/core/redis/lua/lib.lua"} <= expected
    assert {"claimroom/core/py.typed", "claimroom/themes/claimroom.tcss"} <= expected
    for wheel in (dists.wheel, dists.wheel_from_tree):
        names = set(zipfile.ZipFile(wheel).namelist())
        info = f"claimroom-{VERSION}.dist-info/"
        assert {n for n in names if not n.startswith(info)} == expected, wheel.name
        assert f"{info}licenses/LICENSE" in names
        metadata = zipfile.ZipFile(wheel).read(f"{info}METADATA").decode()
        assert f"\nVersion: {VERSION}\n" in metadata
        assert "\nLicense-Expression: MIT\n" in metadata


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sdist_holds_what_a_wheel_build_needs(dists: Dists) -> None:
    # The wheel above was built from this sdist; this names what it needed.
    with tarfile.open(dists.sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    needed = {p.removeprefix("claimroom/") for p in package_files()}
    needed |= {"pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE"}
    assert needed <= names, sorted(needed - names)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_installed_cli_on_redis(venv: Venv, outside: Path, redis_url: str) -> None:
    ns = "t" + uuid.uuid4().hex[:12]
    env = clean_env(CLAIMROOM_URL=redis_url, CLAIMROOM_NAMESPACE=ns, CLAIMROOM_HOME=str(outside))

    p = run(venv, outside, env, "--version")
    assert (p.returncode, p.stdout) == (0, f"claimroom {VERSION}\n"), p.stderr

    p = run(venv, outside, env, "add", "ship the wheel", "--json")
    assert p.returncode == 0, p.stderr
    tid = json.loads(p.stdout)["id"]
    p = run(venv, outside, env, "claim", "--agent", "a", "--json")
    assert p.returncode == 0, p.stderr
    claim = json.loads(p.stdout)
    assert claim["task"]["id"] == tid
    p = run(venv, outside, env, "ls")
    assert p.returncode == 0 and tid in p.stdout and "claimed" in p.stdout, p.stderr
    p = run(venv, outside, env, "complete", tid, "--token", str(claim["token"]), "--json")
    assert (p.returncode, json.loads(p.stdout)["state"]) == (0, "done"), p.stderr

    # The session's private server keeps nothing on disk on purpose, which doctor rightly
    # calls a failure (exit 1); every other check of the store passes.
    p = run(venv, outside, env, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(p.stdout)["checks"]}
    assert p.returncode == 1, p.stderr
    assert [n for n, c in checks.items() if c["status"] == "fail"] == ["persistence"]
    assert checks["persistence"]["detail"] == "no persistence: a restart loses the board"
    for name in ("config", "store", "version", "eviction", "notifications"):
        assert checks[name]["status"] == "ok", checks[name]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_installed_cli_on_the_file_store(venv: Venv, outside: Path) -> None:
    board = outside / "board"
    board.mkdir()
    env = clean_env(CLAIMROOM_URL=board.as_uri(), CLAIMROOM_NAMESPACE="files", CLAIMROOM_HOME=str(outside))
    p = run(venv, outside, env, "add", "ship the wheel", "--json")
    assert p.returncode == 0, p.stderr
    tid = json.loads(p.stdout)["id"]
    p = run(venv, outside, env, "claim", "--agent", "a", "--json")
    assert p.returncode == 0, p.stderr
    token = str(json.loads(p.stdout)["token"])
    p = run(venv, outside, env, "complete", tid, "--token", token)
    assert p.returncode == 0, p.stderr
    p = run(venv, outside, env, "ls", "--json")
    assert [(t["id"], t["state"]) for t in json.loads(p.stdout)["tasks"]] == [(tid, "done")]
    assert (board / "claimroom.db").exists()


# Run by the installed interpreter with -I (no PYTHONPATH, no user site, no script or working
# directory on sys.path): where the modules come from, the stylesheet read as a package
# resource, and the control room brought up headless on a board with one queue, its layout
# from the installed tcss.
CONTROL_ROOM = """
import asyncio, json, sys
from importlib.resources import files

import claimroom.core, claimroom.themes, claimroom.tui.app
from claimroom.core.store import Store
from claimroom.tui.app import ControlRoom

async def main(url: str, ns: str) -> dict:
    app = ControlRoom(Store.from_url(url, ns), operator="ci")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        loop = asyncio.get_running_loop()
        end = loop.time() + 20
        rows: list[str] = []
        while loop.time() < end and not rows:
            pane = app.table_pane("queues")
            rows = [r.key.value or "" for r in pane.table.ordered_rows] if pane is not None else []
            await pilot.pause(0.05)
        return {
            "rows": rows,
            "status_dock": str(app.query_one("#status").styles.dock),
            "sheets": [path for path, _ in app.stylesheet.source if path.endswith(".tcss")],
        }

seen = asyncio.run(main(sys.argv[1], sys.argv[2]))
seen["prefix"] = sys.prefix
seen["modules"] = [m.__file__ for m in (claimroom.core, claimroom.themes, claimroom.tui.app)]
seen["tcss"] = files("claimroom.themes").joinpath("claimroom.tcss").read_text()[:200]
print(json.dumps(seen))
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_installed_control_room_loads_from_the_package(venv: Venv, outside: Path) -> None:
    board = outside / "board"
    board.mkdir()
    env = clean_env(CLAIMROOM_URL=board.as_uri(), CLAIMROOM_NAMESPACE="room", CLAIMROOM_HOME=str(outside))
    p = run(venv, outside, env, "add", "watch it")
    assert p.returncode == 0, p.stderr

    p = subprocess.run(
        [str(venv.python), "-I", "-c", CONTROL_ROOM, board.as_uri(), "room"],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    seen = json.loads(p.stdout.splitlines()[-1])
    site = Path(seen["prefix"]) / "lib"
    assert all(Path(f).is_relative_to(site) for f in seen["modules"]), seen["modules"]
    assert all(not Path(f).is_relative_to(ROOT) for f in seen["modules"])
    assert "#status" in seen["tcss"]
    assert [Path(s).name for s in seen["sheets"]] == ["claimroom.tcss"]
    assert Path(seen["sheets"][0]).is_relative_to(site)
    assert seen["status_dock"] == "top"  # a rule of claimroom.tcss, applied
    assert seen["rows"] == ["default"]  # the queue of the task added above, read from the board


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_installed_agent_integration(venv: Venv, outside: Path, redis_url: str) -> None:
    """What issue 13 added, from the wheel: tokens, the hook's fast entry (core/entry.py, the
    console script), and the MCP server answering the SDK's client with a worker's token."""
    import asyncio

    from mcp_support import client, ok

    ns = "t" + uuid.uuid4().hex[:12]
    env = clean_env(CLAIMROOM_URL=redis_url, CLAIMROOM_NAMESPACE=ns, CLAIMROOM_HOME=str(outside))
    p = run(venv, outside, env, "token", "create", "--agent", "bob", "--role", "worker")
    assert p.returncode == 0, p.stderr
    token = p.stdout.strip()
    p = run(venv, outside, env, "add", "port the parser", "--json")
    tid = json.loads(p.stdout)["id"]
    assert run(venv, outside, env, "claim", "--agent", "ada").returncode == 0
    p = run(venv, outside, env, "lock", "src/app.py", "--agent", "ada", "--task", tid)
    assert p.returncode == 0, p.stderr

    edit = {
        "session_id": str(uuid.uuid4()),
        "hook_event_name": "PreToolUse",
        "cwd": str(outside),
        "tool_name": "Edit",
        "tool_input": {"file_path": str(outside / "src" / "app.py")},
    }
    hook = subprocess.run(
        [str(venv.claimroom), "hook", "PreToolUse"],
        input=json.dumps(edit),
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert hook.returncode == 0, hook.stderr
    decision = json.loads(hook.stdout)["hookSpecificOutput"]
    assert decision["permissionDecision"] == "deny" and "ada" in decision["permissionDecisionReason"]

    port = free_port()
    server = subprocess.Popen(
        [str(venv.claimroom), "serve", "--http", f"127.0.0.1:{port}"],
        cwd=outside,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        async with asyncio.timeout(60):
            while True:  # until it listens
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.1)
                    continue
                writer.close()
                await writer.wait_closed()
                break
        async with client(url, token) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            shown = ok(await c.call_tool("show", {"task": tid}))
        assert {"claim", "complete", "lock"} <= names and "kill" not in names
        assert tid in json.dumps(shown)
    finally:
        server.terminate()
        server.wait(30)
        if server.stderr is not None:
            server.stderr.close()
    assert server.returncode == 0
