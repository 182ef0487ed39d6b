"""What every tool and resource of the MCP server shares: the store, who is calling, the
counters, and the one place a failure becomes the tool error an agent reads.

Nothing here is tied to a transport session (DESIGN rule 11): over HTTP each request
carries its identity (``auth.Guard`` puts it in the request's scope), over stdio the
process has one (from its environment), and every action goes through ``Acting``, where
the identity rules live.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, cast

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent

from .. import constants as C
from ..acting import Acting
from ..errors import ClaimroomError, LeaseLost, StoreUnavailable
from ..identity import Identity
from ..store import Store
from ..tokens import resolve_token
from .stats import Stats

T = TypeVar("T")

IDENTITY_KEY = "claimroom.identity"  # where auth.Guard leaves the caller's Identity in an ASGI scope

log = logging.getLogger("claimroom.mcp")


def refusal(exc: Exception) -> str:
    """The one line an agent reads when a call failed (never a traceback)."""
    if isinstance(exc, LeaseLost):
        return (
            f"Stop working on that task: your claim on it is gone ({exc}). Do not heartbeat, "
            "complete or commit anything more for it; claim other work."
        )
    if isinstance(exc, ClaimroomError | ToolError):
        return str(exc)
    return f"unexpected error: {type(exc).__name__}: {exc}"


@dataclass
class _Known:
    identity: Identity | None
    at: float  # time.monotonic() when the board said so


class Service:
    """The server's shared state; one per process, whatever the transport."""

    def __init__(
        self,
        store: Store,
        *,
        transport: str,
        address: str,
        root: Path | None = None,
        identity: Identity | None = None,
    ) -> None:
        self.store = store
        self.root = root  # lock paths given as absolute paths are taken inside it
        self.identity = identity  # the stdio process's agent; None over HTTP (per request)
        self.stats = Stats(transport=transport, address=address)
        self._tokens: dict[str, _Known] = {}

    # --- who is calling --------------------------------------------------------------

    def who(self, ctx: Context[Any, Any]) -> Identity:
        """The caller of a tool call."""
        return self.who_of(ctx.request_context.request)

    def who_of(self, request: Any) -> Identity:
        """The caller of a request: from its HTTP scope (``request``: the Starlette request
        the transport attached), else the process's own (stdio)."""
        scope = getattr(request, "scope", None)
        identity = scope.get(IDENTITY_KEY) if isinstance(scope, dict) else self.identity
        if not isinstance(identity, Identity):
            raise ToolError("no agent identity on this request: send Authorization: Bearer <token>")
        return identity

    async def identify(self, token: str) -> Identity | None:
        """The identity a bearer token stands for (None: unknown, revoked or malformed),
        looked up on the board at most every ``mcp_token_cache_s``. While the store is
        down a token it resolved before still counts; an unknown one raises
        ``StoreUnavailable``."""
        key = hashlib.sha256(token.encode(errors="surrogateescape")).hexdigest()
        now = time.monotonic()
        known = self._tokens.get(key)
        if known is not None and now - known.at < C.mcp_token_cache_s:
            return known.identity
        try:
            identity = await resolve_token(self.store, token)
        except StoreUnavailable:
            if known is not None and known.identity is not None:
                return known.identity
            raise
        if len(self._tokens) >= C.mcp_token_cache_max:
            self._tokens.clear()  # a flood of distinct tokens costs lookups, never memory
        self._tokens[key] = _Known(None if identity is None else replace(identity, via="mcp-http"), now)
        return self._tokens[key].identity

    # --- calls -----------------------------------------------------------------------

    async def call(self, ctx: Context[Any, Any], fn: Callable[[Acting], Awaitable[T]]) -> T:
        """Run one tool's work as its caller, counting it.

        A failure is returned, not raised: an ``isError`` result whose text is exactly the
        refusal's one line (a raised ToolError would reach the agent behind the SDK's
        "Error executing tool ..." prefix). Its type is the tool's declared result for the
        SDK's sake only: an error result is never checked against the output schema."""
        try:
            who = self.who(ctx)
            return await self.counted(who.agent, fn(Acting(self.store, who)))
        except Exception as exc:
            error = CallToolResult(content=[TextContent(type="text", text=refusal(exc))], is_error=True)
            return cast(T, error)

    async def counted(self, agent: str, work: Awaitable[T]) -> T:
        """Await ``work`` as a call by ``agent``, counting it, and its failure if it fails."""
        self.stats.called(agent)
        try:
            return await work
        except Exception as exc:
            self.stats.failed()
            if not isinstance(exc, ClaimroomError | ToolError):  # a bug of ours: one line in the log
                log.warning("unexpected error in a call by %s: %s", agent, refusal(exc))
            raise
