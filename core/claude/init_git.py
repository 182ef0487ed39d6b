"""``claimroom init git``: a pre-commit hook that refuses a commit touching a path another agent holds.

Writes that bypass Claude Code's edit tools (a shell command, another vendor's agent, a
person) are caught where they become shared: at commit. The hook runs ``claimroom hook
pre-commit`` (the hooks' fast path), which checks every staged path against the board.

Whose commit it is: ``CLAIMROOM_AGENT`` (the SessionStart hook exports it into a Claude
Code session's shell through ``CLAUDE_ENV_FILE``); that agent's own locks do not stop it.
Without it the committer is unknown, so every lock stops the commit: a person committing a
file an agent is still working on is exactly what the hook is for.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from ..errors import BadInput
from . import files

MARK = "# claimroom pre-commit hook"


def _git(project: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=project, capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        raise BadInput(f"cannot run git: {exc.strerror}") from None
    if done.returncode != 0:
        raise BadInput(f"{project} is not a git repository (git {' '.join(args)}: {done.stderr.strip()})")
    return done.stdout.strip()


def script(exe: str) -> str:
    return (
        "#!/bin/sh\n"
        f"{MARK} (written by claimroom init git; safe to delete).\n"
        "# Refuses a commit touching a path another agent holds; CLAIMROOM_AGENT names the committer.\n"
        f"exec {shlex.quote(exe)} hook pre-commit\n"
    )


def init_git(project: Path) -> dict[str, str]:
    """Install the hook (idempotent); a pre-commit hook claimroom did not write is left as it
    is, and ``BadInput`` says how to call claimroom from it."""
    hooks = Path(_git(project, "rev-parse", "--git-path", "hooks"))
    hooks = hooks if hooks.is_absolute() else project / hooks
    path = hooks / "pre-commit"
    want = script(files.command())
    try:
        have = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        have = None
    if have is not None and MARK not in have:
        raise BadInput(
            f"{path} is already a pre-commit hook that claimroom did not write, and claimroom does not "
            "replace it; add this line to it to check the board too:  claimroom hook pre-commit || exit 1"
        )
    result = "unchanged" if have == want else ("updated" if have is not None else "added")
    if result != "unchanged":
        hooks.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("pre-commit.claimroom.tmp")
        tmp.write_text(want, encoding="utf-8")
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    return {"file": str(path), "result": result}
