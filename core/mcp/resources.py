"""The resources: the board, a task, and an agent's inbox of events, as JSON.

    claimroom://board                  counts, live claims, the oldest queued tasks, agents, locks
    claimroom://task/{id}              one task and its newest audit events
    claimroom://agent/{name}/inbox     the newest audit events touching that agent, its messages

They are served by the low-level handlers (``resources/list``, ``templates/list``, ``read``,
``subscribe``, ``unsubscribe``) so that every read is counted, needs an identified caller like
a tool call, and fails with one line. ``notify.Notifier`` says when they change.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS

from .. import constants as C
from ..errors import BadInput, NotFound
from ..models import State
from ..store import Store
from .notify import BOARD_URI, INBOX_URI, TASK_URI, Notifier, inbox_uri, task_uri, touches
from .service import Service, refusal

JSON = "application/json"
_TASK_PREFIX = "claimroom://task/"
_AGENT_PREFIX = "claimroom://agent/"
_INBOX_SUFFIX = "/inbox"


def _dump(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


async def board(store: Store) -> dict[str, Any]:
    """The board at a glance (bounded: the first pages of each list)."""
    counts = await store.counts()
    claimed = await store.tasks(state=State.CLAIMED, limit=200)
    queued = await store.tasks(state=State.QUEUED, limit=50)
    in_review = await store.tasks(state=State.REVIEW, limit=50)
    return {
        "counts": {s.value: n for s, n in counts.items()},
        "claims": [
            {
                "task": t.id,
                "title": t.title,
                "agent": t.agent,
                "token": t.token,
                "deadline_ms": t.deadline_ms,
                "progress": t.progress,
                "stage": t.stage,
            }
            for t in claimed
        ],
        "queued": [
            {"task": t.id, "title": t.title, "queue": t.queue, "priority": t.priority} for t in queued
        ],
        "agents": [a.to_json() for a in await store.agents()],
        "locks": [lock.to_json() for lock in await store.locks()],
        "paused": sorted(await store.paused()),
        "review": [  # delivered, waiting for a reviewer (the review tool)
            {
                "task": t.id,
                "title": t.title,
                "queue": t.queue,
                "ref": t.review_ref,
                "delivered_by": t.agent,
                "review_ms": t.review_ms,
            }
            for t in in_review
        ],
    }


async def task(store: Store, tid: str) -> dict[str, Any]:
    """A task and its newest audit events."""
    t = await store.get(tid)
    events = await store.events(task=tid, count=C.mcp_inbox_events * 4)
    return {"task": t.to_json(), "events": [e.to_json() for e in events[-C.mcp_inbox_events :]]}


async def inbox(store: Store, agent: str) -> dict[str, Any]:
    """The newest audit events touching ``agent`` among the board's newest ones."""
    events = [e for e in await store.latest_events(C.mcp_inbox_events * 20) if touches(e, agent)]
    try:  # its messages too, newest last, read or not (reading the resource marks none read)
        messages = await store.inbox(agent, limit=C.mcp_inbox_events, mark_read=False)
    except (NotFound, BadInput):  # not registered (yet), or no agent could have that name
        messages = []
    return {
        "agent": agent,
        "events": [e.to_json() for e in events[-C.mcp_inbox_events :]],
        "messages": [m.to_json() for m in messages],
    }


async def read(store: Store, uri: str) -> dict[str, Any]:
    """The content of one of the resources, by URI; ``NotFound`` for another URI."""
    if uri == BOARD_URI:
        return await board(store)
    if uri.startswith(_TASK_PREFIX):
        return await task(store, uri.removeprefix(_TASK_PREFIX))
    if uri.startswith(_AGENT_PREFIX) and uri.endswith(_INBOX_SUFFIX):
        return await inbox(store, uri.removeprefix(_AGENT_PREFIX).removesuffix(_INBOX_SUFFIX))
    raise NotFound(f"no such resource: {uri} (there are {BOARD_URI}, {TASK_URI}, {INBOX_URI})")


def add_resources(server: MCPServer[Any], svc: Service, notifier: Notifier) -> None:
    """Serve the resources on ``server`` (replacing MCPServer's static ones)."""
    low = server._lowlevel_server  # the low-level handlers are the SDK's documented extension point

    def caller(ctx: ServerRequestContext[Any, Any]) -> str:
        try:
            return svc.who_of(ctx.request).agent
        except ToolError as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc)) from None

    async def list_resources(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        agent = caller(ctx)
        out = [
            types.Resource(
                uri=BOARD_URI, name="board", description="the whole board at a glance", mime_type=JSON
            ),
            types.Resource(
                uri=inbox_uri(agent),
                name="inbox",
                description="events touching you, newest last",
                mime_type=JSON,
            ),
        ]
        tasks = await _guarded(svc, agent, _unfinished(svc.store))
        out += [types.Resource(uri=task_uri(t.id), name=t.id, title=t.title, mime_type=JSON) for t in tasks]
        return types.ListResourcesResult(resources=out)

    async def list_templates(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        caller(ctx)
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(
                    uri_template=TASK_URI, name="task", description="one task and its events", mime_type=JSON
                ),
                types.ResourceTemplate(
                    uri_template=INBOX_URI,
                    name="inbox",
                    description="events touching an agent",
                    mime_type=JSON,
                ),
            ]
        )

    async def read_resource(
        ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        agent = caller(ctx)
        data = await _guarded(svc, agent, read(svc.store, str(params.uri)))
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=params.uri, text=_dump(data), mime_type=JSON)]
        )

    async def subscribe(
        ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        caller(ctx)
        notifier.subscribe(str(params.uri), ctx.session)
        return types.EmptyResult()

    async def unsubscribe(
        ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        caller(ctx)
        notifier.unsubscribe(str(params.uri), ctx.session)
        return types.EmptyResult()

    low.add_request_handler("resources/list", types.PaginatedRequestParams, list_resources)
    low.add_request_handler("resources/templates/list", types.PaginatedRequestParams, list_templates)
    low.add_request_handler("resources/read", types.ReadResourceRequestParams, read_resource)
    low.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
    low.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, unsubscribe)


async def _unfinished(store: Store) -> list[Any]:
    half = C.mcp_list_tasks // 2
    return [
        *await store.tasks(state=State.CLAIMED, limit=half),
        *await store.tasks(state=State.QUEUED, limit=half),
    ]


async def _guarded(svc: Service, agent: str, work: Any) -> Any:
    """``work`` counted as a call of ``agent``; a failure becomes a one-line protocol error."""
    try:
        return await svc.counted(agent, work)
    except Exception as exc:
        code = INVALID_PARAMS if isinstance(exc, NotFound | BadInput) else INTERNAL_ERROR
        raise MCPError(code=code, message=refusal(exc)) from None
