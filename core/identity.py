"""Who is acting: an agent's name, its role, and where its calls come from.

Over the MCP server (and the CLI with ``CLAIMROOM_TOKEN``) a bearer token is the identity
(``tokens.resolve_token``); ``acting.Acting`` decides what that identity may do.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from . import validate
from .errors import BadInput


class Role(StrEnum):
    """What an identity may do, each role with the rights of the one before."""

    WORKER = "worker"  # claim, heartbeat, complete, fail, release, lock/unlock its own; reads
    PLANNER = "planner"  # a worker's rights, and add (later: plan)
    OPERATOR = "operator"  # everything, and the operator actions on anyone's tasks

    @staticmethod
    def of(value: Role | str) -> Role:
        """The role named ``value``; ``BadInput`` naming the roles otherwise."""
        try:
            return Role(value)
        except ValueError:
            names = ", ".join(r.value for r in Role)
            raise BadInput(f"unknown role {value!r}: one of {names}") from None

    def allows(self, needed: Role) -> bool:
        """Whether this role has the rights of ``needed``."""
        order = list(Role)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True)
class Identity:
    """An agent acting through claimroom; checked on creation (``BadInput`` otherwise)."""

    agent: str  # validated agent name
    role: Role
    session: str = ""  # e.g. a Claude Code session id; shown in the control room
    via: str = ""  # "mcp-http", "mcp-stdio", "hook", "cli": recorded with refused attempts

    def __post_init__(self) -> None:
        validate.agent(self.agent)
        object.__setattr__(self, "role", Role.of(self.role))
        validate.session(self.session)
        if self.via:
            validate.kind("via", self.via)


@dataclass(frozen=True)
class TokenInfo:
    """A bearer token as the board keeps it: never the token itself."""

    agent: str
    role: Role
    created_ms: int  # store clock
    hint: str  # the token's first 8 characters, to tell tokens apart

    def to_json(self) -> dict[str, str | int]:
        return {
            "agent": self.agent, "role": self.role.value, "created_ms": self.created_ms, "hint": self.hint,
        }  # fmt: skip
