"""Keeping the model fresh: hints wake a refresh, a timer reconciles, outages back off.

Rule 8 of the design: pub/sub hints only make the view quicker. Every refresh is a full
snapshot, taken when a hint arrives (at most every ``min_gap_s``, so a board of busy agents
heartbeating cannot turn into a refresh storm), every ``full_every_s`` regardless, and after
every reconnect. A lost hint therefore costs at most ``full_every_s`` of staleness.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from claimroom.core.errors import ClaimroomError

from .board import Board, Snapshot, read_with_timeout

FULL_EVERY_S = 3.0
MIN_GAP_S = 0.1  # 10 snapshots/s at most: event -> screen p99 ~190 ms under 1,000 events/s (bench/tui.py)
READ_TIMEOUT_S = 10.0
BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 5.0


@dataclass
class LinkStatus:
    """What the header says about the link to the store."""

    live: bool = False  # the hint subscription is up (else: polling every FULL_EVERY_S)
    synced_ms: int | None = None  # app clock of the last good snapshot
    outage: str = ""  # why the store cannot be read, while it cannot
    retry_in_s: float = 0.0
    attempts: int = 0  # failed reads in a row
    paused: bool = False  # the operator froze the view
    key_events: bool | None = None  # Redis sends key events (None: unknown, or a file store)


class Backoff:
    """Exponential delays for reconnecting: 0.25 s, 0.5 s, 1 s, ... up to 5 s."""

    def __init__(self, first_s: float = BACKOFF_FIRST_S, max_s: float = BACKOFF_MAX_S) -> None:
        self.first_s, self.max_s = first_s, max_s
        self.next_s = first_s

    def step(self) -> float:
        delay = self.next_s
        self.next_s = min(self.max_s, self.next_s * 2)
        return delay

    def reset(self) -> None:
        self.next_s = self.first_s


class LiveLink:
    """Runs the refresh loop and the hint watcher; reports through two callbacks."""

    def __init__(
        self,
        board: Board,
        on_snapshot: Callable[[Snapshot], None],
        on_status: Callable[[LinkStatus], None],
        *,
        full_every_s: float = FULL_EVERY_S,
        min_gap_s: float = MIN_GAP_S,
    ) -> None:
        self.board = board
        self.on_snapshot = on_snapshot
        self.on_status = on_status
        self.full_every_s = full_every_s
        self.min_gap_s = min_gap_s
        self.status = LinkStatus()
        self._dirty = asyncio.Event()
        self._forced = False

    def poke(self, *, force: bool = False) -> None:
        """Ask for a refresh now; ``force`` takes one even while the view is paused."""
        self._forced = self._forced or force
        self._dirty.set()

    def set_paused(self, paused: bool) -> None:
        self.status.paused = paused
        self.on_status(self.status)
        if not paused:
            self.poke()

    async def run_refresh(self) -> None:
        """Forever: wait for a hint or the reconciliation timer, then read a full snapshot."""
        backoff = Backoff()
        self._dirty.set()  # the first snapshot at once
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.full_every_s):
                    await self._dirty.wait()
            self._dirty.clear()
            forced, self._forced = self._forced, False
            if self.status.paused and not forced:
                continue
            try:
                snap = await read_with_timeout(self.board, READ_TIMEOUT_S)
            except Exception as exc:  # a viewer never dies of a failed read: it says why and retries
                delay = backoff.step()
                self.status.outage = (
                    str(exc) if isinstance(exc, ClaimroomError) else f"{type(exc).__name__}: {exc}"
                )
                self.status.attempts += 1
                self.status.retry_in_s = delay
                self.on_status(self.status)
                await asyncio.sleep(delay)
                self._dirty.set()
                continue
            backoff.reset()
            self.status.outage, self.status.attempts, self.status.retry_in_s = "", 0, 0.0
            self.status.synced_ms = snap.read_ms
            self.on_snapshot(snap)
            self.on_status(self.status)
            await asyncio.sleep(self.min_gap_s)

    async def run_hints(self) -> None:
        """Forever: keep a hint subscription up, re-subscribing with backoff when it breaks."""
        backoff = Backoff()

        def live(up: bool) -> None:
            if up:
                backoff.reset()
            if (self.status.live, self.status.key_events) != (up, self.board.key_events):
                self.status.live, self.status.key_events = up, self.board.key_events
                self.on_status(self.status)

        while True:
            try:
                await self.board.watch(self.poke, live)
            except Exception:  # the refresh loop reports the outage; here we only re-subscribe
                self.poke()  # ... and make it look now rather than at its next timer
            await asyncio.sleep(backoff.step())
