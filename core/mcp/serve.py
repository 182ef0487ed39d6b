"""``claimroom serve``: run the MCP server until stopped (Ctrl-C, SIGTERM, or stdio's EOF).

Where it listens goes to stderr (stdout belongs to the stdio protocol); a bad ``--http``
value or a port it cannot take is one line and exit 2; a stop is clean, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .. import constants as C
from ..errors import BadInput
from ..identity import Role
from ..safetext import shown
from ..store import Store

log = logging.getLogger("claimroom.mcp")


def parse_http(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6; ``PORT`` alone: loopback), or ``BadInput``."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", text
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise BadInput(f"invalid --http {value!r}: write an IPv6 address in brackets, like [::1]:8765")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise BadInput(f"invalid --http {value!r}: give HOST:PORT, like 127.0.0.1:{C.mcp_default_port}")
    return host, int(port_text)


class _OneLine(logging.Formatter):
    """Log records as one safe line each: no traceback, no control characters."""

    def format(self, record: logging.LogRecord) -> str:
        return "claimroom: " + shown(record.getMessage())

    def formatException(self, ei: Any) -> str:  # logging's name
        return ""


def quiet_logging() -> None:
    """Warnings only, one line each on stderr (the SDK and uvicorn log there too)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


def say(line: str) -> None:
    sys.stderr.write(f"claimroom: {shown(line)}\n")
    sys.stderr.flush()


def serve_http(url: str, namespace: str, host: str, port: int, root: Path) -> int:
    """Run the HTTP server until a signal stops it."""
    from .auth import is_loopback
    from .http import bind, build_app, http_server

    try:
        sock = bind(host, port)
    except OSError as exc:
        why = "the port is in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise BadInput(f"cannot listen on {host}:{port}: {why}; choose another --http HOST:PORT") from None
    quiet_logging()

    async def main() -> None:
        store = Store.from_url(url, namespace)
        try:
            server = http_server(build_app(store, host=host, port=port, root=root))
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
            announce = asyncio.create_task(_announce(server, host, port, namespace, is_loopback(host)))
            try:
                await server.serve(sockets=[sock])
            finally:
                announce.cancel()
        finally:
            await store.close()

    try:
        asyncio.run(main())
    finally:
        sock.close()
    say("MCP server stopped")
    return 0


async def _announce(server: Any, host: str, port: int, namespace: str, loopback: bool) -> None:
    while not server.started:
        await asyncio.sleep(0.01)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    say(f"MCP server on http://{where}{C.mcp_path} (board {namespace!r}; Ctrl-C stops it)")
    if not loopback:
        say(
            f"{host} is reachable from other machines: every request must carry a bearer token "
            "(claimroom token create), and travels unencrypted unless TLS is put in front"
        )


def serve_stdio(url: str, namespace: str, role: str, root: Path) -> int:
    """Serve the client on stdin/stdout until it closes them or a signal stops the server."""
    from .stdio import serve_stdio as run
    from .stdio import stdio_identity

    chosen = Role.of(role)
    quiet_logging()

    async def main() -> None:
        store = Store.from_url(url, namespace)
        try:
            who = await stdio_identity(store, os.environ, chosen)
            say(f"MCP server on stdio as {who.agent} ({who.role.value}), board {namespace!r}")
            task = asyncio.current_task()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, lambda: task.cancel() if task else None)
            with contextlib.suppress(asyncio.CancelledError):
                await run(store, who, root=root)
        finally:
            await store.close()

    asyncio.run(main())
    return 0
