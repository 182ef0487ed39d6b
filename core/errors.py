"""Every exception claimroom raises on purpose, under one base class.

Each carries the CLI exit code of the design note's contract, so the CLI maps any of
them to a one-line message and the right exit status without a table of its own.
"""

from __future__ import annotations

from enum import IntEnum

from . import constants


class ClaimroomError(Exception):
    """Base of every deliberate claimroom error; ``exit_code`` is the CLI's status."""

    exit_code = 1


class BadInput(ClaimroomError):
    """Raised when an argument or value is malformed, out of range or too large."""

    exit_code = 2


class NotFound(ClaimroomError):
    """Raised when a named task (or other object) does not exist."""

    exit_code = 3


class NothingToClaim(ClaimroomError):
    """Raised when a claim finds no task this agent may take now."""

    exit_code = 3


class LeaseLost(ClaimroomError):
    """Raised when a token is not the task's current one: the claim ended or moved on."""

    exit_code = 4


class WrongState(ClaimroomError):
    """Raised when an operation does not apply to the task's current state."""

    exit_code = 6


class Conflict(ClaimroomError):
    """Raised when a path lock is held by another agent; the message names the holder."""

    exit_code = 6


class StoreUnavailable(ClaimroomError):
    """Raised when the store cannot be reached; the message says what to do."""

    exit_code = 5


class Changed(ClaimroomError):
    """Raised when an operator action finds the claim changed since it was selected."""

    exit_code = 6


class Forbidden(ClaimroomError):
    """Raised when an identity may not do what it asked: another agent's claim or lock, or
    a call its role does not allow; nothing changed, and the attempt is in the audit trail."""

    exit_code = 7

    def __init__(self, message: str, *, holder: str = "") -> None:
        super().__init__(message)
        self.holder = holder  # the agent whose claim or lock it is, when that was the reason


class StartFailed(StoreUnavailable):
    """Raised when one way of starting a store (Docker, redis-server) did not work; says why."""


class ErrorCode(IntEnum):
    """The negative codes scripts refuse with; ``raise_for`` maps them to exceptions."""

    NOT_FOUND = -1
    LEASE_LOST = -2
    NOT_HOLDER = -3
    CHANGED = -4
    BAD_INPUT = -5
    CONFLICT = -6
    WRONG_STATE = -7
    TOO_MANY_CAPSIGS = -8
    NOT_YOURS = -9
    NO_AGENT = -10  # a message's sender or recipient is not a registered agent
    BID_REFUSED = -11

    def exception(self, detail: list[str]) -> ClaimroomError:
        first = detail[0] if detail else ""
        if self is ErrorCode.NOT_FOUND:
            return NotFound(f"no such task or agent: {first}")
        if self is ErrorCode.LEASE_LOST:
            return LeaseLost(f"lease lost: {first} is no longer held with that token")
        if self is ErrorCode.NOT_HOLDER:
            return WrongState(f"agent does not hold task {first}")
        if self is ErrorCode.CONFLICT:
            return Conflict(f"{first} is locked by {detail[1]}")
        if self is ErrorCode.WRONG_STATE:
            return WrongState(first)
        if self is ErrorCode.TOO_MANY_CAPSIGS:
            return BadInput(
                f"too many capability sets: unfinished tasks would need {first} different sets of "
                f"capabilities besides none, at most {constants.max_capsigs} are allowed; require a set "
                "already in use, or finish or cancel the tasks of another"
            )
        if self is ErrorCode.NOT_YOURS:
            what, name, holder, agent = [*detail, "", "", "", ""][:4]
            return not_yours(what, name, holder, agent)
        if self is ErrorCode.NO_AGENT:
            return NotFound(f"no such agent {first}")
        if self is ErrorCode.BID_REFUSED:
            return Conflict(f"bid refused: {first}")
        if self is ErrorCode.CHANGED:
            return Changed(f"{first} changed since you selected it")
        return BadInput(first)


def not_yours(what: str, name: str, holder: str, agent: str) -> Forbidden:
    """The refusal of an agent acting on another's claim (``what`` "claim") or lock ("lock")."""
    if what == "lock":
        return Forbidden(
            f"{name} is locked by {holder}, not {agent}: an agent unlocks only its own locks", holder=holder
        )
    return Forbidden(
        f"{name} is claimed by {holder}, not {agent}: an agent acts only on its own claims", holder=holder
    )
