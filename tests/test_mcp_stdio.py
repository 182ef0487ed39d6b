"""``claimroom serve --stdio`` as a client starts it: a subprocess, driven by the SDK's own
stdio client in both protocol eras, on both backends; its identity from the environment."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.subscriptions import ResourceUpdated
from mcp_support import MODES, ok, refused, until

from claimroom.core.sessions import agent_for_session
from claimroom.core.store import Store
from claimroom.core.tokens import create_token, revoke_tokens

CLAIMROOM = str(Path(sys.executable).parent / "claimroom")


@contextlib.asynccontextmanager
async def stdio(
    store_url: str,
    namespace: str,
    tmp_path: Path,
    env: dict[str, str],
    *args: str,
    mode: str = "auto",
    **kw: Any,
) -> AsyncIterator[Client]:
    """The SDK's client on a ``claimroom serve --stdio`` it started (stderr into a file)."""
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CLAIMROOM_", "CLAUDE_CODE_"))},
        "CLAIMROOM_URL": store_url,
        "CLAIMROOM_NAMESPACE": namespace,
        "CLAIMROOM_HOME": str(tmp_path),
        **env,
    }
    params = StdioServerParameters(
        command=CLAIMROOM, args=["serve", "--stdio", *args], env=full, cwd=tmp_path
    )
    with open(tmp_path / "serve.err", "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode=mode, **kw) as c:
            yield c
    said = (tmp_path / "serve.err").read_text()
    assert said.startswith("claimroom: MCP server on stdio as ") and "Traceback" not in said, said


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_every_tool_over_stdio(
    store: Store, store_url: str, namespace: str, tmp_path: Path, mode: str
) -> None:
    async with stdio(store_url, namespace, tmp_path, {"CLAIMROOM_AGENT": "olga"}, "--role", "operator",
                     mode=mode) as c:  # fmt: skip
        assert c.protocol_version == MODES[mode]
        names = {t.name for t in (await c.list_tools()).tools}
        assert {"claim", "complete", "kill", "reassign", "extend"} <= names
        assert ok(await c.call_tool("register", {"capabilities": ["ops"]}))["agent"] == "olga"
        t1 = ok(await c.call_tool("add", {"title": "one"}))["id"]
        got = ok(await c.call_tool("claim", {"paths": ["src/x.py"]}))
        assert got["task"]["id"] == t1 and got["locked"] == ["src/x.py"]
        ok(await c.call_tool("heartbeat", {"task": t1, "token": got["token"], "stage": "going"}))
        assert ok(await c.call_tool("show", {"task": t1}))["stage"] == "going"
        assert [t["id"] for t in ok(await c.call_tool("list", {}))["tasks"]] == [t1]
        ok(await c.call_tool("lock", {"paths": ["docs/y.md"]}))
        assert ok(await c.call_tool("unlock", {"paths": ["docs/y.md"]}))["released"] == ["docs/y.md"]
        ok(await c.call_tool("extend", {"task": t1, "extra_s": 10}))
        ok(await c.call_tool("complete", {"task": t1, "token": got["token"]}))
        t2 = ok(await c.call_tool("add", {"title": "two"}))["id"]
        got = ok(await c.call_tool("claim", {}))
        ok(await c.call_tool("fail", {"task": t2, "token": got["token"], "reason": "x", "fatal": True}))
        ok(await c.call_tool("retry", {"task": t2}))
        got = ok(await c.call_tool("claim", {}))
        ok(await c.call_tool("release", {"task": t2, "token": got["token"]}))
        ok(await c.call_tool("reassign", {"task": t2, "agent": "olga"}))
        got = ok(await c.call_tool("claim", {}))
        assert ok(await c.call_tool("kill", {"task": t2, "dead": True}))["state"] == "dead"
        assert ok(await c.call_tool("requeue", {"task": t2}))["state"] == "queued"
        assert ok(await c.call_tool("cancel", {"task": t2}))["state"] == "cancelled"
        assert "Stop working" in refused(await c.call_tool("complete", {"task": t2, "token": got["token"]}))
    assert (await store.get(t1)).state.value == "done"
    assert (await store.get(t2)).state.value == "cancelled"


async def test_stdio_identity_from_the_claude_code_session(
    store: Store, store_url: str, namespace: str, tmp_path: Path
) -> None:
    session = "5f0c1e2a-9b7d-4c3e-8f21-0a1b2c3d4e5f"
    await store.add("for the session")
    async with stdio(store_url, namespace, tmp_path, {"CLAUDE_CODE_SESSION_ID": session}) as c:
        got = ok(await c.call_tool("claim", {}))
        assert got["task"]["agent"] == agent_for_session(session) == "claude-5f0c1e2a"
        # a worker by default: the operator's tools are neither offered nor allowed
        assert "kill" not in {t.name for t in (await c.list_tools()).tools}
        assert "operator" in refused(await c.call_tool("kill", {"task": got["task"]["id"]}))


async def test_stdio_without_identity_says_so(store_url: str, namespace: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAIMROOM_", "CLAUDE_CODE_"))}
    env |= {"CLAIMROOM_URL": store_url, "CLAIMROOM_NAMESPACE": namespace, "CLAIMROOM_HOME": str(tmp_path)}
    done = subprocess.run(
        [CLAIMROOM, "serve", "--stdio"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert (
        done.stderr.count("\n") == 1 and "CLAIMROOM_TOKEN" in done.stderr and "Traceback" not in done.stderr
    )


async def test_stdio_identity_from_a_token(
    store: Store, store_url: str, namespace: str, tmp_path: Path
) -> None:
    token = await create_token(store, "pat", "planner")
    async with stdio(store_url, namespace, tmp_path, {"CLAIMROOM_TOKEN": token, "CLAIMROOM_AGENT": "ignored"},
                     "--role", "operator") as c:  # fmt: skip
        added = ok(await c.call_tool("add", {"title": "from the planner"}))
        got = ok(await c.call_tool("claim", {}))
        assert got["task"]["id"] == added["id"] and got["task"]["agent"] == "pat"
        assert "kill" not in {t.name for t in (await c.list_tools()).tools}  # the token's role, not --role


async def test_stdio_with_a_revoked_token_says_so(
    store: Store, store_url: str, namespace: str, tmp_path: Path
) -> None:
    token = await create_token(store, "pat", "planner")
    await revoke_tokens(store, "pat")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAIMROOM_", "CLAUDE_CODE_"))}
    env |= {"CLAIMROOM_URL": store_url, "CLAIMROOM_NAMESPACE": namespace, "CLAIMROOM_HOME": str(tmp_path),
            "CLAIMROOM_TOKEN": token}  # fmt: skip
    argv = [CLAIMROOM, "serve", "--stdio"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and done.stdout == ""
    assert (
        done.stderr == "claimroom: CLAIMROOM_TOKEN is not a valid token on this board (unknown or revoked)\n"
    )


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_notifications_over_stdio(
    store: Store, store_url: str, namespace: str, tmp_path: Path, mode: str
) -> None:
    tid = await store.add("watched")
    uri = f"claimroom://task/{tid}"
    got: list[object] = []

    async def note(message: object) -> None:
        got.append(message)

    async with stdio(
        store_url, namespace, tmp_path, {"CLAIMROOM_AGENT": "ada"}, mode=mode, message_handler=note
    ) as c:
        if mode == "legacy":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await c.subscribe_resource(uri)
            assert await store.claim("bob") is not None
            await until(lambda: any(isinstance(m, types.ResourceUpdatedNotification) and m.params.uri == uri
                                    for m in got))  # fmt: skip
        else:
            async with c.listen(resource_subscriptions=[uri]) as sub:
                assert await store.claim("bob") is not None
                async with asyncio.timeout(10):
                    async for event in sub:
                        if event == ResourceUpdated(uri):
                            break
