"""Server-side tools over a RedisStore's connection, for benchmarks and tests (``RedisStore.admin``).

Not part of the Store contract, and used by no path of the product (CLI, MCP server,
control room): these read the server (INFO, memory, subscribers), manage the script cache,
or run the scripts with no checks at all. What they exist for: the benchmarks' ceiling
run (what the scripts alone cost Redis), measuring what an operation costs the server, and
tests that restart the script cache. Nothing here keeps the board's rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from redis.commands.core import AsyncScript

from .. import constants as C


class RedisAdmin:
    """The server tools of one namespace's connection pool."""

    def __init__(self, redis: Any, namespace: str, scripts: Mapping[str, AsyncScript]) -> None:
        self._redis = redis
        self._namespace = namespace
        self._scripts = scripts

    async def info(self, section: str | None = None) -> dict[str, Any]:
        """The server's INFO (of one ``section``, e.g. "commandstats", or the default set)."""
        info: dict[str, Any] = await (self._redis.info() if section is None else self._redis.info(section))
        return info

    async def memory_usage(self, key: str) -> int | None:
        """What one key costs the server in bytes (MEMORY USAGE, every element counted)."""
        size = await self._redis.memory_usage(key, samples=0)
        return None if size is None else int(size)

    async def stream_length(self) -> int:
        """How many events the audit stream holds (XLEN)."""
        return int(await self._redis.xlen(C.events_key(self._namespace)))

    async def subscribers(self, channel: str) -> int:
        """How many clients are subscribed to ``channel`` (PUBSUB NUMSUB)."""
        found = await self._redis.pubsub_numsub(channel)
        return int(found[0][1]) if found else 0

    async def load_scripts(self) -> None:
        """Load every script into the server's cache (SCRIPT LOAD): a process's first calls
        then do not pay for it, nor does ``run_scripts``."""
        for script in self._scripts.values():
            await self._redis.script_load(script.script)

    async def flush_scripts(self) -> None:
        """Empty the server's script cache (SCRIPT FLUSH), as a restart of Redis would."""
        await self._redis.script_flush()

    async def run_scripts(self, name: str, calls: Sequence[Sequence[Any]]) -> list[Any]:
        """Run script ``name`` once per argument list, all in one pipeline (EVALSHA, the
        audit stream as KEYS[1] and the namespace's prefix first in ARGV, as the store
        calls them), and return the raw replies, unchecked. The scripts must be loaded
        (``load_scripts``). The ceiling run's tool: the scripts' cost with no client work."""
        sha = self._scripts[name].sha
        stream, prefix = C.events_key(self._namespace), C.prefix(self._namespace)
        pipe = self._redis.pipeline(transaction=False)
        for args in calls:
            pipe.evalsha(sha, 1, stream, prefix, *args)
        return list(await pipe.execute())
