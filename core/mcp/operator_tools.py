"""The operator's tools: reassign, kill, requeue, retry, extend, cancel.

Only an operator's token may use them: ``tools/list`` shows them to operators only, and
``Acting`` refuses (and audits) a call from any other role. Each is a compare-and-set on the
claim the operator saw (``token``); without one, on the task as it is when the call arrives.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field

from ..acting import Acting
from ..operator_actions import OPERATOR_ACTIONS, states_in_words
from .service import Service
from .shapes import Extended, Moved

OPERATOR_TOOLS = frozenset({"reassign", "kill", "requeue", "retry", "extend", "cancel"})

TaskId = Annotated[str, Field(description="the task id, e.g. t12")]
Seen = Annotated[
    int | None,
    Field(description="the claim token you saw (show, list); the call is refused if it changed since"),
]

MOVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)


def _on(action: str) -> str:
    """The states ``action`` applies to, in words: ``claimed, orphaned or dead``."""
    return states_in_words(OPERATOR_ACTIONS[action].states)


async def _act(
    a: Acting, action: str, task: str, seen_token: int | None, agent: str = "", *, restore: bool = False
) -> Moved:
    now = await a.get(task)
    token = now.token if seen_token is None else seen_token
    state = await a.act(action, task, now.state, token, agent, restore=restore)
    return Moved(task=task, state=state.value)


def add_operator_tools(server: MCPServer[Any], svc: Service) -> None:
    """Register the operator's tools on ``server``."""

    @server.tool(
        annotations=MOVE,
        description=f"Operator: hand a {_on('reassign')} task to one agent, who gets it on its next claim.",
    )
    async def reassign(
        ctx: Context[Any, Any],
        task: TaskId,
        agent: Annotated[str, Field(description="who gets it")],
        token: Seen = None,
    ) -> Moved:
        return await svc.call(ctx, lambda a: _act(a, "reassign", task, token, agent))

    @server.tool(
        annotations=MOVE,
        description=(
            "Operator: end a live claim now. The task goes back to its queue, or with dead=true ends "
            "dead. The agent that held it gets 'lease lost' on its next call."
        ),
    )
    async def kill(ctx: Context[Any, Any], task: TaskId, dead: bool = False, token: Seen = None) -> Moved:
        return await svc.call(ctx, lambda a: _act(a, "kill-dead" if dead else "kill", task, token))

    @server.tool(
        annotations=MOVE,
        description=f"Operator: put a {_on('requeue')} task back in its queue now.",
    )
    async def requeue(ctx: Context[Any, Any], task: TaskId, token: Seen = None) -> Moved:
        return await svc.call(ctx, lambda a: _act(a, "requeue", task, token))

    @server.tool(
        annotations=MOVE,
        description=(
            "Operator: run a dead task again. restore=true also brings back the tasks its end "
            "cancelled (they wait on it again)."
        ),
    )
    async def retry(ctx: Context[Any, Any], task: TaskId, restore: bool = False, token: Seen = None) -> Moved:
        return await svc.call(ctx, lambda a: _act(a, "retry", task, token, restore=restore))

    @server.tool(
        annotations=MOVE,
        description=(
            "Operator: cancel a task that has not finished; the tasks that depend on it are cancelled too."
        ),
    )
    async def cancel(ctx: Context[Any, Any], task: TaskId, token: Seen = None) -> Moved:
        return await svc.call(ctx, lambda a: _act(a, "cancel", task, token))

    @server.tool(
        annotations=MOVE,
        description="Operator: give a live claim extra_s more seconds before its lease ends.",
    )
    async def extend(
        ctx: Context[Any, Any], task: TaskId, extra_s: Annotated[float, Field(gt=0)], token: Seen = None
    ) -> Extended:
        async def go(a: Acting) -> Extended:
            seen = (await a.get(task)).token if token is None else token
            return Extended(task=task, deadline_ms=await a.extend(task, seen, extra_s))

        return await svc.call(ctx, go)
