"""The CLI's argument parser: every command, its options, and how a bad one is reported.

``build_parser`` describes the CLI contract (names, defaults, help); ``cli.main`` parses
with it and runs the command (``cli_commands`` for those that act on a board).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from . import constants
from .safetext import shown

UNGIVEN = object()  # a retention flag left out: that setting stays as it is


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
    c.add_argument(
        "--bid-window",
        type=_number(float, "--bid-window"),
        metavar="SECONDS",
        help="once ready, take bids this long; the lowest bid wins the claim (claimroom bid)",
    )
    c.add_argument(
        "--steal-after",
        type=_number(float, "--steal-after"),
        metavar="SECONDS",
        help=f"how long the --affinity key's owner has the task to itself (default "
        f"{constants.affinity_steal_delay_s:g}; 0: no owner preference)",
    )

    c = cmd("plan", "add a plan file (a parent and its subtasks) atomically; prints the ids")
    c.add_argument("file", metavar="FILE", help="the plan (JSON; see the README), or - for standard input")
    c.add_argument("--parent", metavar="ID", help="add the subtasks under this task, claimed by the planner")
    c.add_argument("--token", type=_number(int, "--token"), default=0, metavar="T", help="that claim's token")
    c.add_argument("--agent", help="the planner holding that claim (or CLAIMROOM_TOKEN's agent)")

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

    c = cmd("send", "send a message to an agent (or --all: every agent); TEXT - reads stdin")
    c.add_argument("words", nargs="+", metavar="AGENT|TEXT", help="AGENT TEXT, or TEXT with --all")
    c.add_argument("--all", action="store_true", help="to every agent (a broadcast)")
    c.add_argument("--agent", help="the sender; required unless CLAIMROOM_TOKEN names the agent")

    c = cmd("inbox", "an agent's messages, oldest first (marks them read)")
    c.add_argument("--agent", help="required unless CLAIMROOM_TOKEN names the agent")
    c.add_argument("--unread", action="store_true", help="only the messages not read yet")

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
    c.add_argument("--review", metavar="REF", help="deliver for review: the branch, commit or PR to look at")
    c.add_argument(
        "--next",
        action="store_true",
        help="then claim the agent's next task in the same step (not with --review)",
    )
    c.add_argument("--agent", help="with --next: the agent; required unless CLAIMROOM_TOKEN names the agent")
    c.add_argument(
        "--queue", action="append", default=[], metavar="Q", help="with --next: a queue to take from"
    )
    c.add_argument(
        "--ttl",
        type=_number(float, "--ttl"),
        default=constants.default_lease_ttl_s,
        metavar="SECONDS",
        help="with --next: its lease length",
    )

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

    c = cmd("topology", "where the board is served: the master, its replicas, sentinels or cluster nodes")
    c.add_argument(
        "--watch", action="store_true", help="print it again whenever it changes (a failover), until ctrl-c"
    )

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

    c = cmd("bid", "bid a cost for a task's open bidding window (add --bid-window); the lowest wins")
    c.add_argument("task", metavar="TASK")
    c.add_argument("--agent", help="required unless CLAIMROOM_TOKEN names the agent")
    c.add_argument("--cost", type=_number(float, "--cost"), required=True, metavar="N", help="0 or more")
    c.add_argument(
        "--ttl",
        type=_number(float, "--ttl"),
        default=constants.default_lease_ttl_s,
        metavar="SECONDS",
        help="the lease the claim gets if this bid wins",
    )
    c.add_argument(
        "--wait",
        nargs="?",
        const=constants.max_bid_window_s + 60,
        type=_number(float, "--wait"),
        metavar="SECONDS",
        help="wait for the window's end: print the won claim (exit 0) or who won (exit 3)",
    )
    c = cmd("review", "accept or return a task delivered for review (complete --review)")
    c.add_argument("task", metavar="TASK")
    how = c.add_mutually_exclusive_group(required=True)
    how.add_argument("--accept", action="store_true", help="done: the tasks waiting on it may run")
    how.add_argument(
        "--return", dest="note", metavar="NOTE", help="back to its queue, NOTE in its checkpoint"
    )
    c.add_argument("--agent", help="review as this agent (it needs the review capability); default: you")
    c.add_argument("--token", type=_number(int, "--token"), default=0, help="the delivery seen (0: any)")

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
                                    "events_bytes", "agents_for"), UNGIVEN))  # fmt: skip
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

    c = cmd("up", "make sure a store is running (auto-start: Docker, else redis-server); print its URL")
    how = c.add_mutually_exclusive_group()
    how.add_argument(
        "--sentinel",
        action="store_true",
        help="run a local Redis Sentinel topology instead (a master, 2 replicas, 3 sentinels)",
    )
    how.add_argument(
        "--cluster", action="store_true", help="run a local Redis Cluster instead (3 masters, 3 replicas)"
    )
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
