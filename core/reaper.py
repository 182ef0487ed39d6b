"""The reaper every long-lived claimroom process hosts, so recovery never waits for a claim.

Expired leases are also found inside every claim call, but when the board goes quiet
(agents died, nobody claims) only a reaper finds them. So the control room (unless
read-only), ``claim --wait`` while it waits, ``reap --loop`` (and the MCP server) each run
a ``Reaper``: one of them at a time holds the leader lease and reaps every ``interval_s``,
the others stand by and take over when it goes (at once when it stops cleanly, after the
lease when it dies). After each pass the leader records a heartbeat in the store (who,
when on the store's clock, and the last pass that recovered something), which
``claimroom up`` and ``claimroom doctor`` read back through ``Store.reaper_status``.

A reaper never ends its host: a failed pass (store down, or anything else) is said once
through ``report``, then retried with backoff until a pass works again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import constants as C
from . import validate
from .errors import BadInput, ClaimroomError
from .models import ReapReport
from .safetext import describe, first_control, shown


class Reapable(Protocol):
    """What a reaper uses of its store (a ``Store``, which imports this module: typing the
    store as this rather than importing ``Store`` keeps the two out of a circle)."""

    async def _lead(self, holder: str, lease_ms: int) -> bool: ...

    async def reap(self, *, by: ReaperId | None = None) -> ReapReport: ...


_KIND = re.compile(r"[a-z][a-z0-9-]{0,31}")


def ms_text(ms: int) -> str:
    """A duration for people: 0.3 s, 42 s, 12 min, 3 h."""
    s = ms / 1000
    if s < 10:
        return f"{s:.1f} s"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.0f} h"


@dataclass(frozen=True)
class ReaperId:
    """Who runs a reaper pass: the kind of process ("tui", "claim-wait", "reap-loop",
    "reap", "mcp"), its host and pid, and how often it reaps (0: a single pass)."""

    kind: str
    host: str
    pid: int
    interval_ms: int = 0

    @classmethod
    def here(cls, kind: str, interval_s: float = 0.0) -> ReaperId:
        """This process."""
        return cls(kind, shown(socket.gethostname() or "?")[:255], os.getpid(), round(interval_s * 1000))

    @property
    def name(self) -> str:
        return f"{self.kind}@{self.host} pid {self.pid}"

    def checked(self) -> ReaperId:
        """Itself, or ``BadInput``: these fields are stored and shown in terminals."""
        if not isinstance(self.kind, str) or not _KIND.fullmatch(self.kind):
            raise BadInput(f"invalid reaper kind {self.kind!r}: lower-case letters, digits and -")
        validate.text("reaper host", self.host, 255)
        if (bad := first_control(self.host)) is not None:
            raise BadInput(f"reaper host contains a control character ({describe(bad)})")
        for what, n in (("pid", self.pid), ("interval", self.interval_ms)):
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 2**53:
                raise BadInput(f"invalid reaper {what} {n!r}")
        return self

    def fields(self, prefix: str = "") -> dict[str, str]:
        """The stored form (``prefix`` names the copy kept for the last pass that reaped)."""
        return {
            prefix + "kind": self.kind,
            prefix + "host": self.host,
            prefix + "pid": str(self.pid),
            prefix + "interval_ms": str(self.interval_ms),
        }

    @classmethod
    def from_fields(cls, f: dict[str, str], prefix: str = "") -> ReaperId | None:
        if not f.get(prefix + "kind"):
            return None
        return cls(
            f[prefix + "kind"],
            f.get(prefix + "host", ""),
            int(f.get(prefix + "pid") or 0),
            int(f.get(prefix + "interval_ms") or 0),
        )


def _ids(text: str | None) -> tuple[str, ...]:
    return tuple(x for x in (text or "").split(",") if x)


@dataclass(frozen=True)
class ReaperPass:
    """The reaper heartbeat of a board: its last pass and its last pass that recovered something."""

    by: ReaperId
    at_ms: int  # store clock
    passes: int  # passes recorded on this board so far, by every reaper
    reaped_by: ReaperId | None = None  # the last pass that recovered something (None: none yet)
    reaped_ms: int = 0
    reaped: ReapReport = field(default_factory=ReapReport)

    @classmethod
    def from_fields(cls, f: dict[str, str]) -> ReaperPass | None:
        """From the stored form (a Redis hash, a file-store row as strings); None when empty."""
        by = ReaperId.from_fields(f)
        if by is None:
            return None
        return cls(
            by=by,
            at_ms=int(f.get("at_ms") or 0),
            passes=int(f.get("passes") or 0),
            reaped_by=ReaperId.from_fields(f, "reaped_"),
            reaped_ms=int(f.get("reaped_ms") or 0),
            reaped=ReapReport(
                requeued=_ids(f.get("requeued")),
                orphaned=_ids(f.get("orphaned")),
                dead=_ids(f.get("dead")),
                promoted=_ids(f.get("promoted")),
                locks_expired=int(f.get("locks_expired") or 0),
            ),
        )


@dataclass(frozen=True)
class ReaperStatus:
    """Whether recovery is running on a board: the reaper heartbeat and the live claims,
    read at ``now_ms`` on the store's clock."""

    now_ms: int
    live_claims: int
    next_deadline_ms: int | None  # the soonest lease deadline (in the past: that lease is overdue)
    last: ReaperPass | None

    @property
    def age_ms(self) -> int | None:
        """How long ago the last pass ran (None: never)."""
        return None if self.last is None else max(0, self.now_ms - self.last.at_ms)

    @property
    def stale_after_ms(self) -> int:
        """No pass for longer than this means no reaper runs now (see constants)."""
        interval = self.last.by.interval_ms if self.last is not None else 0
        return max(C.reaper_stale_intervals * interval, round(C.reaper_stale_min_s * 1000))

    @property
    def running(self) -> bool:
        """A reaper passed recently enough that one is taken to run now."""
        age = self.age_ms
        return age is not None and age <= self.stale_after_ms

    @property
    def overdue_ms(self) -> int:
        """How far past its deadline the most overdue live lease is (0: none is)."""
        if self.next_deadline_ms is None:
            return 0
        return max(0, self.now_ms - self.next_deadline_ms)

    def last_pass(self) -> str:
        """Who ran the last pass and when: "last pass 3.0 s ago by tui@host pid 42"."""
        if self.last is None or self.age_ms is None:
            return "no reaper has run on this board"
        return f"last pass {ms_text(self.age_ms)} ago by {self.last.by.name}"

    def to_json(self) -> dict[str, Any]:
        last = self.last
        out: dict[str, Any] = {
            "running": self.running,
            "live_claims": self.live_claims,
            "overdue_ms": self.overdue_ms,
            "last_pass": None,
        }
        if last is not None:
            out["last_pass"] = {
                "by": last.by.name,
                "kind": last.by.kind,
                "host": last.by.host,
                "pid": last.by.pid,
                "interval_ms": last.by.interval_ms,
                "age_ms": self.age_ms,
                "passes": last.passes,
                "last_recovery": None
                if last.reaped_by is None
                else {
                    "by": last.reaped_by.name,
                    "age_ms": max(0, self.now_ms - last.reaped_ms),
                    **last.reaped.to_json(),
                },
            }
        return out


def checked_interval(interval_s: float) -> float:
    """A reaper interval in seconds, or ``BadInput`` (the one rule: ``validate.interval_s``)."""
    if isinstance(interval_s, bool):
        raise BadInput(f"reaper interval must be a number of seconds, got {interval_s!r}")
    return validate.interval_s(interval_s)


HOSTS = "the control room, claim --wait, reap --loop"
START_ONE = "keep the control room open, or run `claimroom reap --loop` beside your agents"


def recovery_line(status: ReaperStatus) -> str:
    """What ``claimroom up`` says about how recovery is provided on a board."""
    head = (
        "recovery: expired leases are recovered inside every claim, and by whichever long-lived "
        f"claimroom process leads the reaper ({HOSTS})"
    )
    if status.running:
        return f"{head}; {status.last_pass()}"
    if status.last is None:
        return f"{head}; no reaper has run: {START_ONE}"
    return f"{head}; none runs now ({status.last_pass()}): {START_ONE}"


class Reaper:
    """Leader-elected reaping for one long-lived process, until stopped.

    ``async with store.reaping("mcp"): ...`` runs it beside the body; ``start``/``stop``
    do the same for a host with its own lifecycle (the control room). ``report`` gets one
    line when passes start failing and one when they work again.
    """

    def __init__(
        self,
        store: Reapable,
        kind: str,
        *,
        interval_s: float = C.reap_interval_s,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.interval_s = checked_interval(interval_s)
        self.me = ReaperId.here(kind, self.interval_s).checked()
        self.report = report
        # The lease holder: unique per reaper, so two in one process never share a lease.
        self.holder = f"{self.me.kind}@{self.me.host}:{self.me.pid}:{random.getrandbits(48):012x}"
        self.leading = False
        self.passes = 0  # passes this reaper ran as leader
        self.failures = 0  # passes in a row that failed
        self.last_error = ""
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Reap while leader until ``stop`` is set (or the task is cancelled), then hand over."""
        stop = self._stop if stop is None else stop
        backoff = C.reaper_backoff_first_s
        try:
            while not stop.is_set():
                try:
                    more = await self._pass()
                except Exception as exc:  # never the host's end: say why once, back off, retry
                    self._failed(exc)
                    pause, backoff = backoff, min(C.reaper_backoff_max_s, backoff * 2)
                else:
                    if self.failures:
                        self._say(f"reaper: the store answers again after {self.failures} failed passes")
                    self.failures, self.last_error, backoff = 0, "", C.reaper_backoff_first_s
                    # A capped batch left work behind (rule 10): the next pass at once.
                    pause = 0.0 if more else self.interval_s
                if pause == 0:
                    await asyncio.sleep(0)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
        finally:
            await self._hand_over()

    async def _pass(self) -> bool:
        """Lead and reap once; whether a capped batch left work for another pass at once."""
        self.leading = await self.store._lead(self.holder, C.reaper_lease_ms)
        if not self.leading:
            return False
        report = await self.store.reap(by=self.me)
        self.passes += 1
        expired = len(report.requeued) + len(report.orphaned) + len(report.dead)
        return expired >= C.reap_batch or len(report.promoted) >= C.reap_batch or report.retention_more

    def _failed(self, exc: Exception) -> None:
        why = str(exc) if isinstance(exc, ClaimroomError) else f"{type(exc).__name__}: {exc}"
        self.failures += 1
        if why != self.last_error:
            self._say(f"reaper: a pass failed ({why}); retrying with backoff")
        self.last_error = why

    def _say(self, line: str) -> None:
        if self.report is not None:
            with contextlib.suppress(Exception):  # a broken reporter must not stop the reaping
                self.report(line)

    async def _hand_over(self) -> None:
        # A lease of 0 lets ours go: the next process leads at its next look instead of
        # after the full lease (a no-op when another process leads).
        if self.leading:
            self.leading = False
            with contextlib.suppress(Exception):
                await self.store._lead(self.holder, 0)

    def start(self) -> Reaper:
        """Run in a background task of the running loop."""
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self.run(self._stop), name=f"claimroom-reaper-{self.me.kind}")
        return self

    async def stop(self) -> None:
        """Stop and hand leadership over; returns once done."""
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            # gather: a reaper task cancelled from outside is simply over, while a cancel
            # of the caller itself still comes through.
            await asyncio.gather(task, return_exceptions=True)

    async def __aenter__(self) -> Reaper:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
