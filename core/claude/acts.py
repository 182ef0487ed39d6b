"""The hooks that act on the board (register, heartbeat, fail, claim), for both forms.

The command form (``claimroom hook EVENT``) and the http form (``http_hooks.py``, inside
the MCP server) both call ``handle``: the facts come from the board through the agent's
``Acting`` (which refuses anything not the agent's own), the answers from ``decide``.
PreToolUse alone has a faster way in the command form (``hook_cli.py``): it only reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from .. import constants as C
from ..acting import Acting
from ..errors import LeaseLost, NotFound, WrongState
from ..identity import Identity, Role
from ..store import Store
from . import board, decide
from .decide import Outcome

_GONE = (LeaseLost, NotFound, WrongState)  # the claim ended meanwhile: nothing left to do


def acting(store: Store, agent: str, session: str) -> Acting:
    """The session's agent acting on ``store``: a worker, which may touch only its own claims
    and locks (``core/acting.py`` refuses anything else, audited), registered with its session."""
    return Acting(store, Identity(agent, Role.WORKER, session=session, via="hook"))


def _registration() -> tuple[tuple[str, ...], int]:
    """Capabilities (``CLAIMROOM_CAN``, comma-separated) and capacity
    (``CLAIMROOM_MAX_CLAIMS``) a session's agent registers with."""
    caps = tuple(c.strip() for c in os.environ.get("CLAIMROOM_CAN", "").split(",") if c.strip())
    raw = os.environ.get("CLAIMROOM_MAX_CLAIMS", "")
    return caps, int(raw) if raw.isdigit() else C.default_max_claims


async def _heartbeat_all(act: Acting) -> None:
    for t in await act.current_claims():
        with contextlib.suppress(*_GONE):  # ended meanwhile: nothing to keep alive
            await act.heartbeat(t.id, t.token)


async def _fail_open(act: Acting, session: str) -> list[str]:
    failed = []
    for t in await act.current_claims():
        why = f"the Claude Code session {session[:8] or '?'} of {act.who.agent} stopped before completing it"
        try:
            await act.fail(t.id, t.token, why)
            failed.append(t.id)
        except _GONE:
            pass
    return failed


async def _handover(act: Acting, name: str, dropped: list[str]) -> Outcome:
    claim = await act.claim()
    if claim is None:
        return decide.stop(name, act.who.agent, None, 0, dropped)
    return decide.stop(name, act.who.agent, claim.task.to_json(), claim.token, dropped)


async def handle(name: str, event: dict[str, Any], act: Acting, *, strict: bool = False) -> Outcome:
    """The answer to one hook event, acting as ``act``'s agent."""
    agent, session = act.who.agent, str(event.get("session_id", ""))
    if name == "SessionStart":
        caps, max_claims = _registration()
        await act.register(caps, max_claims)
        return decide.rules(agent, session)
    if name == "PreToolUse":
        root = decide.project_root_for(event)
        path = decide.edited_path(event, root)
        if path is None:
            return decide.NO_OBJECTION
        store = act.store
        holds, titles = await asyncio.to_thread(
            board.holds_covering, store.url, store.namespace, [path], C.probe_timeout_s
        )
        return decide.edit(agent, path, holds[path], titles, strict=strict)
    if name in ("PostToolUse", "SubagentStop"):
        # A subagent shares its session's agent and claims: its end is not the session
        # stopping, so it only keeps the session's leases alive (as its edits did).
        await _heartbeat_all(act)
        return decide.NO_OBJECTION
    if name == "Stop":
        dropped = await _fail_open(act, session)
        if event.get("stop_hook_active"):
            return decide.stop(name, agent, None, 0, dropped)  # continued once already: let it stop
        return await _handover(act, name, dropped)
    if name == "TeammateIdle":
        # Nothing to fail (the lead goes on); the agent's capacity bounds the handovers.
        return await _handover(act, name, [])
    raise ValueError(f"not a hook event: {name}")
