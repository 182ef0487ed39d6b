"""The one rule naming the agent of a Claude Code session, shared by the MCP server's
stdio transport and the hooks: each session gets its own agent without hand configuration.

Claude Code passes ``CLAUDE_CODE_SESSION_ID`` to the stdio MCP servers and the hooks it
starts. The agent is ``claude-`` and the first 8 letters or digits of that id (a UUID: 8
hex digits are 32 bits, so two sessions of one project do not share a name in practice).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from .errors import BadInput

SESSION_ENV = "CLAUDE_CODE_SESSION_ID"
AGENT_PREFIX = "claude-"
SESSION_CHARS = 8

_KEEP = re.compile(r"[^a-z0-9]")


def agent_for_session(session_id: str) -> str:
    """The agent name of a Claude Code session: ``claude-`` + its id's first 8 letters or
    digits, lower-cased; ``BadInput`` for an id without any."""
    short = _KEEP.sub("", session_id.lower())[:SESSION_CHARS] if isinstance(session_id, str) else ""
    if not short:
        raise BadInput(f"invalid session id {session_id!r}: it has no letters or digits")
    return AGENT_PREFIX + short


ENV_AGENT = "CLAIMROOM_AGENT"


def agent_name(session_id: str, env: Mapping[str, str] | None = None) -> str:
    """The agent a hook acts as: ``CLAIMROOM_AGENT`` when set (one name for every session
    started in that environment), else the session's own agent."""
    environ = os.environ if env is None else env
    return environ.get(ENV_AGENT) or agent_for_session(session_id)
