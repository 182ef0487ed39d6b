"""The store a command would use, found without probing, starting or importing a client.

The Claude Code hooks run on every edit: they take the store the project already uses and
never start one (a hook that waits for Docker would stall the session; a store that does
not answer is the hook's to report). The order is ``resolve``'s, minus its probes and
starts: ``CLAIMROOM_URL``; the file board this project fell back to; the store claimroom
started for this project on the default port (its URL carries its password); the default
local port.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .. import constants as C
from .. import validate
from .project import load_config, read_started
from .urls import local_url


def remembered_fallback(config: Mapping[str, object]) -> str:
    """The file board URL this project fell back to ("" when it did not)."""
    remembered = config.get("fallback_url")
    return remembered if isinstance(remembered, str) else ""


def known_url(project: Path, env: Mapping[str, str] | None = None) -> str:
    """The URL of the project's store (see the module's docstring); ``BadInput`` for a
    malformed ``CLAIMROOM_URL`` or config."""
    environ = os.environ if env is None else env
    named = environ.get(C.env_url)
    if named:
        return validate.store_url(named)
    fallback = remembered_fallback(load_config(project))
    if fallback:
        return fallback
    port = C.default_redis_port
    started = next((r.url for r in read_started(project) if r.port == port and r.url), "")
    return started or local_url(port)


def namespace(env: Mapping[str, str] | None = None) -> str:
    """``CLAIMROOM_NAMESPACE`` (default ``default``), checked."""
    environ = os.environ if env is None else env
    return validate.namespace(environ.get("CLAIMROOM_NAMESPACE") or "default")
