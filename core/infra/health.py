"""The store's health, watched continuously: latency, memory, clients, persistence.

``HealthMonitor.run`` probes the store every ``interval_s``, reconnects with backoff when
it stops answering, and brings back a container or redis-server that claimroom started
for the project (in a thread: Docker calls block). Each probe yields a ``HealthStatus``
for the control room to show.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from redis import exceptions as rexc
from redis.backoff import NoBackoff
from redis.retry import Retry

from .. import constants as C
from ..redis import connect
from ..storeurl import redacted
from .probe import classify, scheme


@dataclass(frozen=True)
class HealthStatus:
    """One look at the store. ``state``: "up", "down", "restarting" or "file"."""

    url: str
    state: str
    at: float = field(default_factory=time.time)
    latency_ms: float | None = None
    used_memory_bytes: int | None = None
    maxmemory_bytes: int | None = None
    clients: int | None = None
    persistence: str = ""  # "aof", "rdb" or "none" ("" when unknown)
    last_write_ok: bool | None = None
    version: str = ""
    uptime_s: int | None = None
    restarts: int = 0  # how many times this monitor brought the store back
    error: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("up", "file")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _int(info: dict[str, Any], key: str) -> int | None:
    value = info.get(key)
    return int(value) if isinstance(value, int | float | str) and str(value).lstrip("-").isdigit() else None


def status_from_info(url: str, latency_ms: float, info: dict[str, Any], restarts: int = 0) -> HealthStatus:
    """A status from a PING time and ``INFO`` (all sections, as redis-py parses them)."""
    aof = info.get("aof_enabled") in (1, "1")
    rdb_saves = info.get("rdb_last_save_time") is not None and _int(info, "rdb_saves") not in (None, 0)
    persistence = "aof" if aof else ("rdb" if rdb_saves else "none")
    write_status = info.get("aof_last_write_status" if aof else "rdb_last_bgsave_status")
    used = _int(info, "used_memory")
    cap = _int(info, "maxmemory") or None
    memory = f", {used / 2**20:.1f} MiB" if used is not None else ""
    return HealthStatus(
        url=redacted(url),
        state="up",
        latency_ms=latency_ms,
        used_memory_bytes=used,
        maxmemory_bytes=cap,
        clients=_int(info, "connected_clients"),
        persistence=persistence,
        last_write_ok=None if write_status is None else write_status == "ok",
        version=str(info.get("redis_version", "")),
        uptime_s=_int(info, "uptime_in_seconds"),
        restarts=restarts,
        message=f"up, {latency_ms:.1f} ms{memory}, {_int(info, 'connected_clients')} clients, {persistence}",
    )


class HealthMonitor:
    """Watches one store; restarts what claimroom started for ``project`` when it dies."""

    def __init__(
        self,
        url: str,
        *,
        project: Path | None = None,
        interval_s: float = C.health_interval_s,
        restart: bool = True,
        on_status: Callable[[HealthStatus], None] | None = None,
    ) -> None:
        if project is not None:  # a URL without the password still names the store claimroom started
            from .stores import known_url

            url = known_url(project, url)
        self.url = url
        self.project = project
        self.interval_s = interval_s
        self.restart = restart and project is not None
        self.on_status = on_status
        self.latest: HealthStatus | None = None
        self.restarts = 0
        self._client: Any = None
        # One probe at a time: the control room also probes from an operator's action while
        # ``run`` probes on its own; a probe using a client that the other one just closed
        # would open a fresh connection that nothing closes.
        self._probing = asyncio.Lock()

    def _connect(self) -> Any:
        if self._client is None:
            self._client = connect.client(
                self.url,
                socket_connect_timeout=C.probe_timeout_s,
                socket_timeout=C.probe_timeout_s,
                retry=Retry(NoBackoff(), 0),
                decode_responses=True,
            )
        return self._client

    async def _drop(self) -> None:
        """Forget the connection, so the next probe reconnects from scratch."""
        client, self._client = self._client, None
        if client is not None:
            # Shielded: a monitor cancelled while closing (its app quitting) still closes
            # its socket instead of leaving it to the garbage collector.
            closing = asyncio.ensure_future(client.aclose())
            with contextlib.suppress(Exception):
                await asyncio.shield(closing)

    async def check(self) -> HealthStatus:
        """One probe: PING for latency, INFO for the rest."""
        async with self._probing:
            return await self._check()

    async def _check(self) -> HealthStatus:
        if scheme(self.url) == "file":
            folder = Path(unquote(urlsplit(self.url).path))
            there = folder.is_dir()
            return HealthStatus(
                url=self.url,
                state="file" if there else "down",
                restarts=self.restarts,
                message=f"file board in {folder}" if there else f"file board {folder} is missing",
                error="" if there else "missing",
            )
        try:
            client = self._connect()
            start = time.perf_counter()
            await client.ping()
            latency = (time.perf_counter() - start) * 1000
            info = await client.info("all")
        except (rexc.RedisError, OSError) as exc:
            await self._drop()
            return HealthStatus(
                url=redacted(self.url),
                state="down",
                restarts=self.restarts,
                error=classify(exc),
                message=f"down: {exc.__class__.__name__}: {exc}",
            )
        return status_from_info(self.url, latency, info, self.restarts)

    def _emit(self, status: HealthStatus) -> None:
        self.latest = status
        if self.on_status is not None:
            self.on_status(status)

    def _ours(self) -> bool:
        """Whether claimroom started this store for the project (so may restart it)."""
        from .stores import started_here

        return self.restart and self.project is not None and started_here(self.project, self.url)

    async def _revive(self) -> HealthStatus:
        """Restart the store claimroom started; the status after trying."""
        from ..errors import StoreUnavailable
        from .stores import restart

        assert self.project is not None
        url = redacted(self.url)
        self._emit(
            HealthStatus(url, "restarting", restarts=self.restarts, message="store down: restarting it")
        )
        try:
            action = await asyncio.to_thread(restart, self.project, self.url)
        except StoreUnavailable as exc:
            return HealthStatus(
                url, "down", restarts=self.restarts, error="restart-failed", message=f"restart failed: {exc}"
            )
        if action:
            self.restarts += 1
        return await self.check()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Probe every ``interval_s`` until ``stop`` is set; back off while the store is down."""
        stop = stop or asyncio.Event()
        backoff = C.health_backoff_initial_s
        try:
            while not stop.is_set():
                status = await self.check()
                if status.state == "down" and status.error == "refused" and self._ours():
                    self._emit(status)
                    status = await self._revive()
                self._emit(status)
                if status.ok:
                    backoff, pause = C.health_backoff_initial_s, self.interval_s
                else:
                    pause, backoff = backoff, min(backoff * 2, C.health_backoff_max_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
        finally:
            await self._drop()
