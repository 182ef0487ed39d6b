"""TEMPORARY stand-in for the identity API (core/identity.py, core/tokens.py, core/acting.py)
being built on branch h/identity; deleted when that lands on main. Same names and signatures
as /work/wt/API_IDENTITY.md, minimal behaviour (tokens live in this process only)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from ..errors import ClaimroomError
from ..models import Claim, State, Task
from ..store import Miss, Store, TaskSpec


class Role(StrEnum):
    WORKER = "worker"
    PLANNER = "planner"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Identity:
    agent: str
    role: Role
    session: str = ""
    via: str = ""


class Forbidden(ClaimroomError):
    """Raised when an agent acts on what is not its own, or its role may not."""

    exit_code = 7


_TOKENS: dict[str, tuple[str, Role]] = {}


async def create_token(store: Store, agent: str, role: Role | str) -> str:
    token = "crm_" + secrets.token_urlsafe(32)
    _TOKENS[hashlib.sha256(token.encode()).hexdigest()] = (agent, Role(role))
    return token


async def resolve_token(store: Store, token: str) -> Identity | None:
    found = _TOKENS.get(hashlib.sha256(token.encode()).hexdigest())
    return None if found is None else Identity(found[0], found[1])


class Acting:
    def __init__(self, store: Store, who: Identity) -> None:
        self.store = store
        self.who = who

    async def _own(self, task: str, token: int, call: str) -> None:
        t = await self.store.get(task)
        if t.token == token and t.agent != self.who.agent:
            raise Forbidden(
                f"{task} is claimed by {t.agent}, not {self.who.agent}: an agent acts only on its own claims"
            )

    def _need(self, *roles: Role, call: str) -> None:
        if self.who.role not in roles:
            raise Forbidden(
                f"{call} needs the {roles[-1].value} role; {self.who.agent} is a {self.who.role.value}"
            )

    async def register(self, capabilities: Iterable[str] = (), max_claims: int = 1) -> None:
        await self.store.register(self.who.agent, capabilities, max_claims)

    async def claim(
        self,
        *,
        queues: Sequence[str] = (),
        ttl_s: float | None = None,
        wait_s: float = 0.0,
        miss: Miss | None = None,
    ) -> Claim | None:
        if ttl_s is None:
            return await self.store.claim(self.who.agent, queues=queues, wait_s=wait_s, miss=miss)
        return await self.store.claim(self.who.agent, queues=queues, ttl_s=ttl_s, wait_s=wait_s, miss=miss)

    async def heartbeat(
        self,
        task: str,
        token: int,
        *,
        ttl_s: float | None = None,
        progress: float | None = None,
        stage: str | None = None,
        checkpoint: str | None = None,
    ) -> int:
        await self._own(task, token, "heartbeat")
        return await self.store.heartbeat(
            task, token, ttl_s=ttl_s, progress=progress, stage=stage, checkpoint=checkpoint
        )

    async def complete(self, task: str, token: int, result: Any = None) -> list[str]:
        await self._own(task, token, "complete")
        return await self.store.complete(task, token, result)

    async def fail(self, task: str, token: int, reason: str, *, fatal: bool = False) -> tuple[State, int]:
        await self._own(task, token, "fail")
        return await self.store.fail(task, token, reason, fatal=fatal)

    async def release(self, task: str, token: int) -> None:
        await self._own(task, token, "release")
        await self.store.release(task, token)

    async def add(self, title: str, **fields: Any) -> str:
        self._need(Role.PLANNER, Role.OPERATOR, call="add")
        return await self.store.add(title, **fields)

    async def add_many(self, specs: Iterable[TaskSpec]) -> list[str]:
        self._need(Role.PLANNER, Role.OPERATOR, call="add")
        return await self.store.add_many(specs)

    async def lock(
        self,
        paths: Iterable[str],
        *,
        ttl_s: float | None = None,
        shared: bool = False,
        task: str = "",
        root: str | Path | None = None,
    ) -> int:
        return await self.store.lock(paths, self.who.agent, ttl_s=ttl_s, shared=shared, task=task, root=root)

    async def unlock(
        self, paths: Iterable[str], *, task: str | None = None, root: str | Path | None = None
    ) -> list[str]:
        return await self.store.unlock(paths, self.who.agent, task=task, root=root)

    async def act(
        self,
        action: str,
        task: str,
        seen_state: State | str,
        seen_token: int,
        agent: str = "",
        *,
        restore: bool = False,
    ) -> State:
        self._need(Role.OPERATOR, call=action)
        return await self.store.act(
            action, task, seen_state, seen_token, self.who.agent, agent, restore=restore
        )

    async def extend(self, task: str, seen_token: int, extra_s: float) -> int:
        self._need(Role.OPERATOR, call="extend")
        return await self.store.extend(task, seen_token, extra_s, self.who.agent)

    async def current_claims(self) -> list[Task]:
        return [
            t for t in await self.store.tasks(state=State.CLAIMED, limit=10_000) if t.agent == self.who.agent
        ]
