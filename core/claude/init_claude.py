"""``claimroom init claude``: the MCP server in ``.mcp.json`` and the hooks in ``.claude/settings.json``.

Both files are merged, never replaced: the user's other servers and hooks stay as they
are, and claimroom's own entries (found by what they run: ``claimroom hook EVENT``, or an
http hook at ``.../hooks/EVENT``) are added once, left alone when already right, and
updated in place when they differ (another URL, strict mode switched). A file that is not
valid JSON is refused before anything is written.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import BadInput
from . import files

SERVER = "claimroom"
EDIT_MATCHER = "Edit|Write|MultiEdit|NotebookEdit"
TOKEN_ENV = "CLAIMROOM_TOKEN"
# event -> (matcher or None, timeout s, runs in the background): SessionStart may start the
# store; PostToolUse only heartbeats (after any tool), so Claude Code need not wait for it.
HOOKS: dict[str, tuple[str | None, int, bool]] = {
    "SessionStart": (None, 60, False),
    "PreToolUse": (EDIT_MATCHER, 10, False),
    "PostToolUse": (None, 30, True),  # every tool: a long test run keeps the lease too
    "Stop": (None, 30, False),
    "SubagentStop": (None, 30, False),
    "TeammateIdle": (None, 30, False),
}
COMMAND_ONLY = ("TeammateIdle",)  # decided by exit code alone: an http hook cannot say it


def server_base(raw: str) -> str:
    """``http://HOST:PORT`` from ``--http`` (``HOST:PORT``, or a URL, with or without ``/mcp``)."""
    url = raw if "://" in raw else f"http://{raw}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"--http {raw!r}: give the MCP server as HOST:PORT or http://HOST:PORT")
    try:
        parts.port  # noqa: B018 -- a malformed port raises here
    except ValueError:
        raise BadInput(f"--http {raw!r}: the port is not a number from 1 to 65535") from None
    path = parts.path.rstrip("/")
    path = path.removesuffix("/mcp")
    return f"{parts.scheme}://{parts.netloc}{path}"


def _hook_entry(event: str, base: str | None, strict: bool, exe: str) -> dict[str, Any]:
    _, timeout, background = HOOKS[event]
    flag = strict and event == "PreToolUse"
    if base is not None and event not in COMMAND_ONLY:
        return {
            "type": "http",
            "url": f"{base}/hooks/{event}" + ("?strict=1" if flag else ""),
            "headers": {"Authorization": f"Bearer ${{{TOKEN_ENV}}}"},
            "allowedEnvVars": [TOKEN_ENV],
            "timeout": timeout,
        }
    entry: dict[str, Any] = {
        "type": "command",
        "command": f"{shlex.quote(exe)} hook {event}" + (" --strict" if flag else ""),
        "timeout": timeout,
    }
    if background:
        entry["async"] = True
    return entry


def _ours(entry: Any, event: str) -> bool:
    """Whether a hook entry is claimroom's for ``event`` (so a rerun replaces, never duplicates)."""
    if not isinstance(entry, dict):
        return False
    if entry.get("type") == "http":
        return urlsplit(str(entry.get("url", ""))).path.endswith(f"/hooks/{event}")
    try:
        words = shlex.split(str(entry.get("command", "")))
    except ValueError:
        return False
    return len(words) >= 3 and Path(words[0]).name == "claimroom" and words[1:3] == ["hook", event]


def merge_hooks(settings: dict[str, Any], base: str | None, strict: bool, exe: str) -> dict[str, str]:
    """Put claimroom's hooks into ``settings`` (in place); returns event -> what happened."""
    hooks = settings.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise BadInput('"hooks" in .claude/settings.json must be an object (nothing was written)')
    said = {}
    for event, (matcher, _, _) in HOOKS.items():
        groups = hooks.setdefault(event, [])
        if not isinstance(groups, list):
            raise BadInput(f'"hooks.{event}" in .claude/settings.json must be a list (nothing was written)')
        want: dict[str, Any] = {"hooks": [_hook_entry(event, base, strict, exe)]}
        if matcher is not None:
            want = {"matcher": matcher, **want}
        theirs = [g for g in groups if not _holds_ours(g, event)]
        mine = [g for g in groups if _holds_ours(g, event)]
        if mine == [want]:
            said[event] = "unchanged"
            continue
        kept = theirs + [_without_ours(g, event) for g in mine if _without_ours(g, event)["hooks"]]
        hooks[event] = [*kept, want]
        said[event] = "updated" if mine else "added"
    return said


def _holds_ours(group: Any, event: str) -> bool:
    return isinstance(group, dict) and any(_ours(e, event) for e in group.get("hooks") or [])


def _without_ours(group: dict[str, Any], event: str) -> dict[str, Any]:
    """A group that also held other hooks keeps them (only claimroom's entry moves)."""
    return {**group, "hooks": [e for e in group.get("hooks") or [] if not _ours(e, event)]}


def server_entry(base: str | None, exe: str) -> dict[str, Any]:
    if base is None:
        return {"command": exe, "args": ["serve", "--stdio"]}
    return {
        "type": "http",
        "url": f"{base}/mcp",
        "headers": {"Authorization": f"Bearer ${{{TOKEN_ENV}}}"},
    }


def init_claude(project: Path, *, http: str | None = None, strict: bool = False) -> dict[str, Any]:
    """Write (merge) both files; returns what was done, file by file. Both files are read
    and checked before either is written."""
    base = None if http is None else server_base(http)
    exe = files.command()
    mcp_path = project / ".mcp.json"
    settings_path = project / ".claude" / "settings.json"
    mcp, settings = files.read_object(mcp_path), files.read_object(settings_path)
    servers = mcp.setdefault("mcpServers", {})
    if not isinstance(servers, dict):
        raise BadInput(f'"mcpServers" in {mcp_path} must be an object (nothing was written)')
    want = server_entry(base, exe)
    server_said = (
        "unchanged" if servers.get(SERVER) == want else ("updated" if SERVER in servers else "added")
    )
    servers[SERVER] = want
    hooks_said = merge_hooks(settings, base, strict, exe)
    if server_said != "unchanged":
        files.write_object(mcp_path, mcp)
    if any(v != "unchanged" for v in hooks_said.values()):
        files.write_object(settings_path, settings)
    return {
        "mcp": {"file": str(mcp_path), "server": SERVER, "entry": want, "result": server_said},
        "settings": {
            "file": str(settings_path),
            "hooks": {
                event: {"result": said, "entry": _hook_entry(event, base, strict, exe)}
                for event, said in hooks_said.items()
            },
        },
        "transport": "stdio" if base is None else "http",
        "strict": strict,
    }


def describe(done: dict[str, Any]) -> str:
    """What ``init_claude`` wrote, for a person."""
    mcp, settings = done["mcp"], done["settings"]
    entry = mcp["entry"]
    how = f"{entry['command']} {' '.join(entry['args'])}" if "command" in entry else f"http {entry['url']}"
    said = "unchanged (not rewritten)" if mcp["result"] == "unchanged" else mcp["result"]
    lines = [
        f"{mcp['file']}: MCP server {mcp['server']!r} {said}: {how}",
        f"{settings['file']}:",
    ]
    for event, h in settings["hooks"].items():
        e = h["entry"]
        what = e.get("command") or e.get("url")
        extra = " (in the background)" if e.get("async") else ""
        lines.append(f"  {event:<13} {h['result']:<10} {e['type']}: {what}{extra}")
    if done["transport"] == "http":
        lines += [
            f"Both send 'Authorization: Bearer ${{{TOKEN_ENV}}}': Claude Code fills in the {TOKEN_ENV} "
            "environment variable it was started with, so the token is never written to these files.",
            f"Before starting claude, set {TOKEN_ENV} to the token that "
            "`claimroom token create --agent NAME --role worker` prints.",
            "TeammateIdle stays a command hook: Claude Code takes that event's answer from the exit code.",
        ]
    else:
        lines.append(
            "Each Claude Code session becomes its own agent (claude- and the first 8 characters of its "
            "session id; CLAIMROOM_AGENT names it instead)."
        )
    if done["strict"]:
        lines.append("Strict mode: an edit to a file the agent holds no lock on is refused too.")
    return "\n".join(lines)
