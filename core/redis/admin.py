"""Server-side tools over a RedisStore's connection, for benchmarks and tests (``RedisStore.admin``).

Not part of the Store contract, and used by no path of the product (CLI, MCP server,
control room): these read the server (INFO, memory, subscribers), load or drop the scripts' library,
run the scripts with no checks at all, or empty the whole server. What they exist for: the
benchmarks' ceiling run (what the scripts alone cost Redis), measuring what an operation
costs the server (and how many calls shared a round trip), the benchmarks' own server
(emptied between measures, its SLOWLOG), and tests that take the library away. Nothing
here keeps the board's rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import constants as C
from ..models import Event
from . import functions
from .coalesce import Coalescer
from .scripts import library

SCAN_BATCH = 1_000  # trail entries per XRANGE in task_events_by_scan


class RedisAdmin:
    """The server tools of one namespace's connection pool."""

    def __init__(self, redis: Any, namespace: str, coalescer: Coalescer | None) -> None:
        self._redis = redis
        self._namespace = namespace
        self._coalescer = coalescer

    @property
    def batches(self) -> int | None:
        """Pipelines the store's coalescer has sent so far (``coalesce.py``); None when the
        store sends each call on its own (``coalesce=False``). Over a span, script calls
        divided by the batches sent is how many calls shared one round trip."""
        return None if self._coalescer is None else self._coalescer.batches

    @property
    def acked(self) -> int | None:
        """Replicas that acknowledged the coalescer's last batch (a URL's ``wait=N``); None
        when the store waits for none."""
        return None if self._coalescer is None or self._coalescer.acked < 0 else self._coalescer.acked

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
        """Load the scripts' function library into the server (FUNCTION LOAD; one already
        there is kept): a process's first call then does not pay for it, nor does ``run_scripts``."""
        await functions.load(self._redis)

    async def flush_scripts(self) -> None:
        """Drop every function library of the server (FUNCTION FLUSH), as a restart of a
        Redis that keeps nothing on disk would."""
        await self._redis.execute_command("FUNCTION", "FLUSH")

    async def run_scripts(self, name: str, calls: Sequence[Sequence[Any]]) -> list[Any]:
        """Run script ``name`` once per argument list, all in one pipeline (FCALL, the
        audit stream as KEYS[1] and the namespace's prefix first in ARGV, as the store
        calls them), and return the raw replies, unchecked. The scripts must be loaded
        (``load_scripts``). The ceiling run's tool: the scripts' cost with no client work."""
        fn = functions.name_of(name)
        stream, prefix = C.events_key(self._namespace), C.prefix(self._namespace)
        pipe = self._redis.pipeline(transaction=False)
        for args in calls:
            pipe.execute_command("FCALL", fn, 1, stream, prefix, *args)
        return list(await pipe.execute())

    async def task_events_by_scan(self, task: str, count: int = 1_000) -> list[Event]:
        """Up to ``count`` events of ``task``, oldest first, read through the whole audit
        trail (XRANGE, a thousand entries at a time) as ``events --task`` read them before
        the per-task index: what the benchmark compares the index with."""
        stream = C.events_key(self._namespace)
        found: list[Event] = []
        start = "-"
        while len(found) < count:
            batch = await self._redis.xrange(stream, start, "+", count=SCAN_BATCH)
            if not batch:
                break
            found += [e for e in (Event.from_fields(eid, f) for eid, f in batch) if e.task == task]
            start = "(" + batch[-1][0]
        return found[:count]

    async def flush_server(self) -> None:
        """Delete every key of every namespace on the server (FLUSHALL), not only this one's.
        Only for a server the caller started for itself (a benchmark's, on a free port)."""
        await self._redis.flushall()

    async def slowlog_start(self, over_us: int, keep: int = 100_000) -> None:
        """From now on, have the server log every command slower than ``over_us`` (up to
        ``keep`` of them): CONFIG SET of the SLOWLOG's settings, server-wide, and an empty log."""
        await self._redis.config_set("slowlog-log-slower-than", over_us)
        await self._redis.config_set("slowlog-max-len", keep)
        await self._redis.slowlog_reset()

    async def slow_scripts(self) -> list[tuple[float, str]]:
        """(ms, script name) of every script call in the SLOWLOG since the last look (see
        ``slowlog_start``), which it then empties; other commands (a FLUSHALL) are left
        out. The name is "eval" for a script sent whole, "?" for one not of this store."""
        entries = await self._redis.slowlog_get(1_000_000)
        await self._redis.slowlog_reset()
        names = {fn: name for name, fn in library().functions.items()}
        found = []
        for entry in entries:
            command = entry["command"]  # bytes whatever decode_responses says (redis-py's parser)
            words = (command.decode(errors="replace") if isinstance(command, bytes) else str(command)).split()
            verb = words[0].lower() if words else ""
            if verb in ("fcall", "evalsha"):
                found.append((entry["duration"] / 1000, names.get(words[1], "?") if len(words) > 1 else "?"))
            elif verb == "eval":
                found.append((entry["duration"] / 1000, "eval"))
        return found
