"""The message tools: ``send_message`` and ``read_inbox`` (core/messages.py).

An agent sends and reads only as itself, the token's agent (rule 11); an operator's token
may send as the operator (``as_operator``: the sender reads "operator:NAME"). A message to
an agent also updates that agent's inbox resource (``notify``: the "message" audit event
touches the recipient), so a subscribed client learns of it at once.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from .. import constants as C
from ..acting import Acting
from ..identity import Role
from ..models import Message
from .service import Service

READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)  # as tools.py's
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)


class MessageView(BaseModel):
    """One message."""

    id: int = Field(description="its number; later messages have larger ones")
    sender: str = Field(description='an agent, or "operator:NAME" for an operator')
    to: str = Field(description='the recipient; "" when it went to every agent')
    text: str
    at_ms: int = Field(description="when it was sent, store clock (ms since the epoch)")
    read: bool = Field(description="whether you had read it before this read")

    @classmethod
    def of(cls, m: Message) -> MessageView:
        return cls(**m.to_json())


class Inbox(BaseModel):
    agent: str
    messages: list[MessageView] = Field(description="oldest first")


def add_message_tools(server: MCPServer[Any], svc: Service) -> None:
    """Register the message tools on ``server``."""

    @server.tool(
        annotations=WRITE,
        description=(
            'Send a message to another agent (to: its name), or to every agent (to: "*"): a '
            "hand-off, a warning, a question. It wakes the recipient if it is waiting for work. "
            f"Plain text, at most {C.max_message_bytes} bytes; newlines allowed. The recipient "
            "must be a registered agent."
        ),
    )
    async def send_message(
        ctx: Context[Any, Any],
        to: Annotated[str, Field(description='the agent to send to, or "*" for every agent')],
        text: Annotated[str, Field(description="the message")],
        as_operator: Annotated[
            bool, Field(description="operators only: send as the operator instead of as an agent")
        ] = False,
    ) -> MessageView:
        async def go(a: Acting) -> MessageView:
            if as_operator:
                await a.need(Role.OPERATOR, "send_message as operator")
            return MessageView.of(await a.store.send(a.who.agent, to, text, operator=as_operator))

        return await svc.call(ctx, go)

    @server.tool(
        annotations=READ,
        description=(
            "Read your messages (direct and to every agent), oldest first; what you read is marked "
            "read. With unread, only those not read yet (the oldest first, up to limit)."
        ),
    )
    async def read_inbox(
        ctx: Context[Any, Any],
        unread: Annotated[bool, Field(description="only the messages not read yet")] = False,
        limit: Annotated[
            int, Field(description="at most this many (the newest; with unread the oldest unread)", ge=1)
        ] = C.inbox_default_limit,
    ) -> Inbox:
        async def go(a: Acting) -> Inbox:
            got = await a.store.inbox(a.who.agent, unread=unread, limit=limit)
            return Inbox(agent=a.who.agent, messages=[MessageView.of(m) for m in got])

        return await svc.call(ctx, go)
