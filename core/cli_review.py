"""``claimroom review TASK --accept | --return NOTE``: a reviewer's verdict on a task
delivered with ``complete --review REF`` (the rules are in ``core/review.py``).

With ``--agent R`` the reviewer is agent R (it needs the review capability and may not
review its own delivery); under CLAIMROOM_TOKEN it is the token's agent (an operator's token
reviews as the operator); with neither, the operator: the OS user, as in the control room.
"""

from __future__ import annotations

import argparse
import getpass

from .cli_commands import _agent
from .errors import BadInput
from .output import Printer
from .safetext import shown
from .store import Store


def os_user() -> str:
    """The operator's name: the OS user (as the control room takes it)."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry and no USER variable (some containers): still audit something
        return "operator"


async def cmd_review(a: argparse.Namespace, s: Store, out: Printer) -> None:
    verdict = "accept" if a.accept else "return"
    note = a.note or ""
    if verdict == "return" and not note.strip():
        raise BadInput("--return needs a note saying what to change")
    if a.acting is not None:
        await _agent(a, a.agent, "review", task=a.task)  # a different --agent is refused, audited
        state, unblocked = await a.acting.review(a.task, verdict, note, token=a.token)
        who = a.acting.who.agent
    elif a.agent:
        state, unblocked = await s.review(a.task, verdict, note, agent=a.agent, token=a.token)
        who = a.agent
    else:
        who = os_user()
        state, unblocked = await s.review(a.task, verdict, note, operator=who, token=a.token)
    word = "accepted" if verdict == "accept" else "returned"
    text = f"{a.task} {word} by {shown(who)}, now {state.value}"
    if unblocked:
        text += f"; unblocked {shown(' '.join(unblocked))}"
    out.done(
        {"task": a.task, "state": state.value, "verdict": verdict, "reviewer": who, "unblocked": unblocked},
        text,
    )
