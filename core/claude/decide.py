"""What each Claude Code hook answers: the one decision module of the command and http forms.

Claude Code's hook protocol (2.1.x): the event arrives as JSON (stdin for a command hook,
the body of a POST for an http hook); the answer is JSON on stdout (the response body),
exit code 0. PreToolUse answers ``hookSpecificOutput.permissionDecision`` "deny" with a
reason the model reads; SessionStart answers ``hookSpecificOutput.additionalContext``;
Stop and SubagentStop answer ``{"decision": "block", "reason": ...}`` to keep the model
going, which a hook must not do again while ``stop_hook_active`` is set (or it loops);
TeammateIdle knows only exit codes: 2 keeps the teammate working, its stderr read as
feedback.

Nothing here does I/O: the caller gathers the facts (``board.py`` for a PreToolUse,
``acts.py`` for the rest) and prints or returns the ``Outcome``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from .. import lockpath
from ..errors import BadInput
from .board import Hold

EDIT_TOOLS = ("Edit", "Write", "MultiEdit", "NotebookEdit")
EVENTS = ("SessionStart", "PreToolUse", "PostToolUse", "Stop", "SubagentStop", "TeammateIdle")
payload_chars = 2000  # of a handed-over task's payload, in the reason the model reads


class Outcome(NamedTuple):
    """A hook's answer: JSON for stdout (None: print nothing), a line for stderr, the exit code."""

    output: dict[str, Any] | None = None
    stderr: str = ""
    exit_code: int = 0


NO_OBJECTION = Outcome()


def read_event(raw: bytes | str, expected: str) -> dict[str, Any]:
    """The hook input: a JSON object; ``BadInput`` naming what is wrong with it."""
    try:
        event = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(
            f"hook input is not JSON ({exc}): Claude Code sends one JSON object on stdin"
        ) from None
    if not isinstance(event, dict):
        raise BadInput("hook input must be a JSON object")
    name = event.get("hook_event_name", expected)
    if name != expected:
        raise BadInput(f"hook input is a {str(name)[:40]!r} event, but this hook handles {expected}")
    for key in ("session_id", "cwd"):
        if not isinstance(event.get(key, ""), str):
            raise BadInput(f"hook input field {key!r} must be text")
    if not isinstance(event.get("tool_input", {}), dict):
        raise BadInput("hook input field 'tool_input' must be an object")
    return event


def project_root_for(event: dict[str, Any]) -> Path:
    """The project an event's paths are relative to: ``CLAIMROOM_HOME``, else the nearest
    folder with ``.git`` from where Claude Code runs (``CLAUDE_PROJECT_DIR``, else the
    event's ``cwd``): the same root ``claimroom lock`` takes paths from."""
    from ..projectdir import project_root

    start = os.environ.get("CLAUDE_PROJECT_DIR") or event.get("cwd") or None
    return project_root(cwd=Path(start) if start else None)


def edited_path(event: dict[str, Any], root: Path) -> str | None:
    """The lock path an edit tool is about to write; None when it is not one of ours to
    judge (another tool, no path, or a file outside the project, such as ~/.claude/...)."""
    if event.get("tool_name") not in EDIT_TOOLS:
        return None
    tool_input = event.get("tool_input") or {}
    raw = tool_input.get("file_path") or tool_input.get("notebook_path")
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return lockpath.normal(raw, root)
    except BadInput:
        return None


def _named(task: str, titles: dict[str, str]) -> str:
    title = titles.get(task, "")
    return f"task {task}" + (f" ({title!r})" if title else "")


def deny(reason: str) -> Outcome:
    return Outcome(
        {
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": reason,
            }
        }
    )


def edit(agent: str, path: str, holds: list[Hold], titles: dict[str, str], *, strict: bool) -> Outcome:
    """PreToolUse on an edit: deny a path another agent holds (unless this agent shares the
    hold), and in ``strict`` mode one this agent holds no lock on.

    Allowing says nothing: an explicit "allow" would also skip Claude Code's own
    permission prompt, which is the user's to keep."""
    mine = [h for h in holds if h.agent == agent and (h.path == path or path.startswith(h.path + "/"))]
    others = [h for h in holds if h.agent != agent]
    if others and not (mine and all(h.shared for h in others)):
        h = others[0]
        if h.path == path:
            on = "the file itself"
        elif path.startswith(h.path + "/"):
            on = f"the directory {h.path}, above it"
        else:
            on = f"{h.path}, under it"
        held = f"for {_named(h.task, titles)}" if h.task else "(a lock not tied to a task)"
        return deny(
            f"claimroom: {path} is locked by agent {h.agent} {held}; the lock is on {on}. "
            f"You are agent {agent}. Do not edit it; work on other files, or wait until {h.agent} "
            "releases it (claimroom locks shows the locks)."
        )
    if strict and not mine:
        return deny(
            f"claimroom (strict mode): you ({agent}) hold no lock on {path}. Lock it before you edit it: "
            f"claimroom lock {path} --agent {agent} --task TASK (or the lock tool), then try again."
        )
    return NO_OBJECTION


def commit(agent: str | None, found: dict[str, list[Hold]], titles: dict[str, str]) -> Outcome:
    """The git pre-commit check: refuse (exit 1) when a staged path is held by an agent other
    than the committer (``agent``; None: unknown, so every holder counts)."""
    lines = []
    for path, holds in found.items():
        h = next((h for h in holds if h.agent != agent), None)
        if h is not None:
            held = f"for {_named(h.task, titles)}" if h.task else "(a lock not tied to a task)"
            on = "" if h.path == path else f" (the lock is on {h.path})"
            lines.append(f"{path} is locked by agent {h.agent} {held}{on}")
    if not lines:
        return NO_OBJECTION
    who = f"you are {agent}" if agent else "CLAIMROOM_AGENT is not set, so every agent's lock counts"
    text = "\n".join(
        [
            f"claimroom: commit refused: {len(lines)} staged path(s) held by another agent ({who}):",
            *(f"  {line}" for line in lines),
            "Unstage them (git restore --staged PATH), or wait until their holders release them.",
        ]
    )
    return Outcome(stderr=text, exit_code=1)


def store_down(why: str, *, strict: bool, event: str) -> Outcome:
    """The board cannot be read: never break the user's session over it. Strict mode
    denies the edit (it promises no edit without a lock, which cannot be checked now);
    otherwise the edit goes ahead with a one-line warning for the user."""
    if strict and event == "PreToolUse":
        return deny(
            f"claimroom (strict mode): the board cannot be read, so this edit cannot be checked ({why}). "
            "Ask the user to start the store (claimroom up)."
        )
    done = "the edit goes ahead unchecked" if event == "PreToolUse" else "nothing was done"
    return Outcome(stderr=f"hook {event}: the board cannot be used, {done} ({why})")


def rules(agent: str, session: str) -> Outcome:
    """SessionStart: who this session is on the board and the few rules it works by."""
    text = "\n".join(
        [
            f"claimroom coordinates the agents working on this project. You are agent {agent}"
            + (f" (this Claude Code session, {session[:8]}...)." if session else "."),
            "- Claim a task before you work on it (the claimroom claim tool, or: claimroom claim "
            f"--agent {agent}); work only on what you claimed.",
            "- Lock the files you will edit first (lock tool, or: claimroom lock PATH... "
            f"--agent {agent} --task TASK); an edit to a file another agent locked is refused.",
            "- Heartbeat long work with progress (heartbeat tool); your edits also keep the lease alive.",
            "- When done: complete TASK with its token; if you cannot finish: fail it with a reason. "
            "A claim left open when you stop is failed with a reason and goes back to the board.",
        ]
    )
    return Outcome({"hookSpecificOutput": {"hookEventName": "SessionStart", "additionalContext": text}})


def handover_text(agent: str, task: dict[str, Any], token: int, dropped: list[str]) -> str:
    """What the model reads when it is handed its next task instead of stopping."""
    tid = task["id"]
    payload = "" if task.get("payload") is None else json.dumps(task["payload"], ensure_ascii=False)
    if len(payload) > payload_chars:
        payload = payload[:payload_chars] + f"... (cut: claimroom show {tid} has it whole)"
    lines = []
    if dropped:
        lines.append(
            f"claimroom: you stopped with unfinished work; failed with a reason: {', '.join(dropped)}."
        )
    lines += [
        f"claimroom: the board has work for you (agent {agent}). Your next task is {tid} with token {token}: "
        f"{task.get('title', '')!r} (queue {task.get('queue', 'default')}).",
    ]
    if payload:
        lines.append(f"Payload: {payload}")
    lines += [
        "Lock the files you will edit first (lock tool, or: claimroom lock PATH... "
        f"--agent {agent} --task {tid}). When it is done: complete tool with task {tid} and token {token} "
        f"(or: claimroom complete {tid} --token {token}). If you cannot finish it: fail tool, or "
        f"claimroom fail {tid} --token {token} --reason WHY.",
    ]
    return "\n".join(lines)


def stop(event: str, agent: str, task: dict[str, Any] | None, token: int, dropped: list[str]) -> Outcome:
    """Stop / SubagentStop / TeammateIdle once the open claims are dealt with: keep going
    with the task claimed for the agent, else let it stop (saying what was failed)."""
    if task is not None:
        text = handover_text(agent, task, token, dropped)
        if event == "TeammateIdle":
            return Outcome(stderr=text, exit_code=2)
        return Outcome({"decision": "block", "reason": text})
    if dropped:
        return Outcome(
            {"systemMessage": f"claimroom: {agent} stopped with unfinished work: failed {', '.join(dropped)}"}
        )
    return NO_OBJECTION
