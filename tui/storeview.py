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

from claimroom.core import constants as C
from claimroom.core.infra import HealthStatus, Resolution
from claimroom.core.safetext import shown
from claimroom.core.topology import REPLICA, SENTINEL, Node, Topology, slot_ranges

from .infra import LOG_LINES, InfraFacts, uptime_s
from .tables import Palette, age

HISTORY_RUNS = 6  # runs of one state shown in the health history, newest first
_LINK_OK = ("ok", "up", "online", "connected")  # a replica's or cluster node's link, as reported
TOPOLOGY_ROWS = 48  # nodes listed in the topology box (a big cluster's rest is counted)


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


# --- the topology: where the board is served (Store.topology) -------------------------------


def topology_title(t: Topology | None) -> str:
    if t is None or t.kind in ("single", "file"):
        return "topology" if t is None else f"topology: {t.kind}"
    if t.kind == "sentinel":
        return f"topology: sentinel {shown(t.service)}"
    return f"topology: cluster, this board in slot {t.slot}"


def _epoch(t: Topology, now_ms: int) -> str:
    if t.epoch is None:
        return "token epoch unknown"
    if t.epoch == 0:
        return "no token epoch yet"
    said = f"token epoch {t.epoch}"
    if t.epoch_since_ms:
        said += f" since {age(now_ms - t.epoch_since_ms)} ago"
    if t.epoch_current is False:
        said += f" (the next claim begins {t.epoch + 1})"
    return said


def _node_detail(n: Node, t: Topology, pal: Palette) -> Text:
    bits: list[tuple[str, Style | str]] = []
    if n.slots:
        bits.append((f"slots {slot_ranges(n.slots)}", ""))
    if n.role == REPLICA:
        if n.master and (t.kind == "cluster" or n.master != t.master):
            bits.append((f"of {n.master}", ""))
        if n.link:
            bits.append((f"link {n.link}", "" if n.link in _LINK_OK else pal.warning))
        if n.lag_s is not None:
            bits.append((f"lag {n.lag_s}s", ""))
    if n.role == SENTINEL:
        if n.link and n.link != "answers":
            bits.append((n.link, pal.warning))
        if n.names_master:
            same = n.names_master == t.master
            bits.append((f"names {n.names_master}", "" if same else pal.warning))
    if n.flags:
        bits.append((",".join(n.flags), pal.warning))
    if n.note:
        bits.append((n.note, pal.muted))
    if n.serves_board:
        bits.append(("◀ this board", pal.accent))
    out = Text()
    for i, (said, style) in enumerate(bits):
        out.append(("  " if i else "") + shown(said), style=style)
    return out


def topology_view(
    t: Topology | None, error: str, read_at_s: float | None, now_s: float, now_ms: int, pal: Palette
) -> RenderableType:
    """The servers holding the board, the board's master marked; an error above the last read."""
    parts: list[RenderableType] = []
    if error:
        stale = ""
        if t is not None and read_at_s is not None:
            stale = f" (below: as read {age(int((now_s - read_at_s) * 1000))} ago)"
        parts.append(plain(error + stale, pal.error))
    if t is None:
        if not error:
            parts.append(Text("reading…", style=pal.muted))
        return Group(*parts)
    if t.kind == "file":
        parts.append(Text("file store: one machine, no replicas, no failover", style=pal.muted))
        return Group(*parts)
    head = Text("master ")
    head.append(shown(t.master or "unknown"), style=Style(bold=True) if t.master else pal.error)
    if t.kind == "sentinel" and t.quorum is not None:
        head.append(f" · quorum {t.quorum}")
    if t.kind == "cluster":
        state = t.cluster_state or "?"
        head.append(" · state ")
        head.append(state, style=pal.success if state == "ok" else pal.error)
        if t.slots_ok is not None:
            head.append(f" · {t.slots_ok}/{C.cluster_slots} slots")
    head.append(" · " + _epoch(t, now_ms))
    parts.append(head)
    rows = Table.grid(padding=(0, 2))
    rows.add_column(no_wrap=True)
    rows.add_column(no_wrap=True)
    rows.add_column(no_wrap=True)
    rows.add_column(overflow="fold")
    for n in t.nodes[:TOPOLOGY_ROWS]:
        up = Text("up", style=pal.success) if n.up else Text("down", style=pal.error)
        rows.add_row(n.role, plain(n.address), up, _node_detail(n, t, pal))
    parts.append(rows)
    if len(t.nodes) > TOPOLOGY_ROWS:
        parts.append(Text(f"… and {len(t.nodes) - TOPOLOGY_ROWS} more nodes", style=pal.muted))
    parts += [plain(p, pal.warning) for p in t.problems]
    return Group(*parts)
