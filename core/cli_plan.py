"""``claimroom plan FILE``: a plan file (core/plan.py) added whole, atomically.

``FILE`` is a path or ``-`` (standard input). Without ``--parent`` the file's parent and
subtasks are added (the parent waits for its subtasks); with ``--parent ID --token T``
(a planner's live claim; ``--agent`` the planner, or ``CLAIMROOM_TOKEN``'s) the subtasks go
under that claim. Prints the parent's id and each ref's; a bad plan is exit 2, nothing added.
"""

from __future__ import annotations

import argparse
import sys
from typing import BinaryIO, TextIO

from . import constants
from . import plan as plans
from .acting import Acting
from .errors import BadInput
from .output import Printer
from .safetext import shown
from .store import Store


def read_plan(name: str) -> str:
    """A plan file's text (``-``: standard input), at most ``max_plan_bytes``."""
    try:
        if name == "-":
            if sys.stdin is None:
                raise BadInput("the plan is to come from standard input, but it is closed")
            return _text(getattr(sys.stdin, "buffer", sys.stdin), "standard input")
        with open(name, "rb") as f:
            return _text(f, f"file {name!r}")
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        why = exc.strerror if isinstance(exc, OSError) else exc
        raise BadInput(f"cannot read plan file {shown(name)!r}: {why}") from None


def _text(source: BinaryIO | TextIO, where: str) -> str:
    data = source.read(constants.max_plan_bytes + 1)
    if isinstance(data, str):  # a text stream without a byte buffer
        data = data.encode(errors="surrogateescape")
    if len(data) > constants.max_plan_bytes:
        raise BadInput(f"the plan in {where} is larger than {constants.max_plan_bytes} bytes")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise BadInput(f"the plan in {where} is not UTF-8 text") from None


async def cmd_plan(a: argparse.Namespace, s: Store, out: Printer) -> None:
    pf = plans.parse(read_plan(a.file))  # refused before anything is read from the board
    acting: Acting | None = a.acting
    if not a.parent and (a.token or a.agent):
        raise BadInput("--token and --agent go with --parent (a planner's claim)")
    if a.parent and not a.token:
        raise BadInput("--parent needs --token: the planner's claim on it")
    if acting is not None and a.agent and a.agent != acting.who.agent:
        said = f"plan as {a.agent} contradicts {constants.env_token}, which is {acting.who.agent}'s"
        raise await acting.refused("plan", said, task=a.parent or "", asked=a.agent[:64])
    got = await plans.add(s, pf, parent=a.parent or "", token=a.token, agent=a.agent or "", acting=acting)
    lines = [f"parent {got['parent']}"] + [f"{shown(ref)} {tid}" for ref, tid in got["subtasks"].items()]
    out.done(got, "\n".join(lines))
