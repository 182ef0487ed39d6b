"""The Lua scripts: one file per atomic operation, served as one Redis function library.

``lua/<op>-<numKeys>.lua`` holds each script. ``library()`` puts ``lua/lib.lua`` once at the
top of a function library and registers each script's body as a function of it; the store
loads the library once per server (FUNCTION LOAD) and calls the functions (FCALL). So the
shared helpers are built once per server process rather than on every call, which was
~80k instructions of the ~1.3M a claim+complete cycle cost Redis (bench/claims.py). The
library and its functions are named after a hash of its text: two claimroom versions on one
server each find their own. ``source(name)`` is a script sent whole (EVAL): its
``--@include lib`` line replaced by ``lua/lib.lua`` and a ``begin_call()`` (the hooks'
heartbeat uses it).
``${name}`` tokens are replaced by Lua literals of ``lua_values()`` (the limits in
``constants.LUA_CONSTANTS``, the operator actions' table) either way, so shared helpers,
limits and rules each live in one place.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Set
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .. import constants, operator_actions

LUA_DIR = Path(__file__).parent / "lua"

# name -> file; the number in the file name is how many KEYS the script takes.
SCRIPTS: dict[str, str] = {
    "add": "add-1.lua",
    "claim": "claim-1.lua",
    "heartbeat": "heartbeat-1.lua",
    "complete": "complete-1.lua",
    "complete_many": "complete_many-1.lua",
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
    "send": "send-1.lua",
    "inbox": "inbox-1.lua",
    "bid": "bid-1.lua",
    "won": "won-1.lua",
    "review": "review-1.lua",
}


_TOKEN = re.compile(r"\$\{(\w+)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYWORDS = frozenset((
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
    "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
))  # fmt: skip
# Lua 5.1 numbers are doubles: a larger integer would silently become another number.
_MAX_EXACT = 2**53


def lua_values() -> dict[str, object]:
    """Every value a ``${name}`` token may name."""
    return {**constants.LUA_CONSTANTS, **operator_actions.lua_values()}


def lua_literal(value: object) -> str:
    """``value`` as a Lua literal: None nil, bools, finite numbers, strings, a mapping a
    table of its keys, a list or tuple a sequence, a set a table of its members -> true (how
    Lua spells a set, so a script asks ``set[x]``). Anything else is a ``TypeError``."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if abs(value) > _MAX_EXACT:
            raise ValueError(f"{value} is past what a Lua number holds exactly")
        return repr(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no Lua literal")
        return repr(value)
    if isinstance(value, str):
        return _lua_string(str.__str__(value))  # an enum's value, not its name
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_lua_key(k)}={lua_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Set):
        return "{" + ",".join(sorted(f"{_lua_key(k)}=true" for k in value)) + "}"  # one text per set
    if isinstance(value, list | tuple):
        return "{" + ",".join(lua_literal(v) for v in value) + "}"
    raise TypeError(f"no Lua literal for a {type(value).__name__}")


def _lua_key(key: object) -> str:
    if isinstance(key, str) and _NAME.fullmatch(key) and key not in _KEYWORDS:
        return str.__str__(key)
    if isinstance(key, str | int) and not isinstance(key, bool):
        return f"[{lua_literal(key)}]"
    raise TypeError(f"a Lua table key here is a string or an integer, not {key!r}")


def _lua_string(text: str) -> str:
    # Control characters as three-digit escapes, so a digit after one cannot join it.
    def escape(ch: str) -> str:
        if ch in '"\\':
            return "\\" + ch
        if ord(ch) < 32 or ord(ch) == 127:
            return f"\\{ord(ch):03d}"
        return ch

    return '"' + "".join(escape(ch) for ch in text) + '"'


def render(text: str, values: Mapping[str, object]) -> str:
    """``text`` with each ``${name}`` token replaced by ``values[name]`` as a Lua literal."""
    return _TOKEN.sub(lambda m: lua_literal(values[m.group(1)]), text)


@cache
def source(name: str) -> str:
    """The full text of a script, with includes and values filled in."""
    text = (LUA_DIR / SCRIPTS[name]).read_text()
    lib = (LUA_DIR / "lib.lua").read_text()
    text = text.replace("--@include lib\n", lib + "\nbegin_call()\n", 1)
    return render(text, lua_values())


@dataclass(frozen=True)
class Library:
    """The function library: its name, its text (for FUNCTION LOAD) and each script's
    function name (for FCALL)."""

    name: str
    text: str
    functions: dict[str, str]


@cache
def library() -> Library:
    """Every script as a function of one library, ``lua/lib.lua`` once at its top.

    A library's top-level code runs once, when the server loads it; each function's body
    runs per call, after ``begin_call()`` (lib.lua) has reset what lib keeps per call. The
    names carry a hash of the text, so a changed script is a new library, never a stale one.
    """
    lib = (LUA_DIR / "lib.lua").read_text()
    bodies = {
        name: (LUA_DIR / file).read_text().replace("--@include lib\n", "", 1)
        for name, file in SCRIPTS.items()
    }
    code = "\n".join([lib, *(f"--@function {name}\n{body}" for name, body in bodies.items())])
    tag = hashlib.sha1(render(code, lua_values()).encode()).hexdigest()[:12]
    functions = {name: f"cr_{tag}_{name}" for name in SCRIPTS}
    parts = [f"#!lua name=claimroom_{tag}", lib]
    for name, body in bodies.items():
        # KEYS and ARGV as the parameters' names: each body reads them as a script does.
        parts.append(
            f"redis.register_function('{functions[name]}', function(KEYS, ARGV)\nbegin_call()\n{body}\nend)"
        )
    return Library(f"claimroom_{tag}", render("\n".join(parts), lua_values()), functions)


def num_keys(name: str) -> int:
    """How many KEYS a script takes, read from its file name."""
    return int(SCRIPTS[name].rsplit("-", 1)[1].removesuffix(".lua"))
