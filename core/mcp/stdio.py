"""The stdio transport: ``claimroom serve --stdio``, one client (the process that started it).

A stdio server is a local process its client started, trusted like any local claimroom
command (DESIGN rule 11: direct store access is for trusted processes). Its one identity
comes from the environment, in this order: ``CLAIMROOM_TOKEN`` (a token, resolved on the
board); ``CLAIMROOM_AGENT`` (an agent name, with ``--role``); ``CLAUDE_CODE_SESSION_ID``,
which Claude Code sets for the stdio servers it starts (``sessions.agent_for_session``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .. import validate
from ..errors import BadInput
from ..identity import Identity, Role
from ..sessions import SESSION_ENV, agent_for_session
from ..store import Store
from ..tokens import resolve_token
from .server import build_server, running
from .service import Service

TOKEN_ENV = "CLAIMROOM_TOKEN"
AGENT_ENV = "CLAIMROOM_AGENT"
VIA = "mcp-stdio"


async def stdio_identity(store: Store, env: Mapping[str, str], role: Role) -> Identity:
    """Who a stdio server acts as, from its environment; ``BadInput`` when it cannot tell."""
    session = env.get(SESSION_ENV, "")
    if token := env.get(TOKEN_ENV, "").strip():
        found = await resolve_token(store, token)
        if found is None:
            raise BadInput(f"{TOKEN_ENV} is not a valid token on this board (unknown or revoked)")
        return Identity(found.agent, found.role, session=found.session or session, via=VIA)
    if agent := env.get(AGENT_ENV, "").strip():
        return Identity(validate.agent(agent), role, session=session, via=VIA)
    if session:
        return Identity(agent_for_session(session), role, session=session, via=VIA)
    raise BadInput(
        f"no agent identity for the stdio server: set {TOKEN_ENV} (a token from `claimroom token "
        f"create`) or {AGENT_ENV}, or let Claude Code start it ({SESSION_ENV})"
    )


async def serve_stdio(store: Store, identity: Identity, *, root: Path | None = None) -> None:
    """Serve one client on standard input and output until it closes them."""
    svc = Service(store, transport="stdio", address="stdio", root=root, identity=identity)
    server, notifier = build_server(svc)
    async with running(svc, notifier):
        await server.run_stdio_async()
