"""The review pane: tasks delivered for review (``complete --review``), longest waiting first,
and the operator's verdicts on them: ``y`` accepts (done), ``n`` returns with a note.

Each verdict is a compare-and-set on the delivery seen when the dialog opened (the task's
state, review, and its token; see ``actions.Target``): if the task was decided, cancelled or
delivered again meanwhile, the store refuses it and nothing changes. Cancel comes first in
every dialog; a return asks for its note first, then confirms.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from claimroom.core.errors import Changed, ClaimroomError, WrongState
from claimroom.core.models import State
from claimroom.core.safetext import shown

from .actions import Outcome, Target
from .board import Snapshot
from .dialogs import CANCEL_KEY, Choice, ChoiceDialog, button_label
from .panes import TablePane
from .room import Room
from .tables import Palette, Row, age, clip, cursor_key, row

NAME = "review"
STALE_MS = 3_600_000  # an hour in review: shown as needing attention
# The verdicts' keys on the review pane (bindings in keys.py) and their dialogs' choices; a
# dialog's letter is never the key that opened it.
VERDICT_KEYS = {"accept": "y", "return": "n"}
ACCEPT = Choice("a", "Accept → done", "accept", "success")
RETURN = Choice("r", "Return → queued", "return")


class ReviewPane(TablePane):
    """Tasks in review: what was delivered (the reference), by whom, and for how long."""

    COLUMNS = (
        ("id", "task"), ("waiting", "waiting"), ("by", "by"), ("ref", "ref"), ("queue", "queue"),
        ("title", "title"),
    )  # fmt: skip
    SORT_COLUMN = None  # longest waiting first, as read
    MARKABLE = False  # one verdict at a time: each names what was looked at
    NOUN = "in review"

    def total(self, snap: Snapshot) -> int:
        return snap.review_total

    def rows(self, snap: Snapshot, now_ms: int, pal: Palette) -> list[Row]:
        out = []
        for t in snap.reviews:
            waited = max(0, now_ms - t.review_ms)
            out.append(
                row(t.id, t.id, age(waited), t.agent, clip(t.review_ref, 24), clip(t.queue, 10),
                    clip(t.title, 40), style=pal.warning if waited >= STALE_MS else None)
            )  # fmt: skip
        return out


class NoteDialog(ModalScreen[str | None]):
    """Asks for a return's note: enter goes on (to the confirmation), escape cancels."""

    DEFAULT_CSS = """
    NoteDialog { align: center middle; }
    NoteDialog #note-input { margin: 1 0; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

    def __init__(self, target: Target) -> None:
        super().__init__()
        self.target = target

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(Text(f"Return {shown(self.target.task)}: what should change?"), id="dialog-title")
            yield Static(Text(shown(self.target.describe())), id="dialog-targets")
            yield Input(placeholder="the note for the next agent (enter: go on)", id="note-input")
            with Horizontal(id="dialog-buttons"):
                yield Button(button_label(CANCEL_KEY, "Cancel"), id="cancel", variant="default")
                yield Button("Next", id="next", variant="primary")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def _next(self) -> None:
        note = self.query_one(Input).value
        if note.strip():
            self.dismiss(note)
        else:
            self.notify("say what should change", severity="warning")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._next()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "next":
            self._next()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


async def decide(app: Room, verdict: str) -> Outcome | None:
    """The operator's verdict on the task under the cursor of the review pane, after its
    dialogs; None when nothing was selected or the operator backed out."""
    snap = app.snapshot
    pane = app.table_pane(NAME)
    key = None if pane is None else cursor_key(pane.table)
    task = None if snap is None or key is None else snap.task(key)
    if task is None or task.state is not State.REVIEW:
        app.notify(f"{verdict}: select a task in review first", severity="warning")
        return None
    target = Target.of(task)  # captured now: the delivery the operator looked at
    lines = [target.describe(), f"delivered {task.review_ref} by {task.agent}"]
    note = ""
    if verdict == "return":
        got = await app.push_screen_wait(NoteDialog(target))
        if got is None:
            return None
        note = got
        lines.append(f"note: {note}")
        title, choice = f"Return {target.task} to its queue?", RETURN
    else:
        title, choice = f"Accept {target.task}?", ACCEPT
    if await app.push_screen_wait(ChoiceDialog(title, lines, [choice])) is None:
        return None
    out = Outcome()
    try:
        state, unblocked = await app.store.review(
            target.task, verdict, note, operator=app.operator, token=target.token
        )
    except (Changed, WrongState):  # decided, cancelled or delivered again since it was selected
        out.changed.append(target.task)
    except ClaimroomError as exc:
        out.failed.append(f"{target.task}: {exc}")
    else:
        word = "accepted" if verdict == "accept" else "returned"
        also = f"; unblocked {' '.join(unblocked)}" if unblocked else ""
        out.done.append(f"{target.task}: {word}, now {state.value}{also}")
    return out
