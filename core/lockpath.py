"""Lock paths: one spelling for each file or directory, so one path is one lock.

A lock path names a file or directory by its path from the project root (``src/app.py``).
``src/app.py``, ``./src/app.py``, ``src//app.py``, ``src\\app.py``, ``<root>/src/app.py``
and the NFC and NFD spellings of one name all become ``src/app.py``:

- a backslash is a separator (as on Windows), runs of separators are one, ``.`` goes, and
  ``..`` is resolved by name; one that leaves the project is refused;
- text is Unicode NFC (macOS stores names decomposed, editors and terminals send either);
- a relative path is taken from the project root, whatever the caller's working directory,
  so agents working in different folders still meet on one lock;
- an absolute path inside the project root is made relative to it; one outside, or an
  absolute path when no root is known, is refused;
- case is kept: the filesystems claimroom runs on (Linux) tell ``App.py`` from ``app.py``.
  On a case-insensitive filesystem (found by looking up an entry of the root under its
  other case) names are case-folded, since there both spellings are one file;
- ``dir/**`` means the directory ``dir`` (a lock on a directory covers everything under
  it); any other path with ``*`` or ``?`` is a glob and refused: it would lock a literal
  name that overlaps none of the files it seems to cover. Brackets are ordinary
  characters: ``app/[slug]/page.tsx`` is a real file in many web projects, while a lock
  asked for with a character class is all but unheard of.

Symbolic links are not followed: a lock names a path, not the file it leads to.
"""

from __future__ import annotations

import os
import posixpath
import unicodedata
from functools import cache
from pathlib import Path

from .errors import BadInput

max_bytes = 1024
_GLOB = frozenset("*?")
_MAX_ROOT_DEPTH = 64  # folders from / down to a project root reached through a link


def normal(value: str, root: str | Path | None = None) -> str:
    """``value`` as its lock path from the project ``root``; ``BadInput`` naming the problem.

    Without ``root`` only relative paths are taken (and case is always kept)."""
    if len(value) > 4 * max_bytes:  # refused before any work on it grows with its length
        raise BadInput(f"lock path is longer than {max_bytes} bytes")
    text = unicodedata.normalize("NFC", value.replace("\\", "/"))
    if text.startswith("/"):
        text = _inside(value, posixpath.normpath(text), root)
    name = posixpath.normpath(text) if text else "."
    if name == ".." or name.startswith("../"):
        raise BadInput(f"lock path {value!r} leaves the project")
    parts = name.split("/")
    if parts[-1] == "**":
        parts.pop()  # "dir/**" is everything under dir: exactly what a lock on dir covers
    name = "/".join(parts) or "."
    if name == ".":
        raise BadInput(f"lock path {value!r} names no file or directory (the whole project cannot be locked)")
    if any(c in _GLOB for c in name):
        raise BadInput(
            f"lock path {value!r} is a glob: lock the files by name, or a directory "
            "(which covers everything under it; 'dir/**' means the directory too)"
        )
    if root is not None and case_insensitive(str(root)):
        name = name.casefold()
    try:
        size = len(name.encode())
    except UnicodeEncodeError:  # a lone surrogate, e.g. from undecodable command-line bytes
        raise BadInput("lock path is not valid Unicode text") from None
    if size > max_bytes:
        raise BadInput(f"lock path is longer than {max_bytes} bytes")
    return name


def _inside(value: str, absolute: str, root: str | Path | None) -> str:
    """The part of ``absolute`` under ``root`` ('' for the root itself)."""
    if root is None:
        raise BadInput(f"lock path {value!r} is absolute: give it from the project root")
    real_root = os.path.realpath(root)
    for base in dict.fromkeys((posixpath.normpath(str(root)), real_root)):
        if absolute == base or absolute.startswith(base.rstrip("/") + "/"):
            return absolute[len(base) :].lstrip("/")
    # Spelled through another way to the root (/tmp -> /private/tmp, a link to the project):
    # find the ancestor that is the root. What follows it is kept as written: links inside
    # the project are not followed.
    # Looked for from the top, a bounded number of folders deep: a hostile path of thousands
    # of parts must not cost a realpath (itself a walk) per part.
    parts = absolute.strip("/").split("/")
    for depth in range(1, min(len(parts), _MAX_ROOT_DEPTH) + 1):
        head = "/" + "/".join(parts[:depth])
        if os.path.realpath(head) == real_root:
            return "/".join(parts[depth:])
    raise BadInput(f"lock path {value!r} is outside the project ({root})")


@cache
def case_insensitive(root: str) -> bool:
    """Whether the filesystem at ``root`` treats names that differ only in case as one.

    Looks up an entry of ``root`` whose name has a case under the other case; a root with
    no such entry (or that cannot be read) counts as case-sensitive."""
    try:
        with os.scandir(root) as entries:
            for entry in entries:
                other = entry.name.swapcase()
                if other == entry.name:
                    continue
                try:
                    return os.path.samefile(entry.path, os.path.join(root, other))
                except OSError:
                    return False
    except OSError:
        return False
    return False
