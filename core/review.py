"""Review: a task delivered for review (``complete --review REF``) waits in state ``review``
until a reviewer accepts it (done, exactly as a completion) or returns it with a note
(queued again, the note at the head of its checkpoint so the next agent reads it).

Here is what both backends and every caller share: the checks of a reference, a note and a
verdict, and who the reviewer is. The state changes themselves are ``lua/review-1.lua`` and
``file/review.py`` (delivery: ``complete-1.lua`` and ``file/ops.complete``).

A reviewer is an agent holding the ``review`` capability (``constants.review_capability``)
that did not deliver the task, or an operator (an OS user at the CLI, the operator role over
MCP). A return counts no attempt: the work was done, it needs changes.
"""

from __future__ import annotations

from typing import Literal

from . import constants, validate
from .errors import BadInput

Verdict = Literal["accept", "return"]
VERDICTS: tuple[Verdict, ...] = ("accept", "return")


def ref(value: str) -> str:
    """A review reference: a branch, commit or PR, one line of at most ``max_review_ref_chars``."""
    if not isinstance(value, str) or not value.strip():
        raise BadInput("review reference is empty: name the branch, commit or PR to review")
    if len(value) > constants.max_review_ref_chars:
        raise BadInput(f"review reference is longer than {constants.max_review_ref_chars} characters")
    return validate.text("review reference", value.strip(), constants.max_review_ref_chars * 4)


def verdict(value: str) -> Verdict:
    for v in VERDICTS:
        if value == v:
            return v
    raise BadInput(f"unknown review verdict {value!r}: accept or return")


def note(value: str, v: Verdict) -> str:
    """A return's note (required, multi-line text); an accept takes none."""
    if v == "accept":
        if value:
            raise BadInput("an accept takes no note (a return does)")
        return ""
    if not isinstance(value, str) or not value.strip():
        raise BadInput("a return needs a note saying what to change")
    return validate.text("review note", value, constants.max_review_note_bytes, multiline=True)


def reviewer(agent: str, operator: str) -> tuple[str, str]:
    """(reviewing agent, operator): exactly one of them is given."""
    if bool(agent) == bool(operator):
        raise BadInput("a review is made by one reviewer: an agent or an operator")
    return (validate.agent(agent), "") if agent else ("", validate.operator(operator))
