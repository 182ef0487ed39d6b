"""The agent's bidding tool (core/bidding.py): ``bid`` on a task's open bidding window, as
the caller (the bearer token's agent, rule 11), optionally waiting for the window's end."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from .. import constants as C
from .. import validate
from ..acting import Acting
from .service import Service
from .shapes import TaskView

WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)


class BidResult(BaseModel):
    """A bid placed, and with wait_s what the window came to."""

    task: str
    agent: str
    cost: float
    at_ms: int = Field(description="when the bid was placed, store clock (ms)")
    status: str = Field(
        description="placed (not waited for), open (still open when wait_s ran out), won, lost, "
        "or queued (no bid could take it: the task went to its queue)"
    )
    winner: str = Field(default="", description="who won the window (won or lost)")
    claimed: TaskView | None = Field(default=None, description="the claim you won: work on it")
    token: int = Field(default=0, description="the fencing token of the claim you won")
    deadline_ms: int = 0


def add_bid_tools(server: MCPServer[Any], svc: Service) -> None:
    """Register the bidding tool on ``server``."""

    @server.tool(
        annotations=WRITE,
        description=(
            "Bid for a task whose bidding window is open (a task added with bid_window_s): your cost "
            "is what taking it would cost you (lower wins; e.g. estimated minutes). At the window's "
            "end the lowest bid that can still take it wins the claim (ties: earliest bid, then name); "
            "bidding again replaces your bid. With wait_s, waits for the window's end and returns the "
            "claim you won (keep its token and heartbeat) or who won; a won claim also comes back "
            "from your next claim."
        ),
    )
    async def bid(
        ctx: Context[Any, Any],
        task: Annotated[str, Field(description="the task id, e.g. t12")],
        cost: Annotated[float, Field(description="0 or more; the lowest bid wins")],
        ttl_s: Annotated[float, Field(description="lease length of the claim if you win")] = (
            C.default_lease_ttl_s
        ),
        wait_s: Annotated[float, Field(description="seconds to wait for the window's end (0: not)")] = 0,
    ) -> BidResult:
        async def go(a: Acting) -> BidResult:
            wait = min(validate.wait_s(wait_s), C.max_mcp_claim_wait_s)
            me = a.who.agent  # an agent bids only as itself
            placed = await a.store.bid(task, me, cost, ttl_s=ttl_s)
            out = BidResult(task=placed.task, agent=me, cost=placed.cost, at_ms=placed.at_ms, status="placed")
            if wait <= 0:
                return out
            got = await a.store.wait_bid(task, me, wait_s=wait)
            out.status, out.winner = got.status, got.winner
            if got.claim is not None:
                out.claimed, out.token = TaskView.of(got.claim.task), got.claim.token
                out.deadline_ms = got.claim.deadline_ms
            return out

        return await svc.call(ctx, go)
