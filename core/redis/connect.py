"""Clients for every Redis deployment a store URL names: one server, Sentinel, Cluster.

A board (one namespace) lives in one Redis Cluster slot: all its keys share one hash tag
(``constants.prefix``). So whatever the deployment, a store talks to exactly one master at
a time, and every part of the Redis backend (scripts, the coalescer's pipelines, the
transactions of the reads, pub/sub, WAIT) works as on a single server. What differs is only
how a new connection finds that master:

- one server: the URL's address;
- Sentinel: redis-py's ``SentinelConnectionPool`` asks the sentinels for the master of the
  named service on every new connection (and drops a connection whose server has become a
  replica);
- Cluster: ``_SlotPool`` asks the cluster, through redis-py's ``RedisCluster``, which node
  serves the board's slot on every new connection; a reply saying the slot is elsewhere or
  the cluster is down drops the connection.

So a failover is seen by the next connection: calls made while the old master is gone fail
as "store unavailable" (the caller retries), and the first call after the promotion goes to
the new master without a restart.
"""

from __future__ import annotations

import weakref
from typing import Any

import redis
import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode as SyncClusterNode
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError as SyncMasterNotFound
from redis.sentinel import Sentinel as SyncSentinel

from .. import constants as C
from ..endpoints import Endpoint, endpoint

# Replies that mean the board's slot is not served by this connection's node (any more).
_MOVED = (rexc.MovedError, rexc.AskError, rexc.ClusterDownError, rexc.TryAgainError)


def _checked_idle(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with redis-py's maintenance notifications off, where redis-py has them
    (8.x). They are for managed clouds that push notices over RESP3; while they are "auto"
    (the default) the pool hands out an idle connection without checking that its server
    still holds it, so after a Redis restart each such connection failed its next command
    once ("Connection closed by server"). Off, the pool opens it again first."""
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # redis-py before 8 checks idle connections always
        return options
    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False), **options}


def client(url: str, key: str = "", **options: Any) -> Any:
    """An asyncio client of the master that serves ``key`` (a namespace's key; on a single
    server or Sentinel any), with redis-py ``options`` (decode_responses, timeouts...)."""
    where = endpoint(url)
    options = _checked_idle(options)
    if where.kind == "single":
        return aioredis.Redis.from_url(where.url, **options)
    auth = _auth(where)
    if where.kind == "sentinel":
        ask = _sentinel_kwargs(where, options, AsyncRetry(NoBackoff(), 0))
        sentinels = Sentinel(list(where.hosts), sentinel_kwargs=ask, **auth, **options)  # type: ignore[no-untyped-call]
        return sentinels.master_for(where.service, redis_class=_SentinelMaster, db=where.db)
    pool = _SlotPool(where, key or C.events_key("default"), **auth, **options)
    return aioredis.Redis.from_pool(pool)  # owns it: closing the client closes its connections


def sync_client(url: str, key: str = "", **options: Any) -> Any:
    """A blocking client of the same master (probes and ``doctor``)."""
    where = endpoint(url)
    if where.kind == "single":
        return redis.Redis.from_url(where.url, **options)
    auth = _auth(where)
    if where.kind == "sentinel":
        ask = _sentinel_kwargs(where, options, Retry(NoBackoff(), 0))
        blocking: Any = SyncSentinel(list(where.hosts), sentinel_kwargs=ask, **auth, **options)  # type: ignore[no-untyped-call]
        return blocking.master_for(where.service, redis_class=_SyncSentinelMaster, db=where.db)
    # A probe lives for one call: ask the cluster once which node serves the slot.
    try:
        cluster = redis.RedisCluster(
            startup_nodes=[SyncClusterNode(h, p) for h, p in where.hosts],  # type: ignore[no-untyped-call]
            **auth,
            **_discovery(options),
        )
    except rexc.RedisClusterException as exc:
        raise rexc.ConnectionError(f"no node of the cluster answered ({exc})") from None
    try:
        node: Any = cluster.get_node_from_key(key or C.events_key("default"))  # type: ignore[no-untyped-call]
        return redis.Redis(host=node.host, port=node.port, **auth, **options)
    finally:
        cluster.close()


def wait_of(url: str) -> tuple[int, int]:
    """The replicas that must acknowledge each batch of writes, and for how long to wait."""
    where = endpoint(url)
    return where.wait, where.wait_ms


def reason(exc: BaseException) -> str:
    """What went wrong, in one short line: redis-py's Sentinel errors carry the whole
    client's repr, which says nothing to a user and may run to a screenful."""
    if isinstance(exc, MasterNotFoundError | SyncMasterNotFound):
        return "MasterNotFoundError: no sentinel answered with a master for that name"
    return f"{exc.__class__.__name__}: {exc}"


def _auth(where: Endpoint) -> dict[str, Any]:
    return {"username": where.username or None, "password": where.password or None}


def _discovery(options: dict[str, Any]) -> dict[str, Any]:
    """The options that make sense for a connection that only asks where things are."""
    kept = ("socket_connect_timeout", "socket_timeout", "retry")
    return {k: v for k, v in options.items() if k in kept}


def _sentinel_kwargs(where: Endpoint, options: dict[str, Any], retry: Any) -> dict[str, Any]:
    # One try per sentinel: the client asks the next one anyway, and redis-py's default
    # retries with backoff made a dead sentinel listed first cost seconds per connection.
    asked = {"password": where.sentinel_password or None, "retry": retry, "decode_responses": True}
    return asked | _discovery(options)


class _SentinelMaster(aioredis.Redis):
    """The master's client, closing with it the clients of the sentinels it asks (redis-py
    leaves those open: their sockets outlived every store on a Sentinel URL)."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool: Any = self.connection_pool  # a SentinelConnectionPool (master_for made it)
        for asked in pool.sentinel_manager.sentinels:
            await asked.aclose()


class _SyncSentinelMaster(redis.Redis):
    """``_SentinelMaster`` for the blocking client."""

    def close(self) -> None:
        super().close()
        pool: Any = self.connection_pool
        for asked in pool.sentinel_manager.sentinels:
            asked.close()


class _SlotConnection(aioredis.Connection):
    """A connection to whichever master serves the pool's slot when it connects."""

    def __init__(self, **kwargs: Any) -> None:
        self.connection_pool = kwargs.pop("connection_pool")
        super().__init__(**kwargs)

    async def connect(self) -> None:
        if self.is_connected:
            return
        self.host, self.port = await self.connection_pool.master_address()
        await super().connect()  # type: ignore[no-untyped-call]

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except _MOVED as exc:
            # Failover or resharding: nothing ran here. Drop the connection so the next
            # one asks the cluster again; the caller sees the store as unavailable.
            await self.disconnect()
            raise rexc.ConnectionError(f"the board's slot is not served here now ({exc})") from None


class _SlotPool(aioredis.ConnectionPool):
    """A pool of connections to the master of one Cluster slot, found anew per connection."""

    def __init__(self, where: Endpoint, key: str, **kwargs: Any) -> None:
        kwargs["connection_class"] = _SlotConnection
        super().__init__(**kwargs)
        self.connection_kwargs["connection_pool"] = weakref.proxy(self)
        self._where, self._key = where, key
        self._discovery = {**_auth(where), **_discovery(kwargs)}
        self.address: tuple[str, int] | None = None

    async def master_address(self) -> tuple[str, int]:
        cluster = aioredis.RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in self._where.hosts], **self._discovery
        )
        try:
            await cluster.initialize()
            node: Any = cluster.get_node_from_key(self._key)
            address = (str(node.host), int(node.port))
        except rexc.RedisClusterException as exc:
            raise rexc.ConnectionError(f"no node of the cluster answered ({exc})") from None
        finally:
            await cluster.aclose()
        if address != self.address:
            self.address = address
            await self.disconnect(inuse_connections=False)  # idle ones go to the new master
        return address
