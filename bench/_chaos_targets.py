"""Where a chaos run's store lives, and the faults that store can suffer (a module, not a
benchmark: ./dev bench skips it).

A ``Target`` gives the URL the agents use, the URL the suite and the reaper use, and its
store-level faults: each a function that injects one fault, waits it out, restores, and
counts itself in ``injected``. ``Standalone`` is a redis-server of the suite's own with
append-only persistence behind the suite's TCP proxy: network cuts and restarts. The
Sentinel and Cluster targets live in ``_chaos_topology.py``, imported only when asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import math
import random
import shutil
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from _chaos_proxy import CutProxy

from claimroom.core.errors import StoreUnavailable
from claimroom.core.local_redis import LocalRedis

Fault = Callable[[random.Random], Awaitable[None]]

CUT_S = (1.0, 3.0)  # how long a network cut lasts
DOWN_S = (0.5, 2.0)  # how long Redis stays down between its SIGKILL and its restart
RESTART_TRIES = 5
LOST_S = (0.3, 1.0)  # the writes a crash loses: those of this long before it
AOF_DIR = "appendonlydir"  # Redis 7's append-only files, in the server's directory
# Every write on disk before its reply: a SIGKILL then loses nothing acknowledged, so every
# invariant is exact. (Under everysec a write that waits behind a slow fsync is acknowledged
# before it is written, so a SIGKILL may lose it; that loss, up to a second of writes as a
# machine crash would cause, is what --lose-writes plays on purpose, ``crash``.)
FSYNC = "always"

CUT = "network cuts (proxy)"
RESTART = "Redis restarts (SIGKILL, AOF)"
CRASH = "Redis crashes losing their last writes (--lose-writes)"


class Target:
    """A store for a chaos run and its faults."""

    name = "?"

    def __init__(self, agent_url: str, direct_url: str) -> None:
        self.agent_url = agent_url  # what the agents connect to
        self.direct_url = direct_url  # the suite's own connections and the reaper
        self.faults: dict[str, Fault] = {}  # label -> inject one
        self.limits: dict[str, int] = {}  # label -> at most this many in a run (default: no limit)
        self.injected: Counter[str] = Counter()
        # When the store itself was down for everyone: [start, end] on time.monotonic (end
        # inf while it lasts); the lease sampler leaves these out.
        self.outages: list[list[float]] = []
        self.facts: list[str] = []
        self.writes_lost = False  # a fault loses acknowledged writes on purpose (--lose-writes)

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        window = [time.monotonic(), math.inf]
        self.outages.append(window)
        try:
            yield
        finally:
            window[1] = time.monotonic()

    def down_within(self, start: float, end: float, grace_s: float) -> bool:
        """Whether the store was down at some moment of [start, end + grace_s] after an outage,
        i.e. whether the window overlaps an outage stretched by ``grace_s``."""
        return any(s <= end and start <= e + grace_s for s, e in self.outages)

    async def stop(self) -> None:
        raise NotImplementedError


class Standalone(Target):
    """A redis-server with append-only persistence (``FSYNC``) behind a proxy."""

    name = "standalone"

    def __init__(self, redis: LocalRedis, proxy: CutProxy, *, lose_writes: bool = False) -> None:
        super().__init__(proxy.url(), redis.url)
        self.redis = redis
        self.proxy = proxy
        self.faults = {CUT: self.cut, RESTART: self.restart}
        self.facts = [f"appendonly yes, appendfsync {FSYNC}"]
        if lose_writes:
            self.faults[CRASH] = self.crash
            self.writes_lost = True

    @classmethod
    async def start(cls, folder: Path, *, lose_writes: bool = False) -> Standalone:
        redis = await asyncio.to_thread(LocalRedis.start, folder / "redis", appendfsync=FSYNC)
        proxy = CutProxy(redis.port)
        await proxy.start()
        return cls(redis, proxy, lose_writes=lose_writes)

    async def cut(self, rng: random.Random) -> None:
        """Cut the agents' network for a few seconds: every connection closed, none accepted."""
        await self.proxy.cut()
        self.injected[CUT] += 1
        await asyncio.sleep(rng.uniform(*CUT_S))
        await self.proxy.restore()

    async def restart(self, rng: random.Random) -> None:
        """SIGKILL Redis, leave it down a moment, start it again on its port and directory;
        it reloads its append-only file."""
        with self.outage():
            await asyncio.to_thread(self.redis.kill)
            self.injected[RESTART] += 1
            await asyncio.sleep(rng.uniform(*DOWN_S))
            await self.start_again()

    async def crash(self, rng: random.Random) -> None:
        """A machine crash under appendfsync everysec: the last writes, never fsynced, are
        gone. Played as: copy the append-only files, let the agents go on for up to a
        second, SIGKILL Redis, put the copy back, start it again."""
        live = self.redis.directory / AOF_DIR
        copy = self.redis.directory.parent / (AOF_DIR + ".crash")
        await asyncio.to_thread(shutil.rmtree, copy, True)
        await asyncio.to_thread(shutil.copytree, live, copy)
        await asyncio.sleep(rng.uniform(*LOST_S))
        with self.outage():
            await asyncio.to_thread(self.redis.kill)
            self.injected[CRASH] += 1
            await asyncio.to_thread(shutil.rmtree, live)
            await asyncio.to_thread(copy.rename, live)
            await asyncio.sleep(rng.uniform(*DOWN_S))
            await self.start_again()

    async def start_again(self) -> None:
        for attempt in range(RESTART_TRIES):
            try:
                self.redis = await asyncio.to_thread(
                    LocalRedis.start, self.redis.directory, self.redis.port, appendfsync=FSYNC
                )
                return
            except StoreUnavailable:  # the port not yet free again, say: once more
                if attempt == RESTART_TRIES - 1:
                    raise
                await asyncio.sleep(0.5)

    async def stop(self) -> None:
        await self.proxy.stop()
        await asyncio.to_thread(self.redis.stop)


def available(name: str) -> bool:
    """Whether this checkout has what target ``name`` needs."""
    return name == "standalone" or importlib.util.find_spec("claimroom.core.local_topology") is not None


async def start_target(name: str, folder: Path, namespace: str, *, lose_writes: bool = False) -> Target:
    """The target called ``name``; Sentinel and Cluster are imported only here, when asked for."""
    if name == "standalone":
        return await Standalone.start(folder, lose_writes=lose_writes)
    from _chaos_topology import start_topology

    return await start_topology(name, folder, namespace)
