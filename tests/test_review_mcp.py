"""Review over MCP with the SDK's own client: complete with review, then the review tool as
an agent with the capability, an agent without it, the deliverer itself, and an operator."""

from __future__ import annotations

import json
from pathlib import Path

from mcp_support import client, ok, refused, serving

from claimroom.core import constants
from claimroom.core.models import State
from claimroom.core.store import Store
from claimroom.core.tokens import create_token


async def test_deliver_review_return_and_accept_over_mcp(store: Store, tmp_path: Path) -> None:
    ada = await create_token(store, "ada", "worker")
    rita = await create_token(store, "rita", "worker")
    olga = await create_token(store, "olga", "operator")
    tid = await store.add("login page")
    dep = await store.add("ship", after=[tid])
    async with (
        serving(store, root=tmp_path) as served,
        client(served.url, ada) as worker,
        client(served.url, rita) as reviewer,
        client(served.url, olga) as operator,
    ):
        got = ok(await worker.call_tool("claim", {"paths": ["src/login.py"]}))
        token = got["token"]
        out = ok(await worker.call_tool("complete", {"task": tid, "token": token, "review": "pr/42"}))
        assert out == {"task": tid, "state": "review", "unblocked": [], "next": None}
        shown = ok(await worker.call_tool("show", {"task": tid}))
        assert (shown["state"], shown["review_ref"], shown["agent"]) == ("review", "pr/42", "ada")
        assert shown["review_ms"] > 0 and await store.locks() == []
        board = json.loads((await reviewer.read_resource("claimroom://board")).contents[0].text)  # type: ignore[union-attr]
        assert [(r["task"], r["ref"], r["delivered_by"]) for r in board["review"]] == [(tid, "pr/42", "ada")]
        assert board["counts"]["review"] == 1
        lost = refused(await worker.call_tool("heartbeat", {"task": tid, "token": token}))
        assert "lease lost" in lost

        # rita is not registered with the capability yet; ada may not review its own work.
        ok(await reviewer.call_tool("register", {}))
        no_cap = refused(await reviewer.call_tool("review", {"task": tid, "verdict": "accept"}))
        assert "lacks the review capability" in no_cap
        ok(await worker.call_tool("register", {"capabilities": [constants.review_capability]}))
        own = refused(await worker.call_tool("review", {"task": tid, "verdict": "accept"}))
        assert "its own delivery" in own
        assert (await store.get(tid)).state is State.REVIEW

        ok(await reviewer.call_tool("register", {"capabilities": [constants.review_capability]}))
        back = ok(await reviewer.call_tool("review", {"task": tid, "verdict": "return", "note": "add tests"}))
        assert back == {
            "task": tid,
            "state": "queued",
            "verdict": "return",
            "reviewer": "rita",
            "unblocked": [],
        }
        again = ok(await worker.call_tool("claim", {}))
        assert again["task"]["id"] == tid and again["token"] > token
        assert again["task"]["checkpoint"] == constants.review_note_prefix + "add tests"
        ok(await worker.call_tool("complete", {"task": tid, "token": again["token"], "review": "pr/43"}))

        stale = refused(
            await operator.call_tool("review", {"task": tid, "verdict": "accept", "token": token})
        )
        assert "changed since" in stale
        acc = ok(
            await operator.call_tool("review", {"task": tid, "verdict": "accept", "token": again["token"]})
        )
        assert (acc["state"], acc["reviewer"], acc["unblocked"]) == ("done", "olga", [dep])
        twice = refused(await operator.call_tool("review", {"task": tid, "verdict": "return", "note": "x"}))
        assert "does not apply to a done task" in twice
    accepted = [e for e in await store.events(task=tid) if e.type == "accepted"]
    assert [(e.agent, e.operator) for e in accepted] == [("", "olga")]
