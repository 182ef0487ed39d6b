"""Store URLs: their parts, a password joined to one, and the local URL claimroom starts a
store at; no Redis client imported (the hooks resolve a URL on every edit)."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from . import validate
from .endpoints import CLUSTER, SENTINEL, endpoint

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})


def scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def is_local(url: str) -> bool:
    """Whether a ``redis://`` URL names this machine (where claimroom may start a store)."""
    if scheme(url) in (SENTINEL, CLUSTER):
        hosts = endpoint(url).hosts
        return all(h in LOCAL_HOSTS or h.startswith("127.") for h, _ in hosts)
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
    if scheme(url) in (SENTINEL, CLUSTER):
        return None  # many servers: none of them is the store's one port
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


def redacted(url: str) -> str:
    """The URL with any password hidden, for messages."""
    parts = urlsplit(url)
    if parts.password:
        user, _, _ = parts.netloc.rpartition("@")[0].partition(":")
        parts = parts._replace(netloc=f"{user}:***@{parts.netloc.rpartition('@')[2]}")
    if "sentinel_password=" in parts.query:
        hidden = re.sub(r"(^|&)(sentinel_password=)[^&]*", r"\1\2***", parts.query)
        parts = parts._replace(query=hidden)
    return urlunsplit(parts)


def scrubbed(text: str, secret: str) -> str:
    """``text`` with ``secret`` (a password, as written or as a URL quotes it) shown as ``***``.

    For text claimroom did not write itself (a container's log line, a server's error),
    which might echo the command line that carried the password.
    """
    for form in {secret, quote(secret, safe="")} if secret else ():
        text = text.replace(form, "***")
    return text
