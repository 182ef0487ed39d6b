"""Reading and writing the user's JSON settings files: refuse a broken one, replace atomically.

``claimroom init`` merges its entries into files the user owns (``.mcp.json``,
``.claude/settings.json``): a file that is not a JSON object is refused with its name
and line before anything is written, and a new version replaces the old in one rename,
keeping its permissions, so an editor or Claude Code never reads half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..errors import BadInput


def read_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` ({} when there is no file); ``BadInput`` naming the file
    and line when it is not one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}): "
            "fix it, then run this again (nothing was written)"
        ) from None
    if not isinstance(data, dict):
        raise BadInput(f"{path} must hold a JSON object (nothing was written)")
    return data


def write_object(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` in one rename, keeping the old file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644  # settings, no secret: the token is only named (${CLAIMROOM_TOKEN})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def command() -> str:
    """How the files claimroom writes run claimroom: plain ``claimroom`` when that is on
    PATH and is this installation, else this installation's full path (a virtualenv not
    on PATH), so the hooks run the claimroom that wrote them."""
    mine = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    found = shutil.which("claimroom")
    if found and (mine is None or mine.name != "claimroom" or Path(found).resolve() == mine):
        return "claimroom"
    if mine is not None and mine.name == "claimroom":
        return str(mine)
    exe = Path(sys.executable).with_name("claimroom")
    return str(exe) if exe.exists() else "claimroom"
