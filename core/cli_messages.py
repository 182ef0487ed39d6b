"""The CLI's message commands: ``claimroom send AGENT|--all TEXT --agent A`` and
``claimroom inbox --agent A [--unread]`` (the store's side is core/messages.py).

With CLAIMROOM_TOKEN set, the sender (the reader) is the token's agent, as for every
command; TEXT ``-`` reads standard input (at most ``max_message_bytes``, refused past it).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from . import constants
from .cli_commands import Handler, _agent
from .errors import BadInput
from .models import Message
from .output import Printer
from .safetext import shown
from .store import Store


def _text(raw: str) -> str:
    """TEXT as given, or standard input for ``-`` (read no further than the limit allows)."""
    if raw != "-":
        return raw
    if sys.stdin is None:
        raise BadInput("message text is to come from standard input, but it is closed")
    limit = constants.max_message_bytes
    source: Any = getattr(sys.stdin, "buffer", sys.stdin)
    data = source.read(limit + 1)
    if isinstance(data, str):
        data = data.encode(errors="surrogateescape")
    if len(data) > limit:
        raise BadInput(f"message text is larger than {limit} bytes")
    try:
        return str(data.decode()).removesuffix("\n")  # the newline a shell's echo adds
    except UnicodeDecodeError:
        raise BadInput("message text from standard input is not UTF-8 text") from None


async def cmd_send(a: argparse.Namespace, s: Store, out: Printer) -> None:
    words: list[str] = a.words
    if a.all and len(words) != 1:
        raise BadInput("send --all takes one TEXT (no AGENT)")
    if not a.all and len(words) != 2:
        raise BadInput("send takes AGENT and TEXT (or --all and TEXT)")
    to = None if a.all else words[0]
    text = _text(words[-1])
    sender = await _agent(a, a.agent, "send")
    m = await s.send(sender, to, text)
    where = "every agent" if m.broadcast else m.to
    out.done(m.to_json(), f"sent message {m.id} to {shown(where)}")


def _when(at_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at_ms / 1000))


def _lines(m: Message) -> str:
    to = " to all" if m.broadcast else ""
    mark = "" if m.read else " (new)"
    head = f"#{m.id} {_when(m.at_ms)} from {shown(m.sender)}{to}{mark}"
    body = "\n".join("  " + shown(line) for line in m.text.split("\n"))
    return head + "\n" + body


async def cmd_inbox(a: argparse.Namespace, s: Store, out: Printer) -> None:
    agent = await _agent(a, a.agent, "inbox")
    got = await s.inbox(agent, unread=a.unread)
    empty = "no unread messages" if a.unread else "no messages"
    text = "\n".join(_lines(m) for m in got) if got else empty
    out.done({"agent": agent, "messages": [m.to_json() for m in got]}, text)


COMMANDS: dict[str, Handler] = {"send": cmd_send, "inbox": cmd_inbox}
