"""The control room's model of a board: one snapshot read, capped so a huge board stays cheap.

Each refresh is one ``Store.snapshot`` (the backend reads it its own cheapest way: see
``core/snapshot.py``), so it costs the same few milliseconds whether the board holds 100
tasks or 100 000. Every table is capped at ``row_limit`` rows, picked by urgency (soonest
lease deadline first, newest orphans first); the totals are exact, so the panes can say
"500 of 12 034". A refresh reads only the active pane's sections; the others keep their
last reading. The overview also looks for blocked tasks that wait on something that can
never finish (``Store.stuck``), one window of blocked tasks per refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import deque
from collections.abc import Callable

from claimroom.core import validate
from claimroom.core.errors import BadInput, StoreUnavailable
from claimroom.core.models import Stuck
from claimroom.core.snapshot import SECTIONS as STORE_SECTIONS
from claimroom.core.snapshot import QueueRow as QueueRow  # re-exported: the panes' model
from claimroom.core.snapshot import Snapshot as Snapshot
from claimroom.core.snapshot import claimed_per_queue, queue_rows
from claimroom.core.store import Store
from claimroom.core.storeurl import redacted
from claimroom.core.topology import Topology

# What each pane shows beyond the counts and queues every snapshot has. A refresh reads
# only the active pane's sections (the rest keep their last reading), so a board under
# heavy traffic costs the app what one pane needs, not all eight.
SECTIONS = STORE_SECTIONS | {"stuck"}
PANE_SECTIONS: dict[str, frozenset[str]] = {
    "overview": SECTIONS - {"plans"},
    # On Redis, claimed (in review) counts per queue come from the claims (reviews) read.
    "queues": frozenset({"claims", "review"}),
    "claims": frozenset({"claims", "auctions"}),
    "agents": frozenset({"agents"}),
    "orphans": frozenset({"orphans"}),
    "locks": frozenset({"locks"}),
    "events": frozenset({"events"}),
    "store": frozenset(),
    "plans": frozenset({"plans"}),
    "review": frozenset({"review"}),
}

ROW_LIMIT = 200  # rows read per table: four pages; the totals say how many more there are
EVENT_LIMIT = 200  # audit events kept in view
# Blocked tasks waiting on work that can never finish ("needs attention"): each refresh of
# the overview checks one window of blocked tasks, oldest first, and the ones it found
# before; a bigger board is walked a window per refresh, so none costs more than this.
STUCK_WINDOW = 500
STUCK_KEEP = 50  # stuck tasks remembered, and checked again, between windows
PING_HISTORY = 120  # pings kept for the store pane (one per snapshot)


class Board:
    """Reads snapshots of one namespace and remembers recent pings."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float] = time.time,
        *,
        row_limit: int = ROW_LIMIT,
        event_limit: int = EVENT_LIMIT,
        switch_key_events: bool = True,
    ) -> None:
        self.store = store
        # Whether ``watch`` may turn the server's key events on (CONFIG SET); a read-only
        # control room changes nothing, server settings included.
        self.switch_key_events = switch_key_events
        self.clock = clock
        self.row_limit = row_limit
        self.event_limit = event_limit
        self.pings: deque[float] = deque(maxlen=PING_HISTORY)
        self.sections: frozenset[str] = SECTIONS  # what the next read fetches
        self._last: Snapshot | None = None  # sections not fetched are carried over from here
        # Whether the server sends the key events ``watch`` listens to; None: not known yet,
        # or no such thing (the file store).
        self.key_events: bool | None = None
        self._stuck: tuple[Stuck, ...] = ()
        self._stuck_from = 0  # where the next window of blocked tasks starts (creation order)

    @property
    def url(self) -> str:
        """The store URL with any password hidden."""
        return redacted(self.store.url)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def read(self) -> Snapshot:
        """One snapshot; ``StoreUnavailable`` when the store cannot be reached."""
        ping = await self.store.ping()
        self.pings.append(ping)
        last = self._last
        want = self.sections if last is not None else SECTIONS  # the first read fills every pane
        snap = await self.store.snapshot(
            sections=want & STORE_SECTIONS, rows=self.row_limit, events=self.event_limit
        )
        if last is not None:
            snap = _carried(snap, last)
        stuck = await self._read_stuck() if "stuck" in want or last is None else last.stuck
        # Unread messages of the agents read (a few index reads each), for the agents pane.
        if "agents" in snap.sections or last is None:
            unread = await self._read_unread(snap)
        else:
            unread = last.unread
        snap = dataclasses.replace(snap, read_ms=self.now_ms(), ping_ms=ping, stuck=stuck, unread=unread)
        self._last = snap
        return snap

    async def _read_unread(self, snap: Snapshot) -> dict[str, int]:
        """Unread messages of the agents read. A name no agent could have been given (put on
        the board by hand, say) has none: the column stays blank and the read goes on."""
        names = []
        for a in snap.agents:
            try:
                names.append(validate.agent(a.name))
            except BadInput:
                continue
        return await self.store.unread(names)

    async def _read_stuck(self) -> tuple[Stuck, ...]:
        """The next window of blocked tasks checked for dependencies that can never finish,
        plus those found before (checked again: an operator may have cancelled them)."""
        found, self._stuck_from = await self.store.stuck(
            after_seq=self._stuck_from, limit=STUCK_WINDOW, also=[s.task.id for s in self._stuck]
        )
        self._stuck = tuple(sorted(found, key=lambda s: s.task.seq)[:STUCK_KEEP])
        return self._stuck

    async def server_info(self) -> dict[str, str]:
        """A few facts about the server for the store pane."""
        return await self.store.server_facts()

    async def topology(self) -> Topology:
        """Where the board is served, for the store pane (read anew: it follows a failover)."""
        return await self.store.topology()

    async def watch(self, on_hint: Callable[[], None], on_live: Callable[[bool], None]) -> None:
        """Call ``on_hint`` whenever the board may have changed, until the link breaks.

        Each call watches on its own (``Store.changes``), so a broken watch is dropped and
        made anew after an outage. Raises ``StoreUnavailable`` when the link breaks.
        """
        try:
            self.key_events = await self.store.key_events(switch=self.switch_key_events)
            feed = self.store.changes()
            async with contextlib.aclosing(feed):
                live = False
                async for _ in feed:
                    if not live:
                        live = True
                        on_live(True)
                    on_hint()  # the first: changes made while nobody watched
        finally:
            on_live(False)


# A snapshot section -> the Snapshot field holding its rows.
_ROWS = {"claims": "claims", "orphans": "orphans", "agents": "agents", "locks": "locks", "events": "events",
         "auctions": "auctions", "review": "reviews", "plans": "plans"}  # fmt: skip


def _carried(snap: Snapshot, last: Snapshot) -> Snapshot:
    """``snap`` with the sections it did not read taken from ``last``."""
    kept = {attr: getattr(last, attr) for name, attr in _ROWS.items() if name not in snap.sections}
    if ("claims" in kept or "reviews" in kept) and not snap.queue_claims_exact:
        # The claimed and in-review counts per queue come from the rows, carried over with them.
        ready = {q.name: q.ready for q in snap.queues}
        paused = [q.name for q in snap.queues if q.paused]
        claims, reviews = kept.get("claims", snap.claims), kept.get("reviews", snap.reviews)
        kept["queues"] = queue_rows(ready, claimed_per_queue(claims), paused, claimed_per_queue(reviews))
    return dataclasses.replace(snap, **kept) if kept else snap


async def read_with_timeout(board: Board, timeout_s: float) -> Snapshot:
    """A snapshot, treating a store that does not answer in time as unavailable."""
    try:
        async with asyncio.timeout(timeout_s):
            return await board.read()
    except TimeoutError:
        raise StoreUnavailable(f"store at {board.url} did not answer within {timeout_s:.0f} s") from None
