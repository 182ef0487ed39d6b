"""Claude Code's http hooks served by the MCP server itself (POST /hooks/EVENT): behind the
same gate as /mcp (a token, a local Origin), answering as the token's agent with the same
decisions as the command form."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx2
from mcp_support import board_state, serving

from claimroom.core.store import Store
from claimroom.core.tokens import create_token


def edit(session: str, project: Path, path: str) -> dict[str, Any]:
    return {
        "session_id": session,
        "transcript_path": str(project / "t.jsonl"),
        "cwd": str(project),
        "hook_event_name": "PreToolUse",
        "tool_name": "Edit",
        "tool_input": {"file_path": str(project / path), "old_string": "a", "new_string": "b"},
    }


async def post(url: str, event: dict[str, Any], **headers: str) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=10) as http:
        return await http.post(url, content=json.dumps(event).encode(), headers=headers)


async def test_the_server_answers_claude_codes_http_hooks_behind_its_gate(
    store: Store, tmp_path: Path
) -> None:
    tid = await store.add("port the parser")
    assert await store.claim("ada") is not None
    await store.lock(["src/app.py"], "ada", task=tid, root=tmp_path)
    bob = await create_token(store, "bob", "worker")
    session = str(uuid.uuid4())
    async with serving(store, root=tmp_path) as served:
        url = f"http://127.0.0.1:{served.port}/hooks/PreToolUse"
        auth = {"Authorization": f"Bearer {bob}"}
        before = await board_state(store)
        # The gate: no token 401, a foreign page 403; nothing changes.
        assert (await post(url, edit(session, tmp_path, "src/app.py"))).status_code == 401
        evil = {"Origin": "https://evil.example", **auth}
        foreign = await post(url, edit(session, tmp_path, "src/app.py"), **evil)
        assert foreign.status_code == 403
        assert await board_state(store) == before
        # As bob: ada's file is refused, naming holder and task; a free file passes silently.
        r = await post(url, edit(session, tmp_path, "src/app.py"), **auth)
        decision = r.json()["hookSpecificOutput"]
        assert r.status_code == 200 and decision["permissionDecision"] == "deny"
        assert "ada" in decision["permissionDecisionReason"] and tid in decision["permissionDecisionReason"]
        r = await post(url, edit(session, tmp_path, "src/free.py"), **auth)
        assert (r.status_code, r.json()) == (200, {})
        # SessionStart registers the token's agent with the session the event names.
        start = {**edit(session, tmp_path, "x"), "hook_event_name": "SessionStart", "source": "startup"}
        r = await post(f"http://127.0.0.1:{served.port}/hooks/SessionStart", start, **auth)
        assert r.status_code == 200 and "bob" in r.json()["hookSpecificOutput"]["additionalContext"]
    agents = {a.name: a for a in await store.agents()}
    assert agents["bob"].session == session
