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
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import constants as C
from .. import private
from ..errors import BadInput, StoreUnavailable

# Reading the project's folder is in core/projectdir.py (light: the hooks read it on every
# edit); named here too, where the rest of infra has always found it.
from ..projectdir import Started, config_path, load_config, project_root, read_started, started_path

__all__ = [
    "Started",
    "config_path",
    "infra_dir",
    "load_config",
    "mark_stopped",
    "password_path",
    "project_password",
    "project_root",
    "read_password",
    "read_started",
    "record_started",
    "start_lock",
    "started_path",
    "update_config",
]


def infra_dir(project: Path, *, create: bool = True) -> Path:
    """``<project>/.claimroom``; made (0700, with a ``.gitignore`` of ``*``) when asked.

    It holds the store's password and its data, so it is the owner's alone: a folder an
    older claimroom made readable by others is narrowed here (see ``core/private.py``).
    """
    folder = project / C.infra_dirname
    if create and not folder.is_dir():
        private.make_dir(folder)
        private.create_file(folder / ".gitignore", b"# claimroom's local state: never commit it\n*\n")
    elif create and private.is_loose(folder):
        private.narrow(folder)
    return folder


def _write_atomic(path: Path, text: str) -> None:
    private.write_file(path, text.encode())


# --- config.json --------------------------------------------------------------------


@contextlib.contextmanager
def _flock(path: Path, timeout_s: float, what: str) -> Iterator[None]:
    private.make_dir(path.parent)
    with os.fdopen(private.open_lock(path), "r+") as f:
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


# --- the project's store password ----------------------------------------------------


def password_path(project: Path) -> Path:
    return project / C.infra_dirname / C.password_filename


def _check_password(path: Path, text: str) -> str:
    password = text.strip()
    if not password or any(ch.isspace() or not ch.isprintable() for ch in password):
        raise BadInput(
            f"{path} must hold one password (printable, no spaces): fix or delete it "
            "(claimroom makes a new one; stores started with the old one keep it)"
        )
    return password


def read_password(project: Path) -> str:
    """The project's store password, "" when none was made yet; ``BadInput`` when unusable."""
    path = password_path(project)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {path} ({exc}): fix or delete it") from None
    return _check_password(path, text)


def project_password(project: Path) -> str:
    """The password every store claimroom starts for ``project`` requires; made on first use.

    Kept in ``.claimroom/redis.password``, created owner-only (0600) and whole in one step,
    so two agents making it at once agree on one. Only the project's owner can read it:
    that is what keeps the store private on a machine shared with other users.
    """
    password = read_password(project)
    if password:
        return password
    infra_dir(project)
    private.create_file(password_path(project), (secrets.token_urlsafe(C.password_bytes) + "\n").encode())
    return read_password(project)  # ours, or the one another process made first


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
    # Owner-only (private.write_file): the records hold the stores' passwords.
    _write_atomic(path, json.dumps({"stores": [r.to_json() for r in records]}, indent=2) + "\n")


def record_started(project: Path, started: Started) -> None:
    """Remember ``started`` (call under the start lock), in place of what served its port before.

    The project has one local server (its data directory is ``.claimroom/redis``) and one
    topology of each kind (``.claimroom/sentinel``, ``.claimroom/cluster``), so a new record of
    one of these also replaces the old one, whatever its port. The newest record is last.
    """
    single = ("local", *C.topology_kinds)
    kept = [
        r
        for r in read_started(project)
        if r.port != started.port and not (r.kind == started.kind and r.kind in single)
    ]
    _write_started(project, [*kept, started])


def mark_stopped(project: Path, record: Started, stopped: bool = True) -> None:
    """Note that ``record``'s store was stopped on purpose (or, with False, started again)."""
    records = read_started(project)
    same = (record.kind, record.port)
    _write_started(project, [r._replace(stopped=stopped) if (r.kind, r.port) == same else r for r in records])
