"""A small, realistic board for screenshots and snapshot tests, built through the Store API.

``seed`` makes the board the way agents would (register, add, claim, heartbeat, fail,
complete, lock, and operator actions). ``seed_pinned`` builds it on a scratch file board,
exports it, has ``pin_times`` rewrite every timestamp of the dump relative to a fixed
instant ``PINNED_NOW_MS``, and imports it where it is wanted (``Store.export_board`` and
``import_board``, as ``claimroom migrate`` moves boards), so a control room whose clock is
frozen at that instant renders the same pixels on every run, on either backend: lease
countdowns, heartbeat ages and event ages all come out identical.

Part of the product, not of the tests: ``python -m claimroom.tui.screenshots`` makes the
README's pictures with it from an installed copy, and it reaches nothing past the Store API.
"""

from __future__ import annotations

import asyncio
import copy
import json
import tempfile
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from claimroom.core.dump import Board, in_auction
from claimroom.core.infra import HealthStatus
from claimroom.core.models import State
from claimroom.core.store import Plan, Store, TaskSpec
from claimroom.core.topology import MASTER, Node, Topology

if TYPE_CHECKING:
    from .app import ControlRoom

# 2100-01-01T00:00:00Z: far enough ahead that pinned deadlines and backoffs never fall due
# on the real store clock, so nothing moves while a picture is taken.
PINNED_NOW_MS = 4_102_444_800_000
PINNED_NOW_S = PINNED_NOW_MS / 1000


def pinned_clock() -> float:
    """The frozen clock to give the app: always ``PINNED_NOW_MS``."""
    return PINNED_NOW_S


AGENTS = [
    ("ada", ["db", "python"], 3),
    ("grace", ["python"], 2),
    ("linus", ["db", "python"], 2),
    ("hopper", ["python"], 1),
    ("turing", ["python", "docs"], 1),
]
# Agents that are Claude Code sessions (registered by its SessionStart hook), by session id.
SESSIONS = {"ada": "3f2b8c1e-5d4a-4e7b-9c61-0a8f2d7e4b13", "grace": "a71d09e4-2c6b-4f38-8e15-6b9d3a0c5f72"}

# (title, queue, priority, agent that claims it or "", what happens after the claim)
PLAN: list[tuple[str, str, int, str, str]] = [
    ("design the schema", "backend", 5, "ada", "complete"),
    ("write the migration", "backend", 4, "ada", "hold"),
    ("build the API endpoints", "backend", 3, "grace", "hold"),
    ("fix the flaky CI job", "infra", 3, "linus", "hold"),
    ("index the audit table", "backend", 2, "ada", "hold"),
    ("port the CLI to click", "backend", 2, "grace", "orphan"),
    ("upgrade the base image", "infra", 2, "linus", "dead"),
    ("rotate the staging keys", "infra", 1, "hopper", "complete"),
    ("tune the query planner", "backend", 1, "grace", "review"),
    ("proofread the README", "docs", 0, "turing", "review"),
    # Last: its backoff must not end (and the task be claimed) before the board is pinned.
    ("profile the claim script", "infra", 1, "linus", "retry"),
]
WAITING = [
    ("write API tests", "backend", 2),
    ("document the lock API", "docs", 1),
    ("write the upgrade guide", "docs", 0),
    ("tidy the changelog", "docs", 0),
    ("add a Grafana board", "infra", 0),
]

# Delivered for review, by title: (the reference, how long it has waited in review, ms).
REVIEWED = {"tune the query planner": ("pr/118", 5_400_000),
            "proofread the README": ("docs/readme@4e1c2d9", 240_000)}  # fmt: skip

# Per claim still held at the end, in claim order: (lease left ms, heartbeat age ms, progress, stage).
HELD = [
    (7_000, 26_000, 0.3, "running tests"),
    (24_000, 9_000, 0.55, "writing handlers"),
    (48_000, 3_000, 0.8, "bisecting"),
    (185_000, 2_000, 0.1, "reading code"),
    (96_000, 4_000, 0.4, "tokenizing"),  # the plan's subtask (SEARCH)
]

# A plan mid-way (the plans pane): its parent, then (title, priority, after: indexes of
# earlier subtasks, fate). The first is done, the second claimed (HELD's last), the rest wait:
# the critical path runs index -> query API -> search page.
SEARCH_PLAN = ("add full-text search", "search")
SEARCH: list[tuple[str, int, list[int], str]] = [
    ("design the search index", 3, [], "done"),
    ("write the indexer", 3, [0], "claimed"),
    ("add the query API", 2, [1], ""),
    ("build the search page", 1, [2], ""),
    ("document the search syntax", 0, [0], ""),
]
# An open bidding window (the claims pane's auctions): its task, and the bids placed on it
# as (agent, cost, how long ago, ms); it closes AUCTION_CLOSES_MS after the pinned instant.
AUCTION = ("benchmark the new cache", "infra")
BIDS = [("linus", 12.5, 20_000), ("grace", 30.0, 14_000), ("turing", 45.0, 6_000)]
AUCTION_CLOSES_MS = 75_000
# Tasks with an affinity key, waiting for the key's owner on the hash ring (agents pane: owns);
# the ring is the agents' names hashed (core/affinity.py), so the owners never change.
AFFINE = [("refactor the lock table", "backend", "src/db/"), ("speed up lock lookups", "backend", "src/db/")]
STEAL_IN_MS = 25_000  # how long the owner still has them to itself, after the pinned instant
# Messages (agents pane: unread): (sender, recipient, text, read by then).
MESSAGES = [
    ("ada", "linus", "the CI job flakes on the db tests too; the fixture leaks a port", True),
    ("grace", "linus", "I need t4 done before I can merge the endpoints", False),
    ("ada", "linus", "pushed a fix for the port leak: rebase before you bisect", False),
]


async def seed(store: Store) -> None:
    """Build the demo board on an empty namespace."""
    for name, caps, max_claims in AGENTS:
        await store.register(name, caps, max_claims, session=SESSIONS.get(name, ""))
    held = iter(HELD)
    for title, queue, priority, agent, fate in PLAN:
        await store.add(title, queue=queue, priority=priority, requires=["db"] if agent in ("ada",) else [])
        claim = await store.claim(agent, queues=[queue])
        assert claim is not None, f"seed: {agent} could not claim {title!r}"
        tid, token = claim.task.id, claim.token
        if fate == "complete":
            await store.complete(tid, token, {"by": agent})
        elif fate == "hold":
            _left, _age, progress, stage = next(held)
            await store.heartbeat(tid, token, progress=progress, stage=stage)
        elif fate == "orphan":
            # Late-stage work whose agent went silent: the lease runs out and the reaper orphans it.
            await store.heartbeat(tid, token, progress=0.7, stage="refactoring", ttl_s=0.001)
            await asyncio.sleep(0.02)
            await store.reap()
        elif fate == "review":
            await store.complete(tid, token, review=REVIEWED[title][0])
        elif fate == "dead":
            await store.fail(tid, token, "base image build failed: no space left", fatal=True)
        elif fate == "retry":
            await store.fail(tid, token, "benchmark timed out")
    first = await store.add_many([TaskSpec(t, queue=q, priority=p) for t, q, p in WAITING])
    await store.add("ship the release", queue="backend", after=[first[0]])  # blocked
    await _strategies(store)
    await store.lock(["src/db/schema.py", "migrations"], "ada", task="t2")
    await store.lock(["docs"], "turing", shared=True)
    await store.lock(["docs"], "grace", shared=True)
    await store.pause("docs", "lead")
    await store.extend("t4", await _token(store, "t4"), 60, "lead")


async def _strategies(store: Store) -> None:
    """The plan, the auction, the affine tasks and the messages (issue 15's strategies)."""
    title, queue = SEARCH_PLAN
    subs = [TaskSpec(t, queue=queue, priority=p, after=[f"${i}" for i in after]) for t, p, after, _ in SEARCH]
    ids = await store.plan(Plan(subs, parent=TaskSpec(title, queue=queue)))
    for tid, (_t, _p, _a, fate) in zip(ids[1:], SEARCH, strict=True):
        if fate:
            claim = await store.claim("ada" if fate == "done" else "grace", queues=[queue])
            assert claim is not None and claim.task.id == tid, f"seed: could not claim {tid}"
            if fate == "done":
                await store.complete(tid, claim.token)
            else:
                _left, _age, progress, stage = HELD[-1]
                await store.heartbeat(tid, claim.token, progress=progress, stage=stage)
    task = await store.add(AUCTION[0], queue=AUCTION[1], bid_window_s=3600)  # pinned at the export
    for agent, cost, _ago in BIDS:
        await store.bid(task, agent, cost)
    for title, queue, key in AFFINE:
        await store.add(title, queue=queue, affinity=key, steal_after_s=3600)
    for sender, to, text, read in MESSAGES:
        await store.send(sender, to, text)
        if read:
            await store.inbox(to)  # marks it read


async def _token(store: Store, task: str) -> int:
    return (await store.get(task)).token


def pin_times(board: Board, now_ms: int = PINNED_NOW_MS) -> Board:
    """The dump with every timestamp rewritten relative to ``now_ms`` (see the module note)."""
    out = copy.deepcopy(board)
    claimed = [t["id"] for t in out["tasks"] if t["state"] == State.CLAIMED]  # creation order
    held = dict(zip(claimed, HELD, strict=False))
    for t in out["tasks"]:
        seq = int(t["seq"])
        fields = {"created_ms": now_ms - 900_000 + seq * 20_000, "updated_ms": now_ms - 120_000 + seq * 1_000}
        if t["state"] == State.CLAIMED:
            lease_left, hb_age, _p, _s = held.get(t["id"], (60_000, 5_000, 0, ""))
            fields |= {"claimed_ms": now_ms - 200_000, "deadline_ms": now_ms + lease_left,
                       "updated_ms": now_ms - hb_age}  # fmt: skip
        elif t["state"] == State.ORPHANED:
            fields["updated_ms"] = now_ms - 95_000
        elif t["state"] == State.DEAD:
            fields["updated_ms"] = now_ms - 240_000
        elif t["state"] == State.RETRYING:
            fields |= {"updated_ms": now_ms - 20_000, "ready_ms": now_ms + 40_000}
        elif t["state"] == State.REVIEW:
            waited = REVIEWED[t["title"]][1]
            fields |= {"updated_ms": now_ms - waited, "review_ms": now_ms - waited}
        elif in_auction(t):
            fields["bid_close_ms"] = now_ms + AUCTION_CLOSES_MS
        if int(t.get("steal_ms") or 0):
            fields["steal_ms"] = now_ms + STEAL_IN_MS
        t.update((k, str(v)) for k, v in fields.items())
    order = [name for name, _caps, _n in AGENTS]
    for a in out["agents"]:
        i = order.index(a["name"])
        pinned = {"registered_ms": now_ms - 3_600_000, "last_seen_ms": now_ms - (2_000 + i * 37_000)}
        if a["name"] == "hopper":
            pinned |= {"consecutive_failures": 5, "breaker_open_until_ms": now_ms + 42_000}
        if a["name"] == "turing":
            pinned["last_seen_ms"] = now_ms - 420_000
        a.update((k, str(v)) for k, v in pinned.items())
    for i, lock in enumerate(sorted(out["locks"], key=lambda lk: lk["path"])):
        for h in lock["holds"]:
            h["expires_ms"] = str(now_ms + 240_000 - i * 100_000)
    ago = {agent: ms for agent, _cost, ms in BIDS}
    for b in out.get("bids", []):
        b["at_ms"] = str(now_ms - ago[b["agent"]])
    for i, m in enumerate(out.get("messages", [])):
        m["at_ms"] = str(now_ms - 600_000 + i * 90_000)
    events = out["events"]
    for i, e in enumerate(events):
        at = now_ms - (len(events) - i) * 4_000
        e["at_ms"] = str(at)
        if e.get("data"):
            # Deadlines and backoffs inside the data carry real store times (and jitter).
            data = json.loads(e["data"])
            for k, v in data.items():
                if k.endswith("_ms") and isinstance(v, int) and v > 10**12:
                    data[k] = at + 30_000
            e["data"] = json.dumps(data, sort_keys=True)
    return out


SHOWN_URL = "redis://127.0.0.1:6379/0"
HEALTH_EVERY_S = 2.0  # the health history's spacing (the monitor's default interval)
PINGS_MS = (0.35, 0.42, 0.51, 0.38, 0.44, 0.61, 0.41, 0.39, 0.45, 0.4)
SERVER_FACTS = {"redis_version": "7.0.15", "redis_mode": "standalone", "role": "master",
                "uptime_in_seconds": "3600", "connected_clients": "3", "used_memory_human": "1.20M",
                "maxmemory_policy": "noeviction", "aof_enabled": "0"}  # fmt: skip


def pinned_topology(shown_url: str = SHOWN_URL) -> Topology:
    """One server, the board's, in its first token epoch since an hour before the pinned instant."""
    where = shown_url.split("://", 1)[-1].split("/", 1)[0]
    master = Node(MASTER, where, True, offset=123_456, serves_board=True)
    return Topology("single", where, epoch=1, epoch_since_ms=PINNED_NOW_MS - 3_600_000, epoch_current=True,
                    nodes=(master,))  # fmt: skip


def pinned_health(url: str = SHOWN_URL) -> tuple[HealthStatus, ...]:
    """A health history of a steady store, ending at ``PINNED_NOW_S`` (one status per ping)."""
    return tuple(
        HealthStatus(
            url=url,
            state="up",
            at=PINNED_NOW_S - (len(PINGS_MS) - 1 - i) * HEALTH_EVERY_S,
            latency_ms=ms,
            used_memory_bytes=1_258_291,
            clients=3,
            persistence="none",
            version=SERVER_FACTS["redis_version"],
            uptime_s=3600,
        )
        for i, ms in enumerate(PINGS_MS)
    )


class _FixedPings(deque[float]):
    """A ping history that ignores new pings, so the store pane's sparkline stays put."""

    def append(self, x: float) -> None:
        pass


def pin_app(app: ControlRoom, shown_url: str = SHOWN_URL) -> ControlRoom:
    """Make what a pinned board's app shows independent of the run, beyond the board itself.

    The store URL (a private server's port is random), the ping (a real round trip), the
    server facts (uptime, memory, clients), the topology and the health history would differ each run;
    pictures and snapshot tests show fixed values instead (and run no health monitor).
    Display only: the store's client is already built.
    """

    async def ping() -> float:
        return PINGS_MS[1]

    async def server_info() -> dict[str, str]:
        return dict(SERVER_FACTS)

    async def topology() -> Topology:
        return pinned_topology(shown_url)

    app.store.url = shown_url
    app.store.ping = ping  # type: ignore[method-assign]  # the pinned stand-in is the point
    app.board.pings = _FixedPings(PINGS_MS)
    app.board.server_info = server_info  # type: ignore[method-assign]  # as above
    app.board.topology = topology  # type: ignore[method-assign]  # as above
    app.health_pin = pinned_health(shown_url)
    app.reaps = False  # the board's deadlines are pinned in the past: a reaper would expire every claim
    return app


async def seed_pinned(url: str, namespace: str) -> None:
    """Seed a board, pin its times and import it into ``namespace`` at ``url`` (empty);
    for sync callers: tests, the screenshot script."""
    with tempfile.TemporaryDirectory(prefix="claimroom-seed-") as scratch:
        async with Store.from_url(Path(scratch).as_uri(), namespace) as built:
            await seed(built)
            board = await built.export_board()
    async with Store.from_url(url, namespace) as store:
        await store.import_board(pin_times(board))
