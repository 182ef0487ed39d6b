"""A project's ``.claimroom/`` folder: its config, the start lock, and what claimroom started.

Everything claimroom keeps for a project lives in ``<root>/.claimroom/``, which ignores
itself for git. Writing it is here; reading it (and finding the root) is in
``core/projectdir.py``, which the hooks import without the rest of infra.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import constants as C
from ..errors import StoreUnavailable

# Reading the project's folder is in core/projectdir.py (light: the hooks read it on every
# edit); named here too, where the rest of infra has always found it.
from ..projectdir import Started, config_path, load_config, project_root, read_started, started_path

__all__ = [
    "Started",
    "config_path",
    "infra_dir",
    "load_config",
    "mark_stopped",
    "project_root",
    "read_started",
    "record_started",
    "start_lock",
    "started_path",
    "update_config",
]


def infra_dir(project: Path, *, create: bool = True) -> Path:
    """``<project>/.claimroom``; created (with a ``.gitignore`` of ``*``) when asked."""
    folder = project / C.infra_dirname
    if create and not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        ignore = folder / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# claimroom's local state: never commit it\n*\n")
    return folder


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --- config.json --------------------------------------------------------------------


@contextlib.contextmanager
def _flock(path: Path, timeout_s: float, what: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(
                        f"{what}: the lock {path} is still held after {timeout_s:.0f} s; "
                        "if no claimroom process is starting a store, delete that file and retry"
                    ) from None
                time.sleep(C.start_lock_poll_s)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def update_config(project: Path, **changes: Any) -> dict[str, Any]:
    """Set (or, with ``None``, remove) config keys atomically; returns the new config."""
    folder = infra_dir(project)
    with _flock(folder / "config.lock", C.start_lock_timeout_s, "cannot write the config"):
        config = load_config(project)
        for key, value in changes.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
        _write_atomic(config_path(project), json.dumps(config, indent=2, sort_keys=True) + "\n")
    return config


# --- the start lock -------------------------------------------------------------------


@contextlib.contextmanager
def start_lock(project: Path, timeout_s: float = C.start_lock_timeout_s) -> Iterator[None]:
    """Held while a store is started, so concurrent agents start exactly one."""
    with _flock(infra_dir(project) / C.start_lock_filename, timeout_s, "cannot start the store"):
        yield


# --- started.json: every store claimroom started, so that down, doctor, the health monitor
# and the control room find them all, and a restart uses the same data ----------------------


def _write_started(project: Path, records: list[Started]) -> None:
    path = infra_dir(project) / C.started_filename
    if not records:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    # mkstemp's mode 0600 stays: the URLs may hold the store's password.
    _write_atomic(path, json.dumps({"stores": [r.to_json() for r in records]}, indent=2) + "\n")


def record_started(project: Path, started: Started) -> None:
    """Remember ``started`` (call under the start lock), in place of what served its port before.

    The project has one local server (its data directory is ``.claimroom/redis``), so a new
    local record also replaces the old one, whatever its port.
    """
    kept = [
        r for r in read_started(project) if r.port != started.port and not (r.kind == started.kind == "local")
    ]
    _write_started(project, [*kept, started])


def mark_stopped(project: Path, record: Started, stopped: bool = True) -> None:
    """Note that ``record``'s store was stopped on purpose (or, with False, started again)."""
    records = read_started(project)
    same = (record.kind, record.port)
    _write_started(project, [r._replace(stopped=stopped) if (r.kind, r.port) == same else r for r in records])
