"""Every tool through the SDK's own client over HTTP, in both protocol eras (2025-11-25
sessions and 2026-07-28 stateless requests), on a real redis-server and on the file store."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp_support import MODES, client, ok, refused, serving
from mcp_types import TextContent

from claimroom.core.store import Store
from claimroom.core.tokens import create_token

AGENT_TOOLS = {"register", "claim", "heartbeat", "complete", "fail", "release", "add", "list", "show", "lock",
               "unlock", "send_message", "read_inbox", "bid", "review", "plan"}  # fmt: skip
OPERATOR_TOOLS = {"reassign", "kill", "requeue", "retry", "extend", "cancel"}


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_every_tool(store: Store, mode: str, tmp_path: Path) -> None:
    pat = await create_token(store, "pat", "planner")
    ada = await create_token(store, "ada", "worker")
    olga = await create_token(store, "olga", "operator")
    async with (
        serving(store, root=tmp_path) as served,
        client(served.url, pat, mode=mode) as planner,
        client(served.url, ada, mode=mode) as worker,
        client(served.url, olga, mode=mode) as operator,
    ):
        assert worker.protocol_version == MODES[mode]
        names = {t.name for t in (await worker.list_tools()).tools}
        assert names == AGENT_TOOLS  # a worker is not offered the operator's tools
        assert {t.name for t in (await operator.list_tools()).tools} == AGENT_TOOLS | OPERATOR_TOOLS
        assert all(t.description and t.output_schema for t in (await operator.list_tools()).tools)

        t1 = ok(await planner.call_tool("add", {"title": "one", "payload": {"n": 1}, "priority": 5}))["id"]
        reg = ok(await worker.call_tool("register", {"capabilities": ["python"], "max_claims": 2}))
        assert reg == {"agent": "ada", "capabilities": ["python"], "max_claims": 2}

        got = ok(await worker.call_tool("claim", {"paths": ["src/a.py", str(tmp_path / "src/b.py")]}))
        assert got["claimed"] and got["task"]["id"] == t1 and got["task"]["payload"] == {"n": 1}
        assert got["locked"] == ["src/a.py", "src/b.py"]
        token = got["token"]
        beat_args = {"task": t1, "token": token, "progress": 0.3, "stage": "halfway", "checkpoint": "notes"}
        beat = ok(await worker.call_tool("heartbeat", beat_args))
        assert beat["deadline_ms"] >= got["deadline_ms"]
        locked = ok(await worker.call_tool("lock", {"paths": ["docs/x.md"], "ttl_s": 30}))
        assert locked["paths"] == ["docs/x.md"]
        assert ok(await worker.call_tool("unlock", {"paths": ["docs/x.md"]}))["released"] == ["docs/x.md"]
        listing = ok(await worker.call_tool("list", {"state": "claimed"}))
        assert [t["id"] for t in listing["tasks"]] == [t1] and listing["more"] is False
        shown = ok(await worker.call_tool("show", {"task": t1}))
        assert (shown["stage"], shown["checkpoint"], shown["progress"]) == ("halfway", "notes", 0.3)
        done = ok(await worker.call_tool("complete", {"task": t1, "token": token, "result": {"ok": True}}))
        assert done == {"task": t1, "state": "done", "unblocked": [], "next": None}
        assert (await store.get(t1)).result == {"ok": True}
        assert await store.locks() == []  # the claim's locks went with it

        t2 = ok(await planner.call_tool("add", {"title": "two"}))["id"]
        got = ok(await worker.call_tool("claim", {}))
        failed = ok(await worker.call_tool("fail", {"task": t2, "token": got["token"], "reason": "flaky"}))
        assert failed["state"] == "retrying" and failed["retry_at_ms"] > 0

        t3 = ok(await planner.call_tool("add", {"title": "three", "priority": 9}))["id"]
        got = ok(await worker.call_tool("claim", {}))
        assert got["task"]["id"] == t3
        assert ok(await worker.call_tool("release", {"task": t3, "token": got["token"]}))["state"] == "queued"

        # The operator's tools, on a claim of ada's.
        got = ok(await worker.call_tool("claim", {"ttl_s": 30}))
        assert got["task"]["id"] == t3
        extended = ok(await operator.call_tool("extend", {"task": t3, "extra_s": 60}))
        assert extended["deadline_ms"] > got["deadline_ms"]
        assert ok(await operator.call_tool("kill", {"task": t3, "token": got["token"]}))["state"] == "queued"
        lost = refused(await worker.call_tool("heartbeat", {"task": t3, "token": got["token"]}))
        assert lost.startswith("Stop working on that task") and "lease lost" in lost
        # Reassigning a queued task keeps it for that agent: only pat may claim it now.
        ok(await planner.call_tool("register", {}))
        assert ok(await operator.call_tool("reassign", {"task": t3, "agent": "pat"}))["state"] == "queued"
        assert ok(await worker.call_tool("claim", {}))["claimed"] is False
        assert ok(await planner.call_tool("claim", {}))["task"]["id"] == t3
        assert ok(await operator.call_tool("requeue", {"task": t3}))["state"] == "queued"
        assert ok(await operator.call_tool("cancel", {"task": t3}))["state"] == "cancelled"

        t4 = ok(await planner.call_tool("add", {"title": "four", "priority": 9}))["id"]
        got = ok(await worker.call_tool("claim", {}))
        assert got["task"]["id"] == t4
        dead = ok(
            await worker.call_tool("fail", {"task": t4, "token": got["token"], "reason": "no", "fatal": True})
        )
        assert dead["state"] == "dead"
        assert ok(await operator.call_tool("retry", {"task": t4}))["state"] == "queued"

        # Typed inputs: a wrong type is a tool error, not a crash.
        bad = await worker.call_tool("heartbeat", {"task": t4, "token": "many"})
        assert bad.is_error and isinstance(bad.content[0], TextContent)
        nothing = ok(await planner.call_tool("claim", {"queues": ["empty-queue"]}))
        assert nothing == {"claimed": False, "task": None, "token": None, "deadline_ms": None, "locked": [],
                           "why": "nothing is claimable in those queues now"}  # fmt: skip
    assert served.service.stats.calls >= 30 and served.service.stats.errors >= 1


async def test_claim_with_paths_held_by_another_gives_the_claim_back(store: Store, tmp_path: Path) -> None:
    ada = await create_token(store, "ada", "worker")
    bob = await create_token(store, "bob", "worker")
    tid = await store.add("edit a.py")
    async with (
        serving(store, root=tmp_path) as served,
        client(served.url, ada) as a,
        client(served.url, bob) as b,
    ):
        ok(await b.call_tool("lock", {"paths": ["src/a.py"]}))
        line = refused(await a.call_tool("claim", {"paths": ["src/a.py"]}))
        assert "src/a.py" in line and "bob" in line
    task = await store.get(tid)
    assert task.state.value == "queued"


async def test_complete_with_next_claims_the_agents_next_task_in_the_same_step(
    store: Store, tmp_path: Path
) -> None:
    ada = await create_token(store, "ada", "worker")
    first, second = await store.add("first", priority=9), await store.add("second", priority=1)
    await store.add("elsewhere", queue="other", priority=5)
    async with serving(store, root=tmp_path) as served, client(served.url, ada) as worker:
        got = ok(await worker.call_tool("claim", {}))
        assert got["task"]["id"] == first
        args = {
            "task": first,
            "token": got["token"],
            "result": {"ok": 1},
            "next": True,
            "queues": ["default"],
        }
        done = ok(await worker.call_tool("complete", {**args, "ttl_s": 30}))
        assert done["state"] == "done" and done["unblocked"] == []
        nxt = done["next"]
        assert nxt["claimed"] and nxt["task"]["id"] == second and nxt["token"] > got["token"]
        assert (await store.get(second)).agent == "ada" and (await store.get(second)).ttl_ms == 30_000
        assert (await store.get(first)).result == {"ok": 1}
        last = ok(await worker.call_tool("complete", {"task": second, "token": nxt["token"], "next": True,
                                                      "queues": ["default"]}))  # fmt: skip
        assert last["next"] == {"claimed": False, "task": None, "token": None, "deadline_ms": None,
                                "locked": [], "why": "nothing is claimable in those queues now"}  # fmt: skip
        # next with review makes no sense; queues without next is a mistake: refused, nothing changes
        got = ok(await worker.call_tool("claim", {}))
        assert got["task"]["title"] == "elsewhere"
        for bad in ({"review": "pr-1", "next": True}, {"queues": ["default"]}, {"ttl_s": 5}):
            line = refused(
                await worker.call_tool("complete", {"task": got["task"]["id"], "token": got["token"], **bad})
            )
            assert "next" in line
        assert (await store.get(got["task"]["id"])).state.value == "claimed"
