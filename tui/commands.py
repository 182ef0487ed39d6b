"""The command palette provider: every pane, action and setting of the control room.

The palette is the second way to reach everything (``:`` or ctrl+p), so an operator who
forgot a key, or remapped it, can still type "kill" and find it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.markup import escape

from claimroom import themes

from .actions import ACTIONS
from .keys import PANES, BoardKeys
from .review import VERDICT_KEYS
from .storepane import KEYS

Command = tuple[str, str, Callable[[], object]]


def commands(app: BoardKeys) -> list[Command]:
    """(title, help, callback) for everything the palette offers."""
    out: list[Command] = []
    for spec in ACTIONS.values():
        out.append((spec.label, f"{spec.help} · key {spec.key}", partial(app.action_act, spec.name)))
    for i, pane in enumerate(PANES, 1):
        out.append(
            (f"Show {pane}", f"switch to the {pane} pane · key {i % 10}", partial(app.action_pane, pane))
        )
    for verdict, key in VERDICT_KEYS.items():
        what = "done: its dependents may run" if verdict == "accept" else "back to its queue with a note"
        out.append(
            (
                f"Review: {verdict}",
                f"{what} · key {key} on the review pane",
                partial(app.action_review, verdict),
            )
        )
    out += [
        ("Filter rows", "filter the current table · key /", app.action_filter),
        ("Clear marks", "unmark every marked row of the current table", app.action_clear_marks),
        ("Pause live updates" if not app.link.status.paused else "Resume live updates",
         "freeze or unfreeze the view · key p", app.action_toggle_live),
        ("Refresh now", "read the board now · key ctrl+r", app.action_refresh),
        ("Help: keys", "every key and its binding id · key ?", app.action_help),
    ]  # fmt: skip
    for op, key in KEYS.items():
        what = "the container or redis-server claimroom started (asks first)"
        out.append((f"Store: {op}", f"{op} {what} · key {key} on the store pane", partial(app.store_op, op)))
    for name in themes.THEMES:
        short = themes.short_name(name)
        out.append((f"Theme: {short}", f"switch to the {short} theme", partial(app.set_theme, name)))
    return out


class ControlRoomCommands(Provider):
    """Palette entries for the control room."""

    def _commands(self) -> list[Command]:
        return commands(self.app) if isinstance(self.app, BoardKeys) else []  # always, in the control room

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=escape(help_text))  # help is markup

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, text=title, help=escape(help_text))
