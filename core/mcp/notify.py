"""Push: resource-updated and list-changed notifications driven by the board's audit trail.

The notifier follows the audit trail (``Store.follow``) and, for each event, marks the
resources it changed: the board, the event's task, the inbox of each agent it touches.
Every ``mcp_notify_gap_s`` the marked resources are announced once each, on both paths:

- 2026-07-28 clients listen (``subscriptions/listen``): the SDK's subscription bus fans the
  event out to every open listen stream whose filter asked for that URI;
- 2025-11-25 clients subscribed with ``resources/subscribe``: the notification goes on their
  session's standalone stream (the GET stream over HTTP; stdout over stdio).

Events are hints (DESIGN rule 8): after the trail could not be read (a store outage) the
notifier announces the board and the resource list as changed, so clients re-read.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable

from mcp.server.session import ServerSession
from mcp.server.subscriptions import SubscriptionBus
from mcp.shared.subscriptions import ResourcesListChanged, ResourceUpdated

from .. import constants as C
from ..models import Event
from ..store import Store

BOARD_URI = "claimroom://board"
TASK_URI = "claimroom://task/{id}"
INBOX_URI = "claimroom://agent/{name}/inbox"

# Events after which the resource list (the board and its unfinished tasks) may differ.
LIST_EVENTS = frozenset(
    {"added", "completed", "failed", "cancelled", "killed", "retried", "requeued", "expired", "restored"}
)

log = logging.getLogger("claimroom.mcp")


def task_uri(task: str) -> str:
    return TASK_URI.format(id=task)


def inbox_uri(agent: str) -> str:
    return INBOX_URI.format(name=agent)


def touches(event: Event, agent: str) -> bool:
    """Whether an audit event belongs in ``agent``'s inbox: its own, a task given to it, a
    message to it (or to every agent)."""
    if event.type == "message" and event.data.get("to") in (agent, "*"):
        return True
    return event.agent == agent or event.data.get("assigned") == agent


def changed_by(event: Event) -> set[str]:
    """The resources an audit event changed."""
    uris = {BOARD_URI}
    if event.task:
        uris.add(task_uri(event.task))
    to = event.data.get("to") if event.type == "message" else None  # a message's recipient
    for agent in (event.agent, event.data.get("assigned"), to):
        if isinstance(agent, str) and agent and agent != "*":
            uris.add(inbox_uri(agent))
    return uris


def _order(event_id: str) -> tuple[int, ...]:
    """An audit event id as numbers, for order: "1700000000000-3" (Redis), "42" (file)."""
    return tuple(int(part) for part in event_id.split("-"))


class Notifier:
    """Follows the board and tells subscribed clients what changed."""

    def __init__(self, store: Store, bus: SubscriptionBus) -> None:
        self.store = store
        self.bus = bus
        self.legacy: dict[str, set[ServerSession]] = {}  # uri -> sessions (resources/subscribe)
        self._dirty: set[str] = set()
        self._list_changed = False
        self._wake = asyncio.Event()
        self._start: str | None = None  # where to follow the trail from (begin); None: its newest then

    # --- 2025-11-25 subscriptions -------------------------------------------------------

    def subscribe(self, uri: str, session: ServerSession) -> None:
        self.legacy.setdefault(uri, set()).add(session)

    def unsubscribe(self, uri: str, session: ServerSession) -> None:
        sessions = self.legacy.get(uri, set())
        sessions.discard(session)
        if not sessions:
            self.legacy.pop(uri, None)

    def _forget(self, session: ServerSession) -> None:
        for uri in list(self.legacy):
            self.unsubscribe(uri, session)

    # --- marking and sending ------------------------------------------------------------

    def mark(self, uris: Iterable[str], *, list_changed: bool = False) -> None:
        self._dirty.update(uris)
        self._list_changed = self._list_changed or list_changed
        self._wake.set()

    async def begin(self) -> None:
        """Take the trail's newest event as the point to follow from, before the server
        answers its first call: a change a client makes right after subscribing is then
        never older than the start (under load the follow task may start late)."""
        try:
            self._start = await self._resume(None)
        except Exception as exc:  # the store is down now: run() starts from the newest once back
            log.warning("cannot read the board for notifications yet (%s)", exc)

    async def run(self) -> None:
        """Forever: follow the trail and send what changed (until cancelled)."""
        sender = asyncio.create_task(self._send_loop(), name="claimroom-mcp-notify")
        try:
            await self._follow_loop()
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _follow_loop(self) -> None:
        backoff = 0.25
        after = self._start  # the last event seen (None: start from the newest)
        lost = False  # the trail could not be read: reconcile once it can again
        while True:
            try:
                after = await self._resume(after)
                if lost:
                    # Whatever happened meanwhile that the trail no longer shows: re-read all.
                    self.mark([BOARD_URI, *self.legacy], list_changed=True)
                    lost = False
                async for event in self.store.follow(after=after):
                    after = event.id
                    backoff = 0.25
                    self.mark(changed_by(event), list_changed=event.type in LIST_EVENTS)
                    if event.type == "message" and event.data.get("to") == "*":
                        # A broadcast is in every inbox: those subscribed to are the ones to tell.
                        self.mark(u for u in list(self.legacy) if u.endswith("/inbox"))
            except Exception as exc:  # an outage: say it once per streak, retry with backoff
                if not lost:
                    log.warning("cannot follow the board for notifications (%s); retrying", exc)
                lost = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, C.mcp_follow_backoff_max_s)

    async def _resume(self, after: str | None) -> str:
        """Where to follow the trail from: its newest event at the start; after an outage,
        the last event seen, unless the trail was started afresh meanwhile (then its start)."""
        newest = await self.store.latest_events(1)
        if after is None:
            return newest[-1].id if newest else "0"
        if newest and _order(newest[-1].id) < _order(after):
            return "0"
        return after

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(C.mcp_notify_gap_s)  # gather what arrives meanwhile
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            list_changed, self._list_changed = self._list_changed, False
            for uri in sorted(dirty):
                await self.bus.publish(ResourceUpdated(uri=uri))
                for session in list(self.legacy.get(uri, ())):
                    await self._send(session, functools.partial(session.send_resource_updated, uri))
            if list_changed:
                await self.bus.publish(ResourcesListChanged())
                for session in {s for sessions in self.legacy.values() for s in sessions}:
                    await self._send(session, session.send_resource_list_changed)

    async def _send(self, session: ServerSession, send: Callable[[], Awaitable[None]]) -> None:
        """Send on a subscribed session; one that cannot take it any more is forgotten."""
        try:
            async with asyncio.timeout(C.connect_timeout_s):
                await send()
        except Exception:
            self._forget(session)
