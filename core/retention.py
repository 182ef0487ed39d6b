"""Retention settings: their defaults, their stored form, and checks of new values.

What retention does is in ``lua/retain-1.lua`` (and its twin ``file_retention``); this
module is the Python side both stores share: ``Store.set_retention`` turns its arguments
into the stored form here, and ``Store.retention`` reads them back.

Stored form (one JSON object per scope, "*" the board, else a queue): only the fields the
scope sets, durations in whole ms, -1 for no limit.
"""

from __future__ import annotations

import json
import math
from enum import Enum
from typing import Any

from . import constants as C
from .errors import BadInput
from .models import BOARD_ONLY, RETENTION_FIELDS, Retention

BOARD = "*"  # the scope of the board's own settings (no queue name can be "*")


class Unset(Enum):
    """An argument not given: the setting stays as it is."""

    UNSET = 0


UNSET = Unset.UNSET

DEFAULTS = Retention(
    done_s=C.retention_done_s,
    done_count=C.retention_done_count,
    failed_s=C.retention_failed_s,
    failed_count=C.retention_failed_count,
    events_s=C.retention_events_s,
    events_bytes=C.retention_events_bytes,
    agents_s=C.retention_agents_s,
)

_SECONDS = frozenset({"done_s", "failed_s", "events_s", "agents_s"})


def stored_key(name: str) -> str:
    """A field's key in the stored form: durations in ms (``done_s`` -> ``done_ms``)."""
    return name[:-2] + "_ms" if name in _SECONDS else name


def _stored_value(name: str, value: Any) -> int:
    """One new value in the stored form; ``BadInput`` for anything else. None: no limit."""
    if value is None:
        return -1
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInput(f"retention {name} must be a number (or None: no limit), got {value!r}")
    if name in _SECONDS:
        if not math.isfinite(value) or value < 0 or value > C.max_retention_s:
            raise BadInput(
                f"retention {name} must be between 0 and {C.max_retention_s:.0f} seconds "
                f"(or no limit), got {value!r}"
            )
        return round(value * 1000)
    if isinstance(value, float) and not value.is_integer():
        raise BadInput(f"retention {name} must be a whole number, got {value!r}")
    low = 1 if name == "events_bytes" else 0
    if not low <= value <= C.max_retention_count:
        raise BadInput(
            f"retention {name} must be between {low} and {C.max_retention_count} (or no limit), got {value!r}"
        )
    return int(value)


def changes(queue: str | None, given: dict[str, Any]) -> dict[str, int]:
    """The stored form of the settings given (``UNSET`` ones left out) for a scope."""
    out: dict[str, int] = {}
    for name, value in given.items():
        if value is UNSET:
            continue
        if name not in RETENTION_FIELDS:
            raise BadInput(f"unknown retention setting {name!r}")
        if queue is not None and name in BOARD_ONLY:
            raise BadInput(f"retention {name} is the whole board's: set it without a queue")
        out[stored_key(name)] = _stored_value(name, value)
    return out


def decoded(raw: str | None) -> dict[str, int]:
    """A scope's stored settings; {} when none (or unreadable: the defaults then apply)."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {k: int(v) for k, v in value.items() if isinstance(v, int | float)}


def effective(board: dict[str, int], own: dict[str, int] | None = None) -> Retention:
    """The settings in force: the defaults, under the board's, under a queue's ``own``."""
    merged = {**board, **{k: v for k, v in (own or {}).items() if k not in map(stored_key, BOARD_ONLY)}}
    out: dict[str, Any] = {}
    for name in RETENTION_FIELDS:
        key = stored_key(name)
        if key not in merged:
            out[name] = getattr(DEFAULTS, name)
        elif merged[key] < 0:
            out[name] = None
        elif name in _SECONDS:
            out[name] = merged[key] / 1000
        else:
            out[name] = merged[key]
    return Retention(**out)


def encoded(settings: dict[str, int]) -> str:
    return json.dumps(settings, separators=(",", ":"), sort_keys=True)
