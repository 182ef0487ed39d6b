"""Push, both ways: resource-updated and list-changed notifications after a change made
elsewhere (2026-07-28 ``subscriptions/listen``; 2025-11-25 ``resources/subscribe`` and the
GET stream), and progress notifications while a claim waits for work."""

from __future__ import annotations

import asyncio
import json
import warnings

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.subscriptions import ResourcesListChanged, ResourceUpdated
from mcp_support import MODES, client, ok, serving, until

from claimroom.core.store import Store
from claimroom.core.tokens import create_token

BOARD = "claimroom://board"


async def test_listen_2026_gets_resource_updates_from_changes_elsewhere(store: Store) -> None:
    ada = await create_token(store, "ada", "worker")
    tid = await store.add("work")
    task_uri, inbox = f"claimroom://task/{tid}", "claimroom://agent/bob/inbox"
    async with serving(store) as served, client(served.url, ada, mode="auto") as c:
        assert c.protocol_version == "2026-07-28"
        async with c.listen(
            resource_subscriptions=[BOARD, task_uri, inbox], resources_list_changed=True
        ) as sub:
            claim = await store.claim("bob")  # another agent, straight on the store
            assert claim is not None
            seen: set[object] = set()
            async with asyncio.timeout(10):
                async for event in sub:
                    seen.add(event)
                    if {ResourceUpdated(BOARD), ResourceUpdated(task_uri), ResourceUpdated(inbox)} <= seen:
                        break
            await store.complete(tid, claim.token)
            async with asyncio.timeout(10):
                async for event in sub:
                    if event == ResourcesListChanged():
                        break
        data = json.loads((await c.read_resource(task_uri)).contents[0].text)  # type: ignore[union-attr]
        assert data["task"]["state"] == "done" and [e["type"] for e in data["events"]][-2:] == [
            "claimed",
            "completed",
        ]
        inbox_data = json.loads((await c.read_resource(inbox)).contents[0].text)  # type: ignore[union-attr]
        assert [e["type"] for e in inbox_data["events"]][-2:] == ["claimed", "completed"]


async def test_subscribe_2025_gets_resource_updates_on_the_get_stream(store: Store) -> None:
    ada = await create_token(store, "ada", "worker")
    tid = await store.add("work")
    task_uri = f"claimroom://task/{tid}"
    got: list[object] = []

    async def note(message: object) -> None:
        got.append(message)

    def updated(uri: str) -> bool:
        return any(isinstance(m, types.ResourceUpdatedNotification) and m.params.uri == uri for m in got)

    async with serving(store) as served, client(served.url, ada, mode="legacy", message_handler=note) as c:
        assert c.protocol_version == "2025-11-25"
        assert c.server_capabilities.resources is not None
        assert c.server_capabilities.resources.subscribe and c.server_capabilities.resources.list_changed
        with warnings.catch_warnings():  # resources/subscribe is the 2025-11-25 way, deprecated since
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await c.subscribe_resource(BOARD)
            await c.subscribe_resource(task_uri)
        claim = await store.claim("bob")
        assert claim is not None
        await until(lambda: updated(BOARD) and updated(task_uri))
        await store.complete(tid, claim.token)
        await until(lambda: any(isinstance(m, types.ResourceListChangedNotification) for m in got))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await c.unsubscribe_resource(task_uri)
        board = json.loads((await c.read_resource(BOARD)).contents[0].text)  # type: ignore[union-attr]
        assert board["counts"]["done"] == 1


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_a_waiting_claim_reports_progress_and_takes_new_work(store: Store, mode: str) -> None:
    ada = await create_token(store, "ada", "worker")
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with serving(store) as served, client(served.url, ada, mode=mode) as c:
        waiting = asyncio.create_task(c.call_tool("claim", {"wait_s": 30}, progress_callback=on_progress))
        await until(lambda: len(progress) >= 1)
        assert not waiting.done()
        _, total, message = progress[0]
        assert total == 30 and message is not None and message.startswith("waiting for work")
        tid = await store.add("new work")
        result = ok(await asyncio.wait_for(waiting, 10))
        assert result["claimed"] and result["task"]["id"] == tid


async def test_resources_listed_and_read(store: Store) -> None:
    ada = await create_token(store, "ada", "worker")
    tid = await store.add("listed")
    async with serving(store) as served, client(served.url, ada) as c:
        uris = [str(r.uri) for r in (await c.list_resources()).resources]
        assert uris == [BOARD, "claimroom://agent/ada/inbox", f"claimroom://task/{tid}"]
        templates = {t.uri_template for t in (await c.list_resource_templates()).resource_templates}
        assert templates == {"claimroom://task/{id}", "claimroom://agent/{name}/inbox"}
        with pytest.raises(Exception, match="no such task"):
            await c.read_resource("claimroom://task/t999")
        with pytest.raises(Exception, match="no such resource"):
            await c.read_resource("claimroom://nothing")
