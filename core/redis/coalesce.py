"""Script calls made at the same moment travel together: one round trip for many callers.

A process that hosts many agents (an MCP server, a swarm, the bench) makes many script
calls at once. Sent one by one, each costs a round trip and a reply parse while Redis idles
between them; here every call made while the event loop runs one turn is queued, and a
flusher sends the queue as one non-transactional pipeline. Each script still runs
atomically on its own: the pipeline only shares the trip. Two flushers, each on its own
pooled connection (kept from batch to batch, and opened again when its server closed it),
let one batch be in Redis while Python builds the next or reads the last.

A call alone goes alone, one loop turn later. A batch is written straight onto a pooled
connection rather than through redis-py's Pipeline object, whose per-batch Python cost
outweighed the shared trip for small batches (bench/claims.py, 8 agents: 3,161 -> ~3,700
cycles/s; 64 agents: ~5,200 -> ~5,600).
With ``wait=(N, ms)`` (the store URL's ``?wait=N&wait_ms=ms``) each batch ends with
``WAIT N ms`` on its own connection: its callers hear back only once N replicas hold every
write of the batch, or ms have passed (WAIT cannot undo a write; see the README on
failover). One WAIT covers the whole batch.
A pipeline failure (connection lost) fails every call in it with the same error; a reply
that says the function library is not loaded (Redis restarted without persistence, or
FUNCTION FLUSH) loads it and runs that call again once (functions.py).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from hiredis import pack_command
from redis import exceptions as rexc

from . import functions

FLUSHERS = 2  # batches in flight at once (one per pooled connection)


Call = tuple[str, list[str], list[Any], "asyncio.Future[Any]"]  # (script name, keys, args, its future)


class Coalescer:
    """Queue script calls and send each loop turn's worth as one pipeline."""

    def __init__(self, redis: Any, flushers: int = FLUSHERS, wait: tuple[int, int] = (0, 0)) -> None:
        self._redis = redis
        self._wait = wait
        self._flushers = flushers
        self._pending: list[Call] = []
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._busy = 0
        self.batches = 0  # pipelines sent, for benchmarks
        self.acked = -1  # replicas that acknowledged the last batch (with wait), for tests

    async def call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run ``script`` (its library function) with ``keys`` and ``args``; its reply, or
        the error it raised."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._start(loop)  # first use, or a new event loop (asyncio.run called again)
        assert self._wake is not None
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, keys, args, fut))
        self._wake.set()
        return await fut

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        # Flushers of an earlier loop are dead with it; their queue went with them.
        self._loop, self._pending, self._busy = loop, [], 0
        self._wake = asyncio.Event()
        self._tasks = [loop.create_task(self._flush_loop()) for _ in range(self._flushers)]

    async def _flush_loop(self) -> None:
        wake = self._wake
        assert wake is not None
        # Each flusher keeps its pooled connection from batch to batch (taking one from the
        # pool and giving it back cost this process ~8% of its time per call, cProfile)
        # until the connection fails or the flusher stops.
        pool, conn = self._redis.connection_pool, None
        try:
            while True:
                await wake.wait()
                if not self._pending:
                    wake.clear()
                    continue
                # Share the queue among the idle flushers, so that with few callers the halves
                # of a round alternate between Redis and Python instead of going in lock step.
                idle = max(1, self._flushers - self._busy)
                take = -(-len(self._pending) // idle)
                batch, self._pending = self._pending[:take], self._pending[take:]
                if not self._pending:
                    wake.clear()
                self._busy += 1
                try:
                    if conn is None:
                        conn = await pool.get_connection()
                    else:  # the pool's own check of what it hands out (connect.py _checked_idle)
                        await pool.ensure_connection(conn)
                    if not await self._send(conn, batch):
                        conn, failed = None, conn
                        await pool.release(failed)
                except Exception as exc:  # no connection to be had: every call in the batch fails
                    self._fail(batch, exc)
                finally:
                    self._busy -= 1
        finally:
            if conn is not None:
                await pool.release(conn)

    async def _send(self, conn: Any, batch: list[Call]) -> bool:
        """Send a batch on ``conn`` and deliver its replies; False when the connection failed
        (every call in the batch failed with it, and it is disconnected)."""
        # FCALL straight onto a pooled connection: redis-py's Pipeline object costs more
        # Python per batch than the trip saves for small batches. A server without the
        # library is handled below.
        try:
            name = functions.name_of
            commands = [("FCALL", name(s), len(keys), *keys, *args) for s, keys, args, _ in batch]
            if self._wait[0] > 0:
                commands.append(("WAIT", *self._wait))
            # hiredis (a dependency: redis[hiredis]) packs a command in C, ~0.9 us
            # against ~6 us for redis-py's packer: a fifth of this process's time per call.
            replies = await self._trip(conn, b"".join(map(pack_command, commands)), len(batch))
        except Exception as exc:  # the connection failed: every call in the batch did
            await conn.disconnect()
            self._fail(batch, exc)
            return False
        except BaseException:  # the flusher is stopped mid-trip: nobody will answer these
            await conn.disconnect()
            self._fail(batch, rexc.ConnectionError("the store was closed during the call"))
            raise
        self.batches += 1
        for (script, keys, args, fut), reply in zip(batch, replies, strict=True):
            if fut.done():
                continue  # the caller gave up (cancelled); nothing to deliver
            if isinstance(reply, Exception) and functions.missing(reply):
                self._retry(script, keys, args, fut)
            elif isinstance(reply, Exception):
                fut.set_exception(reply)
            else:
                fut.set_result(reply)
        return True

    async def _trip(self, conn: Any, data: bytes, n: int) -> list[Any]:
        """Send a batch, and read its ``n`` replies (a script's error stands as that call's
        reply) and WAIT's when asked. One deadline, the connection's read timeout, covers
        the whole trip: redis-py sets a timer for each reply (math.inf asks it for none) and
        runs each send as a task of its own under asyncio.wait_for, which together cost this
        process a sixth of its time per call (cProfile, bench/claims.py's agents)."""
        replies: list[Any] = []
        limit = conn.socket_timeout
        if limit is not None and self._wait[0] > 0:
            limit += self._wait[1] / 1000  # WAIT may take its whole wait_ms (up to 60 s)
        try:
            async with asyncio.timeout(limit):
                writer = getattr(conn, "_writer", None)  # redis-py's stream, when connected
                if writer is not None and conn.is_connected:
                    writer.write(data)
                    await writer.drain()
                else:  # not connected yet: redis-py connects first
                    await conn.send_packed_command(data)
                for _ in range(n):
                    try:
                        replies.append(await conn.read_response(timeout=math.inf))
                    except rexc.ResponseError as exc:  # the script's error: that call's alone
                        replies.append(exc)
                if self._wait[0] > 0:
                    self.acked = int(await conn.read_response(timeout=math.inf))
        except TimeoutError:
            raise rexc.TimeoutError(f"no reply within {limit} s") from None
        return replies

    @staticmethod
    def _fail(batch: list[Call], exc: Exception) -> None:
        for *_, fut in batch:
            if not fut.done():
                fut.set_exception(exc)

    def _retry(self, script: str, keys: list[str], args: list[Any], fut: asyncio.Future[Any]) -> None:
        """Run one call on its own, loading the library first."""

        async def again() -> None:
            try:
                reply = await functions.call(self._redis, script, keys, args)
            except Exception as exc:
                if not fut.done():
                    fut.set_exception(exc)
                return
            if not fut.done():
                fut.set_result(reply)

        asyncio.get_running_loop().create_task(again())

    async def close(self) -> None:
        """Stop the flushers of the current loop (calls still queued fail as cancelled)."""
        tasks, self._tasks, self._loop = self._tasks, [], None
        mine = [t for t in tasks if t.get_loop() is asyncio.get_running_loop()]
        for task in mine:  # flushers of a loop that has ended ended with it
            task.cancel()
        await asyncio.gather(*mine, return_exceptions=True)
        for *_, fut in self._pending:
            if not fut.done():
                fut.cancel()
        self._pending = []
