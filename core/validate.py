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

from . import constants, lockpath
from .errors import BadInput

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{kind} name is empty")
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


def task_id(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadInput("task id is empty")
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
    return value


def text(kind: str, value: str, limit: int = constants.max_text_chars) -> str:
    if not isinstance(value, str):
        raise BadInput(f"{kind} must be text")
    if _utf8_size(kind, value) > limit:
        raise BadInput(f"{kind} is larger than {limit} bytes")
    return value


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


def positive_int(kind: str, value: Any, maximum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"{kind} must be a whole number, got {value!r}") from None
    if number < 1 or number > maximum:
        raise BadInput(f"{kind} must be between 1 and {maximum}, got {number}")
    return number


def ttl_ms(value: Any, kind: str = "ttl") -> int:
    """A duration in seconds, returned in ms; zero, negative and absurd values refused."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{kind} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise BadInput(f"{kind} must be more than 0 seconds, got {value!r}")
    if seconds > constants.max_lease_ttl_s:
        raise BadInput(f"{kind} must be at most {constants.max_lease_ttl_s:.0f} seconds")
    return max(1, round(seconds * 1000))


def wait_s(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"wait must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise BadInput(f"wait must be 0 or more seconds, got {value!r}")
    return seconds


def progress(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"progress must be a number from 0 to 1, got {value!r}") from None
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise BadInput(f"progress must be from 0 to 1, got {value!r}")
    return number


def token(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"token must be a whole number, got {value!r}") from None
    if number < 1:
        raise BadInput(f"token must be positive, got {number}")
    return number


def json_value(kind: str, value: Any, limit: int = constants.max_payload_bytes) -> str:
    """A JSON value as stored text; ``value`` is already-parsed data."""
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

    try:
        return json.loads(raw, parse_constant=refuse)
    except ValueError as exc:
        raise BadInput(f"{kind} is not valid JSON: {exc}") from None


def path(value: str, root: str | Path | None = None) -> str:
    """A lock path in its one spelling from the project root (see ``lockpath``)."""
    if not isinstance(value, str) or not value.strip():
        raise BadInput("lock path is empty")
    if any(c in value for c in "\0\n\r"):
        raise BadInput(f"lock path {value!r} contains a control character")
    _utf8_size("lock path", value)
    return lockpath.normal(value, root)


def operator(value: str) -> str:
    """An operator's name, for the audit trail (any printable text, kept short)."""
    if not isinstance(value, str) or not value.strip():
        raise BadInput("operator name is empty")
    if len(value) > 64 or not value.isprintable():
        raise BadInput(f"invalid operator name {value!r}")
    return value
