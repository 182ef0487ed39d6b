"""What the store pane draws: the link, the server, its health history, its container or process.

Pure functions of the model (no I/O), so the pane renders the same pixels for the same facts.
Ages are measured on the app's clock, which snapshot tests freeze.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.style import Style
from rich.table import Table
from rich.text import Text

from claimroom.core.infra import HealthStatus, Resolution
from claimroom.core.safetext import shown

from .infra import LOG_LINES, InfraFacts, uptime_s
from .tables import Palette, age

HISTORY_RUNS = 6  # runs of one state shown in the health history, newest first


def plain(value: object, style: Style | str = "") -> Text:
    """A value from the store, the server or a container as text: never markup, and every
    control character escaped (a container's log or an error message can carry ESC)."""
    return Text(shown(str(value)), style=style)


def grid() -> Table:
    t = Table.grid(padding=(0, 1))
    t.add_column(no_wrap=True)
    t.add_column(overflow="fold")
    return t


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**20:.1f} MiB"


def _secs(s: float) -> str:
    return age(int(s * 1000))


@dataclass(frozen=True)
class Run:
    """Consecutive statuses in one state: the health history, compressed."""

    state: str
    first: HealthStatus
    last: HealthStatus
    count: int
    latencies: tuple[float, ...]


def runs(history: Iterable[HealthStatus]) -> list[Run]:
    """Group the history into runs of one state, newest run first."""
    out: list[Run] = []
    for s in history:
        if out and out[-1].state == s.state:
            prev = out[-1]
            lat = (*prev.latencies, s.latency_ms) if s.latency_ms is not None else prev.latencies
            out[-1] = Run(s.state, prev.first, s, prev.count + 1, lat)
        else:
            out.append(Run(s.state, s, s, 1, (s.latency_ms,) if s.latency_ms is not None else ()))
    return out[::-1]


def _state_style(state: str, pal: Palette) -> Style | str:
    styles = {"up": pal.success, "file": pal.success, "down": pal.error, "restarting": pal.warning}
    return styles.get(state, "")


def health_view(history: Sequence[HealthStatus], now_s: float, pal: Palette) -> RenderableType:
    """The latest look at the store (latency, memory, clients, persistence, restarts) and its history."""
    if not history:
        return Text("no health check yet", style=pal.muted)
    s = history[-1]
    t = grid()
    t.add_row("state", Text(s.state, style=_state_style(s.state, pal)))
    if s.state == "file":
        t.add_row("board", plain(s.message))
    if s.latency_ms is not None:
        t.add_row("latency", f"{s.latency_ms:.2f} ms")
    if s.used_memory_bytes is not None:
        cap = f" of {_mib(s.maxmemory_bytes)}" if s.maxmemory_bytes else " (no cap)"
        t.add_row("memory", _mib(s.used_memory_bytes) + cap)
    if s.clients is not None:
        t.add_row("clients", str(s.clients))
    if s.persistence:
        wrote = {True: " · last write ok", False: " · last write FAILED", None: ""}[s.last_write_ok]
        t.add_row("persist", Text(s.persistence + wrote, style=pal.error if s.last_write_ok is False else ""))
    if s.uptime_s is not None:
        t.add_row("redis up", plain(f"{_secs(s.uptime_s)}" + (f" · {s.version}" if s.version else "")))
    t.add_row("restarts", Text(str(s.restarts), style=pal.warning if s.restarts else ""))
    if s.state == "down" and s.message:
        t.add_row("error", plain(s.message, pal.error))
    hist = Table.grid(padding=(0, 1))
    hist.add_column(justify="right", no_wrap=True)
    hist.add_column(no_wrap=True)
    hist.add_column(justify="right", no_wrap=True)
    hist.add_column(overflow="ellipsis", no_wrap=True)
    for r in runs(history)[:HISTORY_RUNS]:
        detail = Text()
        if r.latencies:
            lo, hi = min(r.latencies), max(r.latencies)
            detail.append(f"{lo:.2f} ms" if hi - lo < 0.005 else f"{lo:.2f}-{hi:.2f} ms")
        elif r.last.error:
            detail.append(shown(r.last.error), style=pal.muted)
        since = age(int((now_s - r.first.at) * 1000)) + " ago"
        hist.add_row(since, Text(r.state, style=_state_style(r.state, pal)), f"x{r.count}", detail)
    return Group(t, Text("history (since, state, checks), newest first", style="bold"), hist)


def server_view(info: dict[str, str], pal: Palette) -> RenderableType:
    t = grid()
    for k, v in info.items():
        t.add_row(plain(k.replace("_", " ")), plain(v))
    if not info:
        return Text("server facts not read yet", style=pal.muted)
    return t


def infra_title(facts: InfraFacts | None) -> str:
    if facts is None:
        return "infrastructure"
    return {"docker": "docker container", "local": "redis-server"}.get(facts.kind, "infrastructure")


def infra_view(
    facts: InfraFacts | None, latest: HealthStatus | None, busy: str, held_down: bool, last: str,
    now_s: float, pal: Palette,
) -> RenderableType:  # fmt: skip
    """The container or process claimroom runs the store in, or why there is none to steer."""
    if facts is None:
        return Text("reading…", style=pal.muted)
    t = grid()
    if not facts.managed:
        t.add_row("started by", "not by claimroom")
        t.add_row("controls", plain(facts.note, pal.muted))
        return t
    t.add_row("name", plain(facts.name + (f" (pid {facts.pid})" if facts.pid else "")))
    state = plain(facts.state, pal.success if facts.running else pal.error)
    if (up := uptime_s(facts, now_s)) is not None:
        state.append(f" · up {_secs(up)}")
    if busy:
        state.append(f" · {busy}…", style=pal.warning)
    t.add_row("state", state)
    if facts.image:
        t.add_row("image", plain(facts.image))
    t.add_row("volume" if facts.kind == "docker" else "data", plain(facts.where))
    restarts = f"{latest.restarts if latest else 0} by the health monitor"
    if facts.docker_restarts is not None:
        restarts += f" · {facts.docker_restarts} by Docker"
    t.add_row("restarts", restarts)
    if held_down:
        t.add_row("note", Text("stopped from here: not restarted until you start it", style=pal.warning))
    if last:
        t.add_row("last", plain(last))
    return t


def logs_view(facts: InfraFacts | None, pal: Palette) -> RenderableType:
    if facts is None or not facts.managed:
        return Text("no log: claimroom does not run this store", style=pal.muted)
    if not facts.logs:
        return Text("the log is empty", style=pal.muted)
    return Text("\n".join(shown(line) for line in facts.logs[-LOG_LINES:]))


def chosen_line(resolution: Resolution | None) -> Text | None:
    """Which store is in use and why, as the header and the store pane say it."""
    if resolution is None:
        return None
    return plain(f"{resolution.how}: {resolution.detail}")
