"""The Claude Code hooks, run exactly as Claude Code runs a command hook: ``claimroom hook
EVENT`` as a subprocess with the event's JSON on stdin, its answer read from the exit code
and stdout, against a real board (the session's redis-server and the file store)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from claimroom.core.sessions import agent_for_session
from claimroom.core.store import Store

CLAIMROOM = str(Path(sys.executable).parent / "claimroom")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / ".git").mkdir(parents=True)
    (root / "src").mkdir()
    return root


@pytest.fixture
def env(store_url: str, namespace: str, project: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("CLAIMROOM_HOME", "CLAIMROOM_AGENT", "CLAIMROOM_CAN", "CLAUDE_PROJECT_DIR"):
        env.pop(name, None)
    env["CLAIMROOM_URL"] = store_url
    env["CLAIMROOM_NAMESPACE"] = namespace
    env["CLAUDE_PROJECT_DIR"] = str(project)  # as Claude Code sets it for its hooks
    return env


def hook(env: dict[str, str], event: dict[str, Any], *flags: str) -> subprocess.CompletedProcess[str]:
    """Run one hook as Claude Code does: the event's JSON on stdin."""
    return subprocess.run(
        [CLAIMROOM, "hook", event["hook_event_name"], *flags],
        input=json.dumps(event),
        env=env,
        cwd=env["CLAUDE_PROJECT_DIR"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def base(name: str, session: str, project: Path, **fields: Any) -> dict[str, Any]:
    return {
        "session_id": session,
        "transcript_path": f"/home/u/.claude/projects/p/{session}.jsonl",
        "cwd": str(project),
        "permission_mode": "default",
        "hook_event_name": name,
        **fields,
    }


def edit(session: str, project: Path, path: str, tool: str = "Edit") -> dict[str, Any]:
    """A PreToolUse event for an edit tool; file paths arrive absolute."""
    key = "notebook_path" if tool == "NotebookEdit" else "file_path"
    tool_input = {key: str(project / path), "old_string": "a", "new_string": "b"}
    return base("PreToolUse", session, project, tool_name=tool, tool_input=tool_input, tool_use_id="toolu_1")


def decision(p: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)["hookSpecificOutput"]
    assert out["hookEventName"] == "PreToolUse"
    return dict(out)


def sid() -> str:
    return str(uuid.uuid4())


async def test_an_edit_to_a_path_another_agent_locked_is_denied_naming_holder_and_task(
    store: Store, env: dict[str, str], project: Path
) -> None:
    tid = await store.add("port the parser")
    claim = await store.claim("ada")
    assert claim is not None and claim.task.id == tid
    await store.lock(["src/app.py"], "ada", task=tid)
    me = sid()
    for tool in ("Edit", "Write", "MultiEdit", "NotebookEdit"):
        out = decision(hook(env, edit(me, project, "src/app.py", tool)))
        assert out["permissionDecision"] == "deny"
        reason = out["permissionDecisionReason"]
        assert "ada" in reason and tid in reason and "port the parser" in reason and "src/app.py" in reason
        assert agent_for_session(me) in reason


async def test_a_free_path_is_allowed_without_overriding_claude_codes_own_prompt(
    store: Store, env: dict[str, str], project: Path
) -> None:
    await store.lock(["src/other.py"], "ada")
    p = hook(env, edit(sid(), project, "src/app.py"))
    assert p.returncode == 0 and p.stdout == "" and p.stderr == ""
    # not an edit tool, or a file outside the project: not the board's business
    read = base(
        "PreToolUse",
        sid(),
        project,
        tool_name="Read",
        tool_input={"file_path": str(project / "src/other.py")},
    )
    assert hook(env, read).stdout == ""
    outside = edit(sid(), project, "x")
    outside["tool_input"]["file_path"] = "/etc/hosts"
    assert hook(env, outside).stdout == ""


async def test_a_lock_on_a_directory_covers_the_files_under_it_and_ones_own_lock_allows(
    store: Store, env: dict[str, str], project: Path
) -> None:
    await store.lock(["src"], "ada")
    out = decision(hook(env, edit(sid(), project, "src/deep/app.py")))
    assert out["permissionDecision"] == "deny" and "directory src" in out["permissionDecisionReason"]
    me = sid()
    await store.lock(["lib/util.py"], agent_for_session(me))
    p = hook(env, edit(me, project, "lib/util.py"))
    assert p.returncode == 0 and p.stdout == ""


async def test_strict_mode_also_denies_a_path_the_agent_holds_no_lock_on(
    store: Store, env: dict[str, str], project: Path
) -> None:
    me = sid()
    out = decision(hook(env, edit(me, project, "src/app.py"), "--strict"))
    assert out["permissionDecision"] == "deny" and "hold no lock" in out["permissionDecisionReason"]
    await store.lock(["src"], agent_for_session(me))
    p = hook(env, edit(me, project, "src/app.py"), "--strict")
    assert p.returncode == 0 and p.stdout == ""


def test_an_unreachable_store_never_breaks_the_session(env: dict[str, str], project: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env["CLAIMROOM_URL"] = f"redis://127.0.0.1:{port}/0"
    p = hook(env, edit(sid(), project, "src/app.py"))
    assert p.returncode == 0 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "edit goes ahead unchecked" in p.stderr
    strict = decision(hook(env, edit(sid(), project, "src/app.py"), "--strict"))
    assert strict["permissionDecision"] == "deny" and "cannot be read" in strict["permissionDecisionReason"]
    stop = hook(env, base("Stop", sid(), project, stop_hook_active=False))
    assert stop.returncode == 0 and stop.stdout == "" and "nothing was done" in stop.stderr


def test_input_that_is_not_a_hook_event_is_exit_2_in_one_line(env: dict[str, str], project: Path) -> None:
    for args, text in ((["PreToolUse"], "{not json"), (["PreToolUse"], "[1]"), (["Nope"], "{}"), ([], "{}")):
        p = subprocess.run(
            [CLAIMROOM, "hook", *args], input=text, env=env, capture_output=True, text=True, timeout=30
        )
        assert p.returncode == 2 and p.stdout == "" and p.stderr.count("\n") == 1, (args, p.stderr)
        assert "Traceback" not in p.stderr


async def test_session_start_registers_one_agent_per_session_and_tells_the_rules(
    store: Store, env: dict[str, str], project: Path
) -> None:
    one, two = sid(), sid()
    names = []
    for session in (one, two):
        p = hook(env, base("SessionStart", session, project, source="startup"))
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout)["hookSpecificOutput"]
        assert out["hookEventName"] == "SessionStart"
        name = agent_for_session(session)
        assert f"You are agent {name}" in out["additionalContext"] and "claim" in out["additionalContext"]
        names.append(name)
    assert names[0] != names[1]
    sessions = {a.name: a.session for a in await store.agents()}
    assert sessions[names[0]] == one and sessions[names[1]] == two  # the control room shows it


async def test_post_tool_use_heartbeats_the_sessions_claims(
    store: Store, env: dict[str, str], project: Path
) -> None:
    me = sid()
    agent = agent_for_session(me)
    tid = await store.add("long work")
    claim = await store.claim(agent, ttl_s=30)
    assert claim is not None
    other = await store.add("someone else's")
    theirs = await store.claim("ada", ttl_s=30)
    assert theirs is not None and theirs.task.id == other
    event = base("PostToolUse", me, project, tool_name="Edit", tool_input={"file_path": str(project / "a")})
    p = hook(env, event)
    assert p.returncode == 0 and p.stdout == "", p.stderr
    assert (await store.get(tid)).deadline_ms > claim.deadline_ms
    assert (await store.get(other)).deadline_ms == theirs.deadline_ms  # only its own


async def test_stop_fails_an_open_claim_with_a_reason_and_hands_over_the_next_task(
    store: Store, env: dict[str, str], project: Path
) -> None:
    me = sid()
    agent = agent_for_session(me)
    first = await store.add("first", priority=5)
    nxt = await store.add("second", payload={"files": ["src/b.py"]})
    claim = await store.claim(agent)
    assert claim is not None and claim.task.id == first
    p = hook(env, base("Stop", me, project, stop_hook_active=False))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["decision"] == "block"
    after = await store.get(nxt)
    assert after.state == "claimed" and after.agent == agent
    assert nxt in out["reason"] and f"token {after.token}" in out["reason"] and "src/b.py" in out["reason"]
    assert f"complete {nxt} --token {after.token}" in out["reason"]
    dropped = await store.get(first)
    assert dropped.state == "retrying" and "stopped before completing" in dropped.reason


async def test_stop_while_stop_hook_active_fails_the_claim_but_hands_nothing_over(
    store: Store, env: dict[str, str], project: Path
) -> None:
    me = sid()
    agent = agent_for_session(me)
    first = await store.add("first", priority=5)
    nxt = await store.add("second")
    assert await store.claim(agent) is not None
    p = hook(env, base("Stop", me, project, stop_hook_active=True))
    assert p.returncode == 0, p.stderr
    assert "decision" not in (json.loads(p.stdout) if p.stdout else {})
    assert (await store.get(first)).state == "retrying"
    assert (await store.get(nxt)).state == "queued"


async def test_stop_with_nothing_open_and_nothing_to_do_lets_it_stop(
    store: Store, env: dict[str, str], project: Path
) -> None:
    p = hook(env, base("Stop", sid(), project, stop_hook_active=False))
    assert p.returncode == 0 and p.stdout == "", p.stderr


async def test_subagent_stop_keeps_the_sessions_claim(
    store: Store, env: dict[str, str], project: Path
) -> None:
    me = sid()
    tid = await store.add("parent's work")
    claim = await store.claim(agent_for_session(me), ttl_s=30)
    assert claim is not None
    event = base("SubagentStop", me, project, stop_hook_active=False, agent_id="a1", agent_type="general")
    p = hook(env, event)
    assert p.returncode == 0 and p.stdout == "", p.stderr
    t = await store.get(tid)
    assert t.state == "claimed" and t.deadline_ms > claim.deadline_ms


async def test_teammate_idle_hands_over_work_by_exit_code_2(
    store: Store, env: dict[str, str], project: Path
) -> None:
    me = sid()
    tid = await store.add("for a teammate")
    p = hook(env, base("TeammateIdle", me, project, teammate_name="researcher", team_name="t"))
    assert p.returncode == 2 and p.stdout == ""
    assert tid in p.stderr and "for a teammate" in p.stderr
    assert (await store.get(tid)).agent == agent_for_session(me)
    again = hook(env, base("TeammateIdle", me, project, teammate_name="researcher", team_name="t"))
    assert again.returncode == 0  # at capacity (and the board is empty): it may go idle


async def test_claimroom_agent_names_the_agent_for_every_session(
    store: Store, env: dict[str, str], project: Path
) -> None:
    await store.lock(["src/app.py"], "builder")
    env["CLAIMROOM_AGENT"] = "builder"
    p = hook(env, edit(sid(), project, "src/app.py"))
    assert p.returncode == 0 and p.stdout == ""


# --- the http form: Claude Code's http hook handler POSTs the same JSON to a server ----------


class HookServer:
    """A real uvicorn server in a thread, serving only ``hook_routes`` (the MCP server mounts
    the same routes); each request acts as the session's agent on the test's board."""

    def __init__(self, url: str, namespace: str) -> None:
        import threading

        import uvicorn
        from starlette.applications import Starlette

        from claimroom.core.claude.acts import acting
        from claimroom.core.claude.http_hooks import hook_routes
        from claimroom.core.sessions import agent_name

        stores: list[Store] = []

        async def make_acting(request: Any, session: str) -> Any:
            if not stores:
                stores.append(Store.from_url(url, namespace))
            return acting(stores[0], agent_name(session), session)

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]

        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[None]:
            yield
            for store in stores:  # in the server's own loop, where it was opened
                await store.close()

        app = Starlette(routes=hook_routes(make_acting), lifespan=lifespan)
        config = uvicorn.Config(app, port=self.port, log_level="error", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def post(self, event: dict[str, Any], query: str = "") -> tuple[int, dict[str, Any]]:
        import urllib.error
        import urllib.request

        url = f"http://127.0.0.1:{self.port}/hooks/{event['hook_event_name']}{query}"
        req = urllib.request.Request(url, json.dumps(event).encode(), {"Content-Type": "application/json"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the server listens (it starts in its thread)
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())
            except urllib.error.URLError:
                if self.server.started:
                    raise
                self.thread.join(0.01)
        raise AssertionError("the hook server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def hook_server(store_url: str, namespace: str) -> Any:
    server = HookServer(store_url, namespace)
    yield server
    server.stop()


async def test_http_hooks_answer_as_the_command_form_does(
    store: Store, hook_server: Any, project: Path
) -> None:
    tid = await store.add("port the parser")
    assert await store.claim("ada") is not None
    await store.lock(["src/app.py"], "ada", task=tid)
    status, out = hook_server.post(edit(sid(), project, "src/app.py"))
    assert status == 200
    d = out["hookSpecificOutput"]
    assert d["permissionDecision"] == "deny" and "ada" in d["permissionDecisionReason"]
    assert tid in d["permissionDecisionReason"]
    assert hook_server.post(edit(sid(), project, "src/free.py")) == (200, {})
    status, out = hook_server.post(edit(sid(), project, "src/free.py"), "?strict=1")
    assert out["hookSpecificOutput"]["permissionDecision"] == "deny"
    me = sid()
    status, out = hook_server.post(base("SessionStart", me, project, source="startup"))
    assert status == 200 and agent_for_session(me) in out["hookSpecificOutput"]["additionalContext"]
    nxt = await store.add("next one")
    status, out = hook_server.post(base("Stop", me, project, stop_hook_active=False))
    assert status == 200 and out["decision"] == "block" and nxt in out["reason"]
    status, out = hook_server.post(base("TeammateIdle", me, project))
    assert status == 404 and "exit code" in out["error"]
    status, out = hook_server.post({"hook_event_name": "Stop", "session_id": 5})
    assert status == 400


def test_session_start_exports_the_agent_to_the_sessions_shell(env: dict[str, str], project: Path) -> None:
    """CLAUDE_ENV_FILE: what SessionStart writes there, Claude Code sources before each Bash
    command, so the CLI and the git pre-commit hook run by the session act as its agent."""
    me = sid()
    env_file = project.parent / "claude-env.sh"
    env_file.write_text("export KEEP=1\n")
    env["CLAUDE_ENV_FILE"] = str(env_file)
    p = hook(env, base("SessionStart", me, project, source="startup"))
    assert p.returncode == 0, p.stderr
    assert env_file.read_text() == f"export KEEP=1\nexport CLAIMROOM_AGENT={agent_for_session(me)}\n"
    shell = subprocess.run(
        ["sh", "-c", f". {env_file} && echo $CLAIMROOM_AGENT"], capture_output=True, text=True, check=True
    )
    assert shell.stdout.strip() == agent_for_session(me)


def test_the_hooks_light_client_authenticates_selects_and_reports_refusals(redis_url: str) -> None:
    """core/resp.py against the real server: a user and password in the URL, a database
    number, an error reply as StoreUnavailable (the hooks' "board cannot be used")."""
    from claimroom.core.errors import StoreUnavailable
    from claimroom.core.resp import Connection

    user, password = "hook" + uuid.uuid4().hex[:8], uuid.uuid4().hex
    with Connection(redis_url, 2.0) as admin:
        admin.call("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")
        try:
            authed = redis_url.replace("redis://", f"redis://{user}:{password}@").rsplit("/", 1)[0] + "/3"
            with Connection(authed, 2.0) as r:
                key = "hooktest:" + uuid.uuid4().hex
                assert r.pipeline([("SET", key, "v"), ("GET", key), ("DEL", key)]) == ["OK", "v", 1]
                assert r.call("CLIENT", "INFO").split(" db=", 1)[1].startswith("3 ")
            with pytest.raises(StoreUnavailable, match="refused the connection"):
                Connection(authed.replace(password, "wrong"), 2.0)
            with Connection(redis_url, 2.0) as r, pytest.raises(StoreUnavailable, match="answered an error"):
                r.call("NO-SUCH-COMMAND")
        finally:
            admin.call("ACL", "DELUSER", user)


def test_the_hooks_find_the_store_the_project_uses_without_starting_one(tmp_path: Path) -> None:
    """projectdir.store_url: CLAIMROOM_URL, else the file board the project fell back to, else
    the default port; the password of the store claimroom started there joins the URL (the
    private stores), as ``resolve`` does, with no probe and no start."""
    from claimroom.core.projectdir import store_url

    project = tmp_path / "p"
    (project / ".claimroom").mkdir(parents=True)
    assert store_url(project, {}) == "redis://127.0.0.1:6379/0"
    record = {"kind": "local", "url": "redis://:s3cret@127.0.0.1:6379/0", "port": 6379, "password": "s3cret"}
    (project / ".claimroom" / "started.json").write_text(json.dumps({"stores": [record]}))
    assert store_url(project, {}) == "redis://:s3cret@127.0.0.1:6379/0"
    named = {"CLAIMROOM_URL": "redis://127.0.0.1:6379/2"}
    assert store_url(project, named) == "redis://:s3cret@127.0.0.1:6379/2"
    assert store_url(project, {"CLAIMROOM_URL": "redis://10.0.0.5:6379/0"}) == "redis://10.0.0.5:6379/0"
    board = (tmp_path / "board").as_uri()
    (project / ".claimroom" / "config.json").write_text(json.dumps({"fallback_url": board}))
    assert store_url(project, {}) == board
