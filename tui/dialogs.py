"""Modal screens: the confirmation dialog, the agent picker, the help screen.

Every dialog is worked by keys alone: Tab / shift+Tab and the arrow keys move between its
choices, Enter acts on the focused one, Escape cancels, and each choice has a letter, shown
on its button as ``[r]``. Cancel is first and has the focus, so a stray Enter does nothing.
Text from the store (titles, agent names, errors) goes through ``shown`` here, once, so no
control character in it reaches the operator's terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal, NamedTuple

from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Label, OptionList, Static
from textual.widgets.option_list import Option

from claimroom.core.models import Agent
from claimroom.core.safetext import shown

Variant = Literal["default", "primary", "success", "warning", "error"]
MAX_TARGET_LINES = 8
CANCEL_KEY = "c"  # Cancel's letter in every dialog; Escape cancels too


class Choice(NamedTuple):
    """One button of a dialog: its letter, its words, the value it dismisses with, its colour."""

    key: str
    label: str
    value: str
    variant: Variant = "warning"


def button_label(key: str, label: str) -> Content:
    """``[r] Requeue``: the letter that presses the button, shown on it (never parsed as markup)."""
    return Content.assemble("[", (key, "bold underline"), "] ", label)


class KeyedDialog(ModalScreen[str | None]):
    """A modal whose buttons answer to their letters, and whose focus moves by arrows as well as Tab."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss_none", "Cancel", id="dialog.cancel"),
        Binding("left,up", "app.focus_previous", "Previous", show=False, id="dialog.previous"),
        Binding("right,down", "app.focus_next", "Next", show=False, id="dialog.next"),
    ]

    letters: dict[str, str | None]  # letter -> the value its button dismisses with (None: Cancel)

    def on_key(self, event: events.Key) -> None:
        # Exact characters only: the key that opened a dialog (x, r, P, ...) is never one of
        # its letters, so a key pressed twice cannot confirm by itself.
        if event.character is not None and event.character in self.letters:
            event.stop()
            self.dismiss(self.letters[event.character])

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class ChoiceDialog(KeyedDialog):
    """Names the exact targets and offers Cancel (first, focused) plus one or more choices.

    Dismisses with the chosen value, or None for Cancel / escape. Defaulting to Cancel means
    a stray enter never kills anything.
    """

    def __init__(self, title: str, targets: Sequence[str], choices: Sequence[Choice], note: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.targets = list(targets)
        self.choices = list(choices)
        self.note = note
        self.letters = {CANCEL_KEY: None} | {c.key: c.value for c in self.choices}
        if len(self.letters) != len(self.choices) + 1:
            raise ValueError(f"dialog letters clash: {[c.key for c in self.choices]} (and {CANCEL_KEY})")

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(Text(shown(self.title_text)), id="dialog-title")
            lines = Text("\n".join(shown(t) for t in self.targets[:MAX_TARGET_LINES]))
            if len(self.targets) > MAX_TARGET_LINES:
                lines.append(f"\n… and {len(self.targets) - MAX_TARGET_LINES} more")
            yield Static(lines, id="dialog-targets")
            if self.note:
                yield Static(Text(shown(self.note, multiline=True)), id="dialog-note")
            with Horizontal(id="dialog-buttons"):
                yield Button(button_label(CANCEL_KEY, "Cancel"), id="cancel", variant="default")
                for c in self.choices:
                    yield Button(button_label(c.key, c.label), id=f"choice-{c.value}", variant=c.variant)

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        bid = event.button.id or "cancel"
        self.dismiss(None if bid == "cancel" else bid.removeprefix("choice-"))


class AgentPicker(KeyedDialog):
    """Pick the agent a task is reassigned to: arrows move in the list, Enter picks, Tab
    reaches Cancel, escape (or its letter) cancels."""

    # The list uses up and down itself; Tab and shift+Tab move between the list and Cancel.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss_none", "Cancel", id="picker.cancel"),
        Binding("left", "app.focus_previous", "Previous", show=False, id="picker.previous"),
        Binding("right", "app.focus_next", "Next", show=False, id="picker.next"),
    ]

    def __init__(self, agents: Sequence[Agent], now_ms: int, targets: Sequence[str]) -> None:
        super().__init__()
        self.agents = list(agents)
        self.now_ms = now_ms
        self.targets = list(targets)
        self.letters = {CANCEL_KEY: None}

    def compose(self) -> ComposeResult:
        with Vertical(id="picker", classes="dialog"):
            more = " …" if len(self.targets) > 4 else ""
            yield Label(Text(shown(f"Reassign {', '.join(self.targets[:4])}{more} to:")))
            options = []
            for a in self.agents:
                note = f"  {len(a.held)}/{a.max_claims} held"
                if a.breaker_open_until_ms > self.now_ms:
                    note += ", breaker open"
                options.append(Option(Text(shown(a.name) + note), id=a.name))
            yield OptionList(*options, id="picker-list")
            yield Static(Text("↑↓ choose · enter picks · tab reaches Cancel"), id="picker-hint")
            with Horizontal(id="dialog-buttons"):
                yield Button(button_label(CANCEL_KEY, "Cancel"), id="cancel")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """Every key, what it does, and the binding id to remap it with."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss_none", "Close", id="help.close"),
        Binding("question_mark", "dismiss_none", "Close", show=False, id="help.close2"),
        Binding("q", "dismiss_none", "Close", show=False, id="help.close3"),
    ]

    def __init__(self, rows: Sequence[tuple[str, str, str]], notes: Sequence[str]) -> None:
        super().__init__()
        self.rows = list(rows)
        self.notes = list(notes)

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        table.add_column(style="dim", no_wrap=True)
        for key, description, binding_id in self.rows:
            table.add_row(Text(key), Text(description), Text(binding_id))
        with VerticalScroll(id="help", classes="dialog"):
            yield Label("claimroom control room: keys  (escape closes)", id="help-title")
            yield Static(table)
            yield Static(Text("\n".join(self.notes)), id="help-notes")

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
