"""The agent's tools: register, claim, heartbeat, complete, fail, release, add, list, show,
lock, unlock. Each acts as its caller through ``Acting`` (``Service.call``), so who may do
what is decided in one place; a refusal comes back as a tool error of one line.

The descriptions are written for the model that calls them.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from .. import constants as C
from .. import validate
from ..acting import Acting
from ..errors import BadInput, ClaimroomError
from ..models import Claim, State
from ..store import Miss
from .bid_tools import add_bid_tools
from .message_tools import add_message_tools
from .plan_tools import add_plan_tools
from .review_tools import add_review_tools
from .service import Service
from .shapes import (
    Added,
    Claimed,
    Completed,
    Failed,
    Heartbeat,
    Listing,
    Locked,
    Moved,
    Registered,
    TaskLine,
    TaskView,
    Unlocked,
)

TaskId = Annotated[str, Field(description="the task id, e.g. t12")]
Token = Annotated[int, Field(description="the fencing token your claim returned")]
Paths = Annotated[
    list[str],
    Field(description="file or directory paths, relative to the project root (absolute ones inside it)"),
]

_MISSED = {
    "at-capacity": "you already hold as many claims as you may (finish or release one first)",
    "breaker-open": "your circuit breaker is open after repeated failures; wait, or ask an operator",
    "empty": "nothing is claimable in those queues now",
    "message": "a message arrived for you: read it with read_inbox",
}


def _missed(miss: Miss) -> str:
    """Why a claim found nothing, as the agent reads it."""
    return _MISSED.get(miss.last.reason, miss.last.reason)


READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)


def add_tools(server: MCPServer[Any], svc: Service) -> None:
    """Register the agent's tools on ``server``."""
    add_message_tools(server, svc)
    add_bid_tools(server, svc)
    add_plan_tools(server, svc)

    @server.tool(
        annotations=WRITE,
        description=(
            "Register yourself (the agent this connection is) with what you can do. Optional: "
            "claim registers you on first use. Capabilities decide which tasks you may claim "
            "(a task lists the ones it requires); max_claims is how many tasks you may hold at once."
        ),
    )
    async def register(
        ctx: Context[Any, Any],
        capabilities: Annotated[list[str] | None, Field(description="e.g. python, frontend")] = None,
        max_claims: Annotated[int, Field(description="tasks held at once", ge=1)] = C.default_max_claims,
    ) -> Registered:
        caps = sorted(set(capabilities or ()))

        async def go(a: Acting) -> Registered:
            await a.register(caps, max_claims)
            return Registered(agent=a.who.agent, capabilities=caps, max_claims=max_claims)

        return await svc.call(ctx, go)

    @server.tool(
        annotations=WRITE,
        description=(
            "Claim the best task you may work on, leased to you until its deadline. Work only on a "
            "task you claimed; keep the token and heartbeat before the deadline or the task goes back "
            "to the queue. With wait_s, waits up to that many seconds for work to appear, sending "
            "progress notifications while it waits. With paths, also locks those paths for the task "
            "(as long as you hold it); if another agent holds one, the claim is given back and the "
            "error names the holder. Returns claimed=false with the reason when there is nothing."
        ),
    )
    async def claim(
        ctx: Context[Any, Any],
        queues: Annotated[list[str] | None, Field(description="queues to take from; none: any")] = None,
        wait_s: Annotated[float, Field(description="seconds to wait for work (0: answer at once)", ge=0)] = 0,
        ttl_s: Annotated[
            float | None, Field(description="lease length in seconds (default 60); heartbeat within it")
        ] = None,
        paths: Annotated[list[str] | None, Field(description="paths to lock for the task")] = None,
    ) -> Claimed:
        async def go(a: Acting) -> Claimed:
            wait = min(validate.wait_s(wait_s), C.max_mcp_claim_wait_s)
            miss = Miss()
            got = await _claim_waiting(ctx, a, queues or [], ttl_s, wait, miss)
            if got is None:
                return Claimed(claimed=False, why=_missed(miss))
            locked: list[str] = []
            if paths:
                try:
                    await a.lock(paths, task=got.task.id, root=svc.root)
                except ClaimroomError:
                    # All or nothing: a claim whose paths another agent holds is given back.
                    await a.release(got.task.id, got.token)
                    raise
                locked = sorted({validate.path(p, svc.root) for p in paths})
            return Claimed(
                claimed=True,
                task=TaskView.of(got.task),
                token=got.token,
                deadline_ms=got.deadline_ms,
                locked=locked,
            )

        return await svc.call(ctx, go)

    @server.tool(
        annotations=WRITE,
        description=(
            "Say you are still working on a claimed task: extends its lease (to ttl_s from now, or its "
            "own length) and records how far you are. progress is 0..1; at 0.5 or more an expired lease "
            "waits for an operator instead of being retried. stage is a short label; checkpoint is what "
            "another agent would need to resume. If the lease is lost, stop working on the task."
        ),
    )
    async def heartbeat(
        ctx: Context[Any, Any],
        task: TaskId,
        token: Token,
        progress: Annotated[float | None, Field(description="0..1", ge=0, le=1)] = None,
        stage: Annotated[str | None, Field(description="e.g. tests passing")] = None,
        checkpoint: Annotated[str | None, Field(description="notes to resume from")] = None,
        ttl_s: Annotated[float | None, Field(description="new lease length in seconds")] = None,
    ) -> Heartbeat:
        async def go(a: Acting) -> Heartbeat:
            deadline = await a.heartbeat(
                task, token, ttl_s=ttl_s, progress=progress, stage=stage, checkpoint=checkpoint
            )
            return Heartbeat(task=task, deadline_ms=deadline)

        return await svc.call(ctx, go)

    @server.tool(
        annotations=WRITE,
        description=(
            "Finish a task you claimed, with an optional result (any JSON). Its path locks are "
            "released and the tasks waiting on it become claimable. With review (the branch, commit "
            "or PR you made), it is delivered for review instead: your claim ends the same way, and "
            "the task waits (state review, nobody redoes it) until a reviewer accepts or returns it. "
            "With next=true (not with review), also claims your next task in the same step, as claim "
            "would without waiting or paths: it comes back in next, with its token."
        ),
    )
    async def complete(
        ctx: Context[Any, Any],
        task: TaskId,
        token: Token,
        result: Annotated[Any, Field(description="what you produced (JSON)")] = None,
        review: Annotated[
            str | None, Field(description="deliver for review: the branch, commit or PR")
        ] = None,
        next: Annotated[bool, Field(description="also claim your next task in the same step")] = False,
        queues: Annotated[list[str] | None, Field(description="with next: queues to take from")] = None,
        ttl_s: Annotated[float | None, Field(description="with next: its lease length in seconds")] = None,
    ) -> Completed:
        async def go(a: Acting) -> Completed:
            if next:
                if review is not None:
                    raise BadInput("next and review do not go together: a delivered task is not done yet")
                miss = Miss()
                unblocked, got = await a.complete_and_claim(
                    task, token, result, queues=queues or [], ttl_s=ttl_s, miss=miss
                )
                if got:
                    c = got[0]
                    then = Claimed(
                        claimed=True, task=TaskView.of(c.task), token=c.token, deadline_ms=c.deadline_ms
                    )
                else:
                    then = Claimed(claimed=False, why=_missed(miss))
                return Completed(task=task, state=State.DONE.value, unblocked=unblocked, next=then)
            if queues is not None or ttl_s is not None:
                raise BadInput("queues and ttl_s go with next=true (the next claim's)")
            unblocked = await a.complete(task, token, result, review=review)
            state = State.DONE if review is None else State.REVIEW
            return Completed(task=task, state=state.value, unblocked=unblocked)

        return await svc.call(ctx, go)

    @server.tool(
        annotations=WRITE,
        description=(
            "Give up on a task you claimed because it failed. Recoverable (the default): it is retried "
            "later, by you or another agent, until its attempts run out. fatal=true: it ends dead at "
            "once (it can never succeed as specified). Say why in reason."
        ),
    )
    async def fail(
        ctx: Context[Any, Any],
        task: TaskId,
        token: Token,
        reason: Annotated[str, Field(description="why, for whoever looks next")],
        fatal: Annotated[bool, Field(description="true: never retry")] = False,
    ) -> Failed:
        async def go(a: Acting) -> Failed:
            state, ready_ms = await a.fail(task, token, reason, fatal=fatal)
            return Failed(task=task, state=state.value, retry_at_ms=ready_ms)

        return await svc.call(ctx, go)

    @server.tool(
        annotations=WRITE,
        description=(
            "Hand a task you claimed back to its queue without counting a failure (you cannot or "
            "should not do it now). Its locks are released."
        ),
    )
    async def release(ctx: Context[Any, Any], task: TaskId, token: Token) -> Moved:
        async def go(a: Acting) -> Moved:
            await a.release(task, token)
            return Moved(task=task, state=State.QUEUED.value)

        return await svc.call(ctx, go)

    @server.tool(
        annotations=WRITE,
        description=(
            "Add a task to the board (planner and operator roles). after lists tasks that must be done "
            "first; requires lists capabilities an agent needs to claim it; higher priority runs first."
        ),
    )
    async def add(
        ctx: Context[Any, Any],
        title: Annotated[str, Field(description="what to do, in one line")],
        queue: str = "default",
        priority: Annotated[int, Field(description="-1000..1000; higher first")] = 0,
        requires: list[str] | None = None,
        after: Annotated[list[str] | None, Field(description="task ids to wait for")] = None,
        parent: Annotated[str, Field(description="the task this one is part of")] = "",
        payload: Annotated[Any, Field(description="input for whoever does it (JSON)")] = None,
        max_attempts: int = C.default_max_attempts,
        bid_window_s: Annotated[
            float, Field(description="> 0: once ready, agents bid this many seconds (bid tool)", ge=0)
        ] = 0,
        affinity: Annotated[
            str, Field(description="related work lands on one agent: e.g. the module or directory it touches")
        ] = "",
        steal_after_s: Annotated[
            float | None,
            Field(description="seconds the affinity key's owner has it alone (default 30; 0: no preference)"),
        ] = None,
    ) -> Added:
        async def go(a: Acting) -> Added:
            tid = await a.add(
                title,
                queue=queue,
                priority=priority,
                requires=requires or [],
                after=after or [],
                parent=parent,
                payload=payload,
                max_attempts=max_attempts,
                bid_window_s=bid_window_s,
                affinity=affinity,
                steal_after_s=steal_after_s,
            )
            return Added(id=tid, state=(await a.get(tid)).state.value)

        return await svc.call(ctx, go)

    @server.tool(
        name="list",
        annotations=READ,
        description="List tasks in creation order, optionally of one state and queue, a page at a time.",
    )
    async def list_tasks(
        ctx: Context[Any, Any],
        state: Annotated[str | None, Field(description="e.g. queued, claimed, done")] = None,
        queue: str | None = None,
        limit: Annotated[int, Field(ge=1, le=500)] = 50,
        offset: Annotated[int, Field(ge=0)] = 0,
    ) -> Listing:
        async def go(a: Acting) -> Listing:
            tasks = await a.tasks(state=state, queue=queue, limit=limit + 1, offset=offset)
            return Listing(
                tasks=[TaskLine.of(t) for t in tasks[:limit]], offset=offset, more=len(tasks) > limit
            )

        return await svc.call(ctx, go)

    @server.tool(
        annotations=READ, description="One task in full: its state, holder, payload, checkpoint, result."
    )
    async def show(ctx: Context[Any, Any], task: TaskId) -> TaskView:
        async def go(a: Acting) -> TaskView:
            return TaskView.of(await a.get(task))

        return await svc.call(ctx, go)

    @server.tool(
        annotations=WRITE,
        description=(
            "Lock paths so no other agent edits them (all or none; the error names the holder). With "
            "task (a claim of yours) the locks last as long as the claim; without, ttl_s seconds "
            "(default 300). shared=true lets other shared holders in."
        ),
    )
    async def lock(
        ctx: Context[Any, Any],
        paths: Paths,
        task: Annotated[str, Field(description="your claimed task these locks belong to")] = "",
        ttl_s: Annotated[float | None, Field(description="seconds, only without task")] = None,
        shared: bool = False,
    ) -> Locked:
        async def go(a: Acting) -> Locked:
            expires = await a.lock(paths, ttl_s=ttl_s, shared=shared, task=task, root=svc.root)
            normal = sorted({validate.path(p, svc.root) for p in paths})
            return Locked(paths=normal, task=task, shared=shared, expires_ms=expires)

        return await svc.call(ctx, go)

    @server.tool(
        annotations=WRITE,
        description="Release your locks on paths (all your holds on them, or only those of task).",
    )
    async def unlock(
        ctx: Context[Any, Any],
        paths: Paths,
        task: Annotated[str | None, Field(description="only this task's holds")] = None,
    ) -> Unlocked:
        async def go(a: Acting) -> Unlocked:
            return Unlocked(released=await a.unlock(paths, task=task, root=svc.root))

        return await svc.call(ctx, go)

    add_review_tools(server, svc, WRITE)


async def _claim_waiting(
    ctx: Context[Any, Any], a: Acting, queues: list[str], ttl_s: float | None, wait_s: float, miss: Miss
) -> Claim | None:
    """Claim now; if nothing and ``wait_s``, keep waiting, telling the client every
    ``mcp_claim_progress_s`` that the wait goes on (a progress notification, when it asked)."""
    got = await a.claim(queues=queues, ttl_s=ttl_s, miss=miss)
    loop = asyncio.get_running_loop()
    start = loop.time()
    while got is None and miss.last.reason != "message" and (left := start + wait_s - loop.time()) > 0:
        waited = loop.time() - start
        why = _missed(miss)
        try:
            await ctx.report_progress(
                waited, wait_s, f"waiting for work ({waited:.0f} s of {wait_s:g} s): {why}"
            )
        except Exception as exc:  # the client went away: the wait is over
            raise ToolError("the client stopped listening while the claim waited") from exc
        got = await a.claim(queues=queues, ttl_s=ttl_s, wait_s=min(left, C.mcp_claim_progress_s), miss=miss)
    return got
