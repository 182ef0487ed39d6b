"""``claimroom init claude`` and ``claimroom init git`` in a real project: files merged into
what the user has, idempotent, a broken file refused before anything is written; and a
real ``git commit`` refused or allowed by the pre-commit hook against a real board."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from claimroom.core.store import Store

CLAIMROOM = str(Path(sys.executable).parent / "claimroom")
EVENTS = ("SessionStart", "PreToolUse", "PostToolUse", "Stop", "SubagentStop", "TeammateIdle")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for key, value in (("user.email", "t@example.com"), ("user.name", "T"), ("commit.gpgsign", "false")):
        subprocess.run(["git", "-C", str(root), "config", key, value], check=True)
    return root


@pytest.fixture
def env(store_url: str, namespace: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("CLAIMROOM_HOME", "CLAIMROOM_AGENT"):
        env.pop(name, None)
    env["CLAIMROOM_URL"] = store_url
    env["CLAIMROOM_NAMESPACE"] = namespace
    return env


def run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLAIMROOM, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def read(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def ours(settings: dict[str, Any], event: str) -> list[dict[str, Any]]:
    return [
        h
        for g in settings["hooks"][event]
        for h in g["hooks"]
        if f"hook {event}" in h.get("command", "")
        or h.get("url", "").endswith(f"/hooks/{event}")
        or f"/hooks/{event}?" in h.get("url", "")
    ]


def test_init_claude_merges_into_the_users_files_and_is_idempotent(
    env: dict[str, str], project: Path
) -> None:
    (project / ".claude").mkdir()
    mine = {"mcpServers": {"other": {"command": "other-server"}}, "theme": "dark"}
    (project / ".mcp.json").write_text(json.dumps(mine))
    user_hook = {"type": "command", "command": "ruff format"}
    settings = {
        "permissions": {"allow": ["Bash(ls:*)"]},
        "hooks": {"PostToolUse": [{"matcher": "Write", "hooks": [user_hook]}]},
    }
    (project / ".claude" / "settings.json").write_text(json.dumps(settings))
    p = run(env, project / ".claude", "init", "claude")  # from a subfolder: the project is the git root
    assert p.returncode == 0, p.stderr
    for event in EVENTS:
        assert f"{event}" in p.stdout and "added" in p.stdout
    mcp = read(project / ".mcp.json")
    assert mcp["mcpServers"]["other"] == {"command": "other-server"} and mcp["theme"] == "dark"
    assert mcp["mcpServers"]["claimroom"]["args"] == ["serve", "--stdio"]
    got = read(project / ".claude" / "settings.json")
    assert got["permissions"] == settings["permissions"]
    assert {"matcher": "Write", "hooks": [user_hook]} in got["hooks"]["PostToolUse"]
    for event in EVENTS:
        assert len(ours(got, event)) == 1, event
    pre = next(g for g in got["hooks"]["PreToolUse"] if ours({"hooks": {"PreToolUse": [g]}}, "PreToolUse"))
    assert pre["matcher"] == "Edit|Write|MultiEdit|NotebookEdit"
    assert ours(got, "PostToolUse")[0]["async"] is True
    # Leases are kept alive after any tool (a long test run through Bash too), not only edits.
    groups = got["hooks"]["PostToolUse"]
    post = next(g for g in groups if ours({"hooks": {"PostToolUse": [g]}}, "PostToolUse"))
    assert "matcher" not in post

    before = {f: (project / f).read_text() for f in (".mcp.json", ".claude/settings.json")}
    again = run(env, project, "init", "claude", "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["mcp"]["result"] == "unchanged"
    assert {h["result"] for h in report["settings"]["hooks"].values()} == {"unchanged"}
    assert {f: (project / f).read_text() for f in before} == before

    strict = run(env, project, "init", "claude", "--strict", "--json")
    assert json.loads(strict.stdout)["settings"]["hooks"]["PreToolUse"]["result"] == "updated"
    got = read(project / ".claude" / "settings.json")
    assert [h["command"].endswith("PreToolUse --strict") for h in ours(got, "PreToolUse")] == [True]
    assert {"matcher": "Write", "hooks": [user_hook]} in got["hooks"]["PostToolUse"]


def test_init_claude_http_uses_the_server_and_the_token_from_the_environment(
    env: dict[str, str], project: Path
) -> None:
    p = run(env, project, "init", "claude", "--http", "127.0.0.1:8765")
    assert p.returncode == 0, p.stderr
    assert "CLAIMROOM_TOKEN" in p.stdout
    server = read(project / ".mcp.json")["mcpServers"]["claimroom"]
    assert server == {
        "type": "http",
        "url": "http://127.0.0.1:8765/mcp",
        "headers": {"Authorization": "Bearer ${CLAIMROOM_TOKEN}"},
    }
    got = read(project / ".claude" / "settings.json")
    pre = ours(got, "PreToolUse")[0]
    assert pre["type"] == "http" and pre["url"] == "http://127.0.0.1:8765/hooks/PreToolUse"
    assert pre["headers"] == {"Authorization": "Bearer ${CLAIMROOM_TOKEN}"}
    assert pre["allowedEnvVars"] == ["CLAIMROOM_TOKEN"]
    assert ours(got, "TeammateIdle")[0]["type"] == "command"
    # back to stdio: claimroom's entries are replaced, never doubled
    assert run(env, project, "init", "claude", "--stdio").returncode == 0
    got = read(project / ".claude" / "settings.json")
    assert all(len(ours(got, e)) == 1 and ours(got, e)[0]["type"] == "command" for e in EVENTS)


@pytest.mark.parametrize("which", [".mcp.json", ".claude/settings.json"])
def test_init_claude_refuses_a_broken_file_naming_it_and_writes_nothing(
    env: dict[str, str], project: Path, which: str
) -> None:
    (project / ".claude").mkdir()
    broken = project / which
    broken.write_text('{\n  "hooks": {\n    "Stop": [,]\n  }\n}\n')
    p = run(env, project, "init", "claude")
    assert p.returncode == 2 and p.stdout == ""
    assert str(broken) in p.stderr and "line 3" in p.stderr and p.stderr.count("\n") == 1
    other = project / (".claude/settings.json" if which == ".mcp.json" else ".mcp.json")
    assert not other.exists()
    assert broken.read_text().startswith('{\n  "hooks"')


def git(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=project, env=env, capture_output=True, text=True, timeout=60)


async def test_init_git_refuses_a_commit_touching_a_path_another_agent_holds(
    store: Store, env: dict[str, str], project: Path
) -> None:
    p = run(env, project, "init", "git")
    assert p.returncode == 0 and "added" in p.stdout, p.stderr
    assert "unchanged" in run(env, project, "init", "git").stdout
    tid = await store.add("rewrite the parser")
    assert await store.claim("ada") is not None
    await store.lock(["src/parser.py"], "ada", task=tid)
    (project / "src").mkdir()
    (project / "src" / "parser.py").write_text("x = 1\n")
    (project / "README").write_text("hi\n")

    assert git(project, env, "add", "README").returncode == 0
    free = git(project, env, "commit", "-q", "-m", "readme")
    assert free.returncode == 0, free.stderr

    assert git(project, env, "add", "src/parser.py").returncode == 0
    refused = git(project, env, "commit", "-q", "-m", "parser")
    assert refused.returncode != 0
    assert "src/parser.py" in refused.stderr and "ada" in refused.stderr and tid in refused.stderr
    assert "rewrite the parser" in refused.stderr
    assert git(project, env, "log", "--oneline").stdout.count("\n") == 1  # only the readme

    as_ada = git(project, {**env, "CLAIMROOM_AGENT": "ada"}, "commit", "-q", "-m", "parser")
    assert as_ada.returncode == 0, as_ada.stderr


def test_init_git_leaves_a_foreign_pre_commit_hook_alone(env: dict[str, str], project: Path) -> None:
    hook = project / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 0\n")
    p = run(env, project, "init", "git")
    assert p.returncode == 2 and "claimroom hook pre-commit" in p.stderr
    assert hook.read_text() == "#!/bin/sh\nexit 0\n"
