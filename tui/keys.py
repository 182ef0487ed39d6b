"""The board's keys: what each key does and the actions that move around the board.

Every binding carries an id, so an operator can remap it (``App.set_keymap``); the help
screen lists them. ``BoardKeys`` is the app's layer of key actions: panes, cursor, marks,
filter, pausing, help, and the store's start / stop / restart. Operator actions on tasks
live with the app, next to the dialogs they open.
"""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import Input, TabbedContent

from .actions import ACTIONS
from .dialogs import HelpScreen
from .review import VERDICT_KEYS
from .room import Room
from .storepane import KEYS
from .tables import cursor_key

PANES = ("overview", "queues", "claims", "agents", "orphans", "locks", "events", "store", "plans", "review")


class FilterInput(Input):
    """The ``/`` filter: narrows the current table as you type; escape clears it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Clear filter", id="filter.clear")]

    def action_close(self) -> None:
        self.value = ""
        if isinstance(self.app, BoardKeys):  # always, in the control room
            self.app.action_close_filter()


# The footer shows these actions, with these shorter words, in this order (at 80 columns the
# compact footer holds: ^q Quit ? Help : Palette x Kill a Reassign / Filter space Mark p Pause).
FOOTER_ACTIONS = {"kill": "Kill", "reassign": "Reassign"}

BINDINGS: list[BindingType] = [
    Binding("ctrl+q", "quit", "Quit", priority=True, id="quit"),
    Binding("question_mark", "help", "Help", id="help"),
    Binding("colon", "command_palette", "Palette", id="palette"),
    # Declared here (Textual adds ctrl+p only when no binding opens the palette) to carry an id.
    Binding("ctrl+p", "command_palette", "Palette", show=False, priority=True, id="palette.ctrl_p"),
    *(
        Binding(ACTIONS[a].key, f"act('{a}')", short, tooltip=ACTIONS[a].label, id=f"action.{a}")
        for a, short in FOOTER_ACTIONS.items()
    ),
    Binding("slash", "filter", "Filter", id="filter"),
    Binding("space", "mark", "Mark", id="mark"),
    Binding("p", "toggle_live", "Pause", tooltip="Pause live updates", id="live.pause"),
    # Keys 1-9 then 0: a tenth pane takes 0.
    *(
        Binding(str(i % 10), f"pane('{p}')", p.title(), show=False, id=f"pane.{p}")
        for i, p in enumerate(PANES, 1)
    ),
    Binding("j", "cursor(1)", "Down", show=False, id="cursor.down"),
    Binding("k", "cursor(-1)", "Up", show=False, id="cursor.up"),
    Binding("right_square_bracket", "page(1)", "Next page", show=False, id="page.next"),
    Binding("left_square_bracket", "page(-1)", "Previous page", show=False, id="page.prev"),
    Binding("escape", "clear_marks", "Clear marks", show=False, id="marks.clear"),
    Binding("ctrl+r", "refresh", "Refresh", show=False, id="refresh"),
    *(Binding(k, f"store('{op}')", f"Store {op}", show=False, id=f"store.{op}") for op, k in KEYS.items()),
    *(
        Binding(k, f"review('{v}')", f"{v.title()} review", show=False, id=f"review.{v}")
        for v, k in VERDICT_KEYS.items()
    ),
    *(
        Binding(a.key, f"act('{a.name}')", a.label, show=False, id=f"action.{a.name}")
        for a in ACTIONS.values()
        if a.name not in FOOTER_ACTIONS
    ),
]

# The board's own actions: refused while a dialog is open, so no key acts behind it. Quitting
# and the palette stay available everywhere.
_ANYWHERE = {"quit", "command_palette"}
BOARD_ACTIONS = frozenset(b.action.split("(", 1)[0] for b in BINDINGS if isinstance(b, Binding)) - _ANYWHERE


class BoardKeys(Room):
    """The app's key actions that only move around the board (no store writes but the store's own)."""

    def action_pane(self, name: str) -> None:
        self.query_one(TabbedContent).active = name

    def action_cursor(self, delta: int) -> None:
        if (pane := self.table_pane()) is not None:
            (pane.table.action_cursor_down if delta > 0 else pane.table.action_cursor_up)()

    def action_page(self, delta: int) -> None:
        if (pane := self.table_pane()) is not None and not pane.turn(delta):
            self.notify("no more pages" if delta > 0 else "this is the first page", severity="warning")

    def action_mark(self) -> None:
        pane = self.table_pane()
        if pane is None or not pane.MARKABLE:
            self.notify("nothing to mark on this pane", severity="warning")
            return
        key = cursor_key(pane.table)
        if key is not None:
            pane.toggle_mark(key, self.palette_styles)
            pane.table.action_cursor_down()
            if self.snapshot is not None:
                pane.show(self.snapshot, self.now_ms(), self.palette_styles)

    def action_clear_marks(self) -> None:
        if (pane := self.table_pane()) is not None and pane.marks:
            pane.marks.clear()
            self._render_active()

    def action_filter(self) -> None:
        pane = self.table_pane()
        if pane is None:
            self.notify("the filter applies to table panes (2-7)", severity="warning")
            return
        box = self.query_one(FilterInput)
        box.value = pane.filter_text
        box.disabled = False
        box.add_class("-open")
        box.focus()

    def action_close_filter(self) -> None:
        box = self.query_one(FilterInput)
        box.remove_class("-open")
        box.disabled = True
        if (pane := self.table_pane()) is not None:
            pane.table.focus()

    def action_toggle_live(self) -> None:
        self.link.set_paused(not self.link.status.paused)
        self.notify("live updates paused" if self.link.status.paused else "live updates resumed")

    def action_refresh(self) -> None:
        self.link.poke(force=True)

    def action_help(self) -> None:
        rows = []
        for _key, binding in self._bindings:
            if binding.id:
                words = binding.tooltip or binding.description or binding.action  # the long form
                rows.append((self.get_key_display(binding), words, binding.id))
        notes = [
            "Actions work on the marked rows (space), else the row under the cursor.",
            "Each asks first (Cancel is the default) and refuses if the task changed meanwhile.",
            "In a dialog: tab / shift+tab or the arrows move, enter acts, escape cancels,",
            "and the letter in [ ] on a button presses it.",
            "Store pane (8): U, D, R start, stop, restart the store claimroom started (asks first).",
            "Plans pane (9): enter or space folds a plan, left / right fold / unfold, » critical path.",
            "Review pane (0): y accepts the task under the cursor, n returns it with a note (asks first).",
            "Remap keys through App.set_keymap with the ids in the last column.",
        ]
        if self.readonly:
            notes.append("Read-only mode: actions are disabled.")
        self.push_screen(HelpScreen(rows, notes))

    def action_store(self, op: str) -> None:
        """Start, stop or restart the store claimroom started (store pane; asks first)."""
        if self.active_pane != "store":
            self.notify(f"store {op}: switch to the store pane (8) first", severity="warning")
            return
        self.store_op(op)
