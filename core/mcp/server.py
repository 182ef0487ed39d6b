"""The claimroom MCP server (the SDK's ``MCPServer``) with its tools and resources, whatever
the transport (``http.build_app``, ``stdio.run_stdio``)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.subscriptions import InMemorySubscriptionBus

from ..identity import Role
from .notify import Notifier
from .operator_tools import OPERATOR_TOOLS, add_operator_tools
from .resources import add_resources
from .service import Service
from .stats import published
from .tools import add_tools

log = logging.getLogger("claimroom.mcp")

INSTRUCTIONS = """\
claimroom coordinates many agents working on one codebase. Before working on anything, claim
it (claim); work only on the task you claimed, and heartbeat it (with progress and a stage)
well before its deadline. Finish with complete, or fail with a reason (fatal when it can never
succeed), or release it. Lock the paths you will edit (claim with paths, or lock) and never
edit a path another agent holds. When a call tells you to stop working on a task, stop at
once: someone else has it now. The board, each task and your inbox are resources you can read
and subscribe to."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("claimroom")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0"


def build_server(svc: Service) -> tuple[MCPServer[Any], Notifier]:
    """The MCP server acting through ``svc``, and the notifier to run beside it."""
    bus = InMemorySubscriptionBus()
    server: MCPServer[Any] = MCPServer(
        "claimroom",
        title="claimroom",
        version=_version(),
        instructions=INSTRUCTIONS,
        log_level="WARNING",
        subscriptions=bus,
    )
    notifier = Notifier(svc.store, bus)
    add_tools(server, svc)
    add_operator_tools(server, svc)
    add_resources(server, svc, notifier)
    low = server._lowlevel_server  # the low-level handlers are the SDK's documented extension point

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        # The operator's tools are offered to operators only (a call by anyone else is
        # refused by Acting all the same, and audited).
        try:
            operator = svc.who_of(ctx.request).role == Role.OPERATOR
        except ToolError:
            operator = False
        tools = await server.list_tools()
        return types.ListToolsResult(tools=[t for t in tools if operator or t.name not in OPERATOR_TOOLS])

    low.add_request_handler("tools/list", types.PaginatedRequestParams, list_tools)
    # 2025-11-25 clients learn from the handshake that the resource list changes; the SDK's
    # sessions read the options from here when none are given (streamable HTTP).
    low.create_initialization_options = functools.partial(  # type: ignore[method-assign]  # the point: see above
        Server.create_initialization_options, low, NotificationOptions(resources_changed=True)
    )
    return server, notifier


@contextlib.asynccontextmanager
async def running(svc: Service, notifier: Notifier) -> AsyncIterator[None]:
    """What a long-lived server does beside answering calls, for as long as the body runs:
    leader-elected reaping (so recovery never waits for a claim), notifications from the
    board, and its own record on the board for the control room."""
    await notifier.begin()
    follow = asyncio.create_task(notifier.run(), name="claimroom-mcp-follow")
    try:
        async with svc.store.reaping("mcp", report=_report), published(svc.store, svc.stats):
            yield
    finally:
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)


def _report(line: str) -> None:
    log.warning("%s", line)
