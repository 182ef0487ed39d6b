"""Text that reaches a terminal: control characters refused on the way in, escaped on the way out.

A title or a stage is written by one agent and read by the operator's terminal. An ESC
byte in it could retitle the window, clear the screen or fake a colour; so every text
field refuses C0 and C1 control characters (and DEL) when it is stored, and everything
printed (by the CLI or drawn by the control room) goes through ``shown``, because text
can still reach the store another way: by hand in Redis, an older claimroom, a migration.

Free-text fields that people write in paragraphs (reasons, checkpoints) may hold tabs
and newlines; one-line fields (titles, stages, names, paths, affinity keys) hold neither.
"""

from __future__ import annotations

import re

# C0 controls, DEL and C1 controls. Tab and newline are allowed only where said.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def first_control(value: str, *, multiline: bool = False) -> str | None:
    """The first control character ``value`` may not hold, or None when it is clean."""
    found = (_CONTROL_BUT_LINES if multiline else _CONTROL).search(value)
    return found.group() if found else None


def describe(char: str) -> str:
    """A control character as a person can read it in an error: ``U+001B (ESC)``."""
    names = {"\x1b": "ESC", "\x07": "BEL", "\x00": "NUL", "\n": "newline", "\r": "CR", "\t": "tab"}
    code = f"U+{ord(char):04X}"
    return f"{code} ({names[char]})" if char in names else code


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(char, f"\\x{ord(char):02x}")


def shown(value: str, *, multiline: bool = False) -> str:
    """``value`` safe to write to a terminal: each control character becomes a visible escape.

    With ``multiline`` newlines (and tabs) are kept as they are, for text shown in a block.
    """
    pattern = _CONTROL_BUT_LINES if multiline else _CONTROL
    return pattern.sub(_escape, value) if pattern.search(value) else value
