"""Path locks through the agent CLI, as agents run it from different folders of one
project, on both backends: one spelling per path, taken from the project root; globs and
paths outside the project refused with exit 2; locks for a task without a ttl of their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

CLAIMROOM = str(Path(sys.executable).parent / "claimroom")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git project (found through its .git, as agents' projects are) with a src folder."""
    root = tmp_path / "project"
    (root / ".git").mkdir(parents=True)
    (root / "src").mkdir()
    return root


@pytest.fixture
def env(store_url: str, namespace: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CLAIMROOM_HOME", None)  # the project is the nearest .git from the working directory
    env["CLAIMROOM_URL"] = store_url
    env["CLAIMROOM_NAMESPACE"] = namespace
    return env


def run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLAIMROOM, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=30)


def ok(env: dict[str, str], cwd: Path, *args: str) -> dict:
    p = run(env, cwd, *args, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_one_lock_whatever_the_spelling_or_working_directory(env: dict[str, str], project: Path) -> None:
    got = ok(env, project, "lock", "src/café.py", "--agent", "ada")
    assert got["paths"] == ["src/café.py"]
    spellings = [
        "src/café.py",
        "./src/café.py",
        f"{project}/src/café.py",
        "src//café.py",
        "src\\café.py",
        unicodedata.normalize("NFD", "src/café.py"),
    ]
    for cwd in (project, project / "src"):
        for spelling in spellings:
            p = run(env, cwd, "lock", spelling, "--agent", "bob")
            assert p.returncode == 6, (cwd, spelling, p.stderr)
            assert "src/café.py is locked by ada" in p.stderr, p.stderr
    # A relative path is from the project root, not from the agent's folder.
    assert ok(env, project / "src", "lock", "café.py", "--agent", "bob")["paths"] == ["café.py"]
    released = ok(env, project / "src", "unlock", f"{project}/src/./café.py", "--agent", "ada")["released"]
    assert released == ["src/café.py"]


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("src/*.py", "is a glob"),
        ("src/app/**/x.py", "is a glob"),
        ("src/?.py", "is a glob"),
        ("/etc/passwd", "outside the project"),
    ],
)
def test_globs_and_paths_outside_the_project_exit_2(
    env: dict[str, str], project: Path, path: str, why: str
) -> None:
    p = run(env, project, "lock", "ok.py", path, "--agent", "ada")
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and why in lines[0] and repr(path) in lines[0], p.stderr
    assert ok(env, project, "lock", "ok.py", "--agent", "bob")["paths"] == ["ok.py"]  # nothing was taken


def test_a_directory_glob_locks_the_directory(env: dict[str, str], project: Path) -> None:
    assert ok(env, project / "src", "lock", "src/app/**", "--agent", "ada")["paths"] == ["src/app"]
    p = run(env, project, "lock", "src/app/views/home.py", "--agent", "bob")
    assert p.returncode == 6 and "src/app is locked by ada" in p.stderr


def test_a_lock_for_a_task_lasts_as_long_as_the_claim(env: dict[str, str], project: Path) -> None:
    tid = ok(env, project, "add", "edit the parser")["id"]
    claim = ok(env, project, "claim", "--agent", "ada", "--ttl", "900")
    assert claim["task"]["id"] == tid
    p = run(env, project, "lock", "src", "--agent", "ada", "--task", tid, "--ttl", "30")
    assert p.returncode == 2 and "lasts as long as the claim" in p.stderr
    got = ok(env, project, "lock", "src", "--agent", "ada", "--task", tid)
    assert got["task"] == tid and got["expires_ms"] == ok(env, project, "show", tid)["deadline_ms"]
    ok(env, project, "lock", "src", "--agent", "ada")  # an untied hold of its own
    assert ok(env, project, "unlock", "src", "--agent", "ada", "--task", tid)["released"] == ["src"]
    p = run(env, project, "lock", "src/x.py", "--agent", "bob")
    assert p.returncode == 6 and "src is locked by ada" in p.stderr  # the untied hold remains
    assert ok(env, project, "unlock", "src", "--agent", "ada")["released"] == ["src"]
    ok(env, project, "lock", "src/x.py", "--agent", "bob")
