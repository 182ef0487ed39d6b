"""Which agent a Claude Code session is: one rule, used by the hooks and the MCP server alike.

Each session gets its own agent without hand configuration, so two sessions in one project
never share a name (a shared name would let one session's Stop hook release the other's
claim): ``claude-`` and the first 8 characters of the session id (a UUID: 32 bits of it),
unless ``CLAIMROOM_AGENT`` names the agent for every session started in that environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

ENV_AGENT = "CLAIMROOM_AGENT"
PREFIX = "claude-"
_KEEP = re.compile(r"[^A-Za-z0-9]")


def agent_for_session(session_id: str) -> str:
    """``claude-`` + the first 8 letters and digits of ``session_id``.

    An id with fewer than 8 (not a UUID: a test's, another client's) is hashed instead, so
    the name is still a valid agent name and still differs between sessions."""
    kept = _KEEP.sub("", session_id)
    if len(kept) < 8:
        import hashlib  # rarely needed: ~5 ms the hooks need not pay on every edit

        kept = hashlib.sha256(session_id.encode(errors="surrogateescape")).hexdigest()
    return PREFIX + kept[:8]


def agent_name(session_id: str, env: Mapping[str, str] | None = None) -> str:
    """``CLAIMROOM_AGENT`` when set, else the session's own agent."""
    environ = os.environ if env is None else env
    return environ.get(ENV_AGENT) or agent_for_session(session_id)
