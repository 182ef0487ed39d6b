"""Helpers for the MCP server tests: the real server (uvicorn, in this process, on a free
port) and the SDK's own client, over HTTP with an agent's bearer token."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types import CallToolResult

from claimroom.core.mcp.http import bind, build_app, http_server
from claimroom.core.mcp.service import Service
from claimroom.core.store import Store

# The two protocol eras a client may speak: "legacy" is the 2025-11-25 initialize
# handshake with a session; "auto" probes server/discover and speaks 2026-07-28.
MODES = {"legacy": "2025-11-25", "auto": "2026-07-28"}


@dataclass
class Served:
    url: str  # the MCP endpoint
    port: int
    service: Service


@contextlib.asynccontextmanager
async def serving(store: Store, *, root: Path | None = None, **kw: Any) -> AsyncIterator[Served]:
    """The MCP server over HTTP on 127.0.0.1 and a free port, until the block ends."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = build_app(store, host="127.0.0.1", port=port, root=root, **kw)
    server = http_server(app)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield Served(f"http://127.0.0.1:{port}/mcp", port, app.state.claimroom)
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def client(url: str, token: str | None, *, mode: str = "auto", **kw: Any) -> AsyncIterator[Client]:
    """The SDK's client for ``url``, sending ``token`` as its bearer token."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    # The transport leaves an http client it was given open: this one is closed here.
    async with (
        create_mcp_http_client(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode, **kw) as c,
    ):
        yield c


def ok(result: CallToolResult) -> dict[str, Any]:
    """The structured result of a tool call that must have worked."""
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def refused(result: CallToolResult) -> str:
    """The one line of a tool call that must have been refused."""
    assert result.is_error, result.structured_content
    text = result.content[0].text  # type: ignore[union-attr]
    assert "\n" not in text and "Traceback" not in text, text
    return str(text)


async def board_state(store: Store) -> str:
    """Everything an action could change, as one comparable text (not the audit trail:
    a refused attempt is audited)."""
    tasks = [t.to_json() for t in await store.tasks(limit=10_000)]
    agents = [{**a.to_json(), "last_seen_ms": 0} for a in await store.agents()]
    locks = [lock.to_json() for lock in await store.locks()]
    return json.dumps([tasks, agents, locks], sort_keys=True)


async def until(check: Callable[[], Awaitable[bool] | bool], timeout_s: float = 10.0) -> None:
    """Wait for a condition (never a fixed sleep)."""
    async with asyncio.timeout(timeout_s):
        while True:
            got = check()
            if not isinstance(got, bool):
                got = await got
            if got:
                return
            await asyncio.sleep(0.02)
