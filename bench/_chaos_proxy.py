"""The chaos suite's TCP proxy (a module, not a benchmark: ./dev bench skips it).

The agents reach Redis through it, so the suite can cut their network: ``cut`` closes every
connection and the listening socket (a new connection is refused, as from a host that went
away), ``restore`` listens again on the same port. It runs in the suite's own event loop; the
suite's own connections (producer, operator, checks) and the reaper go to Redis directly.
"""

from __future__ import annotations

import asyncio
import contextlib

from claimroom.core.local_redis import free_port

HOST = "127.0.0.1"
CHUNK = 65536


class CutProxy:
    """Forwards ``HOST:port`` to ``HOST:upstream_port`` until cut; counts what it did."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.cuts = 0
        self.connections = 0  # accepted over the run
        self.dropped = 0  # live connections a cut closed
        self._server: asyncio.Server | None = None
        self._live: set[asyncio.StreamWriter] = set()

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, HOST, self.port, reuse_address=True)

    async def cut(self) -> None:
        """Refuse new connections and close the open ones, both sides at once."""
        self.cuts += 1
        await self._close_server()
        self.dropped += len(self._live) // 2
        for writer in list(self._live):
            writer.transport.abort()
        self._live.clear()

    async def restore(self) -> None:
        if self._server is None:
            await self.start()

    async def stop(self) -> None:
        await self._close_server()
        for writer in list(self._live):
            writer.transport.abort()
        self._live.clear()

    async def _close_server(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:  # accepted in the instant of a cut
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.upstream_port)
        except OSError:  # Redis itself is down (restarting): the client sees a closed connection
            writer.transport.abort()
            return
        if self._server is None:  # cut while connecting upstream
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self.connections += 1
        pair = (writer, up_writer)
        self._live.update(pair)
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            for w in pair:
                self._live.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """Copy until either side ends; then end the other side too."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await src.read(CHUNK):
                dst.write(data)
                await dst.drain()
        dst.transport.abort()
