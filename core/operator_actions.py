"""The operator's actions on a task: which states each applies to and what it does, once.

``move-1.lua`` gets the moves as a Lua table at load time (``redis.scripts.lua_values``),
the file store's ``admin.move`` runs them from here, and the control room and the MCP
operator tools read the states from here: an action's states are spelled in one place.

The queue and agent actions (pause or resume a queue, reset a breaker) take no task, so
they apply whatever state the board is in and have no row here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .errors import ErrorCode
from .models import State

# The refusal of an action where it does not apply; both backends fill it in the same way
# (move-1.lua with string.gsub, admin.move with str.format).
WRONG_STATE = "{action} does not apply to a {state} task"


@dataclass(frozen=True)
class OperatorAction:
    """One operator action on a task: where it applies and what it does there."""

    name: str
    states: frozenset[State]  # where it applies; anywhere else it is refused with ``refusal``
    to: State  # the state the task is in after it
    event: str  # the audit event it writes
    reason: str | None = None  # the task's reason after, ``{operator}`` filled in; None: kept
    reset_counts: bool = False  # failures and expiries back to 0: a fresh start
    assigns: bool = False  # the task waits for one named agent, who gets it on its next claim
    restores: bool = False  # may bring back the dependents that its end cancelled
    # A move carries the state the operator saw, so it is refused as not applying there; an
    # extension carries only the claim's token, so a task no longer claimed has changed.
    refusal: ErrorCode = ErrorCode.WRONG_STATE

    def applies(self, state: State | str) -> bool:
        return state in self.states

    def refused(self, state: State | str) -> str:
        """The refusal's message for a task in ``state``."""
        return WRONG_STATE.format(action=self.name, state=State(state).value)

    def reason_by(self, operator: str) -> str | None:
        """The task's reason after ``operator`` ran it; None: the reason is kept."""
        return None if self.reason is None else self.reason.format(operator=operator)

    def lua(self) -> dict[str, object]:
        """The fields ``move-1.lua`` reads (see ``redis.scripts.lua_literal``)."""
        return {
            "states": self.states,
            "to": self.to,
            "event": self.event,
            "reason": self.reason,
            "reset_counts": self.reset_counts,
            "assigns": self.assigns,
            "restores": self.restores,
        }


_Q, _C, _R, _O, _D = State.QUEUED, State.CLAIMED, State.RETRYING, State.ORPHANED, State.DEAD
# Everything not finished: cancel ends any of it.
_UNFINISHED = frozenset(s for s in State if not s.final)

OPERATOR_ACTIONS: dict[str, OperatorAction] = {
    a.name: a
    for a in (
        OperatorAction("kill", frozenset({_C}), _Q, "killed"),
        OperatorAction("kill-dead", frozenset({_C}), _D, "killed", reason="killed by {operator}"),
        OperatorAction("requeue", frozenset({_C, _O, _R, _D}), _Q, "requeued"),
        OperatorAction("cancel", _UNFINISHED, State.CANCELLED, "cancelled", reason="cancelled by {operator}"),
        OperatorAction("retry", frozenset({_D}), _Q, "retried", reason="", reset_counts=True, restores=True),
        OperatorAction("reassign", frozenset({_C, _O, _Q, _R, _D}), _Q, "reassigned", assigns=True),
        OperatorAction("extend", frozenset({_C}), _C, "extended", refusal=ErrorCode.CHANGED),
    )
}

# The actions ``Store.act`` runs (move-1.lua, admin.move); extend has its own call and script.
MOVES: dict[str, OperatorAction] = {n: a for n, a in OPERATOR_ACTIONS.items() if n != "extend"}


def states_in_words(states: Iterable[State]) -> str:
    """``claimed, orphaned or dead``: states in the order of a task's life, for messages."""
    names = [s.value for s in State if s in set(states)]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def lua_values() -> dict[str, object]:
    """The ``${name}`` values this table gives the Lua scripts."""
    return {
        "operator_moves": {name: a.lua() for name, a in MOVES.items()},
        "wrong_state": WRONG_STATE,
    }
