"""Does a store answer? One PING, classified so resolution can tell what to do next."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import redis
from redis import exceptions as rexc
from redis.backoff import NoBackoff
from redis.retry import Retry

from .. import constants as C
from .. import validate
from ..redis_store import redacted

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})


@dataclass(frozen=True)
class Probe:
    """What one PING found.

    ``problem``: "" (it answered), "refused" (nothing listens), "auth" (a password is
    wanted), "timeout", "not-redis" (the reply is not Redis's), "closed" (the connection
    was dropped) or "error".
    """

    ok: bool
    latency_ms: float = 0.0
    problem: str = ""
    message: str = ""


def scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def is_local(url: str) -> bool:
    """Whether a ``redis://`` URL names this machine (where claimroom may start a store)."""
    if scheme(url) != "redis":
        return False
    host = urlsplit(url).hostname or ""
    return host in LOCAL_HOSTS or host.startswith("127.")


def port_of(url: str) -> int | None:
    """The port ``url`` names, or None when it names none.

    A missing port is not taken as 6379: the client would connect there, but claimroom
    starts a store only at a port the URL spells out. Port 0 (no store listens there) or
    one that is not a number from 1 to 65535 is ``BadInput``.
    """
    validate.store_url(url)  # the one rule for a malformed URL, port 0 included
    return urlsplit(url).port


def password_of(url: str) -> str:
    """The password a URL carries ("" when none), decoded as the Redis client decodes it."""
    return unquote(urlsplit(url).password or "")


def with_password(url: str, password: str) -> str:
    """``url`` carrying ``password`` (quoted for a URL), all else as it was."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    user = quote(unquote(parts.username or ""), safe="")
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    return urlunsplit(parts._replace(netloc=auth + host))


def local_url(port: int, password: str = "") -> str:
    return with_password(f"redis://127.0.0.1:{port}/0", password)


def client(url: str, timeout_s: float = C.probe_timeout_s) -> Any:
    """A sync client that fails at once instead of retrying (a probe wants the answer now)."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def classify(exc: BaseException) -> str:
    """The ``Probe.problem`` for an exception a Redis call raised."""
    if isinstance(exc, rexc.AuthenticationError | rexc.AuthenticationWrongNumberOfArgsError):
        return "auth"
    if isinstance(exc, rexc.ResponseError) and str(exc).upper().startswith(("NOAUTH", "WRONGPASS")):
        return "auth"
    if isinstance(exc, rexc.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, rexc.InvalidResponse):
        return "not-redis"
    if isinstance(exc, rexc.ConnectionError | OSError):
        cause: BaseException | None = exc
        while cause is not None:  # redis-py wraps the OSError that says what happened
            if isinstance(cause, ConnectionRefusedError | FileNotFoundError):
                return "refused"
            cause = cause.__cause__ or cause.__context__
        text = str(exc).lower()
        if any(s in text for s in ("refused", "error 111 ", "connect call failed", "no such file")):
            return "refused"
        if "closed by server" in text:
            return "closed"
        return "error"
    return "error"


def probe(url: str, timeout_s: float = C.probe_timeout_s) -> Probe:
    """PING the store at ``url`` once."""
    try:
        c = client(url, timeout_s)
    except (ValueError, rexc.RedisError) as exc:
        return Probe(False, problem="error", message=f"bad URL {redacted(url)}: {exc}")
    try:
        start = time.perf_counter()
        c.ping()
        return Probe(True, (time.perf_counter() - start) * 1000)
    except (rexc.RedisError, OSError) as exc:
        return Probe(False, problem=classify(exc), message=f"{exc.__class__.__name__}: {exc}")
    finally:
        c.close()
