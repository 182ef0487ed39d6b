"""The control room's themes and stylesheet.

Four themes, chosen by ``claimroom tui --theme`` or ``CLAIMROOM_THEME`` and switchable from
the command palette: a dark default, a light one, a high-contrast one, and one drawn only in
the terminal's own 16 ANSI colours (for SSH sessions and terminals without truecolor, where
hex colours would be approximated badly).
"""

from __future__ import annotations

import os
from pathlib import Path

from textual.theme import Theme

STYLESHEET = Path(__file__).with_name("claimroom.tcss")

DARK = Theme(
    name="claimroom-dark",
    primary="#4F9CF9",
    secondary="#3B6EA8",
    accent="#E3A857",
    warning="#E0B341",
    error="#F0605A",
    success="#5FBF6A",
    foreground="#D5DEE8",
    background="#14181E",
    surface="#1B2028",
    panel="#232A34",
    dark=True,
)

LIGHT = Theme(
    name="claimroom-light",
    primary="#0969DA",
    secondary="#54708F",
    accent="#8250DF",
    warning="#9A6700",
    error="#CF222E",
    success="#1A7F37",
    foreground="#1F2328",
    background="#FFFFFF",
    surface="#F3F5F7",
    panel="#E4E8EC",
    dark=False,
)

# Pure black and white with saturated signal colours: every pair clears WCAG AAA contrast.
HIGH_CONTRAST = Theme(
    name="claimroom-high-contrast",
    primary="#00C8FF",
    secondary="#FFFFFF",
    accent="#FF6BFF",
    warning="#FFE500",
    error="#FF5050",
    success="#3CFF3C",
    foreground="#FFFFFF",
    background="#000000",
    surface="#000000",
    panel="#1A1A1A",
    dark=True,
    luminosity_spread=0.25,
    text_alpha=1.0,
    variables={"border-blurred": "#FFFFFF", "footer-key-foreground": "#FFE500"},
)

# Only ANSI colour names: the terminal's palette decides the actual colours, so it reads the
# same over SSH in a 16-colour terminal as locally. ``ansi=True`` keeps Textual from
# converting them to truecolor.
ANSI = Theme(
    name="claimroom-ansi",
    ansi=True,
    primary="ansi_blue",
    secondary="ansi_cyan",
    accent="ansi_magenta",
    warning="ansi_yellow",
    error="ansi_red",
    success="ansi_green",
    foreground="ansi_default",
    background="ansi_default",
    surface="ansi_default",
    panel="ansi_default",
    boost="ansi_default",
    dark=True,
    variables={
        "ansi-background": "ansi_black",
        "ansi-foreground": "ansi_white",
        "border-blurred": "ansi_bright_black",
        "block-cursor-foreground": "ansi_black",
        "block-cursor-background": "ansi_white",
        "block-cursor-blurred-foreground": "ansi_default",
        "block-cursor-blurred-background": "ansi_bright_black",
        "input-cursor-background": "ansi_white",
        "input-cursor-foreground": "ansi_black",
        "input-selection-background": "ansi_blue",
        "screen-selection-background": "ansi_blue",
        "screen-selection-foreground": "ansi_black",
        "footer-key-foreground": "ansi_yellow",
    },
)

THEMES: dict[str, Theme] = {t.name: t for t in (DARK, LIGHT, HIGH_CONTRAST, ANSI)}

# Short names people type: ``--theme light``.
ALIASES: dict[str, str] = {
    "dark": DARK.name,
    "light": LIGHT.name,
    "high-contrast": HIGH_CONTRAST.name,
    "contrast": HIGH_CONTRAST.name,
    "ansi": ANSI.name,
    "16": ANSI.name,
}

DEFAULT = DARK.name
ENV_VAR = "CLAIMROOM_THEME"


class UnknownTheme(ValueError):
    """Raised when a theme name is neither one of ours nor an alias."""


def resolve(name: str | None) -> str:
    """The full theme name for ``name``, else ``$CLAIMROOM_THEME``, else the default."""
    chosen = name if name else os.environ.get(ENV_VAR, "")
    if not chosen:
        return DEFAULT
    key = chosen.strip().lower()
    full = ALIASES.get(key, key)
    if full not in THEMES:
        names = ", ".join(sorted(ALIASES))
        raise UnknownTheme(f"unknown theme {chosen!r}: one of {names}")
    return full


def short_name(full: str) -> str:
    """``claimroom-light`` -> ``light``, for labels."""
    return full.removeprefix("claimroom-")
