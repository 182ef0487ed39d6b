"""The MCP Inspector's CLI, a client nobody here wrote, against the real ``claimroom serve --http``
(a subprocess on the test's redis-server): with a worker's bearer token it lists the tools
(the operator's are not offered to a worker), claims a task and completes it, in both
protocol eras; without a token, or with a bad one, it is refused (401) and nothing changes.

The Inspector is installed once per machine (tests/inspector_cli.py); the first run on a
machine takes the npm install's time too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from inspector_cli import inspector

from claimroom.core.local_redis import free_port

CLAIMROOM = str(Path(sys.executable).parent / "claimroom")
AGENT_TOOLS = {"register", "claim", "heartbeat", "complete", "fail", "release", "add", "list", "show", "lock",
               "unlock", "send_message", "read_inbox", "bid", "review", "plan"}  # fmt: skip
OPERATOR_TOOLS = {"reassign", "kill", "requeue", "retry", "extend", "cancel"}
ERAS = ["legacy", "modern"]  # 2025-11-25 (initialize, a session) and 2026-07-28 (stateless)
# The Inspector's own exit codes (clients/cli: EXIT_CODES): 401 and 403 are AUTH_REQUIRED.
AUTH_REQUIRED = 3

# The first run on a machine installs the Inspector with npm (a minute or more on a cold cache).
# Node.js processes (and a first npm install): the heavy group (tests/conftest.py), which also
# checks the install once, in one worker.
pytestmark = [pytest.mark.timeout(600), pytest.mark.heavy]


@pytest.fixture(scope="module")
def inspector_argv() -> list[str]:
    return inspector()


def claimroom(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run([CLAIMROOM, *args, "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done
    return dict(json.loads(done.stdout))


@pytest.fixture
def server(cli_env: dict[str, str]) -> Iterator[str]:
    """``claimroom serve --http`` on a free port until the test ends; yields its MCP URL."""
    port = free_port()
    proc = subprocess.Popen([CLAIMROOM, "serve", "--http", f"127.0.0.1:{port}"], env=cli_env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # said once it accepts connections
        url = f"http://127.0.0.1:{port}/mcp"
        assert line.startswith(f"claimroom: MCP server on {url} "), line
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)  # this process, by its PID
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0 and "Traceback" not in err, err


class Inspector:
    """Runs the Inspector's CLI against one server, as a person would from a shell."""

    def __init__(self, argv: list[str], url: str, home: Path) -> None:
        self.argv, self.url = argv, url
        home.mkdir(exist_ok=True)
        # Its catalog and stored state go to a fresh home, not the user's ~/.mcp-inspector.
        self.env = {"PATH": os.environ["PATH"], "HOME": str(home)}

    def run(self, token: str | None, *args: str, era: str = "legacy") -> tuple[int, dict[str, Any]]:
        """The exit code and the JSON the CLI answered (its result, or its error envelope)."""
        header = [] if token is None else ["--header", f"Authorization: Bearer {token}"]
        argv = [*self.argv, self.url, "--transport", "http", "--protocol-era", era, *header,
                "--stored-auth-only", "--format", "json", "--quiet", *args]  # fmt: skip
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=120)
        said = done.stdout if done.returncode == 0 else done.stderr
        try:
            return done.returncode, dict(json.loads(said))
        except ValueError:
            pytest.fail(f"the Inspector answered {done.returncode} with no JSON: {done}", pytrace=False)

    def ok(self, token: str, *args: str, era: str) -> dict[str, Any]:
        code, said = self.run(token, *args, era=era)
        assert code == 0, said
        return dict(said["result"])

    def call(self, token: str, tool: str, arguments: dict[str, Any], *, era: str) -> dict[str, Any]:
        result = self.ok(token, "--method", "tools/call", "--tool-name", tool,
                         "--tool-args-json", json.dumps(arguments), era=era)  # fmt: skip
        assert result["isError"] is False, result
        return dict(result["structuredContent"])


@pytest.fixture
def insp(inspector_argv: list[str], server: str, tmp_path: Path) -> Inspector:
    return Inspector(inspector_argv, server, tmp_path / "inspector-home")


@pytest.mark.parametrize("era", ERAS)
def test_inspector_lists_claims_and_completes_with_a_token(
    insp: Inspector, cli_env: dict[str, str], era: str
) -> None:
    ada = claimroom(cli_env, "token", "create", "--agent", "ada", "--role", "worker")["token"]
    olga = claimroom(cli_env, "token", "create", "--agent", "olga", "--role", "operator")["token"]
    tid = claimroom(cli_env, "add", "port the parser", "--queue", "backend")["id"]

    listed = {t["name"] for t in insp.ok(ada, "--method", "tools/list", era=era)["tools"]}
    assert listed >= AGENT_TOOLS and not listed & OPERATOR_TOOLS, listed
    # Offered by role, not missing: an operator's token lists them.
    assert {t["name"] for t in insp.ok(olga, "--method", "tools/list", era=era)["tools"]} >= OPERATOR_TOOLS
    # A worker's call to an operator tool goes nowhere (the Inspector finds no such tool).
    code, said = insp.run(ada, "--method", "tools/call", "--tool-name", "kill", "--tool-args-json",
                          json.dumps({"task": tid}), era=era)  # fmt: skip
    assert code != 0 and "kill" in said["error"]["message"], said
    assert claimroom(cli_env, "show", tid)["state"] == "queued"

    got = insp.call(ada, "claim", {"queues": ["backend"]}, era=era)
    assert got["claimed"] is True and got["task"]["id"] == tid and got["task"]["agent"] == "ada", got
    done = insp.call(ada, "complete", {"task": tid, "token": got["token"], "result": {"pr": 7}}, era=era)
    assert done == {"task": tid, "state": "done", "unblocked": [], "next": None}

    task = claimroom(cli_env, "show", tid)
    assert (task["state"], task["agent"], task["result"]) == ("done", "ada", {"pr": 7})


def test_inspector_without_a_token_is_refused(insp: Inspector, cli_env: dict[str, str]) -> None:
    claimroom(cli_env, "token", "create", "--agent", "ada", "--role", "worker")
    tid = claimroom(cli_env, "add", "port the parser")["id"]
    for token, why in ((None, "send your agent's token"), ("crm_" + "x" * 43, "unknown or revoked token")):
        code, said = insp.run(token, "--method", "tools/call", "--tool-name", "claim")
        # The message is the server's own 401 body, passed on by the Inspector.
        assert code == AUTH_REQUIRED and said["error"]["code"] == "auth_required", said
        assert why in said["error"]["message"], said
    task = claimroom(cli_env, "show", tid)
    assert (task["state"], task["agent"], task["attempts"]) == ("queued", "", 0)
