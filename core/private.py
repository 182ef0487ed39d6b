"""Files and folders only their owner can read: everything claimroom writes for a project.

A board holds task payloads, which may carry secrets, and ``.claimroom/`` holds the store's
password; so each file is created owner-only from its first byte (``O_CREAT`` with mode
0600, or ``mkstemp``, which does the same) rather than written and then narrowed, which
would leave a moment in which another user could open it. Folders are made 0700. Processes
claimroom starts to write files of their own (a redis-server) get ``umask`` 077 instead.

Files made by an older claimroom are narrowed when claimroom next starts the store that
owns them (``narrow_tree``); ``loose`` finds what is still readable by others, for doctor.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
UMASK = 0o077  # for processes claimroom starts that create files of their own
_OTHERS = 0o077  # the group and other permission bits


def make_dir(path: Path) -> Path:
    """Make ``path`` and any missing parents, each made 0700; an existing folder is left as it is."""
    missing = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it a moment ago
            os.mkdir(folder, DIR_MODE)
    return path


def touch(path: Path) -> None:
    """Create ``path`` empty and owner-only when it does not exist (an existing one is kept)."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, FILE_MODE))


def open_lock(path: Path) -> int:
    """A descriptor of the lock file ``path`` (created owner-only); the caller closes it."""
    return os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, FILE_MODE)


def _temp(path: Path, data: bytes) -> str:
    """A temporary file beside ``path``, owner-only (``mkstemp``) and holding ``data`` on disk."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def write_file(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step (readers see the old or the new), owner-only."""
    tmp = _temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def create_file(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` unless it exists; whether this call created it.

    The file appears whole or not at all (a hard link to a finished temporary file), so a
    process racing to create it reads either nothing or all of it, never half.
    """
    tmp = _temp(path, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return True


def is_loose(path: Path) -> bool:
    """Whether ``path`` exists and its group or other users may read, write or enter it."""
    try:
        mode = path.lstat().st_mode
    except OSError:
        return False
    return not stat.S_ISLNK(mode) and bool(mode & _OTHERS)


def _walk(root: Path) -> Iterable[Path]:
    if not root.exists():
        return
    yield root
    if root.is_dir() and not root.is_symlink():
        for folder, dirs, files in os.walk(root):
            for name in (*dirs, *files):
                yield Path(folder) / name


def loose(root: Path) -> list[Path]:
    """``root`` and everything under it that others may read, write or enter."""
    return [p for p in _walk(root) if is_loose(p)]


def narrow(path: Path) -> None:
    """Take the group's and others' permissions off ``path`` (one made by an older claimroom)."""
    with contextlib.suppress(OSError):  # gone meanwhile, or not ours: doctor reports it
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and mode & _OTHERS:
            os.chmod(path, stat.S_IMODE(mode) & ~_OTHERS)


def narrow_tree(root: Path) -> None:
    """``narrow`` ``root`` and everything under it."""
    for path in loose(root):
        narrow(path)
