"""The board-management half of the Store API: retention, tokens, operator actions, MCP
server records, the control room's views and whole-board export and import.

Like the rest of the API (``store.py``), each public method checks its input (through
``validate``) and then calls the backend's ``_op`` (``store_ops.py``). ``Store`` inherits
this class: callers use these methods on a ``Store``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncGenerator, Iterable, Sequence

from . import constants, retention, validate
from .dump import Board, check
from .errors import BadInput
from .identity import Role, TokenInfo
from .models import Retention, ServerInfo, State, Stuck
from .operator_actions import MOVES
from .retention import UNSET, Unset
from .snapshot import MAX_ROWS, SECTIONS, Snapshot
from .store_ops import StoreOps
from .topology import Topology

ACTIONS = tuple(MOVES)  # what ``act`` runs: kill, kill-dead, requeue, cancel, retry, reassign


class StoreAdmin(StoreOps):
    """What manages a board, for operators, the control room and the MCP server."""

    # --- retention ------------------------------------------------------------------

    async def set_retention(
        self,
        queue: str | None = None,
        *,
        done_s: float | Unset | None = UNSET,
        done_count: int | Unset | None = UNSET,
        failed_s: float | Unset | None = UNSET,
        failed_count: int | Unset | None = UNSET,
        events_s: float | Unset | None = UNSET,
        events_bytes: int | Unset | None = UNSET,
        agents_s: float | Unset | None = UNSET,
        reset: bool = False,
    ) -> Retention:
        """Change what retention keeps, for ``queue`` or (None) the whole board; returns the
        settings now in force there. Only the settings given change; None means no limit.

        Finished tasks of a queue are removed by the reaper pass once older than ``done_s``
        (done) or ``failed_s`` (dead, cancelled) seconds, or past the newest ``done_count``
        / ``failed_count``, whichever comes first. The board's settings apply to every queue
        without its own, and ``events_s``, ``events_bytes`` (the audit trail's horizon and
        size) and ``agents_s`` (idle agents a claim registered) are the board's alone.
        ``reset`` first drops the scope's own settings (a queue's: it follows the board's;
        the board's: the defaults)."""
        q = None if queue is None else validate.queue(queue)
        if not isinstance(reset, bool):
            raise BadInput(f"reset must be true or false, got {reset!r}")
        given = {
            "done_s": done_s, "done_count": done_count, "failed_s": failed_s,
            "failed_count": failed_count, "events_s": events_s, "events_bytes": events_bytes,
            "agents_s": agents_s,
        }  # fmt: skip
        stored = retention.changes(q, given)
        if stored or reset:
            await self._set_retention(retention.BOARD if q is None else q, stored, reset)
        return await self.retention(q)

    async def retention(self, queue: str | None = None) -> Retention:
        """The retention settings in force for ``queue`` (None: the board's)."""
        q = None if queue is None else validate.queue(queue)
        board, own = await self._retention_settings(q)
        return retention.effective(board, own)

    # --- bearer tokens (core/tokens.py makes and checks them; only digests come here) ---

    async def token_save(self, digest: str, agent: str, role: str, hint: str) -> int:
        """Keep a token's sha256 with its agent, role and hint; returns when (store clock)."""
        hint = validate.token_hint(hint)
        return await self._token_save(
            validate.token_digest(digest), validate.agent(agent), Role.of(role).value, hint
        )

    async def token_find(self, digest: str) -> TokenInfo | None:
        """The token with this sha256, or None (unknown or revoked)."""
        return await self._token_find(validate.token_digest(digest))

    async def token_list(self) -> list[TokenInfo]:
        """Every token on the board (never the tokens themselves), by agent then age."""
        found = await self._token_list()
        return sorted(found, key=lambda t: (t.agent, t.created_ms, t.hint))

    async def token_revoke(self, agent: str) -> int:
        """Forget every token of ``agent``; returns how many there were."""
        return await self._token_revoke(validate.agent(agent))

    # --- operator actions: each a compare-and-set on what the operator saw -----------

    async def act(
        self,
        action: str,
        task: str,
        seen_state: State | str,
        seen_token: int,
        operator: str,
        agent: str = "",
        *,
        restore: bool = False,
    ) -> State:
        """Move a task as an operator: kill, kill-dead, requeue, cancel, retry, reassign.

        ``seen_state``/``seen_token`` are what the operator saw; if the task has moved
        since, ``Changed`` is raised and nothing happens; where the action does not apply
        (``operator_actions.MOVES`` says where each does), ``WrongState``. Returns the new
        state. A retry with ``restore`` also brings back, blocked on it again, the
        dependents that its end cancelled (and theirs); see ``dependents_cancelled``.
        """
        if action not in ACTIONS:
            raise BadInput(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
        if not isinstance(restore, bool):
            raise BadInput(f"restore must be true or false, got {restore!r}")
        if restore and action != "retry":
            raise BadInput("only a retry restores dependents")
        if action == "reassign":
            agent = validate.agent(agent)
        try:
            st = State(seen_state)
        except ValueError:
            names = ", ".join(s.value for s in State)
            raise BadInput(f"unknown state {seen_state!r}: one of {names}") from None
        token = validate.token(seen_token, minimum=0)  # 0: a task never claimed
        return await self._act(
            action, validate.task_id(task), st, token, validate.operator(operator), agent, restore
        )

    async def dependents_cancelled(self, task: str) -> int:
        """How many tasks a cascade cancelled because ``task`` ended (its direct dependents;
        theirs come back with them): what a retry with ``restore`` would bring back."""
        return await self._dependents_cancelled(validate.task_id(task))

    async def stuck(
        self, *, after_seq: int = 0, limit: int = 500, also: Sequence[str] = ()
    ) -> tuple[list[Stuck], int]:
        """Blocked tasks waiting on a dependency that can never finish, looked for among the
        ``limit`` blocked tasks created after ``after_seq`` (oldest first) and the tasks
        ``also`` names; returns them (oldest first) and the ``after_seq`` to look from
        next, 0 once the end was reached. Bounded: a view walks a big board a window at a time.
        """
        if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
            raise BadInput(f"after_seq must be a whole number, not negative, got {after_seq!r}")
        n = validate.positive_int("limit", limit, 10_000)
        ids = list(dict.fromkeys(validate.task_id(t) for t in also))
        if len(ids) > n:
            raise BadInput(f"at most {n} tasks in also")
        return await self._stuck(after_seq, n, ids)

    async def extend(self, task: str, seen_token: int, extra_s: float, operator: str) -> int:
        """Give a live claim ``extra_s`` more seconds; returns the new deadline. A task no
        longer claimed with ``seen_token`` raises ``Changed`` (the call carries no state)."""
        ms = validate.ttl_ms(extra_s, "extension")
        return await self._extend(
            validate.task_id(task), validate.token(seen_token), ms, validate.operator(operator)
        )

    async def pause(self, queue: str, operator: str, *, resume: bool = False) -> bool:
        """Pause (or resume) a queue; returns whether that changed anything."""
        return await self._queue_state(validate.queue(queue), not resume, validate.operator(operator))

    async def paused(self) -> set[str]:
        return await self._paused()

    async def reset_breaker(self, agent: str, operator: str) -> None:
        await self._reset_breaker(validate.agent(agent), validate.operator(operator))

    # --- MCP servers on the board (claimroom serve; shown in the control room) --------

    async def announce_server(self, info: ServerInfo, ttl_s: float = constants.server_ttl_s) -> ServerInfo:
        """Write or refresh an MCP server's record, live for ``ttl_s`` unless refreshed again;
        returns it as stored (``started_ms`` from its first refresh, ``seen_ms`` now, both on
        the store's clock)."""
        sid = validate.server_id(info.id)
        if info.transport not in ("http", "stdio"):
            raise BadInput(f"unknown server transport {info.transport!r}: http or stdio")
        validate.text("server address", info.address, 255)
        validate.text("server host", info.host, 255)
        counts = (info.pid, info.clients, info.calls, info.errors)
        if any(isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= constants.max_counter
               for n in counts):  # fmt: skip
            raise BadInput("server counts must be whole numbers, not negative")
        rate = info.calls_per_s
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < float("inf"):
            raise BadInput(f"server calls/s must be a number, not negative, got {rate!r}")
        record = json.dumps(info.record(), separators=(",", ":"))
        now, started = await self._server(sid, record, validate.ttl_ms(ttl_s))
        return dataclasses.replace(info, started_ms=started, seen_ms=now)

    async def retire_server(self, server_id: str) -> None:
        """Drop a server's record at once (a server stopping cleanly)."""
        await self._server(validate.server_id(server_id), "", 1)

    async def servers(self) -> list[ServerInfo]:
        """The MCP servers whose records are live, by id (at most ``max_servers``)."""
        return sorted(await self._servers(), key=lambda s: s.id)

    # --- views: what the control room and an operator read -----------------------------

    async def snapshot(
        self, *, sections: Iterable[str] = SECTIONS, rows: int = 200, events: int = 200
    ) -> Snapshot:
        """The board as one view shows it, read in one go: the counts per state and per
        queue (exact), the live MCP servers, and of ``sections`` (see ``snapshot.SECTIONS``)
        the ``rows`` most urgent rows each (soonest lease deadline first; newest orphans
        first; agents and locks by name) and the newest ``events`` audit events."""
        want = frozenset(sections)
        if not want <= SECTIONS:
            unknown = ", ".join(sorted(want - SECTIONS))
            raise BadInput(f"unknown snapshot section {unknown}: of {', '.join(sorted(SECTIONS))}")
        n = validate.positive_int("rows", rows, MAX_ROWS)
        e = validate.positive_int("events", events, MAX_ROWS)
        return await self._snapshot(want, n, e)

    async def server_facts(self) -> dict[str, str]:
        """A few facts about the server holding the board (name -> value, in the order to
        show them): a Redis server's version, memory, clients...; the file store's SQLite
        version, database size, journal mode..."""
        return await self._server_facts()

    async def topology(self) -> Topology:
        """Where the board is served: the master, its replicas, the sentinels or the cluster's
        nodes with their slots (``core/topology.py``). Read anew each call, so after a
        failover it names the new master. Bounded: a node that does not answer shows as down;
        ``StoreUnavailable`` only when nothing answers at all. The file store: kind "file"."""
        return await self._topology()

    async def key_events(self, *, switch: bool = False) -> bool | None:
        """Whether the store announces changes made behind claimroom's back (a key deleted
        by hand), which ``changes`` then reports too; with ``switch``, turned on when off
        (adding to, never removing, what the server already sends). None: the store has no
        such notifications (the file store; it sees every commit anyway). False when they
        are off and stay off (no ``switch``, or the server refused: a managed Redis)."""
        if not isinstance(switch, bool):
            raise BadInput(f"switch must be true or false, got {switch!r}")
        return await self._key_events(switch)

    def changes(self) -> AsyncGenerator[None, None]:
        """Yield once at once (the watch is live: anything before it may have changed),
        then whenever the board may have changed, until the link breaks
        (``StoreUnavailable``). Each call watches on its own (unlike ``wait_for_change``),
        so a view can drop a broken watch and start anew after an outage."""
        return self._change_feed()

    # --- whole-board export and import (core/migrate.py moves boards with them) ---------

    async def export_board(self) -> Board:
        """The whole board as a dump (the format is in ``dump``), read in one snapshot."""
        return await self._export()

    async def import_board(self, board: Board, *, merge: bool = False) -> dict[str, int]:
        """Write a whole board dump in one atomic step; returns what was written, by kind.
        ``Conflict`` (nothing written) into a non-empty namespace unless ``merge`` (see
        ``migrate.migrate``), or when a merged lock would clash with one held here."""
        check(board)
        if not isinstance(merge, bool):
            raise BadInput(f"merge must be true or false, got {merge!r}")
        return await self._import(board, merge)
