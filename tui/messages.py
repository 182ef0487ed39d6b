"""The control room's message dialog: the operator writes to the selected agents, or to every
agent (``m`` on the agents pane; core/messages.py does the sending, as "operator:NAME").

Worked by keys alone like every dialog: the text box has the focus first; Enter there moves
to Cancel (first of the buttons, so a second Enter sends nothing); Tab / shift+Tab and the
arrows move between the buttons; each button has a letter, taken as a letter only outside
the text box; Escape cancels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from claimroom.core.errors import ClaimroomError
from claimroom.core.messages import message_text
from claimroom.core.safetext import shown

from .actions import Outcome, _one
from .dialogs import CANCEL_KEY, button_label
from .room import Room

SEND, ALL = "s", "a"  # the letters of "Send to the selected" and "Send to every agent"
Sent = tuple[bool, str]  # (to every agent, the text)


class MessageDialog(ModalScreen[Sent | None]):
    """Write one message; dismisses with (to every agent?, text), or None for Cancel."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss_none", "Cancel", id="message.cancel"),
        Binding("up", "app.focus_previous", "Previous", show=False, id="message.previous"),
        Binding("down", "app.focus_next", "Next", show=False, id="message.next"),
    ]

    def __init__(self, agents: Sequence[str]) -> None:
        super().__init__()
        self.agents = list(agents)

    def compose(self) -> ComposeResult:
        names = ", ".join(self.agents[:4]) + (" …" if len(self.agents) > 4 else "")
        with Vertical(id="message-dialog", classes="dialog"):
            yield Label(Text(shown(f"Message from the operator to {names}")), id="dialog-title")
            yield Input(placeholder="message text", id="message-text")
            yield Static(Text("enter: done · tab: buttons · escape cancels"), id="message-hint")
            with Horizontal(id="dialog-buttons"):
                yield Button(button_label(CANCEL_KEY, "Cancel"), id="cancel", variant="default")
                yield Button(button_label(SEND, "Send"), id="send", variant="primary")
                yield Button(button_label(ALL, "Send to all agents"), id="all", variant="warning")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one("#cancel", Button).focus()  # a second Enter sends nothing

    def on_key(self, event: events.Key) -> None:
        if isinstance(self.focused, Input):
            return  # letters are text there
        if event.key in ("left", "right"):
            event.stop()
            (self.app.action_focus_previous if event.key == "left" else self.app.action_focus_next)()
            return
        which = {CANCEL_KEY: "cancel", SEND: "send", ALL: "all"}.get(event.character or "")
        if which is not None:
            event.stop()
            self._choose(which)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self._choose(event.button.id or "cancel")

    def _choose(self, which: str) -> None:
        if which == "cancel":
            self.dismiss(None)
            return
        text = self.query_one(Input).value
        try:
            message_text(text)
        except ClaimroomError as exc:  # said in the dialog, which stays open
            self.query_one("#message-hint", Static).update(Text(shown(str(exc))))
            self.query_one(Input).focus()
            return
        self.dismiss((which == "all", text))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


async def send_message(app: Room, agents: Sequence[str]) -> Outcome | None:
    """Ask for the text, then send it as the operator; None when the operator backed out."""
    got = await app.push_screen_wait(MessageDialog(agents))
    if got is None:
        return None
    to_all, text = got
    out = Outcome()
    for to in [None] if to_all else agents:
        label = "every agent" if to is None else f"agent {to}"
        await _one(out, label, _sent(app, to, text))
    return out


async def _sent(app: Room, to: str | None, text: str) -> str:
    m = await app.store.send(app.operator, to, text, operator=True)
    return f"message {m.id} sent"
