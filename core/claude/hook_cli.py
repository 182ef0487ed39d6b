"""``claimroom hook EVENT [--strict]``: what Claude Code's command hooks run.

Reached from ``core/entry.py`` before the CLI is imported: a hook runs on every edit, so
this module imports only what the event needs. A PreToolUse reads the board through
``board.py`` (no Store, no asyncio); the other events act through the Store.

Exit codes are Claude Code's: 0 with the answer as JSON on stdout; 2 (a blocking error,
stderr shown to the model) only for input that is not a hook event at all, and for
TeammateIdle's handover, which that event can only say that way. A board that cannot be
read never breaks the session: the hook warns in one line on stderr and exits 0 (strict
mode denies the edit instead, see ``decide.store_down``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from .. import constants as C
from ..errors import BadInput, ClaimroomError
from ..safetext import shown
from . import decide
from .decide import Outcome

USAGE = (
    "usage: claimroom hook EVENT [--strict] < event.json   (EVENT: "
    + ", ".join(decide.EVENTS)
    + "), or claimroom hook pre-commit (the git hook)"
)
max_input_bytes = 4 * 1024 * 1024  # an edit's tool_input carries the new text; more is not an event


def _say(line: str) -> None:
    sys.stderr.write(f"claimroom: {shown(line)}\n")


def _pre_tool_use(event: dict[str, Any], agent: str, strict: bool) -> Outcome:
    from ..projectdir import namespace, store_url
    from . import board

    root = decide.project_root_for(event)
    path = decide.edited_path(event, root)
    if path is None:
        return decide.NO_OBJECTION
    holds, titles = board.holds_covering(store_url(root), namespace(), [path], C.probe_timeout_s)
    return decide.edit(agent, path, holds[path], titles, strict=strict)


def _pre_commit() -> int:
    """``claimroom hook pre-commit``: the git hook (``init_git.py``) checks the staged paths."""
    import subprocess

    from .. import lockpath
    from ..projectdir import namespace, project_root, store_url
    from . import board

    root = project_root()
    staged = subprocess.run(
        ["git", "diff", "--cached", "--name-only", "--no-renames", "-z"],
        cwd=root,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if staged.returncode != 0:
        _say(f"pre-commit: cannot list the staged files: {staged.stderr.decode(errors='replace').strip()}")
        return 1
    paths = []
    for raw in staged.stdout.decode(errors="surrogateescape").split("\0"):
        if raw:
            try:
                paths.append(lockpath.normal(raw, root))
            except BadInput:
                continue  # a name no lock can have (a glob character): nothing holds it
    if not paths:
        return 0
    try:
        found, titles = board.holds_covering(store_url(root), namespace(), paths, C.probe_timeout_s)
    except ClaimroomError as exc:
        _say(f"pre-commit: the board cannot be used, the commit goes ahead unchecked ({exc})")
        return 0
    outcome = decide.commit(os.environ.get("CLAIMROOM_AGENT") or None, found, titles)
    if outcome.stderr:
        sys.stderr.write(outcome.stderr + "\n")
    return outcome.exit_code


def _export_agent(agent: str) -> None:
    """SessionStart: put the session's agent into the environment of the session's shell
    commands (``CLAUDE_ENV_FILE``), so the CLI and the git pre-commit hook run there act as it."""
    env_file = os.environ.get("CLAUDE_ENV_FILE")
    if not env_file or os.environ.get("CLAIMROOM_AGENT"):
        return
    import shlex

    try:
        with open(env_file, "a", encoding="utf-8") as f:
            f.write(f"export CLAIMROOM_AGENT={shlex.quote(agent)}\n")
    except OSError as exc:
        _say(f"hook SessionStart: cannot write {env_file}: {exc.strerror}")


def _heartbeat(event: dict[str, Any], agent: str, strict: bool, name: str) -> Outcome:
    """PostToolUse / SubagentStop: on Redis the short way (``lease.py``), else the Store's."""
    from ..projectdir import namespace, store_url

    url = store_url(decide.project_root_for(event))
    if url.split("://", 1)[0].lower() == "file":
        return _acting_event(name, event, agent, strict)
    from .lease import heartbeat_own

    heartbeat_own(url, namespace(), agent, C.probe_timeout_s)
    return decide.NO_OBJECTION


def _url_for(name: str, event: dict[str, Any]) -> str:
    root = decide.project_root_for(event)
    if name == "SessionStart" and not os.environ.get(C.env_url):
        # Once per session: find the store as any command does, starting it when claimroom
        # may (so the first session in a project brings the board up); never ask.
        from ..infra.resolve import resolve

        return resolve(None, project=root, interactive=False).url
    from ..projectdir import store_url

    return store_url(root)


def _acting_event(name: str, event: dict[str, Any], agent: str, strict: bool) -> Outcome:
    import asyncio

    from ..projectdir import namespace
    from ..store import Store
    from .acts import acting, handle

    url, ns = _url_for(name, event), namespace()

    async def run() -> Outcome:
        async with Store.from_url(url, ns) as store:
            return await handle(
                name, event, acting(store, agent, str(event.get("session_id", ""))), strict=strict
            )

    return asyncio.run(run())


def answer(name: str, event: dict[str, Any], *, strict: bool) -> Outcome:
    """The hook's answer to ``event``; a board that cannot be used is reported, not raised."""
    from ..sessions import agent_name

    agent = agent_name(str(event.get("session_id", "")))
    try:
        if name == "PreToolUse":
            return _pre_tool_use(event, agent, strict)
        if name in ("PostToolUse", "SubagentStop"):
            return _heartbeat(event, agent, strict, name)
        if name == "SessionStart":
            _export_agent(agent)
        return _acting_event(name, event, agent, strict)
    except ClaimroomError as exc:  # down, busy, misconfigured: the session goes on
        return decide.store_down(str(exc), strict=strict, event=name)


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if args in (["-h"], ["--help"]):
        sys.stdout.write(USAGE + "\n")
        return 0
    strict = "--strict" in args
    rest = [a for a in args if a != "--strict"]
    if rest == ["pre-commit"]:
        try:
            return _pre_commit()
        except Exception as exc:  # never a traceback in the middle of a commit
            if os.environ.get("CLAIMROOM_DEBUG"):
                raise
            _say(
                f"pre-commit: unexpected error: {exc.__class__.__name__}: {exc} (CLAIMROOM_DEBUG=1 shows it)"
            )
            return 1
    if len(rest) != 1 or rest[0] not in decide.EVENTS:
        _say(("unknown hook event " + repr(rest[0]) + "; " if len(rest) == 1 else "") + USAGE)
        return 2
    name = rest[0]
    try:
        if sys.stdin is None:
            raise BadInput("hook input is to come from standard input, but it is closed")
        raw = sys.stdin.buffer.read(max_input_bytes + 1)
        if len(raw) > max_input_bytes:
            raise BadInput(f"hook input is larger than {max_input_bytes} bytes")
        event = decide.read_event(raw, name)
        outcome = answer(name, event, strict=strict)
    except BadInput as exc:
        _say(str(exc))
        return 2
    except Exception as exc:  # the last line of defence: a non-blocking error, never a traceback
        if os.environ.get("CLAIMROOM_DEBUG"):
            raise
        _say(f"hook {name}: unexpected error: {exc.__class__.__name__}: {exc} (CLAIMROOM_DEBUG=1 shows it)")
        return 1
    if outcome.output is not None:
        sys.stdout.write(json.dumps(outcome.output) + "\n")
    if outcome.stderr:
        # TeammateIdle's feedback is for the model and may span lines; a warning is one line.
        text = outcome.stderr if outcome.exit_code == 2 else shown(outcome.stderr)
        sys.stderr.write(text + "\n")
    return outcome.exit_code
