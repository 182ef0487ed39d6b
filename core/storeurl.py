"""Store URLs: their parts, and the local URL claimroom starts a store at (no imports of a client)."""

from __future__ import annotations

from urllib.parse import urlsplit

from . import validate

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})


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
    return urlsplit(url).password or ""


def local_url(port: int, password: str = "") -> str:
    auth = f":{password}@" if password else ""
    return f"redis://{auth}127.0.0.1:{port}/0"
