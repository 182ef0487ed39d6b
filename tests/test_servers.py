"""MCP server records on the board (``Store.servers``), on both backends: refreshed with the
store's clock, expiring when not refreshed, removed at once by a clean stop."""

from __future__ import annotations

import pytest
from mcp_support import until

from claimroom.core.errors import BadInput
from claimroom.core.models import ServerInfo
from claimroom.core.store import Store


async def test_a_record_lives_while_refreshed(store: Store) -> None:
    one = ServerInfo(id="http-1", transport="http", address="127.0.0.1:8765", host="h", pid=1, calls=3)
    first = await store.announce_server(one, ttl_s=30)
    assert first.started_ms > 0 and first.seen_ms == first.started_ms
    again = await store.announce_server(ServerInfo(**{**one.to_json(), "calls": 9, "clients": 2}), ttl_s=30)
    assert again.started_ms == first.started_ms and again.seen_ms >= first.seen_ms
    other = ServerInfo(id="stdio-2", transport="stdio", address="stdio", errors=1)
    await store.announce_server(other, ttl_s=30)
    listed = await store.servers()
    assert [s.id for s in listed] == ["http-1", "stdio-2"]
    assert (listed[0].calls, listed[0].clients, listed[0].started_ms) == (9, 2, first.started_ms)
    await store.retire_server("stdio-2")
    assert [s.id for s in await store.servers()] == ["http-1"]


async def test_a_record_not_refreshed_expires(store: Store) -> None:
    await store.announce_server(ServerInfo(id="gone", transport="http", address="x:1"), ttl_s=0.2)
    await store.announce_server(ServerInfo(id="stays", transport="http", address="x:2"), ttl_s=30)

    async def only_stays() -> bool:
        return [s.id for s in await store.servers()] == ["stays"]

    await until(only_stays, 5)


@pytest.mark.parametrize(
    "info",
    [
        ServerInfo(id="bad id!", transport="http", address="x"),
        ServerInfo(id="ok", transport="sse", address="x"),
        ServerInfo(id="ok", transport="http", address="x\x1b[2J"),
        ServerInfo(id="ok", transport="http", address="x", calls=-1),
    ],
)
async def test_bad_records_are_refused(store: Store, info: ServerInfo) -> None:
    with pytest.raises(BadInput):
        await store.announce_server(info)
    assert await store.servers() == []
