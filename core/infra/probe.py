"""Does a store answer? One PING, classified so resolution can tell what to do next."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from redis import exceptions as rexc
from redis.backoff import NoBackoff
from redis.retry import Retry

from .. import constants as C
from ..redis import connect

# The URL helpers live in core/storeurl.py (light: the hooks resolve a URL without a
# client); named here too, where the rest of infra has always found them.
from ..storeurl import LOCAL_HOSTS, is_local, local_url, password_of, port_of, redacted, scheme, with_password

__all__ = [
    "LOCAL_HOSTS",
    "Probe",
    "classify",
    "client",
    "is_local",
    "local_url",
    "password_of",
    "port_of",
    "probe",
    "scheme",
    "with_password",
]


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


def client(url: str, timeout_s: float = C.probe_timeout_s) -> Any:
    """A sync client that fails at once instead of retrying (a probe wants the answer now)."""
    return connect.sync_client(
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
    except ValueError as exc:
        return Probe(False, problem="error", message=f"bad URL {redacted(url)}: {exc}")
    except (rexc.RedisError, OSError) as exc:  # a cluster none of whose seeds answers
        return Probe(False, problem=classify(exc), message=connect.reason(exc))
    try:
        start = time.perf_counter()
        c.ping()
        return Probe(True, (time.perf_counter() - start) * 1000)
    except (rexc.RedisError, OSError) as exc:
        return Probe(False, problem=classify(exc), message=connect.reason(exc))
    finally:
        c.close()
