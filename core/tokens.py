"""Bearer tokens: an agent's identity over the MCP server (and the CLI's ``CLAIMROOM_TOKEN``).

A token is ``crm_`` and 43 URL-safe characters (32 random bytes). The board keeps only its
sha256, keyed by it, with the agent, the role, when it was made and its first characters
(to tell tokens apart in ``token ls``); the token itself is returned once, by
``create_token``, and stored nowhere. Tokens live on the board, so every server on the
board accepts them. A lookup is by the digest: nothing compares a presented token with a
stored one character by character, so timing tells an attacker nothing about either.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from . import constants
from .identity import Identity, Role, TokenInfo
from .store import Store

__all__ = [
    "TokenInfo", "create_token", "digest", "list_tokens", "resolve_token", "revoke_tokens", "well_formed",
]  # fmt: skip

_LENGTH = len(secrets.token_urlsafe(constants.token_random_bytes))  # 43
_FORM = re.compile(re.escape(constants.token_prefix) + f"[A-Za-z0-9_-]{{{_LENGTH}}}")


def well_formed(token: object) -> bool:
    """Whether ``token`` has the form of a claimroom token (says nothing of whether it is valid)."""
    return isinstance(token, str) and _FORM.fullmatch(token) is not None


def digest(token: str) -> str:
    """The sha256 the board keys a token by (hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(store: Store, agent: str, role: Role | str) -> str:
    """A new token for ``agent`` with ``role``; returned once, only its digest is kept.
    ``BadInput`` for an unknown role or a malformed agent name."""
    r = Role.of(role)
    token = constants.token_prefix + secrets.token_urlsafe(constants.token_random_bytes)
    await store.token_save(digest(token), agent, r.value, token[: constants.token_hint_chars])
    return token


async def resolve_token(store: Store, token: str) -> Identity | None:
    """The identity a token stands for; None when it is unknown, revoked or malformed (a
    malformed one never reaches the store). Session and via are the caller's to add
    (``dataclasses.replace``)."""
    if not well_formed(token):
        return None
    found = await store.token_find(digest(token))
    if found is None:
        return None
    return Identity(agent=found.agent, role=found.role)


async def list_tokens(store: Store) -> list[TokenInfo]:
    """Every token on the board: agent, role, created_ms, hint; never a token."""
    return await store.token_list()


async def revoke_tokens(store: Store, agent: str) -> int:
    """Revoke every token of ``agent`` at once; returns how many there were."""
    return await store.token_revoke(agent)
