"""Modal screens: the confirmation dialog, the agent picker, the help screen."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

from claimroom.core.models import Agent
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, OptionList, Static
from textual.widgets.option_list import Option

Variant = Literal["default", "primary", "success", "warning", "error"]
MAX_TARGET_LINES = 8


class ChoiceDialog(ModalScreen[str | None]):
    """Names the exact targets and offers Cancel (first, focused) plus one or more choices.

    Dismisses with the chosen value, or None for Cancel / escape. Defaulting to Cancel means
    a stray enter never kills anything.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss_none", "Cancel", id="dialog.cancel"),
        Binding("left", "app.focus_previous", "Previous", show=False, id="dialog.previous"),
        Binding("right", "app.focus_next", "Next", show=False, id="dialog.next"),
    ]

    def __init__(
        self, title: str, targets: Sequence[str], choices: Sequence[tuple[str, str, Variant]], note: str = ""
    ) -> None:
        super().__init__()
        self.title_text = title
        self.targets = list(targets)
        self.choices = list(choices)
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(Text(self.title_text), id="dialog-title")
            shown = self.targets[:MAX_TARGET_LINES]
            lines = Text("\n".join(shown))
            if len(self.targets) > len(shown):
                lines.append(f"\n… and {len(self.targets) - len(shown)} more")
            yield Static(lines, id="dialog-targets")
            if self.note:
                yield Static(Text(self.note), id="dialog-note")
            with Horizontal(id="dialog-buttons"):
                yield Button("Cancel", id="cancel", variant="default")
                for label, value, variant in self.choices:
                    yield Button(label, id=f"choice-{value}", variant=variant)

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        bid = event.button.id or "cancel"
        self.dismiss(None if bid == "cancel" else bid.removeprefix("choice-"))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class AgentPicker(ModalScreen[str | None]):
    """Pick the agent a task is reassigned to; escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss_none", "Cancel", id="picker.cancel")]

    def __init__(self, agents: Sequence[Agent], now_ms: int, targets: Sequence[str]) -> None:
        super().__init__()
        self.agents = list(agents)
        self.now_ms = now_ms
        self.targets = list(targets)

    def compose(self) -> ComposeResult:
        with Vertical(id="picker", classes="dialog"):
            yield Label(
                Text(f"Reassign {', '.join(self.targets[:4])}{' …' if len(self.targets) > 4 else ''} to:")
            )
            options = []
            for a in self.agents:
                note = f"  {len(a.held)}/{a.max_claims} held"
                if a.breaker_open_until_ms > self.now_ms:
                    note += ", breaker open"
                options.append(Option(Text(a.name + note), id=a.name))
            yield OptionList(*options, id="picker-list")
            with Horizontal(id="dialog-buttons"):
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_dismiss_none(self) -> None:
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
            table.add_row(key, description, binding_id)
        with VerticalScroll(id="help", classes="dialog"):
            yield Label("claimroom control room: keys  (escape closes)", id="help-title")
            yield Static(table)
            yield Static(Text("\n".join(self.notes)), id="help-notes")

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
