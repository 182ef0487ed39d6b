"""The agent CLI: ``claimroom COMMAND``, a thin shell over the async Store API.

Every error a user can cause ends as one line on stderr and the exit code of the design
note's contract (``ClaimroomError.exit_code``); no traceback reaches a user.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, TextIO

from . import constants, private, validate
from .acting import Acting
from .errors import BadInput, ClaimroomError, Forbidden, NotFound, NothingToClaim
from .identity import Role
from .output import Printer
from .safetext import shown
from .store import Miss, Store

if TYPE_CHECKING:
    from .infra import Resolution

Handler = Callable[[argparse.Namespace, Store, Printer], Awaitable[None]]
_UNGIVEN = object()  # a retention flag left out: that setting stays as it is


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line with exit code 2."""

    def error(self, message: str) -> NoReturn:
        # The message quotes the arguments given, which may hold control characters.
        sys.stderr.write(f"claimroom: {shown(message)} (see: {self.prog} --help)\n")
        raise SystemExit(2)


class _Version(argparse.Action):
    """``--version``: the installed distribution's version (one source: pyproject.toml).

    Looked up only when asked: importing importlib.metadata costs every command ~25 ms.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=kwargs.get("help"))

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        from importlib.metadata import version

        sys.stdout.write(f"claimroom {version('claimroom')}\n")
        parser.exit(0)


def _read_text(kind: str, source: BinaryIO | TextIO, where: str) -> str:
    """At most ``max_json_text_bytes`` of UTF-8 text: ``@/dev/zero`` or an endless pipe is
    refused once past the limit, never read into memory whole."""
    limit = constants.max_json_text_bytes
    data = source.read(limit + 1)
    if isinstance(data, str):  # a text stream without a byte buffer (standard input replaced)
        data = data.encode(errors="surrogateescape")
    if len(data) > limit:
        raise validate.json_text_too_large(kind)
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise BadInput(f"{kind} {where} is not UTF-8 text") from None


def read_json(kind: str, raw: str) -> Any:
    """A JSON value from the command line, ``@FILE`` or ``-`` (standard input)."""
    if raw == "-":
        if sys.stdin is None:  # closed (``<&-``)
            raise BadInput(f"{kind} is to come from standard input, but it is closed")
        text = _read_text(kind, getattr(sys.stdin, "buffer", sys.stdin), "from standard input")
    elif raw.startswith("@"):
        name = raw[1:]
        try:
            with open(name, "rb") as f:
                text = _read_text(kind, f, f"file {name!r}")
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
            why = exc.strerror if isinstance(exc, OSError) else exc
            raise BadInput(f"cannot read {kind} file {name!r}: {why}") from None
    else:
        text = raw
    return validate.parse_json(kind, text)


# --- commands ---------------------------------------------------------------------


# --- acting as a token's identity ------------------------------------------------------
# With CLAIMROOM_TOKEN set, the commands that change the board act through ``Acting`` as
# the token's agent (``a.acting``); without it, they are direct store access, for trusted
# processes on a private store (design rule 11), and name any agent they are given.


async def _acting(store: Store) -> Acting | None:
    """The identity of CLAIMROOM_TOKEN, acting on ``store``; None when it is not set."""
    raw = os.environ.get(constants.env_token)
    if raw is None:
        return None
    from .tokens import resolve_token

    who = await resolve_token(store, raw.strip())
    if who is None:
        raise Forbidden(
            f"{constants.env_token} is not a token of this board (unknown, revoked or malformed); "
            "create one with: claimroom token create --agent NAME --role worker"
        )
    return Acting(store, dataclasses.replace(who, via="cli"))


async def _agent(a: argparse.Namespace, given: str | None, call: str, *, task: str = "") -> str:
    """The agent a command acts as: the token's (a different one given is refused, and
    audited), else the one given (required then)."""
    acting: Acting | None = a.acting
    if acting is None:
        if not given:
            raise BadInput(f"name the agent (--agent), or set {constants.env_token}")
        return given
    me = acting.who.agent
    if given and given != me:
        said = f"{call} as {given} contradicts {constants.env_token}, which is {me}'s"
        raise await acting.refused(call, said, task=task, asked=given[:64])
    return me


async def cmd_register(a: argparse.Namespace, s: Store, out: Printer) -> None:
    acting: Acting | None = a.acting
    agent = await _agent(a, a.agent, "register")
    if acting is not None:
        acting = Acting(s, dataclasses.replace(acting.who, session=a.session or ""))
        await acting.register(a.can, a.max_claims)
    else:
        await s.register(agent, a.can, a.max_claims, session=a.session or "")
    out.done(
        {
            "agent": agent,
            "capabilities": sorted(set(a.can)),
            "max_claims": a.max_claims,
            "session": a.session or "",
        },
        f"registered {agent}" + (f" (session {shown(a.session)})" if a.session else ""),
    )


async def cmd_add(a: argparse.Namespace, s: Store, out: Printer) -> None:
    payload = None if a.payload is None else read_json("payload", a.payload)
    adder = a.acting.add if a.acting is not None else s.add
    tid = await adder(
        a.title,
        queue=a.queue,
        priority=a.priority,
        requires=a.requires,
        after=a.after,
        parent=a.parent or "",
        affinity=a.affinity or "",
        payload=payload,
        max_attempts=a.max_attempts,
    )
    task = await s.get(tid)
    out.done({"id": tid, "state": task.state.value}, tid)


async def cmd_claim(a: argparse.Namespace, s: Store, out: Printer) -> None:
    miss = Miss()
    wait = validate.wait_s(a.wait)  # refused before anything is claimed
    agent = await _agent(a, a.agent, "claim")  # the token's agent, when there is one
    take = a.acting.claim if a.acting is not None else functools.partial(s.claim, agent)
    claim = await take(queues=a.queue, ttl_s=a.ttl, miss=miss)
    if claim is None and wait > 0:
        # Waiting makes this a long-lived process: it takes part in the reaper meanwhile, so
        # recovery runs while any agent waits. Only now, so an immediate claim costs nothing.
        async with s.reaping("claim-wait"):
            claim = await take(queues=a.queue, ttl_s=a.ttl, wait_s=wait, miss=miss)
    if claim is None:
        why = {
            "at-capacity": f"{agent} already holds its maximum number of claims",
            "breaker-open": f"{agent}'s circuit breaker is open after repeated failures",
        }
        raise NothingToClaim(why.get(miss.last.reason, "nothing to claim"))
    out.claim(claim)


async def cmd_heartbeat(a: argparse.Namespace, s: Store, out: Printer) -> None:
    if a.task is None:
        if not a.agent and a.acting is None:
            raise BadInput("give a TASK with --token, or --agent for the agent's own liveness heartbeat")
        agent = await _agent(a, a.agent, "heartbeat")
        seen = await s.alive(agent)
        out.done({"agent": agent, "seen_ms": seen}, f"{agent} alive")
        return
    if a.token is None:
        raise BadInput("--token is required with a TASK")
    if a.acting is not None:
        await _agent(a, a.agent, "heartbeat", task=a.task)
    beat = a.acting.heartbeat if a.acting is not None else s.heartbeat
    deadline = await beat(
        a.task, a.token, ttl_s=a.ttl, progress=a.progress, stage=a.stage, checkpoint=a.checkpoint
    )
    out.done({"task": a.task, "deadline_ms": deadline}, f"{a.task} lease extended")


async def cmd_complete(a: argparse.Namespace, s: Store, out: Printer) -> None:
    result = None if a.result is None else read_json("result", a.result)
    unblocked = await (a.acting or s).complete(a.task, a.token, result)
    text = f"{a.task} done" + (f"; unblocked {shown(' '.join(unblocked))}" if unblocked else "")
    out.done({"task": a.task, "state": "done", "unblocked": unblocked}, text)


async def cmd_fail(a: argparse.Namespace, s: Store, out: Printer) -> None:
    state, ready_ms = await (a.acting or s).fail(a.task, a.token, a.reason, fatal=a.fatal)
    text = f"{a.task} {state.value}" + (" (retry scheduled)" if ready_ms else "")
    out.done({"task": a.task, "state": state.value, "ready_ms": ready_ms}, text)


async def cmd_release(a: argparse.Namespace, s: Store, out: Printer) -> None:
    await (a.acting or s).release(a.task, a.token)
    out.done({"task": a.task, "state": "queued"}, f"{a.task} released")


async def cmd_show(a: argparse.Namespace, s: Store, out: Printer) -> None:
    out.task(await s.get(a.task))


async def cmd_ls(a: argparse.Namespace, s: Store, out: Printer) -> None:
    out.tasks(await s.tasks(state=a.state, queue=a.queue, limit=a.limit, offset=a.offset))


async def cmd_agents(a: argparse.Namespace, s: Store, out: Printer) -> None:
    out.agents(await s.agents())


async def cmd_events(a: argparse.Namespace, s: Store, out: Printer) -> None:
    events = await s.events(task=a.task, count=a.limit)
    if not a.follow:
        out.events(events)
        return
    for e in events:
        out.event(e)
    async for e in s.follow(task=a.task, after=events[-1].id if events else "0"):
        out.event(e)


async def cmd_lock(a: argparse.Namespace, s: Store, out: Printer) -> None:
    from .infra import project_root

    root = project_root()
    agent = await _agent(a, a.agent, "lock", task=a.task or "")
    expires = await s.lock(a.paths, agent, ttl_s=a.ttl, shared=a.shared, task=a.task or "", root=root)
    paths = sorted({validate.path(p, root) for p in a.paths})
    out.done(
        {"paths": paths, "agent": agent, "task": a.task or "", "shared": a.shared, "expires_ms": expires},
        f"locked {' '.join(paths)} for {agent}" + (f" while it holds {a.task}" if a.task else ""),
    )


async def cmd_unlock(a: argparse.Namespace, s: Store, out: Printer) -> None:
    from .infra import project_root

    agent = await _agent(a, a.agent, "unlock", task=a.task or "")
    if a.acting is not None:
        released = await a.acting.unlock(a.paths, task=a.task, root=project_root())
    else:
        released = await s.unlock(a.paths, agent, task=a.task, root=project_root())
    said = f"unlocked {shown(' '.join(released))}" if released else "nothing was locked"
    out.done({"released": released}, said)


async def cmd_reap(a: argparse.Namespace, s: Store, out: Printer) -> None:
    interval = validate.interval_s(a.interval)  # refused even without --loop: a typo all the same
    if not a.loop:
        from .reaper import ReaperId

        out.reap(await s.reap(by=ReaperId.here("reap")))  # a pass like any other: it counts for up and doctor
        return
    await s.run_reaper(asyncio.Event(), interval, kind="reap-loop", report=_say)


def _say(line: str) -> None:
    """A line on stderr for the operator (the reaper's outages, under reap --loop)."""
    sys.stderr.write(f"claimroom: {shown(line)}\n")
    sys.stderr.flush()


def _limit(kind: Callable[[str], float], what: str, unlimited: str) -> Callable[[str], float | None]:
    """A retention value from the command line: a number, or the word for no limit."""

    def parse(raw: str) -> float | None:
        if raw.strip().lower() == unlimited:
            return None
        try:
            return kind(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number or {unlimited}, got {raw!r}") from None

    return parse


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "forever"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


async def cmd_retention(a: argparse.Namespace, s: Store, out: Printer) -> None:
    given = {
        "done_s": a.done_for, "done_count": a.keep_done, "failed_s": a.failed_for,
        "failed_count": a.keep_failed, "events_s": a.events_for, "events_bytes": a.events_bytes,
        "agents_s": a.agents_for,
    }  # fmt: skip
    changes = {k: v for k, v in given.items() if v is not _UNGIVEN}
    if a.acting is not None and (changes or a.reset):
        r = await a.acting.set_retention(a.queue, reset=a.reset, **changes)
    else:
        r = await s.set_retention(a.queue, reset=a.reset, **changes)

    def kept(n: int | None) -> str:
        return "all" if n is None else f"the newest {n:,}"

    where = f"queue {a.queue}" if a.queue else "the board (every queue without its own)"
    text = "\n".join(
        [
            f"retention of {where}:",
            f"  done tasks             {_span(r.done_s)}, {kept(r.done_count)} per queue",
            f"  dead, cancelled tasks  {_span(r.failed_s)}, {kept(r.failed_count)} per queue",
            f"  audit trail            {_span(r.events_s)}, "
            + ("any size" if r.events_bytes is None else f"{r.events_bytes:,} bytes"),
            f"  idle auto agents       {_span(r.agents_s)}",
        ]
    )
    out.done({"queue": a.queue, "retention": r.to_json()}, text)


async def cmd_token(a: argparse.Namespace, s: Store, out: Printer) -> None:
    from . import tokens

    # Under a token of its own, only an operator manages tokens (a worker must not mint an
    # operator's); without one, this is direct store access, like every other command.
    acting: Acting | None = a.acting
    if a.token_command == "create":
        role = Role.of(a.role)  # an unknown role is refused before anything is written
        if acting is not None:
            await acting.need(Role.OPERATOR, "token create", agent=str(a.agent)[:64])
        token = await tokens.create_token(s, a.agent, role)
        out.done({"agent": a.agent, "role": role.value, "token": token}, token)
        if not out.json_mode:
            _say(f"the token for {shown(a.agent)} ({role.value}) is shown only this once: keep it now")
        return
    if acting is not None:
        await acting.need(Role.OPERATOR, f"token {a.token_command}")
    if a.token_command == "ls":
        out.tokens(await tokens.list_tokens(s))
        return
    n = await tokens.revoke_tokens(s, a.agent)
    if n == 0:
        raise NotFound(f"{a.agent} has no tokens to revoke")
    out.done({"agent": a.agent, "revoked": n}, f"revoked {n} token{'s' if n != 1 else ''} of {a.agent}")


COMMANDS: dict[str, Handler] = {
    "register": cmd_register,
    "add": cmd_add,
    "claim": cmd_claim,
    "heartbeat": cmd_heartbeat,
    "complete": cmd_complete,
    "fail": cmd_fail,
    "release": cmd_release,
    "show": cmd_show,
    "ls": cmd_ls,
    "agents": cmd_agents,
    "events": cmd_events,
    "lock": cmd_lock,
    "unlock": cmd_unlock,
    "reap": cmd_reap,
    "retention": cmd_retention,
    "token": cmd_token,
}


# --- parser -----------------------------------------------------------------------


def _number(kind: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            return kind(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {raw!r}") from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    g = common.add_argument_group("store")
    # SUPPRESS keeps a subcommand's absent flag from hiding one given before it.
    g.add_argument("--url", default=argparse.SUPPRESS, help="store URL (env CLAIMROOM_URL)")
    g.add_argument("--namespace", default=argparse.SUPPRESS, help="board name (env CLAIMROOM_NAMESPACE)")
    g.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object")
    g.add_argument(
        "--allow-file-fallback",
        action="store_true",
        default=argparse.SUPPRESS,
        help="when no Redis can be reached or started, coordinate through files (remembered)",
    )

    p = _Parser(
        prog="claimroom", description="Coordinate many coding agents on one codebase.", parents=[common]
    )
    p.add_argument("--version", action=_Version, help="print claimroom's version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    num_i, num_f = _number(int, "value"), _number(float, "value")

    def cmd(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, parents=[common])

    c = cmd("register", "register an agent with its capabilities and capacity")
    c.add_argument("agent", metavar="AGENT", nargs="?", help="the agent (default: CLAIMROOM_TOKEN's)")
    c.add_argument("--can", action="append", default=[], metavar="CAP", help="a capability (repeat)")
    c.add_argument("--max-claims", type=_number(int, "--max-claims"), default=constants.default_max_claims)
    c.add_argument(
        "--session", metavar="ID", help="which session the agent is (e.g. a Claude Code session id)"
    )

    c = cmd("add", "add a task; prints its id")
    c.add_argument("title", metavar="TITLE")
    c.add_argument("--queue", default="default")
    c.add_argument("--priority", type=_number(int, "--priority"), default=0, help="higher runs first")
    c.add_argument("--requires", action="append", default=[], metavar="CAP")
    c.add_argument("--after", action="append", default=[], metavar="ID", help="run after this task is done")
    c.add_argument("--parent", metavar="ID")
    c.add_argument("--affinity", metavar="KEY")
    c.add_argument("--payload", metavar="JSON", help="JSON, @FILE or - for stdin")
    c.add_argument(
        "--max-attempts", type=_number(int, "--max-attempts"), default=constants.default_max_attempts
    )

    c = cmd("claim", "claim the best task for an agent; prints the task and its token")
    c.add_argument("--agent", help="required unless CLAIMROOM_TOKEN names the agent")
    c.add_argument("--queue", action="append", default=[], metavar="Q")
    c.add_argument(
        "--ttl", type=_number(float, "--ttl"), default=constants.default_lease_ttl_s, metavar="SECONDS"
    )
    c.add_argument(
        "--wait",
        type=_number(float, "--wait"),
        default=0.0,
        metavar="SECONDS",
        help="wait this long for a task to become claimable (taking part in the reaper meanwhile)",
    )

    c = cmd("heartbeat", "extend a lease and record progress (or, with only --agent, say the agent is alive)")
    c.add_argument("task", metavar="TASK", nargs="?")
    c.add_argument("--token", type=_number(int, "--token"))
    c.add_argument("--agent")
    c.add_argument("--ttl", type=num_f, metavar="SECONDS", help="new lease length (default: the claim's)")
    c.add_argument("--progress", type=_number(float, "--progress"), metavar="0..1")
    c.add_argument("--stage")
    c.add_argument("--checkpoint")

    c = cmd("complete", "finish a claimed task")
    c.add_argument("task", metavar="TASK")
    c.add_argument("--token", type=_number(int, "--token"), required=True)
    c.add_argument("--result", metavar="JSON", help="JSON, @FILE or - for stdin")

    c = cmd("fail", "end a claim with a failure (retried unless --fatal)")
    c.add_argument("task", metavar="TASK")
    c.add_argument("--token", type=_number(int, "--token"), required=True)
    c.add_argument("--reason", required=True)
    c.add_argument("--fatal", action="store_true")

    c = cmd("release", "give a claimed task back to its queue")
    c.add_argument("task", metavar="TASK")
    c.add_argument("--token", type=_number(int, "--token"), required=True)

    c = cmd("show", "one task in full")
    c.add_argument("task", metavar="TASK")

    c = cmd("ls", "list tasks in creation order")
    c.add_argument("--state")
    c.add_argument("--queue")
    c.add_argument("--limit", type=num_i, default=100)
    c.add_argument("--offset", type=num_i, default=0)

    cmd("agents", "registered agents, their claims and breakers")

    c = cmd("events", "the audit trail, oldest first")
    c.add_argument("--task", metavar="ID")
    c.add_argument("--follow", action="store_true", help="keep printing new events")
    c.add_argument("--limit", type=num_i, default=1000)

    c = cmd("lock", "lock paths for an agent (all or none; exit 6 names the holder)")
    c.add_argument("paths", metavar="PATH", nargs="+", help="from the project root, or absolute inside it")
    c.add_argument("--agent", help="required unless CLAIMROOM_TOKEN names the agent")
    c.add_argument(
        "--ttl",
        type=_number(float, "--ttl"),
        metavar="SECONDS",
        help=f"how long an untied lock lasts (default {constants.default_lock_ttl_s:g}); not with --task",
    )
    c.add_argument("--shared", action="store_true")
    c.add_argument(
        "--task", metavar="ID", help="the agent's claim these locks belong to: they last as long as it"
    )

    c = cmd("unlock", "release an agent's path locks (all its holds on them, or those of --task)")
    c.add_argument("paths", metavar="PATH", nargs="+")
    c.add_argument("--agent", help="required unless CLAIMROOM_TOKEN names the agent")
    c.add_argument("--task", metavar="ID", help="drop only the holds of this task")

    c = cmd("reap", "one orphan scan now (or --loop: keep scanning while leader)")
    c.add_argument("--loop", action="store_true")
    c.add_argument("--interval", type=num_f, default=constants.reap_interval_s, metavar="SECONDS")

    c = cmd(
        "retention",
        "what the reaper keeps of finished tasks, idle agents and the audit trail: show it, or change it",
    )
    c.add_argument(
        "--queue", metavar="Q", help="this queue's settings (default: the board's, for every queue)"
    )
    secs, count = _limit(float, "a duration", "forever"), _limit(int, "a count", "all")
    c.set_defaults(**dict.fromkeys(("done_for", "keep_done", "failed_for", "keep_failed", "events_for",
                                    "events_bytes", "agents_for"), _UNGIVEN))  # fmt: skip
    c.add_argument("--done-for", type=secs, metavar="SECONDS|forever", help="keep done tasks this long")
    c.add_argument("--keep-done", type=count, metavar="N|all", help="keep the newest N done tasks per queue")
    c.add_argument("--failed-for", type=secs, metavar="SECONDS|forever", help="keep dead and cancelled ones")
    c.add_argument("--keep-failed", type=count, metavar="N|all", help="the newest N dead and cancelled ones")
    c.add_argument("--events-for", type=secs, metavar="SECONDS|forever", help="the audit trail's horizon")
    c.add_argument("--events-bytes", type=count, metavar="N|all", help="the audit trail's size")
    c.add_argument(
        "--agents-for", type=secs, metavar="SECONDS|forever", help="idle agents a claim registered"
    )
    c.add_argument("--reset", action="store_true", help="drop the scope's own settings first")

    c = cmd("token", "bearer tokens: an agent's identity over the MCP server and CLAIMROOM_TOKEN")
    tsub = c.add_subparsers(dest="token_command", metavar="ACTION", parser_class=_Parser, required=True)
    t = tsub.add_parser(
        "create", parents=[common], help="make a token (printed once; only its hash is kept)",
        description="make a bearer token for an agent; it is printed once, the board keeps only its hash",
    )  # fmt: skip
    t.add_argument("--agent", required=True)
    t.add_argument("--role", required=True, metavar="ROLE", help="worker, planner or operator")
    tsub.add_parser(
        "ls", parents=[common], help="the tokens on the board (agent, role, age, first characters)"
    )
    t = tsub.add_parser(
        "revoke", parents=[common], help="revoke every token of an agent (exit 3: it had none)"
    )
    t.add_argument("agent", metavar="AGENT")

    cmd("up", "make sure a store is running (auto-start: Docker, else redis-server); print its URL")
    cmd("down", "stop the store that `up` started for this project")
    cmd("doctor", "check the store and the setup, with what to do")

    c = cmd("migrate", "move a whole board between stores (file <-> Redis); stop the agents first")
    c.add_argument("--from", dest="src", required=True, metavar="URL")
    c.add_argument("--to", dest="dst", required=True, metavar="URL")
    c.add_argument("--merge", action="store_true", help="add to a namespace that already has a board")

    c = cmd("tui", "the control room: live panes of queues, claims, agents, orphans, locks, events")
    c.add_argument(
        "--readonly",
        action="store_true",
        help="look only: every operator action is refused and it runs no reaper",
    )
    c.add_argument("--theme", help="dark, light, high-contrast or ansi (env CLAIMROOM_THEME)")
    c.add_argument("--operator", help="your name in the audit trail (default: the OS user)")

    c = cmd("serve", "the MCP server: Streamable HTTP at /mcp (default 127.0.0.1:8765), or --stdio")
    how = c.add_mutually_exclusive_group()
    how.add_argument(
        "--http",
        metavar="HOST:PORT",
        help=f"listen here (default 127.0.0.1:{constants.mcp_default_port}); every request needs a token",
    )
    how.add_argument("--stdio", action="store_true", help="serve the one client that started this process")
    c.add_argument(
        "--role",
        default="worker",
        help="--stdio without CLAIMROOM_TOKEN: the agent's role (worker, planner, operator)",
    )

    c = cmd(
        "init", "set up an integration: claude (.mcp.json and Claude Code hooks) or git (a pre-commit hook)"
    )
    c.add_argument("target", choices=["claude", "git"], metavar="claude|git")
    how = c.add_mutually_exclusive_group()
    how.add_argument(
        "--http", metavar="URL", help="claude: use the MCP server at URL (HOST:PORT) and its http hooks"
    )
    how.add_argument(
        "--stdio", action="store_true", help="claude: Claude Code starts claimroom serve --stdio (default)"
    )
    c.add_argument(
        "--strict", action="store_true", help="claude: also refuse an edit to a file the agent has not locked"
    )

    c = cmd(
        "hook", "what the Claude Code hooks run: EVENT, its JSON on stdin (fast start); pre-commit for git"
    )
    c.add_argument("event", metavar="EVENT")
    c.add_argument(
        "--strict", action="store_true", help="PreToolUse: refuse an edit to a file the agent has not locked"
    )

    c = cmd("demo", "simulated agents on a private redis-server, shown in the control room (or --plain)")
    c.add_argument("--seconds", type=num_f, default=12.0, help="how long the agents run (--plain)")
    c.add_argument("--plain", action="store_true", help="print a scripted run instead of the control room")
    c.add_argument("--theme", help="the control room's theme")
    return p


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

    # Only `up` may start a store from nothing at a URL the user named.
    return (up if a.command == "up" else resolve)(
        _url(a),
        project=project_root(),
        allow_file_fallback=True if getattr(a, "allow_file_fallback", False) else None,
        interactive=_tty(sys.stdin) and _tty(sys.stderr) and not _json_mode(a),
    )


def _namespace(a: argparse.Namespace) -> str:
    return getattr(a, "namespace", None) or os.environ.get("CLAIMROOM_NAMESPACE") or "default"


async def _run(handler: Handler, a: argparse.Namespace, url: str, out: Printer) -> None:
    store = Store.from_url(url, _namespace(a))
    try:
        a.acting = await _acting(store)
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
        asyncio.run(_run(COMMANDS[a.command], a, _resolve(a).url, out))
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
