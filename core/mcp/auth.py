"""The HTTP server's gate: every request is checked here before anything reads its body.

In order: a foreign ``Origin`` is refused (403; a browser page elsewhere must not drive a
local agent's tools); a missing or bad bearer token is refused (401, with
``WWW-Authenticate``): every call is by an identified agent, on loopback too; a body past
``mcp_max_body_bytes`` is refused (413) before it is parsed. A refused request changes
nothing. The caller's ``Identity`` then travels in the request's ASGI scope
(``service.IDENTITY_KEY``), so each request carries its own: nothing is tied to a session.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.transport_security import RequestBodyLimitMiddleware
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import StoreUnavailable
from ..identity import Identity
from .service import IDENTITY_KEY

REALM = "claimroom"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_origins(host: str, port: int) -> frozenset[str]:
    """The origins a request may come from: this server's own, on its port."""
    names = {"127.0.0.1", "localhost", "[::1]"}
    if not is_loopback(host) and host not in ("0.0.0.0", "::"):
        names.add(f"[{host}]" if ":" in host else host)
    return frozenset(f"{scheme}://{name}:{port}" for name in names for scheme in ("http", "https"))


async def _refuse(send: Send, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
    """A JSON-RPC error body (id null: no request was read) with an HTTP status."""
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": message}}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: Origin, bearer token, body size; then the app, with the identity."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        identify: Callable[[str], Awaitable[Identity | None]],
        origins: frozenset[str],
        max_body_bytes: int,
    ) -> None:
        self.app = RequestBodyLimitMiddleware(app, max_body_bytes)
        self.identify = identify
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/") not in self.origins:
            await _refuse(send, 403, f"origin {origin[:200]!r} may not use this server")
            return
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            await _refuse(
                send,
                401,
                "send your agent's token: Authorization: Bearer <token> (claimroom token create)",
                [("WWW-Authenticate", f'Bearer realm="{REALM}"')],
            )
            return
        try:
            identity = await self.identify(token)
        except StoreUnavailable as exc:
            await _refuse(send, 503, f"cannot check the token: {exc}", [("Retry-After", "1")])
            return
        if identity is None:
            await _refuse(
                send,
                401,
                "unknown or revoked token",
                [("WWW-Authenticate", f'Bearer realm="{REALM}", error="invalid_token"')],
            )
            return
        scope[IDENTITY_KEY] = identity
        # The SDK binds a 2025-11-25 session to the principal that opened it: another agent
        # presenting that session id gets 404, so it can neither read its notifications
        # nor close it.
        scope["user"] = AuthenticatedUser(
            AccessToken(token="", client_id=identity.agent, scopes=[identity.role.value])
        )
        await self.app(scope, receive, send)
