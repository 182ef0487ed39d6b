"""Checks of every value that comes from outside, in one place for every store.

Each function returns the value in its stored form or raises ``BadInput`` with one line
that names the problem; stores never see a value that has not passed through here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import constants, lockpath
from .backends import BACKENDS
from .endpoints import endpoint
from .errors import BadInput
from .safetext import describe, first_control

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def no_controls(kind: str, value: str, *, multiline: bool = False) -> str:
    """``value`` unless it holds a control character a terminal would act on (one-line
    text: any C0 or C1 control or DEL; ``multiline``: tab and newline allowed)."""
    char = first_control(value, multiline=multiline)
    if char is None:
        return value
    refused = "control characters other than tab and newline are" if multiline else "control characters are"
    raise BadInput(
        f"{kind} contains a control character ({describe(char)} at position {value.index(char) + 1}); "
        f"{refused} refused in text shown to operators"
    )


def _name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{kind} name is empty")
    no_controls(f"{kind} name", value)
    if not _NAME.fullmatch(value):
        raise BadInput(
            f"invalid {kind} name {value!r}: use up to 64 letters, digits and _ . @ + - "
            "starting with a letter or digit"
        )
    return value


def agent(value: str) -> str:
    return _name("agent", value)


def queue(value: str) -> str:
    return _name("queue", value)


def namespace(value: str) -> str:
    return _name("namespace", value)


def capability(value: str) -> str:
    return _name("capability", value)


def capabilities(values: Iterable[str]) -> str:
    """Capabilities in their stored form: sorted, unique, comma-joined."""
    return ",".join(sorted({capability(v) for v in values}))


_SESSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_KIND = re.compile(r"[a-z][a-z0-9-]{0,31}")


def session(value: str) -> str:
    """A session id (e.g. a Claude Code session's UUID): short safe text, or "" for none."""
    if not isinstance(value, str):
        raise BadInput("session must be text")
    if value == "":
        return value
    no_controls("session", value)
    if not _SESSION.fullmatch(value):
        raise BadInput(
            f"invalid session {value!r}: use up to 128 letters, digits and _ . : - "
            "starting with a letter or digit"
        )
    return value


def kind(what: str, value: str) -> str:
    """A short lower-case word naming a kind of thing (an audit event's type, a channel)."""
    if not isinstance(value, str) or not _KIND.fullmatch(value):
        raise BadInput(f"invalid {what} {value!r}: use up to 32 lower-case letters, digits and -")
    return value


def task_id(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadInput("task id is empty")
    no_controls("task id", value)
    if not _ID.fullmatch(value):
        raise BadInput(f"invalid task id {value!r}")
    return value


def _utf8_size(kind: str, value: str) -> int:
    """Bytes of ``value`` as UTF-8; ``BadInput`` for text that has no UTF-8 form (a lone
    surrogate, e.g. from undecodable command-line bytes under surrogateescape)."""
    try:
        return len(value.encode())
    except UnicodeEncodeError:
        raise BadInput(f"{kind} is not valid Unicode text") from None


def title(value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadInput("title is empty")
    if len(value) > constants.max_title_chars:
        raise BadInput(f"title is longer than {constants.max_title_chars} characters")
    _utf8_size("title", value)
    return no_controls("title", value)


def text(kind: str, value: str, limit: int = constants.max_text_chars, *, multiline: bool = False) -> str:
    """Free text shown to operators: one line (a stage, an affinity key) unless
    ``multiline`` (a reason, a checkpoint: tabs and newlines allowed)."""
    if not isinstance(value, str):
        raise BadInput(f"{kind} must be text")
    if _utf8_size(kind, value) > limit:
        raise BadInput(f"{kind} is larger than {limit} bytes")
    return no_controls(kind, value, multiline=multiline)


def priority(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"priority must be a whole number, got {value!r}") from None
    if isinstance(value, float) and not value.is_integer():
        raise BadInput(f"priority must be a whole number, got {value!r}")
    if not constants.min_priority <= number <= constants.max_priority:
        raise BadInput(f"priority {number} is outside {constants.min_priority}..{constants.max_priority}")
    return number


def positive_int(kind: str, value: Any, maximum: int, minimum: int = 1) -> int:
    """A whole number from ``minimum`` to ``maximum``: the bound keeps any count or offset
    inside what both stores can hold (64-bit integers, Lua's doubles)."""
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"{kind} must be a whole number, got {_brief(value)}") from None
    if number < minimum or number > maximum:
        raise BadInput(f"{kind} must be between {minimum} and {maximum}, got {_brief(number)}")
    return number


def _brief(value: Any) -> str:
    """A value as an error message shows it: a number of 4,000 digits is not worth a screen."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def seconds(kind: str, value: Any, low: float, high: float) -> float:
    """A duration from ``low`` to ``high`` seconds (never NaN or infinite)."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"{kind} must be a number of seconds, got {_brief(value)}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise BadInput(f"{kind} must be from {low:g} to {high:g} seconds, got {_brief(value)}")
    return number


def interval_s(value: Any) -> float:
    """How often a loop runs (``reap --loop --interval``): neither busy nor asleep."""
    return seconds("interval", value, constants.min_reap_interval_s, constants.max_reap_interval_s)


def ttl_ms(value: Any, kind: str = "ttl") -> int:
    """A duration in seconds, returned in ms; zero, negative and absurd values refused."""
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"{kind} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise BadInput(f"{kind} must be more than 0 seconds, got {value!r}")
    if seconds > constants.max_lease_ttl_s:
        raise BadInput(f"{kind} must be at most {constants.max_lease_ttl_s:.0f} seconds")
    return max(1, round(seconds * 1000))


def wait_s(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"wait must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise BadInput(f"wait must be 0 or more seconds, got {value!r}")
    return seconds


def progress(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"progress must be a number from 0 to 1, got {value!r}") from None
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise BadInput(f"progress must be from 0 to 1, got {value!r}")
    return number


def token(value: Any, minimum: int = 1) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"token must be a whole number, got {_brief(value)}") from None
    if number < minimum:
        raise BadInput(f"token must be {'positive' if minimum else 'zero or more'}, got {_brief(number)}")
    if number > constants.max_counter:
        raise BadInput(f"token must be at most {constants.max_counter}, got {_brief(number)}")
    return number


_DIGEST = re.compile(r"[0-9a-f]{64}")
_HINT = re.compile(r"[A-Za-z0-9_-]{1,16}")


def token_digest(value: str) -> str:
    """A bearer token's sha256 in hex, as the board keys it (core/tokens.py makes it)."""
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise BadInput("a token digest is 64 lower-case hex digits (sha256)")
    return value


def token_hint(value: str) -> str:
    """The first characters of a bearer token, kept to tell its tokens apart."""
    if not isinstance(value, str) or not _HINT.fullmatch(value):
        raise BadInput("a token hint is the token's first characters")
    return value


_EVENT_ID = re.compile(r"\d{1,16}(-\d{1,16})?")


def event_id(value: str, *also: str) -> str:
    """An audit event id (``ms-seq``, or ``ms``), or one of the markers in ``also``."""
    if value in also:
        return value
    numbers = isinstance(value, str) and _EVENT_ID.fullmatch(value)
    if numbers and all(int(part) <= constants.max_counter for part in value.split("-")):
        return value
    raise BadInput(f"invalid event id {value!r}: use an id from the audit trail, like 1700000000000-0")


def _too_deep(kind: str) -> BadInput:
    return BadInput(f"{kind} nests lists and objects deeper than {constants.max_json_depth} levels")


def _nesting(kind: str, value: Any) -> None:
    """``BadInput`` when ``value`` nests deeper than ``max_json_depth`` (walked level by level,
    not recursively: a deep value must not exhaust the stack that checks it)."""
    level, depth = [value], 0
    while level:
        containers = [v for v in level if isinstance(v, dict | list | tuple)]
        if not containers:
            return
        depth += 1
        if depth > constants.max_json_depth:
            raise _too_deep(kind)
        level = [item for c in containers for item in (c.values() if isinstance(c, dict) else c)]


def json_value(kind: str, value: Any, limit: int = constants.max_payload_bytes) -> str:
    """A JSON value as stored text; ``value`` is already-parsed data."""
    _nesting(kind, value)
    try:
        encoded = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"{kind} is not JSON-serialisable: {exc}") from None
    if len(encoded.encode()) > limit:
        raise BadInput(f"{kind} is {len(encoded.encode())} bytes, over the {limit // 1024} KiB limit")
    return encoded


def parse_json(kind: str, raw: str) -> Any:
    """Parse JSON text from the command line or a file, refusing NaN and Infinity."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    if _utf8_size(kind, raw) > constants.max_json_text_bytes:
        raise json_text_too_large(kind)
    try:
        value = json.loads(raw, parse_constant=refuse)
    except ValueError as exc:
        raise BadInput(f"{kind} is not valid JSON: {exc}") from None
    except RecursionError:
        raise _too_deep(kind) from None
    _nesting(kind, value)
    return value


def json_text_too_large(kind: str) -> BadInput:
    return BadInput(f"{kind} text is larger than {constants.max_json_text_bytes // 1024} KiB")


def path(value: str, root: str | Path | None = None) -> str:
    """A lock path in its one spelling from the project root (see ``lockpath``)."""
    if not isinstance(value, str) or not value.strip():
        raise BadInput("lock path is empty")
    _utf8_size("lock path", value)
    no_controls("lock path", value)
    return lockpath.normal(value, root)


def operator(value: str) -> str:
    """An operator's name, for the audit trail (any printable text, kept short)."""
    if not isinstance(value, str) or not value.strip():
        raise BadInput("operator name is empty")
    no_controls("operator name", value)
    if len(value) > 64 or not value.isprintable():
        raise BadInput(f"invalid operator name {value!r}")
    return value


_STORE_URL_HELP = (
    "use redis://HOST:PORT/DB, rediss://HOST:PORT/DB, unix:///path/to/redis.sock, "
    "redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER, redis+cluster://HOST:PORT[,HOST:PORT...] "
    "or file:///abs/dir"
)


def store_url(url: str) -> str:
    """A store URL whose scheme, port and database number make sense; ``BadInput`` else
    (before anything tries to connect: a malformed URL is a typo, not a store that is down).
    The message never repeats the URL, which may hold a password."""
    if not isinstance(url, str) or not url.strip():
        raise BadInput(f"store URL is empty: {_STORE_URL_HELP}")
    no_controls("store URL", url)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in BACKENDS:
        said = f" scheme {scheme!r}" if scheme else " (no scheme)"
        raise BadInput(f"unsupported store URL{said}: {_STORE_URL_HELP}")
    if scheme == "file":
        return url  # the file store checks its directory (core/file_schema.db_path)
    try:
        multi = endpoint(url).kind != "single"  # hosts, database, claimroom's own parameters
        parts = urlsplit(url)
        port = None if multi else parts.port
    except ValueError as exc:  # a port that is no number or out of range, a broken [IPv6]
        said = str(exc)
        if said.startswith("store URL"):  # endpoint()'s own reasons say what to write
            raise BadInput(said) from None
        raise BadInput(f"malformed store URL ({exc}): {_STORE_URL_HELP}") from None
    if multi:
        return url
    if scheme == "unix":
        if not parts.path:
            raise BadInput("unix store URL names no socket: use unix:///path/to/redis.sock")
        return url
    if port == 0:  # redis-py would quietly take 6379 instead
        raise BadInput("store URL port 0 names no store: write the port the store listens on (1-65535)")
    db = parts.path.lstrip("/")
    if db and not (db.isascii() and db.isdigit()):  # redis-py would quietly take database 0
        raise BadInput(f"store URL database must be a number, like redis://HOST:PORT/0, got {db[:20]!r}")
    return url


def server_id(value: str) -> str:
    """An MCP server's id on the board (``claimroom serve`` makes one up)."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise BadInput(f"invalid server id {value!r}: up to 64 letters, digits and _ . -")
    return value


def paths(values: Iterable[str]) -> str:
    """A task's paths in their stored form: each a project path as a lock path is
    (``path``), unique, in order, at most ``max_task_paths``; JSON text, "" for none."""
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise BadInput("paths must be a list of project paths")
    out = list(dict.fromkeys(path(v) for v in values))
    if len(out) > constants.max_task_paths:
        raise BadInput(f"at most {constants.max_task_paths} paths on a task")
    return json.dumps(out) if out else ""
