"""The control room shows the MCP servers on the board (``claimroom serve``): a running
server's record appears on the overview with its clients, calls/s and errors, and the
section is absent when no server runs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from mcp_support import client, ok, serving
from pilot_wait import screen_lines, until
from textual.widgets import Static

from claimroom.core.store import Store
from claimroom.core.tokens import create_token
from claimroom.tui.app import ControlRoom


@pytest.fixture
async def app_store(store_url: str, namespace: str) -> AsyncIterator[Store]:
    s = Store.from_url(store_url, namespace)
    yield s
    await s.close()


def screen(app: ControlRoom) -> str:
    return "\n".join(screen_lines(app))


async def test_overview_lists_running_mcp_servers(store: Store, app_store: Store) -> None:
    ada = await create_token(store, "ada", "worker")
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: "needs attention" in screen(app))
        assert not app.query_one("#ov-servers", Static).display and "mcp servers" not in screen(app)
        async with serving(store) as served, client(served.url, ada) as c:
            ok(await c.call_tool("list", {}))
            shown = f"http 127.0.0.1:{served.port}"
            await until(pilot, lambda: shown in screen(app) and "1 client " in screen(app), 10)
            assert "mcp servers" in screen(app) and "0 errors" in screen(app)
        await until(pilot, lambda: not app.query_one("#ov-servers", Static).display, 10)
