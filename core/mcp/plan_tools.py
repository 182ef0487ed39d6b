"""The plan tool: a parent and its subtasks (core/plan.py's plan file, as a JSON object)
added whole and atomically, by a planner or an operator; a worker is refused, as for add.
Under ``parent`` it acts only on the caller's own live claim (``Acting.plan``)."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from .. import plan as plans
from ..acting import Acting
from .service import Service

WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)  # as tools.py's


class Planned(BaseModel):
    parent: str = Field(description="the plan's parent task id")
    subtasks: dict[str, str] = Field(description="each subtask's ref -> its task id, in the plan's order")


def add_plan_tools(server: MCPServer[Any], svc: Service) -> None:
    """Register the plan tool on ``server``."""

    @server.tool(
        annotations=WRITE,
        description=(
            "Add a plan (planner and operator roles): a parent and its subtasks, all or nothing. "
            'plan is {"title": ..., "subtasks": [{"ref": "parse", "title": ..., "after": ["other ref '
            'or task id"], "requires": [...], "paths": [...]}, ...]}; any task field may appear and the '
            "parent's are its subtasks' defaults. The parent completes when every subtask is done, "
            "or dies with the reason of the first that died. With parent and token (your own claim, "
            "as a planner), the subtasks go under that task instead: releasing or losing the claim "
            "cancels the ones nobody claimed, completing it makes the task wait for them."
        ),
    )
    async def plan(
        ctx: Context[Any, Any],
        plan: Annotated[dict[str, Any], Field(description="the plan: a title and its subtasks")],
        parent: Annotated[str, Field(description="a task you hold a claim on, to plan under")] = "",
        token: Annotated[int, Field(description="the token of your claim on parent")] = 0,
    ) -> Planned:
        async def go(a: Acting) -> Planned:
            pf = plans.load(plan)
            got = await plans.add(a.store, pf, parent=parent, token=token, acting=a)
            return Planned(parent=got["parent"], subtasks=got["subtasks"])

        return await svc.call(ctx, go)
