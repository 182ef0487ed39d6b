"""The server's counters, and its record on the board for the control room (``Store.servers``).

The record is refreshed every ``server_refresh_s`` and expires after ``server_ttl_s``, so a
server that dies leaves the list on its own; a clean stop removes it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator

from .. import constants as C
from ..models import ServerInfo
from ..safetext import shown
from ..store import Store


class Stats:
    """Calls, errors and the agents seen, counted as the server runs."""

    def __init__(self, *, transport: str, address: str) -> None:
        self.id = f"{transport}-{secrets.token_hex(4)}"
        self.transport = transport
        self.address = address
        self.calls = 0
        self.errors = 0
        self._seen: dict[str, float] = {}  # agent -> time.monotonic() of its last call
        self._last_calls = 0
        self._last_at = time.monotonic()

    def called(self, agent: str) -> None:
        self.calls += 1
        self._seen[agent] = time.monotonic()

    def failed(self) -> None:
        self.errors += 1

    def clients(self) -> int:
        """Distinct agents that made a call within ``server_clients_window_s``."""
        horizon = time.monotonic() - C.server_clients_window_s
        self._seen = {a: t for a, t in self._seen.items() if t >= horizon}
        return len(self._seen)

    def snapshot(self) -> ServerInfo:
        """The record to publish now; calls/s over the time since the previous snapshot."""
        now = time.monotonic()
        rate = (self.calls - self._last_calls) / max(now - self._last_at, 1e-3)
        self._last_calls, self._last_at = self.calls, now
        return ServerInfo(
            id=self.id,
            transport=self.transport,
            address=self.address,
            host=shown(socket.gethostname() or "?")[:255],
            pid=os.getpid(),
            clients=self.clients(),
            calls=self.calls,
            calls_per_s=round(rate, 2),
            errors=self.errors,
        )


@contextlib.asynccontextmanager
async def published(store: Store, stats: Stats) -> AsyncIterator[None]:
    """Keep this server's record on the board while the body runs; remove it after."""

    async def refresh() -> None:
        while True:
            # A store outage only delays the record: the tools report the outage.
            with contextlib.suppress(Exception):
                await store.announce_server(stats.snapshot(), C.server_ttl_s)
            await asyncio.sleep(C.server_refresh_s)

    task = asyncio.create_task(refresh(), name="claimroom-mcp-record")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(store.retire_server(stats.id), C.connect_timeout_s)
