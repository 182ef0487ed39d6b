"""A store outage under a running MCP server: tool calls fail with a line naming the problem,
and once the store is back the same server (no restart) works again, notifications too."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis
from mcp.shared.subscriptions import ResourceUpdated
from mcp_support import client, ok, refused, serving

from claimroom.core.local_redis import LocalRedis
from claimroom.core.store import Store
from claimroom.core.tokens import create_token


async def test_the_server_rides_out_a_store_outage(tmp_path: Path, namespace: str) -> None:
    folder = tmp_path / "redis"
    server = LocalRedis.start(directory=folder)
    port = server.port
    store = Store.from_url(server.url, namespace)
    try:
        ada = await create_token(store, "ada", "planner")
        await store.add("before")
        async with serving(store) as served, client(served.url, ada) as c:
            assert ok(await c.call_tool("list", {}))["tasks"][0]["title"] == "before"
            async with c.listen(resource_subscriptions=["claimroom://task/t1"]) as sub:
                # Stop it with its data saved, so that what was there comes back with it.
                redis.Redis(port=port).save()
                server.stop()
                line = refused(await c.call_tool("list", {}))
                assert line.startswith(f"store unavailable at redis://127.0.0.1:{port}/0"), line
                assert "claimroom up" in line
                server = LocalRedis.start(directory=folder, port=port)

                async def works() -> bool:
                    result = await c.call_tool("add", {"title": "after"})
                    return not result.is_error

                async with asyncio.timeout(15):
                    while not await works():
                        await asyncio.sleep(0.1)
                # The notifier follows the board again: a change to t1 reaches the listener.
                claim = await store.claim("bob")
                assert claim is not None and claim.task.id == "t1"
                async with asyncio.timeout(15):
                    async for event in sub:
                        if event == ResourceUpdated("claimroom://task/t1"):
                            break
            assert served.service.stats.errors >= 1
    finally:
        await store.close()
        server.stop()
