"""Infrastructure: which store to use, starting one when none runs, and watching its health.

The CLI, the MCP server and the control room all resolve their store here, so they agree
on it. Everything but ``HealthMonitor`` blocks: async callers use a thread.
"""

from __future__ import annotations

from .checks import Check
from .doctor import doctor
from .health import HealthMonitor, HealthStatus
from .project import project_root
from .resolve import Resolution, file_board_url, resolve, up
from .stores import StartOptions, down, restart

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
