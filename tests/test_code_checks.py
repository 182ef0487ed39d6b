"""The code checks run with the tests: ruff's lint and format check, and mypy --strict on core and tui.

They are tests because the README's test command (``./dev test``) and CI (``.ci/run`` calls
it) both run pytest and nothing else: a check kept in a CI script only is skipped by whoever
tests by hand, and one in ``./dev`` only by a bare ``pytest``. Each tool runs from the
interpreter running the tests (the virtualenv, where the test extra installs them, pinned to
a minor release so that a new release cannot turn a clean clone red on its own), with the
settings in pyproject.toml, and a failure shows the tool's own report.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINTED = ("core", "tui", "tests", "bench")
TYPED = ("core", "tui", "themes")  # strict, as claimroom.core, claimroom.tui, claimroom.themes


def tool(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout_s
    )


def report(done: subprocess.CompletedProcess[str]) -> str:
    return f"{' '.join(done.args[2:])} (exit {done.returncode}):\n{done.stdout}{done.stderr}"


def test_ruff_check() -> None:
    done = tool("ruff", "check", *LINTED, timeout_s=120)
    assert done.returncode == 0, report(done)


def test_ruff_format() -> None:
    done = tool("ruff", "format", "--check", *LINTED, timeout_s=120)
    assert done.returncode == 0, report(done)


@pytest.mark.timeout(600)  # a cold run (no .mypy_cache) on a busy two-core machine
def test_mypy_strict_on_core_and_tui() -> None:
    # The packages and --strict are given here, not left to pyproject.toml, so this test
    # holds core and tui to strict whatever the config comes to say; -v shows which file
    # each module was read from.
    packages = [arg for top in TYPED for arg in ("-p", f"claimroom.{top}")]
    done = tool("mypy", "--strict", "-v", *packages, timeout_s=540)
    errors = "\n".join(line for line in done.stdout.splitlines() if line)
    assert done.returncode == 0, f"mypy --strict {' '.join(packages)}:\n{errors}"
    # A check that found the code somewhere else passes without reading it: an installed
    # claimroom in site-packages once took core's place. Every module of the three folders
    # must have been read from the folders themselves.
    read = {
        m["module"]: Path(m["path"]).resolve()
        for m in re.finditer(
            r"Found source: +BuildSource\(path='(?P<path>[^']+\.py)', module='(?P<module>[^']+)'", done.stderr
        )
    }
    assert read, "mypy -v no longer says which files it read: update this test"
    expected = {}
    for top in TYPED:
        for path in (ROOT / top).rglob("*.py"):
            parts = ("claimroom", *path.relative_to(ROOT).with_suffix("").parts)
            expected[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path.resolve()
    wrong = sorted(m for m in read.keys() | expected.keys() if read.get(m) != expected.get(m))
    assert not wrong, "mypy did not read these from the source folders:\n" + "\n".join(
        f"  {m}: {read.get(m, 'not read')}" for m in wrong
    )
