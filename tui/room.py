"""The control room as its parts see it, so that none of them imports the app.

The keys, the palette, an operator action's dialogs, the store finder and the store pane
all work on the app; typed as ``ControlRoom`` each of them imported ``app.py``, which
imports them all. ``Room`` is what they may use instead: the model the app holds (store,
board, live link, snapshot, palette) and the calls they make back into it. ``ControlRoom``
is the one Room, and the only module that knows every part.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.app import App
from textual.widgets import TabbedContent

from claimroom.core.infra import Resolution
from claimroom.core.store import Store

from .board import Board, Snapshot
from .live import LiveLink
from .panes import TABLE_PANES, TablePane
from .tables import Palette

REVIEW_PANE = "review"  # a table pane of its own module (review.py), after the store pane


class Room(App[int]):
    """A Textual app over one board; ``ControlRoom`` fills in the model and the calls back."""

    # The model; store, board and link are set once the store is known (``attached``).
    store: Store
    board: Board
    link: LiveLink
    snapshot: Snapshot | None
    palette_styles: Palette
    clock: Callable[[], float]
    operator: str
    readonly: bool
    attached: bool

    @property
    def active_pane(self) -> str:
        return self.query_one(TabbedContent).active or "overview"

    def table_pane(self, name: str | None = None) -> TablePane | None:
        """The table pane ``name`` (default: the one on screen); None for the other panes."""
        name = name or self.active_pane
        if name not in TABLE_PANES and name != REVIEW_PANE:
            return None
        return self.query_one(f"#pane-{name}", TablePane)

    # --- what the parts call back (ControlRoom has the bodies) ------------------------

    def now_ms(self) -> int:
        """Now on the store's clock."""
        raise NotImplementedError

    def _render_active(self) -> None:
        """Render the pane on screen from the model."""
        raise NotImplementedError

    def attach(self, store: Store, resolution: Resolution | None = None) -> None:
        """Take the store the finder resolved, and go live on it."""
        raise NotImplementedError

    def quit_with(self, code: int, message: str) -> None:
        """End the app with an exit code and a message for after the screen is restored."""
        raise NotImplementedError

    def action_act(self, name: str) -> None:
        """Run the operator action ``name`` on the selected rows (asks first)."""
        raise NotImplementedError

    def store_op(self, op: str) -> None:
        """Start, stop or restart the store from anywhere (the palette); the pane asks first."""
        raise NotImplementedError

    def set_theme(self, name: str) -> None:
        """Switch to the theme ``name``."""
        raise NotImplementedError

    def action_review(self, verdict: str) -> None:
        """Accept or return the task under the review pane's cursor (asks first)."""
        raise NotImplementedError
