"""Open auctions under the claims table (core/bidding.py): each bidding window with the time
left and its bids, best first. Shown only while a window is open, so at 80x24 the claims
keep the room; a view, never focused (nothing in it to act on)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from claimroom.core.bidding import Auction

from .board import Snapshot
from .tables import Palette, clip, left

AUCTION_ROWS = 4  # windows listed at most (the closing soonest); the title line says how many
BIDS_SHOWN = 3  # bids per window, best first


def _bids(a: Auction) -> str:
    shown = ", ".join(f"{clip(b.agent, 12)} {b.cost:g}" for b in a.bids[:BIDS_SHOWN])
    more = len(a.bids) - BIDS_SHOWN
    return shown + (f" +{more}" if more > 0 else "") if a.bids else "no bids yet"


def render(auctions: tuple[Auction, ...], now_ms: int, pal: Palette) -> Table:
    """The auctions table: task, time left, how many bids, the best ones, the title."""
    n = len(auctions)
    table = Table(
        title=Text(f"{n} open auction{'s' if n != 1 else ''} · lowest bid wins", style=pal.accent),
        title_justify="left",
        box=None,
        expand=True,
        pad_edge=False,
        header_style=pal.muted,
    )
    table.add_column("task", no_wrap=True)
    table.add_column("closes", no_wrap=True)
    table.add_column("bids", justify="right", no_wrap=True)
    table.add_column("best bids", no_wrap=True, overflow="ellipsis", ratio=2)
    table.add_column("title", no_wrap=True, overflow="ellipsis", ratio=1)
    for a in auctions[:AUCTION_ROWS]:
        ms = a.close_ms - now_ms
        style = pal.warning if ms < 5_000 else None
        table.add_row(
            clip(a.task, 10), Text(left(ms), style=style or ""), str(len(a.bids)), _bids(a), clip(a.title, 40)
        )
    return table


class AuctionsBox(Static):
    """The auctions table, hidden while no window is open."""

    def __init__(self) -> None:
        super().__init__("", id="claims-auctions", classes="auctions")
        self.display = False

    def show(self, snap: Snapshot, now_ms: int, pal: Palette) -> None:
        self.display = bool(snap.auctions)
        if snap.auctions:
            self.update(render(snap.auctions, now_ms, pal))
