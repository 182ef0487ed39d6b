"""Where a Redis store URL points and how claimroom talks to it: one server, Sentinel or
Cluster, and claimroom's own URL parameters. Pure parsing (no Redis client, nothing of
claimroom's): ``validate.store_url`` checks a URL with it, ``storeurl`` and the clients
read it."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

# Schemes of Redis deployments beyond one server, and their default ports.
SENTINEL, CLUSTER = "redis+sentinel", "redis+cluster"
DEFAULT_PORTS = {SENTINEL: 26379, CLUSTER: 6379}
# Query parameters that claimroom reads itself (never handed to the Redis client).
OWN_PARAMS = ("wait", "wait_ms", "sentinel_password")
default_wait_ms = 200
max_wait_replicas = 16
max_wait_ms = 60_000


@dataclass(frozen=True)
class Endpoint:
    """Where a Redis store is and how claimroom talks to it, read from its URL.

    ``kind``: "single" (``redis://``, ``rediss://``, ``unix://``), "sentinel" or "cluster".
    ``hosts``: the sentinels, or the cluster's seed nodes (empty for a single server).
    ``url``: for a single server, the URL the Redis client is given (claimroom's own
    parameters removed). ``wait``: replicas that must acknowledge each batch of script
    calls (Redis WAIT) before the callers hear back, at most ``wait_ms`` later.
    """

    kind: str
    url: str
    hosts: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str = ""
    password: str = ""
    sentinel_password: str = ""
    wait: int = 0
    wait_ms: int = default_wait_ms


def endpoint(url: str) -> Endpoint:
    """The parts of a Redis store URL; ``ValueError`` with the one-line reason when malformed.

    ``redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]`` names the
    sentinels and the master's name; ``redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,...]``
    seed nodes of a Redis Cluster. The password is the data nodes'; ``?sentinel_password=``
    the sentinels' when they have one. Any of them may add ``?wait=N&wait_ms=T``.
    """
    kind_of = url.split("://", 1)[0].lower() if "://" in url else ""
    parts = urlsplit(url)
    own: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        (own.__setitem__(key, value) if key in OWN_PARAMS else rest.append((key, value)))
    wait = _number("wait", own.get("wait", "0"), 0, max_wait_replicas)
    wait_ms = _number("wait_ms", own.get("wait_ms", str(default_wait_ms)), 1, max_wait_ms)
    if kind_of not in (SENTINEL, CLUSTER):
        if "sentinel_password" in own:
            raise ValueError("store URL sentinel_password= belongs to a redis+sentinel:// URL")
        plain = urlunsplit(parts._replace(query=urlencode(rest)))
        return Endpoint("single", plain, wait=wait, wait_ms=wait_ms)
    if rest:
        raise ValueError(f"store URL has an unknown parameter {rest[0][0][:30]!r} for {kind_of}://")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    hosts = tuple(_host_port(h, DEFAULT_PORTS[kind_of]) for h in hostlist.split(","))
    path = [p for p in parts.path.split("/") if p]
    service, db = "", "0"
    if kind_of == SENTINEL:
        if not path:
            raise ValueError(
                "store URL names no master: write redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB]"
            )
        service, db = unquote(path[0]), (path[1] if len(path) > 1 else "0")
        if len(path) > 2:
            raise ValueError("store URL path of a redis+sentinel:// URL is /MASTER[/DB]")
    elif path:
        db = path[0]
        if len(path) > 1 or db != "0":
            raise ValueError(
                "store URL database of Redis Cluster is always 0: write redis+cluster://HOST:PORT[,HOST:PORT...]"
            )
    if not (db.isascii() and db.isdigit()):
        raise ValueError(f"store URL database must be a number, got {db[:20]!r}")
    return Endpoint(
        "sentinel" if kind_of == SENTINEL else "cluster",
        url,
        hosts,
        service,
        int(db),
        unquote(user),
        unquote(password),
        own.get("sentinel_password", ""),
        wait,
        wait_ms,
    )


def _number(name: str, text: str, low: int, high: int) -> int:
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise ValueError(f"store URL {name}= must be a whole number from {low} to {high}, got {text[:20]!r}")
    return int(text)


def _host_port(text: str, default: int) -> tuple[str, int]:
    host, port = text, str(default)
    if text.startswith("["):  # [IPv6]:PORT
        host, _, after = text[1:].partition("]")
        port = after.removeprefix(":") or port
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host:
        raise ValueError("store URL names an empty host: write HOST:PORT[,HOST:PORT...]")
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"store URL port must be 1-65535, got {port[:20]!r}")
    return host, int(port)
