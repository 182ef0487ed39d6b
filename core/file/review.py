"""The file store's review decision: the SQL twin of ``lua/review-1.lua`` (its header is the
contract). Delivery for review is ``ops.complete`` with a reference; an accept goes to done
through ``ops.finish_done``, the one path a completion takes too.
"""

from __future__ import annotations

from .. import constants as C
from ..errors import ErrorCode
from .finish import finish_done
from .ops import touch_agent
from .states import enter
from .tx import Refused, Tx, load_task, split


def decide(
    tx: Tx, tid: str, verdict: str, note: str, reviewer: str, operator: str, token: int
) -> tuple[str, list[str]]:
    """Accept (review -> done) or return (review -> queued, the note in the checkpoint) a
    task in review; returns its new state and the tasks an accept unblocked."""
    if verdict not in ("accept", "return"):
        raise Refused(ErrorCode.BAD_INPUT, f"unknown verdict {verdict}")
    t = load_task(tx, tid)
    if t is None:
        raise Refused(ErrorCode.NOT_FOUND, tid)
    if reviewer:
        a = tx.one("SELECT caps FROM agents WHERE ns = :ns AND name = :a", a=reviewer)
        if a is None:
            raise Refused(ErrorCode.NOT_FOUND, reviewer)
        if C.review_capability not in split(a["caps"]):
            raise Refused(
                ErrorCode.WRONG_STATE,
                f"{reviewer} may not review: it lacks the {C.review_capability} capability",
            )
    if t["state"] != "review":
        raise Refused(ErrorCode.WRONG_STATE, f"{verdict} does not apply to a {t['state']} task")
    if token and t["token"] != token:
        raise Refused(ErrorCode.CHANGED, tid)
    if reviewer and reviewer == t["agent"]:
        raise Refused(
            ErrorCode.WRONG_STATE, f"{reviewer} delivered {tid}: an agent may not review its own delivery"
        )
    data = {"ref": t["review_ref"], "delivered_by": t["agent"]}
    if verdict == "accept":
        new, out = "done", finish_done(tx, t, reason="")
        tx.audit("accepted", tid, reviewer, t["token"], data, operator)
    else:
        new, out = "queued", []
        enter(tx, t, "queued", checkpoint=C.review_note_prefix + note, progress=0.0)
        tx.audit("returned", tid, reviewer, t["token"], {**data, "note": note}, operator)
    if reviewer:
        touch_agent(tx, reviewer)
    return new, out
