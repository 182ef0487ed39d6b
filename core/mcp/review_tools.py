"""The review tool: accept or return a task another agent delivered for review (``complete``
with ``review``). Offered to every caller; the caller reviews as itself (``Acting.review``):
an agent needs the review capability in its registration and may not review its own
delivery, an operator's token reviews as the operator. The rules are in ``core/review.py``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field

from ..acting import Acting
from .service import Service


class Reviewed(BaseModel):
    task: str
    state: str = Field(description="done (accepted) or queued (returned)")
    verdict: str
    reviewer: str = Field(description="who decided: you")
    unblocked: list[str] = Field(description="tasks that waited on it and can now run (accept)")


def add_review_tools(server: MCPServer[Any], svc: Service, annotations: Any) -> None:
    """Register ``review`` on ``server`` (``annotations``: the tools' write hints)."""

    @server.tool(
        annotations=annotations,
        description=(
            "Decide on a task in review (another agent delivered it with complete and review=REF: "
            "look at that branch, commit or PR first). verdict accept: it is done and the tasks "
            "waiting on it may run. verdict return: it goes back to its queue with your note at the "
            "head of its checkpoint, for the next agent to fix. You need the review capability "
            "(register with it) and may not review your own delivery; token (optional) is the "
            "delivery you looked at, refused if a newer one came meanwhile."
        ),
    )
    async def review(
        ctx: Context[Any, Any],
        task: Annotated[str, Field(description="the task id, e.g. t12")],
        verdict: Annotated[Literal["accept", "return"], Field(description="accept or return")],
        note: Annotated[str, Field(description="return: what to change (required); accept: empty")] = "",
        token: Annotated[int, Field(description="the delivery's token you reviewed (0: any)", ge=0)] = 0,
    ) -> Reviewed:
        async def go(a: Acting) -> Reviewed:
            state, unblocked = await a.review(task, verdict, note, token=token)
            return Reviewed(
                task=task, state=state.value, verdict=verdict, reviewer=a.who.agent, unblocked=unblocked
            )

        return await svc.call(ctx, go)
