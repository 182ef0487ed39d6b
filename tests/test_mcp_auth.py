"""The HTTP gate and the identity rules over MCP: no token, a bad token, a foreign Origin,
an oversized body, a worker on another's claim, a worker calling an operator tool. Each is
refused with the right status or tool error, and changes nothing on the board."""

from __future__ import annotations

import json

import httpx2
import pytest
from mcp.shared.exceptions import MCPError
from mcp_support import MODES, board_state, client, ok, refused, serving
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from claimroom.core import constants as C
from claimroom.core.mcp.service import IDENTITY_KEY
from claimroom.core.store import Store
from claimroom.core.tokens import create_token

CALL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {
        "name": "add",
        "arguments": {"title": "sneaked in"},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        },
    },
}
HEADERS = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2026-07-28",
    "Mcp-Method": "tools/call",
    "Mcp-Name": "add",
}


async def post(url: str, body: bytes, **headers: str) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=10) as http:
        sent = {**HEADERS, "Content-Type": "application/json", **headers}
        return await http.post(url, content=body, headers=sent)


async def test_http_refusals_change_nothing(store: Store) -> None:
    planner = await create_token(store, "pat", "planner")
    await store.add("already there")
    before = await board_state(store)
    trail = await store.latest_events(10)
    body = json.dumps(CALL).encode()
    async with serving(store) as served:
        # No token, on loopback too: every call is by an identified agent.
        r = await post(served.url, body)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        r = await post(served.url, body, Authorization="Basic cGF0OnB3")
        assert r.status_code == 401
        r = await post(served.url, body, Authorization="Bearer crm_not-a-token")
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
        assert "unknown or revoked" in r.json()["error"]["message"]
        # A page elsewhere must not drive a local agent's tools, token or not.
        for origin in ("http://evil.example", "http://127.0.0.1:1", "null"):
            r = await post(served.url, body, Authorization=f"Bearer {planner}", Origin=origin)
            assert r.status_code == 403, origin
        # Too big: refused before it is parsed.
        big = b'{"pad": "' + b"x" * C.mcp_max_body_bytes + b'"}'
        r = await post(served.url, big, Authorization=f"Bearer {planner}")
        assert r.status_code == 413
        # The same call, allowed, from the server's own origin: the gate is not shut for all.
        r = await post(
            served.url, body, Authorization=f"Bearer {planner}", Origin=f"http://localhost:{served.port}"
        )
        assert r.status_code == 200 and "result" in r.text, r.text
        added = [t for t in await store.tasks() if t.title == "sneaked in"]
        assert len(added) == 1
    after = [t for t in json.loads(await board_state(store))[0] if t["title"] != "sneaked in"]
    assert json.dumps(after, sort_keys=True) == json.dumps(json.loads(before)[0], sort_keys=True)
    new = [e for e in await store.latest_events(10) if e.id not in {x.id for x in trail}]
    assert [e.type for e in new] == ["added"]  # only the allowed call left a trace


async def test_sdk_client_without_token_is_refused(store: Store) -> None:
    async with serving(store) as served:
        for mode in MODES:
            with pytest.raises(BaseExceptionGroup) as caught:
                async with client(served.url, None, mode=mode) as c:
                    await c.list_tools()
            # The SDK surfaces the refusal's own line as the connection's error.
            errors = caught.value.exceptions
            while isinstance(errors[0], BaseExceptionGroup):
                errors = errors[0].exceptions
            assert isinstance(errors[0], MCPError) and "Authorization: Bearer" in str(errors[0]), errors


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_worker_on_another_agents_claim(store: Store, mode: str) -> None:
    ada = await create_token(store, "ada", "worker")
    bob = await create_token(store, "bob", "worker")
    tid = await store.add("ada's work")
    async with (
        serving(store) as served,
        client(served.url, ada, mode=mode) as a,
        client(served.url, bob, mode=mode) as b,
    ):
        got = ok(await a.call_tool("claim", {"paths": ["src/a.py"]}))
        token = got["token"]
        before = await board_state(store)
        for name, args in (
            ("complete", {"task": tid, "token": token}),
            ("heartbeat", {"task": tid, "token": token, "progress": 0.9}),
            ("fail", {"task": tid, "token": token, "reason": "not mine", "fatal": True}),
            ("release", {"task": tid, "token": token}),
        ):
            line = refused(await b.call_tool(name, args))
            assert "ada" in line and "bob" in line, line
        await b.call_tool("unlock", {"paths": ["src/a.py"], "task": tid})  # only bob's own holds go: none
        assert await board_state(store) == before
        # bob is not offered the operator's tools, and calling one anyway is refused.
        for name, args in (("kill", {"task": tid}), ("reassign", {"task": tid, "agent": "bob"}),
                           ("extend", {"task": tid, "extra_s": 600}), ("cancel", {"task": tid})):  # fmt: skip
            line = refused(await b.call_tool(name, args))
            assert "operator" in line, line
        assert await board_state(store) == before
        # A planner may add, a worker may not.
        line = refused(await b.call_tool("add", {"title": "more work"}))
        assert "bob" in line and "worker" in line
        assert await board_state(store) == before
        # Each refused attempt is audited, naming who tried what, and how it came.
        tried = [e for e in await store.events(count=1000) if e.type == "refused"]
        assert {e.data["call"] for e in tried} >= {
            "complete",
            "heartbeat",
            "fail",
            "release",
            "act",
            "extend",
            "add",
        }
        assert {e.agent for e in tried} == {"bob"} and {e.data.get("via") for e in tried} == {"mcp-http"}
        assert ok(await a.call_tool("complete", {"task": tid, "token": token}))["state"] == "done"


async def test_extra_routes_sit_behind_the_same_gate(store: Store) -> None:
    async def whoami(request: Request) -> JSONResponse:
        who = request.scope[IDENTITY_KEY]
        return JSONResponse({"agent": who.agent, "role": who.role.value, "via": who.via})

    ada = await create_token(store, "ada", "worker")
    async with serving(store, extra_routes=[Route("/extra/whoami", whoami, methods=["POST"])]) as served:
        url = served.url.removesuffix("/mcp") + "/extra/whoami"
        assert (await post(url, b"{}")).status_code == 401
        assert (
            await post(url, b"{}", Authorization=f"Bearer {ada}", Origin="http://evil.example")
        ).status_code == 403
        r = await post(url, b"{}", Authorization=f"Bearer {ada}")
        assert r.json() == {"agent": "ada", "role": "worker", "via": "mcp-http"}
