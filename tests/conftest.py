"""Shared fixtures: a private redis-server per test session, a fresh namespace per test.

Tests never use the Redis on 6379 nor flush anything: each test gets its own namespace
on a server this session started on a free port.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from claimroom.core.local_redis import LocalRedis
from claimroom.core.store import Store


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    server = LocalRedis.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: LocalRedis) -> str:
    return redis_server.url


@pytest.fixture
def namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
async def store(redis_url: str, namespace: str) -> AsyncIterator[Store]:
    s = Store.from_url(redis_url, namespace)
    yield s
    await s.close()


@pytest.fixture
def cli_env(redis_url: str, namespace: str) -> dict[str, str]:
    """Environment for running the ``claimroom`` command against this test's board."""
    env = dict(os.environ)
    env["CLAIMROOM_URL"] = redis_url
    env["CLAIMROOM_NAMESPACE"] = namespace
    env.pop("NO_COLOR", None)
    return env
