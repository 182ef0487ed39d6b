"""The agent CLI: ``claimroom COMMAND``, a thin shell over the async Store API.

Every error a user can cause ends as one line on stderr and the exit code of the design
note's contract (``ClaimroomError.exit_code``); no traceback reaches a user. The parser is
in ``cli_parser``, the commands that act on a board in ``cli_commands``; here is ``main``,
which runs them, and the commands that need no board of their own (up, down, doctor,
migrate, serve, init, hook, tui, demo).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from . import constants, private, validate
from .cli_commands import COMMANDS, Handler, token_acting
from .cli_messages import COMMANDS as MESSAGE_COMMANDS
from .cli_parser import build_parser
from .cli_review import cmd_review
from .cli_topology import cmd_topology
from .errors import BadInput, ClaimroomError
from .output import Printer
from .store import Store

if TYPE_CHECKING:
    from .infra import Resolution


def _tty(stream: TextIO | None) -> bool:
    """Whether ``stream`` is a terminal; a closed one (``<&-``: Python makes it None) is not."""
    return stream is not None and stream.isatty()


def _json_mode(a: argparse.Namespace) -> bool:
    return bool(getattr(a, "json", False))


def _url(a: argparse.Namespace) -> str | None:
    """The store URL given (``--url``, else CLAIMROOM_URL), checked; None when none is."""
    url = getattr(a, "url", None) or os.environ.get("CLAIMROOM_URL")
    return validate.store_url(url) if url else None


def _resolve(a: argparse.Namespace) -> Resolution:
    """The store for this run (``core/infra/resolve.py``: configured, found, started or files)."""
    from .infra import project_root, resolve, up

    allow = True if getattr(a, "allow_file_fallback", False) else None
    interactive = _tty(sys.stdin) and _tty(sys.stderr) and not _json_mode(a)
    if a.command != "up":
        return resolve(_url(a), project=project_root(), allow_file_fallback=allow, interactive=interactive)
    # Only `up` may start a store from nothing at a URL the user named, or a whole topology.
    topology = "sentinel" if a.sentinel else "cluster" if a.cluster else None
    return up(
        _url(a), project=project_root(), allow_file_fallback=allow, interactive=interactive, topology=topology
    )


def _namespace(a: argparse.Namespace) -> str:
    return getattr(a, "namespace", None) or os.environ.get("CLAIMROOM_NAMESPACE") or "default"


async def _run(handler: Handler, a: argparse.Namespace, url: str, out: Printer) -> None:
    store = Store.from_url(url, _namespace(a))
    try:
        a.acting = await token_acting(store)
        await handler(a, store, out)
    finally:
        await store.close()


async def _migrate(a: argparse.Namespace, out: Printer) -> None:
    """``migrate``: both stores named explicitly, neither resolved nor started."""
    from .migrate import migrate

    ns = _namespace(a)
    if a.dst.startswith("file://"):
        # Moving a board to files is how a new file board is made: create its directory.
        from urllib.parse import unquote, urlsplit

        with contextlib.suppress(OSError):
            private.make_dir(Path(unquote(urlsplit(a.dst).path)))
    src, dst = Store.from_url(a.src, ns), Store.from_url(a.dst, ns)
    try:
        moved = await migrate(src, dst, merge=a.merge)
    finally:
        await src.close()
        await dst.close()
    summary = ", ".join(f"{n} {k}" for k, n in moved.items() if n)
    out.done({"moved": moved}, f"moved board {ns!r}: {summary or 'nothing'}")


def _recovery(url: str, namespace: str) -> tuple[dict[str, Any], str]:
    """How recovery is provided on the board ``up`` found: its JSON and its line."""
    from .reaper import recovery_line

    async def read() -> Any:
        async with Store.from_url(url, namespace) as store:
            return await store.reaper_status()

    try:
        status = asyncio.run(read())
    except ClaimroomError as exc:
        return {"error": str(exc)}, f"recovery: could not read board {namespace!r} ({exc})"
    return status.to_json(), recovery_line(status)


def _up_url(url: str, project: Path) -> tuple[str, str | None]:
    """The URL line ``up`` prints, and the password file when the store uses the project's password.

    Whole when stdout is a pipe or a file, so that ``export CLAIMROOM_URL=$(claimroom up |
    head -n1)`` works for agents outside the project; on a terminal the password is hidden
    (scrollback, a shared screen or a session recording would keep it) and a line says where
    it is. Agents in the project need neither: their commands find the password themselves.
    The JSON form always hides it (it is made to be logged) and names the file instead.
    """
    from .infra.probe import password_of
    from .infra.project import password_path, read_password
    from .storeurl import redacted

    password = password_of(url) if url.startswith("redis") else ""
    kept = password_path(project)
    try:
        in_file = bool(password) and password == read_password(project)
    except ClaimroomError:
        in_file = False
    said = str(kept) if in_file else None
    if not password or not _tty(sys.stdout):
        return url, said
    where = f"in {kept}" if in_file else "in CLAIMROOM_URL"
    return (
        f"{redacted(url)}\n(the password is {where}; commands in this project use it on their own, "
        "and `claimroom up | head -n1` prints the whole URL for agents elsewhere)",
        said,
    )


def _infra(a: argparse.Namespace, out: Printer) -> int:
    """``up``, ``down`` and ``doctor``: blocking work on the project's store, no board needed."""
    from .infra import doctor, down, project_root

    if a.command in ("up", "doctor"):
        validate.namespace(_namespace(a))  # both read the board
    if a.command == "up":
        r = _resolve(a)
        recovery, line = _recovery(r.url, _namespace(a))
        url, said = _up_url(r.url, project_root())
        out.done(r.to_json() | {"recovery": recovery, "password_file": said}, f"{url}\n{r.detail}\n{line}")
        return 0
    if a.command == "down":
        said = down(project_root())
        out.done({"stopped": said}, said)
        return 0
    checks = doctor(_url(a), project=project_root(), namespace=_namespace(a))
    failed = [c for c in checks if c.status == "fail"]
    out.checks(checks)
    return 1 if failed else 0


def _serve(a: argparse.Namespace) -> int:
    """``serve``: the MCP server (core/mcp/serve.py), on the store the other commands use."""
    from .infra import project_root
    from .mcp import serve

    if a.stdio:
        return serve.serve_stdio(_resolve(a).url, _namespace(a), a.role, project_root())
    host, port = serve.parse_http(a.http or f"127.0.0.1:{constants.mcp_default_port}")
    return serve.serve_http(_resolve(a).url, _namespace(a), host, port, project_root())


def _init(a: argparse.Namespace, out: Printer) -> int:
    """``init claude`` / ``init git``: write the integration's files in the project."""
    from .infra import project_root

    if a.target == "git":
        if a.http or a.stdio or a.strict:
            raise BadInput("init git takes none of --http, --stdio, --strict (they are for init claude)")
        from .claude.init_git import init_git

        done = init_git(project_root())
        out.done(done, f"{done['file']}: pre-commit hook {done['result']}")
        return 0
    from .claude.init_claude import describe, init_claude

    result = init_claude(project_root(), http=a.http, strict=a.strict)
    out.done(result, describe(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.command is None:
        if not (_tty(sys.stdin) and _tty(sys.stdout)):
            parser.print_help()
            return 0
        a = parser.parse_args(["tui", *(argv or sys.argv[1:])])
    out = Printer(json_mode=_json_mode(a))
    try:
        if a.command == "demo":
            from .demo import run_demo, run_live_demo

            seconds = validate.seconds("--seconds", a.seconds, constants.demo_min_s, constants.demo_max_s)
            if a.plain or _json_mode(a) or not (_tty(sys.stdin) and _tty(sys.stdout)):
                return run_demo(seconds, out)
            return run_live_demo(theme=a.theme)
        if a.command in ("up", "down", "doctor"):
            return _infra(a, out)
        if a.command == "init":
            return _init(a, out)
        if a.command == "hook":  # reached only when main() is called directly: entry.py goes straight there
            from .claude.hook_cli import main as hook_main

            return hook_main([a.event, *(["--strict"] if a.strict else [])])
        if a.command == "migrate":
            asyncio.run(_migrate(a, out))
            return 0
        if a.command == "tui":
            # The app comes up at once and finds (or starts) the store itself, asking in a
            # dialog before it falls back to files.
            from claimroom.tui.app import run_resolving

            from .infra import project_root

            return int(
                run_resolving(
                    _url(a),
                    _namespace(a),
                    project=project_root(),
                    allow_file_fallback=True if getattr(a, "allow_file_fallback", False) else None,
                    readonly=a.readonly,
                    theme=a.theme,
                    operator=a.operator,
                )
            )
        validate.namespace(_namespace(a))
        if a.command == "serve":
            return _serve(a)
        commands = {**COMMANDS, **MESSAGE_COMMANDS, "review": cmd_review, "topology": cmd_topology}
        asyncio.run(_run(commands[a.command], a, _resolve(a).url, out))
        return 0
    except ClaimroomError as exc:
        out.error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); nothing more to say to it.
        sys.stderr.close()
        return 0
    except Exception as exc:  # the last line of defence: a message, not a traceback
        if os.environ.get("CLAIMROOM_DEBUG"):
            raise
        sys.stderr.write(
            f"claimroom: unexpected error: {exc.__class__.__name__}: {exc} "
            "(CLAIMROOM_DEBUG=1 shows the traceback)\n"
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
