"""The plan tool through the SDK's own client over HTTP, on both backends: a planner's plan
added whole, a worker refused, a bad plan refused with nothing added, and a planner's plan
under its own claim only."""

from __future__ import annotations

import pytest
from mcp_support import board_state, client, ok, refused, serving

from claimroom.core.models import State
from claimroom.core.store import Store
from claimroom.core.tokens import create_token

PLAN = {
    "title": "port the CLI",
    "queue": "backend",
    "subtasks": [
        {"ref": "parse", "title": "parser", "paths": ["cli/parse.py"]},
        {"ref": "docs", "title": "docs", "after": ["parse"]},
    ],
}


async def test_the_plan_tool(store: Store) -> None:
    pat = await create_token(store, "pat", "planner")
    ada = await create_token(store, "ada", "worker")
    async with (
        serving(store) as served,
        client(served.url, pat) as planner,
        client(served.url, ada) as worker,
    ):
        before = await board_state(store)
        assert "planner" in refused(await worker.call_tool("plan", {"plan": PLAN}))
        bad = {**PLAN, "subtasks": [*PLAN["subtasks"], {"ref": "x", "title": "x", "after": ["nope"]}]}
        assert 'subtasks[2] ("x")' in refused(await planner.call_tool("plan", {"plan": bad}))
        assert await board_state(store) == before
        got = ok(await planner.call_tool("plan", {"plan": PLAN}))
        assert list(got["subtasks"]) == ["parse", "docs"]
        parent = await store.get(got["parent"])
        assert parent.state is State.BLOCKED and parent.plan_total == 2
        docs = await store.get(got["subtasks"]["docs"])
        assert docs.queue == "backend" and docs.after == (got["subtasks"]["parse"],)
        assert next(e.agent for e in await store.events(task=docs.id)) == "pat"


@pytest.mark.parametrize("whose", ["own", "another's"])
async def test_a_planner_plans_only_under_its_own_claim(store: Store, whose: str) -> None:
    pat = await create_token(store, "pat", "planner")
    top = await store.add("plan the port")
    holder = "pat" if whose == "own" else "bob"
    c = await store.claim(holder, ttl_s=30)
    assert c is not None
    sub = {"subtasks": [{"ref": "a", "title": "a"}]}
    async with serving(store) as served, client(served.url, pat) as planner:
        result = await planner.call_tool("plan", {"plan": sub, "parent": top, "token": c.token})
        if whose == "own":
            got = ok(result)
            assert got["parent"] == top and (await store.get(got["subtasks"]["a"])).plan == top
        else:
            assert "bob" in refused(result)
            assert (await store.counts()).get(State.QUEUED, 0) == 0
