"""The Streamable HTTP transport: ``claimroom serve --http HOST:PORT``, the endpoint at ``/mcp``.

Both protocol eras are served by the SDK's session manager at the one endpoint: 2026-07-28
requests (stateless: no initialize, no ``Mcp-Session-Id``, ``server/discover``,
``subscriptions/listen``) and 2025-11-25 sessions (initialize, the GET stream,
``resources/subscribe``), each POST answered as JSON or as an SSE stream when the server
has notifications to send with it. The deprecated HTTP+SSE transport is not served.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import BaseRoute

from .. import constants as C
from ..acting import Acting
from ..claude.http_hooks import hook_routes
from ..errors import BadInput
from ..store import Store
from .auth import Guard, allowed_origins, is_loopback
from .server import build_server, running
from .service import IDENTITY_KEY, Service


async def _hook_acting(request: Request, session: str) -> Acting:
    """Claude Code's http hooks act as the token's agent (the gate has checked it), marked
    as coming from a hook and from the session the event names."""
    who = request.scope[IDENTITY_KEY]
    svc: Service = request.app.state.claimroom
    try:
        return Acting(svc.store, dataclasses.replace(who, session=session or who.session, via="hook"))
    except BadInput as exc:  # a session id that is not one
        raise HTTPException(400, str(exc)) from None


def build_app(
    store: Store,
    *,
    host: str = "127.0.0.1",
    port: int = C.mcp_default_port,
    root: Path | None = None,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The ASGI app of an MCP server on ``store``, for a server bound to ``host:port``.

    The app is whole: its lifespan runs the reaper, the notifier and the server's record on
    the board. ``extra_routes`` (Starlette routes, e.g. Claude Code's http hooks) are
    mounted beside ``/mcp`` behind the same gate: Origin checked, a bearer token required,
    the caller's ``Identity`` in ``request.scope[service.IDENTITY_KEY]``. The ``Service``
    is ``app.state.claimroom``.
    """
    svc = Service(store, transport="http", address=_address(host, port), root=root)
    server, notifier = build_server(svc)
    names = ["127.0.0.1", "localhost", "[::1]"]
    # Host header checks (DNS rebinding) where they mean something: on loopback. Elsewhere
    # a token is what keeps others out.
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=is_loopback(host),
        allowed_hosts=[f"{name}:{port}" for name in names],
        allowed_origins=sorted(allowed_origins(host, port)),
    )
    app = server.streamable_http_app(
        streamable_http_path=C.mcp_path,
        max_request_body_size=C.mcp_max_body_bytes,
        transport_security=security,
        host=host,
    )
    sessions = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with sessions(app), running(svc, notifier):
            yield

    app.router.lifespan_context = lifespan
    # Claude Code's http hooks (POST /hooks/EVENT), behind the same gate as /mcp.
    app.router.routes.extend([*hook_routes(_hook_acting), *extra_routes])
    app.state.claimroom = svc
    app.add_middleware(
        Guard,
        identify=svc.identify,
        origins=allowed_origins(host, port),
        max_body_bytes=C.mcp_max_body_bytes,
    )
    return app


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so that a taken port is said before anything starts;
    ``OSError`` when it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ``serve`` decides how a signal stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


def http_server(app: Starlette) -> uvicorn.Server:
    """A uvicorn server for ``app`` that logs nothing but warnings and lets open streams go
    within a second or two of a stop."""
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    return _Server(config)
