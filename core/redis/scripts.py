"""The Lua scripts: one file per atomic operation, loaded and registered once per client.

``lua/<op>-<numKeys>.lua`` holds each script. A ``--@include lib`` line is replaced by
``lua/lib.lua`` and ``${name}`` tokens by ``constants.LUA_CONSTANTS`` at load time, so
shared helpers and limits each live in one place.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from .. import constants

LUA_DIR = Path(__file__).parent / "lua"

# name -> file; the number in the file name is how many KEYS the script takes.
SCRIPTS: dict[str, str] = {
    "add": "add-1.lua",
    "claim": "claim-1.lua",
    "heartbeat": "heartbeat-1.lua",
    "complete": "complete-1.lua",
    "fail": "fail-1.lua",
    "release": "release-1.lua",
    "register": "register-1.lua",
    "alive": "alive-1.lua",
    "reap": "reap-1.lua",
    "lock": "lock-1.lua",
    "unlock": "unlock-1.lua",
    "leader": "leader-1.lua",
    "move": "move-1.lua",
    "extend": "extend-1.lua",
    "queue_state": "queue_state-1.lua",
    "reset_breaker": "reset_breaker-1.lua",
    "retain": "retain-1.lua",
    "retention": "retention-1.lua",
    "server": "server-1.lua",
    "audit": "audit-1.lua",
    "token_create": "token_create-1.lua",
    "token_revoke": "token_revoke-1.lua",
}


_TOKEN = re.compile(r"\$\{(\w+)\}")


@cache
def source(name: str) -> str:
    """The full text of a script, with includes and constants filled in."""
    text = (LUA_DIR / SCRIPTS[name]).read_text()
    lib = (LUA_DIR / "lib.lua").read_text()
    text = text.replace("--@include lib\n", lib + "\n", 1)

    def constant(match: re.Match[str]) -> str:
        return repr(constants.LUA_CONSTANTS[match.group(1)])

    return _TOKEN.sub(constant, text)


def num_keys(name: str) -> int:
    """How many KEYS a script takes, read from its file name."""
    return int(SCRIPTS[name].rsplit("-", 1)[1].removesuffix(".lua"))
