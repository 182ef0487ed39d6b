"""Infrastructure: which store to use, starting one when none runs, and watching its health.

The CLI, the MCP server and the control room all resolve their store here, so they agree
on it. Everything but ``HealthMonitor`` blocks: async callers use a thread.

The names below are loaded when first used (PEP 562): importing one light module of this
package (``project``, ``urls``, ``known``: what the Claude Code hooks need on every edit)
must not pull in Docker and the Redis client.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .doctor import Check, doctor
    from .health import HealthMonitor, HealthStatus
    from .project import project_root
    from .resolve import Resolution, file_board_url, resolve, up
    from .stores import StartOptions, down, restart

_WHERE = {
    "Check": "doctor",
    "doctor": "doctor",
    "HealthMonitor": "health",
    "HealthStatus": "health",
    "project_root": "project",
    "Resolution": "resolve",
    "file_board_url": "resolve",
    "resolve": "resolve",
    "up": "resolve",
    "StartOptions": "stores",
    "down": "stores",
    "restart": "stores",
}

__all__ = [
    "Check",
    "HealthMonitor",
    "HealthStatus",
    "Resolution",
    "StartOptions",
    "doctor",
    "down",
    "file_board_url",
    "project_root",
    "resolve",
    "restart",
    "up",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value
