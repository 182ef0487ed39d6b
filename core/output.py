"""How the CLI prints: plain lines for people, one JSON object with ``--json``.

Every text that came from the store is printed through ``safetext.shown``: a title or a
reason that reached the store some other way (by hand, an older claimroom, a migrated
board) must not drive the operator's terminal. ``--json`` is safe as it is: ``json.dumps``
escapes every character outside ASCII (``ensure_ascii``, its default; never turn it off
here), control characters included.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from .errors import ClaimroomError
from .identity import TokenInfo
from .models import Agent, Claim, Event, ReapReport, Task
from .safetext import shown

if TYPE_CHECKING:
    from .infra import Check


def _ago(ms: int, now_ms: int) -> str:
    if not ms:
        return "-"
    s = (now_ms - ms) / 1000
    return f"{s:.0f}s ago" if s >= 0 else f"in {-s:.0f}s"


def _detail(key: str, value: Any, at_ms: int) -> str:
    """One event detail for people: store times shown relative to the event."""
    if key.endswith("_ms") and isinstance(value, int | float) and value > 1e12:
        return f"{shown(key[:-3])}=+{(value - at_ms) / 1000:.1f}s"
    if isinstance(value, list):
        return f"{shown(key)}={shown(','.join(map(str, value)))}"
    return f"{shown(key)}={shown(str(value))}"


def claim_text(c: Claim) -> str:
    """A claim as the CLI prints it: id, token, lease, title."""
    return f"{shown(c.task.id)} token={c.token} lease={c.task.ttl_ms / 1000:g}s  {shown(c.task.title)}"


class Printer:
    """Writes command results to stdout and errors to stderr."""

    def __init__(self, json_mode: bool = False, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def _json(self, obj: Any) -> None:
        self.out.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.out.flush()

    def _line(self, text: str) -> None:
        # The fields are escaped where a line is built (one-line fields lose their
        # newlines there too); this is the net for any text that was not.
        self.out.write(shown(text, multiline=True) + "\n")
        self.out.flush()

    def done(self, obj: dict[str, Any], text: str) -> None:
        self._json(obj) if self.json_mode else self._line(text)

    def error(self, exc: ClaimroomError) -> None:
        message = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        if self.json_mode:
            self._json({"error": message, "exit_code": exc.exit_code, "kind": exc.__class__.__name__})
        # A message may name what the store holds (a lock's holder, a path).
        self.err.write(f"claimroom: {shown(message)}\n")
        self.err.flush()

    def claim(self, c: Claim) -> None:
        if self.json_mode:
            self._json(c.to_json())
            return
        self._line(claim_text(c))

    def task(self, t: Task) -> None:
        if self.json_mode:
            self._json(t.to_json())
            return
        now = int(time.time() * 1000)
        rows = [
            ("id", t.id),
            ("title", t.title),
            ("state", t.state.value),
            ("queue", t.queue),
            ("priority", str(t.priority)),
            ("requires", ", ".join(t.requires) or "-"),
            ("after", ", ".join(t.after) or "-"),
            ("parent", t.parent or "-"),
            ("affinity", t.affinity or "-"),
            ("owner", _owner(t, now)),
            ("paths", ", ".join(t.paths) or "-"),  # informational: what it will touch
            ("agent", t.agent or "-"),
            ("token", str(t.token or "-")),
            ("lease ends", _ago(t.deadline_ms, now) if t.state.value == "claimed" else "-"),
            ("review", f"{t.review_ref}, delivered by {t.agent}" if t.review_ref else "-"),
            ("progress", f"{t.progress:.0%}"),
            ("stage", t.stage or "-"),
            ("attempts", f"{t.attempts} claimed, {t.failures}/{t.max_attempts} failed, {t.expiries} expired"),
            ("reason", t.reason or "-"),
            ("payload", "-" if t.payload is None else json.dumps(t.payload)[:200]),
            ("result", "-" if t.result is None else json.dumps(t.result)[:200]),
        ]
        if t.plan_total:  # a plan's parent (core/plan.py)
            rows.append(("subtasks", f"{t.plan_total - t.plan_left} of {t.plan_total} ended"))
        for k, v in rows:
            self._line(f"{k:<11} {shown(v)}")

    def tasks(self, tasks: list[Task]) -> None:
        if self.json_mode:
            self._json({"tasks": [t.to_json() for t in tasks]})
            return
        for t in tasks:
            holder = f" {shown(t.agent)}#{t.token}" if t.state.value == "claimed" else ""
            self._line(
                f"{shown(t.id):<8} {t.state.value:<9} {shown(t.queue):<10} p{t.priority:<4}{holder}  "
                f"{shown(t.title)}"
            )

    def agents(self, agents: list[Agent]) -> None:
        if self.json_mode:
            self._json({"agents": [a.to_json() for a in agents]})
            return
        now = int(time.time() * 1000)
        for a in agents:
            breaker = "open" if a.breaker_open_until_ms > now else "closed"
            caps = shown(",".join(a.capabilities)) or "-"
            self._line(
                f"{shown(a.name):<16} claims {len(a.held)}/{a.max_claims}  "
                f"seen {_ago(a.last_seen_ms, now):<9} "
                f"breaker {breaker:<6} can {caps}"
                + (f"  session {shown(a.session)}" if a.session else "")
                + (f"  owns {a.owned} waiting" if a.owned else "")
            )

    def tokens(self, tokens: list[TokenInfo]) -> None:
        """Who holds a token and of which role; never a token (the board has none)."""
        if self.json_mode:
            self._json({"tokens": [t.to_json() for t in tokens]})
            return
        now = int(time.time() * 1000)
        for t in tokens:
            created = _ago(t.created_ms, now)
            self._line(f"{shown(t.agent):<16} {t.role.value:<9} {shown(t.hint)}...  created {created}")

    def event(self, e: Event) -> None:
        if self.json_mode:
            self._json(e.to_json())
            return
        stamp = time.strftime("%H:%M:%S", time.localtime(e.at_ms / 1000)) + f".{e.at_ms % 1000:03d}"
        who = f" {shown(e.agent)}" if e.agent else ""
        tok = f"#{e.token}" if e.token else ""
        by = f" by {shown(e.operator)}" if e.operator else ""
        extra = " ".join(_detail(k, v, e.at_ms) for k, v in e.data.items() if v not in ("", [], {}, None, 0))
        self._line(f"{stamp} {shown(e.type):<14} {shown(e.task):<8}{who}{tok}{by} {extra}".rstrip())

    def events(self, events: list[Event]) -> None:
        # The audit trail is a stream: with --json it is JSON lines, one event each.
        for e in events:
            self.event(e)

    def checks(self, checks: list[Check]) -> None:
        if self.json_mode:
            self._json(
                {"checks": [c.to_json() for c in checks], "ok": all(c.status != "fail" for c in checks)}
            )
            return
        mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
        for c in checks:
            self._line(f"{mark.get(c.status, c.status)}  {c.name:<14} {c.detail}")
            if c.fix:
                self._line(f"      {'':<14} -> {c.fix}")

    def reap(self, r: ReapReport) -> None:
        if self.json_mode:
            self._json(r.to_json())
            return
        self._line(
            f"requeued {len(r.requeued)}, orphaned {len(r.orphaned)}, dead {len(r.dead)}, "
            f"retry-ready {len(r.promoted)}, lock holds expired {r.locks_expired}"
        )
        if r.removed or r.agents_removed or r.events_trimmed:
            self._line(
                f"retention: removed {r.removed} finished tasks and {r.agents_removed} idle agents, "
                f"trimmed {r.events_trimmed} audit events" + (" (more to do)" if r.retention_more else "")
            )


def _owner(t: Task, now: int) -> str:
    """A task's affinity owner, and whether others may claim it yet."""
    if not t.owner:
        return "-"
    if t.state.value == "queued" and t.steal_ms > now:
        return f"{t.owner} (alone, others may claim {_ago(t.steal_ms, now)})"
    return t.owner
