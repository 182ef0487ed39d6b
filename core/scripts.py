"""The Lua scripts: one file per atomic operation, loaded and registered once per client.

``lua/<op>-<numKeys>.lua`` holds each script. A ``--@include lib`` line is replaced by
``lua/lib.lua`` and ``${name}`` tokens by ``constants.LUA_CONSTANTS`` at load time, so
shared helpers and limits each live in one place.
"""

from __future__ import annotations

import re
from enum import IntEnum
from functools import cache
from pathlib import Path

from . import constants
from .errors import BadInput, ClaimroomError, Conflict, Forbidden, LeaseLost, NotFound, WrongState

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


class ErrorCode(IntEnum):
    """The negative codes scripts refuse with; ``raise_for`` maps them to exceptions."""

    NOT_FOUND = -1
    LEASE_LOST = -2
    NOT_HOLDER = -3
    CHANGED = -4
    BAD_INPUT = -5
    CONFLICT = -6
    WRONG_STATE = -7
    TOO_MANY_CAPSIGS = -8
    NOT_YOURS = -9

    def exception(self, detail: list[str]) -> ClaimroomError:
        first = detail[0] if detail else ""
        if self is ErrorCode.NOT_FOUND:
            return NotFound(f"no such task or agent: {first}")
        if self is ErrorCode.LEASE_LOST:
            return LeaseLost(f"lease lost: {first} is no longer held with that token")
        if self is ErrorCode.NOT_HOLDER:
            return WrongState(f"agent does not hold task {first}")
        if self is ErrorCode.CONFLICT:
            return Conflict(f"{first} is locked by {detail[1]}")
        if self is ErrorCode.WRONG_STATE:
            return WrongState(first)
        if self is ErrorCode.TOO_MANY_CAPSIGS:
            return BadInput(
                f"too many capability sets: unfinished tasks would need {first} different sets of "
                f"capabilities, at most {constants.max_capsigs} are allowed; require a set already "
                "in use, or finish or cancel the tasks of another"
            )
        if self is ErrorCode.NOT_YOURS:
            what, name, holder, agent = [*detail, "", "", "", ""][:4]
            return not_yours(what, name, holder, agent)
        if self is ErrorCode.CHANGED:
            from .errors import Changed

            return Changed(f"{first} changed since you selected it")
        return BadInput(first)


def not_yours(what: str, name: str, holder: str, agent: str) -> Forbidden:
    """The refusal of an agent acting on another's claim (``what`` "claim") or lock ("lock")."""
    if what == "lock":
        return Forbidden(
            f"{name} is locked by {holder}, not {agent}: an agent unlocks only its own locks", holder=holder
        )
    return Forbidden(
        f"{name} is claimed by {holder}, not {agent}: an agent acts only on its own claims", holder=holder
    )


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
