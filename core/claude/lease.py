"""PostToolUse on Redis, the short way: extend the leases of the agent's own claims.

The hook runs after every edit. Through the Store it costs ~400 ms of CPU (redis-py's
and asyncio's imports); here it is two round trips on ``core/resp.py`` running the very
script ``Store.heartbeat`` runs (``lua/heartbeat-1.lua``: the one place a lease is
extended). Only the agent's own live claims are touched: the ones the board lists as
held by it, claimed, with their current token. The file board takes the Store's way.
"""

from __future__ import annotations

from .. import constants as C


def heartbeat_own(url: str, namespace: str, agent: str, timeout_s: float) -> list[str]:
    """Extend every live claim ``agent`` holds on the Redis at ``url``; returns the tasks
    whose lease moved (a claim that ended meanwhile is left alone: the script refuses it)."""
    from ..redis.scripts import source
    from ..resp import Connection

    with Connection(url, timeout_s, C.events_key(namespace)) as r:
        held = sorted(r.call("SMEMBERS", C.held_key(namespace, agent)))
        if not held:
            return []
        rows = r.pipeline([("HMGET", C.task_key(namespace, t), "state", "agent", "token") for t in held])
        mine = [
            (t, token)
            for t, (state, who, token) in zip(held, rows, strict=True)
            if state == "claimed" and who == agent
        ]
        if not mine:
            return []
        # EVAL, not EVALSHA: Redis caches the script by its text either way, and this spares
        # the hook hashlib's import.
        script, stream, prefix = source("heartbeat"), C.events_key(namespace), C.prefix(namespace)
        # ARGV: prefix, task, token, ttl ("": the claim's own), the agent (checked in the script).
        replies = r.pipeline([("EVAL", script, 1, stream, prefix, t, token, "", agent) for t, token in mine])
    return [t for (t, _), reply in zip(mine, replies, strict=True) if int(reply[0]) == 0]
