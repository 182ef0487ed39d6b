"""What a backend provides: the abstract operations the Store's public methods call.

Each ``_op`` gets values already checked (``validate``, in ``store.py`` and
``store_admin.py``), so a backend never sees a bad one; ``RedisStore`` runs a Lua script
or a pipelined read for each, ``FileStore`` one SQLite transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from .bidding import Auction, Bid, Outcome
from .dump import Board
from .errors import Forbidden, LeaseLost, NotFound
from .identity import TokenInfo
from .models import (
    Agent,
    Claim,
    ClaimMiss,
    Completion,
    Event,
    Lock,
    ReapReport,
    ServerInfo,
    State,
    Stuck,
    Task,
)
from .reaper import ReaperId, ReaperStatus
from .snapshot import Snapshot
from .topology import Topology


class StoreOps(ABC):
    """The backend's half of the Store contract (``Store`` is the callers' half)."""

    url: str
    namespace: str

    @abstractmethod
    async def _add(self, specs: list[dict[str, Any]], by: str) -> list[str]: ...

    @abstractmethod
    async def _known(self, ids: list[str], capsigs: list[str]) -> tuple[set[str], set[str], int]:
        """Which of ``ids`` are tasks, which of ``capsigs`` are in use, how many are in use."""

    @abstractmethod
    async def _claim(
        self, agent: str, queues: list[str], ttl_ms: int, count: int
    ) -> tuple[list[Claim], ClaimMiss]: ...
    @abstractmethod
    async def _claim_waiting(
        self, agent: str, queues: list[str], ttl_ms: int, count: int, wait_s: float
    ) -> tuple[list[Claim], ClaimMiss]: ...
    # ``agent`` in the next four: "" anyone, else the claim must be that agent's (NOT_YOURS).
    @abstractmethod
    async def _heartbeat(
        self, task: str, token: int, ttl_ms: int | None, updates: dict[str, str], agent: str
    ) -> int: ...
    @abstractmethod
    async def _complete(self, task: str, token: int, result: str, agent: str, review: str = "") -> list[str]:
        """Done, or with a ``review`` reference delivered for review (state review)."""

    async def _complete_and_claim(
        self, task: str, token: int, result: str, agent: str, queues: list[str], ttl_ms: int, count: int
    ) -> tuple[list[str], list[Claim], ClaimMiss]:
        """``_complete`` as ``agent``, then ``_claim`` for it. A backend that can do both in
        one step (Redis: one script call, one round trip) overrides this."""
        unblocked = await self._complete(task, token, result, agent)
        got, why = await self._claim(agent, queues, ttl_ms, count)
        return unblocked, got, why

    async def _complete_many(
        self, items: list[tuple[str, int, str]], agent: str, queues: list[str], ttl_ms: int, count: int
    ) -> tuple[list[Completion], list[Claim], ClaimMiss]:
        """``_complete`` of each (task, token, result) as ``agent``, each on its own (a refusal
        is that task's outcome), then ``_claim`` of ``count`` (0: none). Redis overrides this
        with one script call."""
        outcomes = []
        for task, token, result in items:
            try:
                outcomes.append(Completion(task, await self._complete(task, token, result, agent)))
            except (NotFound, LeaseLost, Forbidden) as exc:
                outcomes.append(Completion(task, [], exc))
        if count == 0:
            return outcomes, [], ClaimMiss("")
        got, why = await self._claim(agent, queues, ttl_ms, count)
        return outcomes, got, why

    @abstractmethod
    async def _fail(
        self, task: str, token: int, reason: str, fatal: bool, jitter: float, agent: str
    ) -> tuple[State, int]: ...
    @abstractmethod
    async def _release(self, task: str, token: int, agent: str) -> None: ...
    @abstractmethod
    async def _held(self, agent: str) -> list[Task]: ...
    @abstractmethod
    async def _get(self, task: str) -> Task: ...
    @abstractmethod
    async def _tasks(self, state: State | None, queue: str | None, limit: int, offset: int) -> list[Task]: ...
    @abstractmethod
    async def _counts(self) -> dict[State, int]: ...
    @abstractmethod
    async def _register(self, agent: str, caps: str, max_claims: int, session: str) -> None: ...
    @abstractmethod
    async def _alive(self, agent: str) -> int: ...
    @abstractmethod
    async def _agents(self) -> list[Agent]: ...
    @abstractmethod
    async def _lock(self, paths: list[str], agent: str, ttl_ms: int, shared: bool, task: str) -> int: ...
    @abstractmethod
    async def _unlock(self, paths: list[str], agent: str, task: str | None, own: bool) -> list[str]: ...
    @abstractmethod
    async def _locks(self) -> list[Lock]: ...
    @abstractmethod
    async def _events(self, task: str | None, after: str, count: int) -> list[Event]: ...
    @abstractmethod
    def _follow(self, task: str | None, after: str) -> AsyncIterator[Event]: ...
    @abstractmethod
    async def _reap(self, by: ReaperId | None) -> ReapReport: ...
    @abstractmethod
    async def _reaper_status(self) -> ReaperStatus: ...
    @abstractmethod
    async def _lead(self, holder: str, lease_ms: int) -> bool:
        """Take or keep the reaper's leader lease for ``holder``; 0 ms lets it go."""

    @abstractmethod
    async def _wait_for_change(self, timeout_s: float) -> bool: ...
    @abstractmethod
    async def _act(
        self, action: str, task: str, seen: State, token: int, operator: str, agent: str, restore: bool
    ) -> State: ...
    @abstractmethod
    async def _review(
        self, task: str, verdict: str, note: str, reviewer: str, operator: str, token: int
    ) -> tuple[State, list[str]]:
        """Accept or return a task in review (review-1.lua): (its new state, the tasks unblocked)."""

    @abstractmethod
    async def _dependents_cancelled(self, task: str) -> int: ...
    @abstractmethod
    async def _stuck(self, after_seq: int, limit: int, also: list[str]) -> tuple[list[Stuck], int]: ...
    @abstractmethod
    async def _retain(self) -> tuple[int, int, int, bool]:
        """One retention step: (tasks removed, agents removed, events trimmed, more due now)."""

    @abstractmethod
    async def _set_retention(self, scope: str, changes: dict[str, int], reset: bool) -> None: ...
    @abstractmethod
    async def _retention_settings(self, queue: str | None) -> tuple[dict[str, int], dict[str, int]]:
        """The stored settings of the board and of ``queue`` ({} for none)."""

    @abstractmethod
    async def _audit(self, kind: str, task: str, agent: str, detail: str) -> None: ...
    @abstractmethod
    async def _token_save(self, digest: str, agent: str, role: str, hint: str) -> int: ...
    @abstractmethod
    async def _token_find(self, digest: str) -> TokenInfo | None: ...
    @abstractmethod
    async def _token_list(self) -> list[TokenInfo]: ...
    @abstractmethod
    async def _token_revoke(self, agent: str) -> int: ...
    @abstractmethod
    async def _extend(self, task: str, token: int, extra_ms: int, operator: str) -> int: ...
    @abstractmethod
    async def _queue_state(self, queue: str, pause: bool, operator: str) -> bool: ...
    @abstractmethod
    async def _paused(self) -> set[str]: ...
    @abstractmethod
    async def _reset_breaker(self, agent: str, operator: str) -> None: ...
    @abstractmethod
    async def _server(self, server_id: str, record: str, ttl_ms: int) -> tuple[int, int]:
        """Refresh a server's record (an empty ``record`` retires it): (now_ms, started_ms)."""

    @abstractmethod
    async def _servers(self) -> list[ServerInfo]: ...
    @abstractmethod
    async def _latest_events(self, count: int) -> list[Event]: ...
    @abstractmethod
    async def _snapshot(self, sections: frozenset[str], rows: int, events: int) -> Snapshot: ...
    @abstractmethod
    async def _server_facts(self) -> dict[str, str]: ...
    @abstractmethod
    async def _topology(self) -> Topology: ...
    @abstractmethod
    async def _key_events(self, switch: bool) -> bool | None: ...
    @abstractmethod
    def _change_feed(self) -> AsyncGenerator[None, None]: ...
    @abstractmethod
    async def _export(self) -> Board: ...
    @abstractmethod
    async def _import(self, board: Board, merge: bool) -> dict[str, int]:
        """Write a checked dump (``dump.check``) atomically, refusing as ``import_board`` says."""

    @abstractmethod
    async def _now_ms(self) -> int: ...
    @abstractmethod
    async def _bid(self, task: str, agent: str, cost: float, ttl_ms: int) -> tuple[Bid, int]:
        """Place or replace ``agent``'s bid: (the bid as stored, the window's close time)."""

    @abstractmethod
    async def _bid_outcome(self, task: str, agent: str) -> Outcome: ...
    @abstractmethod
    async def _auctions(self, limit: int) -> list[Auction]: ...
    @abstractmethod
    async def _bids(self, task: str) -> list[Bid]: ...
    @abstractmethod
    async def ping(self) -> float:
        """Round trip to the store in ms; ``StoreUnavailable`` when it is down."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def _plan(self, specs: list[dict[str, Any]], by: str, claim: list[Any] | None) -> list[str]:
        """Add a plan (``Store.plan``): add's specs, with ``plan`` and ``hold``, in one atomic
        call; ``claim`` [parent, token, agent] when it goes under a planner's claim."""
