"""A small synchronous Redis client for the hooks' fast start: a socket and hiredis's parser.

Claude Code runs a hook as a new process on every edit, so its start is paid each time.
redis-py 8 costs ~110 ms of imports before the first command (its package pulls in
asyncio, ssl and OpenTelemetry whatever is used); hiredis's reply parser costs ~1 ms.
This client speaks just what the hooks' reads need: connect (TCP, TLS or a Unix
socket), AUTH, SELECT, and pipelined commands. Everything else goes through the Store.
Behind Sentinel it asks the sentinels for the master first; on Redis Cluster it asks a
seed node which node serves the board's slot (its ``key``), as core/redis/connect.py does.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import hiredis

from .endpoints import CLUSTER, SENTINEL, endpoint
from .errors import StoreUnavailable
from .storeurl import redacted, scheme


class ReplyError(StoreUnavailable):
    """Raised when Redis answers a command with an error reply (a password wanted, a
    Cluster node redirecting: this client follows no redirects); the hooks report it as a
    board they cannot use."""


def _encode(args: tuple[Any, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode(errors="surrogateescape")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()


class Connection:
    """One connection to the Redis a ``redis://``, ``rediss://`` or ``unix://`` URL names,
    or to the master that serves ``key`` behind a ``redis+sentinel://`` or
    ``redis+cluster://`` URL."""

    def __init__(self, url: str, timeout_s: float, key: str = "") -> None:
        self.url = url
        if scheme(url) in (SENTINEL, CLUSTER):
            url = self._master_url(url, timeout_s, key)
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        db = (query.get("db") or [""])[0] or (parts.path.strip("/") if parts.scheme != "unix" else "")
        password = unquote(parts.password) if parts.password else (query.get("password") or [""])[0]
        user = unquote(parts.username) if parts.username else ""
        self._reader = hiredis.Reader(encoding="utf-8", errors="surrogateescape")
        try:
            if parts.scheme == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout_s)
                sock.connect(unquote(parts.path))
            else:
                host, port = parts.hostname or "127.0.0.1", parts.port or 6379
                if host.replace(".", "").isdigit():  # an IPv4 address: no lookup (nor the idna codec)
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    sock.settimeout(timeout_s)
                    sock.connect((host, port))
                else:
                    sock = socket.create_connection((host, port), timeout_s)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if parts.scheme == "rediss":
                    import ssl  # only for TLS: ~15 ms

                    sock = ssl.create_default_context().wrap_socket(sock, server_hostname=parts.hostname)
        except OSError as exc:
            raise self._down(exc) from None
        self._sock = sock
        setup: list[tuple[Any, ...]] = []
        if password:
            setup.append(("AUTH", user, password) if user else ("AUTH", password))
        if db and db != "0":
            setup.append(("SELECT", db))
        if setup:
            try:
                self.pipeline(setup)
            except ReplyError as exc:
                self.close()
                raise StoreUnavailable(f"store at {_redacted(url)} refused the connection ({exc})") from None

    @classmethod
    def _master_url(cls, url: str, timeout_s: float, key: str) -> str:
        """A ``redis://`` URL of the master that serves ``key`` now."""
        where = endpoint(url)
        auth = f"{quote(where.username)}:{quote(where.password)}@" if where.password else ""
        tried: list[str] = []
        for host, port in where.hosts:
            ask: list[tuple[Any, ...]]
            if where.kind == "sentinel":
                ask, secret = (
                    [("SENTINEL", "GET-MASTER-ADDR-BY-NAME", where.service)],
                    where.sentinel_password,
                )
            else:
                ask, secret = [("CLUSTER", "KEYSLOT", key or "x"), ("CLUSTER", "SLOTS")], where.password
            seed = f"redis://{':' + quote(secret) + '@' if secret else ''}{host}:{port}/0"
            try:
                with cls(seed, timeout_s) as c:
                    replies = c.pipeline(ask)
            except StoreUnavailable as exc:
                tried.append(str(exc))
                continue
            if where.kind == "sentinel" and replies[0]:
                return f"redis://{auth}{replies[0][0]}:{replies[0][1]}/{where.db}"
            slot = int(replies[0]) if where.kind == "cluster" else -1
            for first, last, master, *_ in replies[-1] if where.kind == "cluster" else ():
                if int(first) <= slot <= int(last):
                    return f"redis://{auth}{master[0]}:{master[1]}/0"
        raise StoreUnavailable(
            f"store unavailable at {redacted(url)}: no {where.kind} node named the master"
            + (f" ({tried[-1]})" if tried else "")
        )

    def _down(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(
            f"store unavailable at {_redacted(self.url)} ({exc.__class__.__name__}: {exc}); "
            "run `claimroom up` to start it, or point CLAIMROOM_URL at a running Redis"
        )

    def pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write and return their replies in order.

        An error reply raises ``ReplyError`` once every reply has been read, so the
        connection stays usable."""
        try:
            self._sock.sendall(b"".join(_encode(c) for c in commands))
            replies: list[Any] = []
            while len(replies) < len(commands):
                reply = self._reader.gets()
                if reply is False:
                    chunk = self._sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("the store closed the connection")
                    self._reader.feed(chunk)
                    continue
                replies.append(reply)
        except OSError as exc:
            raise self._down(exc) from None
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise ReplyError(f"store at {_redacted(self.url)} answered an error: {reply}")
        return replies

    def call(self, *args: Any) -> Any:
        return self.pipeline([args])[0]

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
