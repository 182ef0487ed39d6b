"""Control characters: found on the way in, made visible on the way out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from claimroom.core.safetext import describe, first_control, shown


def test_escape_sequences_are_found_and_made_visible() -> None:
    hostile = "x\x1b]0;PWNED\x07\x1b[2J\x1b[31mfake\x9b"
    assert first_control(hostile) == "\x1b"
    assert describe("\x1b") == "U+001B (ESC)"
    assert shown(hostile) == "x\\x1b]0;PWNED\\x07\\x1b[2J\\x1b[31mfake\\x9b"


def test_lines_are_kept_only_where_allowed() -> None:
    assert first_control("a\nb\tc", multiline=True) is None
    assert first_control("a\nb") == "\n"
    assert shown("a\nb\x1b", multiline=True) == "a\nb\\x1b"
    assert shown("a\nb") == "a\\nb"


@given(st.text())
def test_shown_text_never_holds_a_control_character(value: str) -> None:
    out = shown(value)
    assert first_control(out) is None
    assert first_control(shown(value, multiline=True), multiline=True) is None
    if first_control(value) is None:
        assert out == value
