"""What a view of a board shows, read in one go: ``Store.snapshot`` returns it.

Each backend reads it its own cheapest way (Redis: a few pipelined round trips in
``redis/snapshot.py``; the file store: one read transaction counting with ``GROUP BY`` in
``file/snapshot.py``), so a refresh costs about the same whatever the size of the board.
The counts are exact; the rows are capped (``rows``), picked by urgency, so a pane can say
"200 of 12 034".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .bidding import Auction
from .models import Agent, Event, Lock, ServerInfo, State, Stuck, Task

# The sections a snapshot may read beyond the counts, queues, totals and servers every
# snapshot has. A view asks only for what its pane shows (the others stay empty).
SECTIONS = frozenset({"claims", "orphans", "agents", "locks", "events", "auctions", "review", "plans"})
MAX_ROWS = 10_000  # rows (and events) one snapshot reads at most per section


@dataclass(frozen=True)
class QueueRow:
    """One queue: how much is waiting to be claimed, how much is claimed, whether it is paused."""

    name: str
    ready: int  # claimable: queued and not assigned to one agent
    claimed: int  # exact when the snapshot says ``queue_claims_exact``, else among the claims read
    paused: bool
    review: int = 0  # delivered, waiting for a reviewer: as exact as ``claimed``


@dataclass(frozen=True)
class PlanTree:
    """One unfinished plan (core/plan.py) as the plans pane shows it: its parent and its
    first ``snapshot_plan_subtasks`` subtasks in creation order (``parent.plan_total`` says
    how many there are)."""

    parent: Task
    subtasks: tuple[Task, ...]


@dataclass(frozen=True)
class Snapshot:
    """A board as read at one moment: everything a pane of the control room renders.

    ``read_ms``, ``ping_ms``, ``stuck`` and ``unread`` are a view's own additions (``tui/board.py``:
    its clock, its ping, its walk over blocked tasks); a store leaves them at their defaults.
    """

    store_ms: int  # the store's clock at the read
    counts: dict[State, int]  # tasks per state, exact
    queues: tuple[QueueRow, ...]  # by name
    claims: tuple[Task, ...]  # soonest deadline first
    orphans: tuple[Task, ...]  # orphaned (newest first), then dead (newest first)
    agents: tuple[Agent, ...]  # by name
    agents_total: int
    locks: tuple[Lock, ...]  # live locks by path
    locks_total: int  # locked paths (Redis: until the reaper drops an expired one)
    events: tuple[Event, ...]  # the newest, oldest first
    servers: tuple[ServerInfo, ...]  # the MCP servers on the board (claimroom serve), by id
    sections: frozenset[str]  # the sections read; the others are empty
    # The file store counts the claims of every queue; Redis counts them among the claims
    # read (no per-queue index of claims: counting them would read every claimed task).
    queue_claims_exact: bool
    read_ms: int = 0  # the view's clock at the read
    ping_ms: float = 0.0
    stuck: tuple[Stuck, ...] = ()  # blocked on a dependency that can never finish, oldest first
    unread: dict[str, int] = field(default_factory=dict)  # agent -> unread messages (of the agents read)
    # Open bidding windows closing first, with their bids (at most auctions_view_max).
    auctions: tuple[Auction, ...] = ()
    reviews: tuple[Task, ...] = ()  # in review, longest waiting first (section "review")
    # The newest unfinished plans (at most snapshot_plans), newest first: section "plans".
    plans: tuple[PlanTree, ...] = ()

    @property
    def claims_total(self) -> int:
        return self.counts.get(State.CLAIMED, 0)

    @property
    def orphans_total(self) -> int:
        return self.counts.get(State.ORPHANED, 0) + self.counts.get(State.DEAD, 0)

    @property
    def review_total(self) -> int:
        return self.counts.get(State.REVIEW, 0)

    @property
    def claimed_capped(self) -> bool:
        """Whether the queues' claimed counts are lower bounds: counted among the claims
        read, which the row limit cut short."""
        return not self.queue_claims_exact and self.claims_total > len(self.claims)

    def task(self, task_id: str) -> Task | None:
        """A task among the rows read (claims, orphans and reviews)."""
        for t in (*self.claims, *self.orphans, *self.reviews):
            if t.id == task_id:
                return t
        return None


def claimed_per_queue(claims: Iterable[Task]) -> dict[str, int]:
    """How many of ``claims`` each queue has."""
    busy: dict[str, int] = {}
    for t in claims:
        busy[t.queue] = busy.get(t.queue, 0) + 1
    return busy


def queue_rows(
    ready: Mapping[str, int],
    claimed: Mapping[str, int],
    paused: Iterable[str],
    review: Mapping[str, int] | None = None,
) -> tuple[QueueRow, ...]:
    """One row per queue with claimable, claimed or in-review tasks, or paused, by name."""
    stopped, waiting = set(paused), review or {}
    # (A queue with no ready task may still be in Redis's ready index: lib.lua claim_tasks.)
    every = sorted({q for q, n in ready.items() if n} | set(claimed) | stopped | set(waiting))
    return tuple(
        QueueRow(q, ready.get(q, 0), claimed.get(q, 0), q in stopped, waiting.get(q, 0)) for q in every
    )


def by_review_time(tasks: Iterable[Task], n: int) -> tuple[Task, ...]:
    """The ``n`` tasks in review that have waited longest (both backends order them so)."""
    return tuple(sorted(tasks, key=lambda t: (t.review_ms, t.seq))[:n])
