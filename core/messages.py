"""Messages between agents: direct and broadcast, an inbox per agent with read marks.

The half of the Store contract that messages add (``Store`` inherits ``Messaging``): the
public methods check their input, the backends' ``_op``s (``lua/send-1.lua`` and
``lua/inbox-1.lua`` on Redis, ``file/messages.py`` on SQLite) do the rest, each send with
its audit event ("message": from, to, id, size; never the text) in one atomic step.

Choices (the issue was silent):
- An operator sends as ``operator:NAME`` (agent names hold no ':', so it is unambiguous);
  any other sender must be a registered agent, and the recipient too ("no such agent X",
  NotFound, exit 3), so a typo is refused instead of filling an inbox nobody reads.
- A broadcast is seen by every agent while the broadcast log keeps it, also by agents
  registered after it was sent: it is a notice to the board ("main is frozen"), which a
  newcomer needs as much; the log's cap and the retention horizon bound what it finds.
- Reading returns the newest ``limit`` messages (with ``unread``: the oldest ``limit``
  unread ones, so they are taken in order), oldest first, and marks those as read.
- Sending wakes the recipient: its wake channel (a broadcast: the claimable channel, so
  every waiting claimer) and the hints channel for views. A waiting claim returns with
  ClaimMiss "message" only for an unread message that arrived after it began waiting, and
  it finds that by reading the board at each re-check, so a lost hint costs delay only.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
from typing import Any

from . import constants, validate
from .errors import BadInput
from .models import Message
from .store_ops import StoreOps

OPERATOR = constants.operator_sender_prefix


def operator_sender(name: str) -> str:
    """How a message from the operator ``name`` names its sender."""
    return OPERATOR + validate.operator(name)


def is_operator(sender: str) -> bool:
    return sender.startswith(OPERATOR)


def message_text(value: Any) -> str:
    """A message's text, or ``BadInput``: not empty, at most ``max_message_bytes``, no
    control characters but newline and tab."""
    if not isinstance(value, str) or not value.strip():
        raise BadInput("message text is empty")
    return validate.text("message text", value, constants.max_message_bytes, multiline=True)


def recipient(to: str | None) -> str:
    """The stored recipient: an agent's name, or "" for a broadcast (``None`` or "*")."""
    if to is None or to in ("", "*"):
        return ""
    return validate.agent(to)


def from_fields(f: dict[str, Any], read: bool = False) -> Message:
    """A message from its stored JSON object (both backends write the same keys)."""
    return Message(
        id=int(f["id"]),
        sender=str(f["sender"]),
        to=str(f.get("to") or ""),
        text=str(f["text"]),
        at_ms=int(f["at_ms"]),
        read=read,
    )


def fields(m: Message) -> dict[str, Any]:
    """The stored JSON object of a message (what a board dump carries)."""
    return {"id": m.id, "sender": m.sender, "to": m.to, "text": m.text, "at_ms": m.at_ms}


class Messaging(StoreOps):
    """Messages between agents: ``send``, ``inbox``, ``unread``; the backends' ops below."""

    async def send(self, sender: str, to: str | None, text: str, *, operator: bool = False) -> Message:
        """Send ``text`` from ``sender`` (an agent; with ``operator`` an operator's name) to
        the agent ``to``, or to every agent (``None`` or "*"). ``NotFound`` when the
        recipient, or a sending agent, is not registered."""
        who = operator_sender(sender) if operator else validate.agent(sender)
        return await self._send(who, recipient(to), message_text(text))

    async def inbox(
        self,
        agent: str,
        *,
        unread: bool = False,
        limit: int = constants.inbox_default_limit,
        mark_read: bool = True,
    ) -> list[Message]:
        """``agent``'s direct and broadcast messages, oldest first: the newest ``limit``, or
        with ``unread`` the oldest ``limit`` unread; each says whether it was read before.
        What it returns is marked read unless ``mark_read`` is false."""
        n = validate.positive_int("limit", limit, constants.inbox_max + constants.broadcasts_max)
        for name, flag in (("unread", unread), ("mark_read", mark_read)):
            if not isinstance(flag, bool):
                raise BadInput(f"{name} must be true or false, got {flag!r}")
        return await self._inbox(validate.agent(agent), unread, n, mark_read)

    async def unread(self, agents: Iterable[str]) -> dict[str, int]:
        """How many unread messages each agent has (a few reads per agent: for views)."""
        names = list(dict.fromkeys(validate.agent(a) for a in agents))
        if len(names) > constants.max_max_claims:
            raise BadInput(f"at most {constants.max_max_claims} agents in one unread count")
        return await self._unread(names) if names else {}

    async def message_news(self, agent: str, after: int) -> tuple[int, int]:
        """(the board's newest message id, how many unread messages to ``agent`` have an id
        above ``after``): what a waiting claimer checks at each re-check."""
        return await self._message_news(validate.agent(agent), after)

    @abstractmethod
    async def _send(self, sender: str, to: str, text: str) -> Message: ...
    @abstractmethod
    async def _inbox(self, agent: str, unread: bool, limit: int, mark: bool) -> list[Message]: ...
    @abstractmethod
    async def _unread(self, agents: list[str]) -> dict[str, int]: ...
    @abstractmethod
    async def _message_news(self, agent: str, after: int) -> tuple[int, int]: ...
