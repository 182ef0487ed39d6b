"""The CLI's board commands (register, add, claim ... token): each takes the parsed
arguments, the store and the printer, and acts through the Store API.

``cli.main`` opens the store and runs the one asked for (``COMMANDS``); with
CLAIMROOM_TOKEN set, it acts as the token's identity (``token_acting``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO, TextIO

from . import bidding, cli_bid, cli_plan, constants, validate
from .acting import Acting
from .cli_parser import UNGIVEN
from .errors import BadInput, Forbidden, NotFound, NothingToClaim
from .identity import Role
from .output import Printer, claim_text
from .safetext import shown
from .store import Miss, Store

Handler = Callable[[argparse.Namespace, Store, Printer], Awaitable[None]]


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


# --- acting as a token's identity ------------------------------------------------------
# With CLAIMROOM_TOKEN set, the commands that change the board act through ``Acting`` as
# the token's agent (``a.acting``); without it, they are direct store access, for trusted
# processes on a private store (design rule 11), and name any agent they are given.


async def token_acting(store: Store) -> Acting | None:
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
        bid_window_s=0.0 if a.bid_window is None else bidding.window_ms(a.bid_window) / 1000,
        steal_after_s=a.steal_after,
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
            "message": f"a message arrived: claimroom inbox --agent {agent}",
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
    if a.next:
        await _complete_next(a, s, out, result)
        return
    if a.agent or a.queue:
        raise BadInput("--agent and --queue go with --next")
    unblocked = await (a.acting or s).complete(a.task, a.token, result, review=a.review)
    if a.review is not None:
        out.done({"task": a.task, "state": "review", "unblocked": []}, f"{a.task} delivered for review")
        return
    text = f"{a.task} done" + (f"; unblocked {shown(' '.join(unblocked))}" if unblocked else "")
    out.done({"task": a.task, "state": "done", "unblocked": unblocked}, text)


async def _complete_next(a: argparse.Namespace, s: Store, out: Printer, result: Any) -> None:
    """complete --next: finish the task and claim the agent's next in one step. Nothing to
    claim is no error (the completion stands): "next" is null."""
    if a.review is not None:
        raise BadInput("--next cannot be combined with --review")
    agent = await _agent(a, a.agent, "complete", task=a.task)
    miss = Miss()
    finish = (
        a.acting.complete_and_claim
        if a.acting is not None
        else functools.partial(s.complete_and_claim, agent=agent)
    )
    unblocked, got = await finish(a.task, a.token, result, queues=a.queue, ttl_s=a.ttl, miss=miss)
    nxt = got[0] if got else None
    text = f"{a.task} done" + (f"; unblocked {shown(' '.join(unblocked))}" if unblocked else "")
    text += f"; nothing to claim ({miss.last.reason})" if nxt is None else f"; next {claim_text(nxt)}"
    done = {
        "task": a.task,
        "state": "done",
        "unblocked": unblocked,
        "next": None if nxt is None else nxt.to_json(),
    }
    out.done(done, text)


async def cmd_fail(a: argparse.Namespace, s: Store, out: Printer) -> None:
    state, ready_ms = await (a.acting or s).fail(a.task, a.token, a.reason, fatal=a.fatal)
    text = f"{a.task} {state.value}" + (" (retry scheduled)" if ready_ms else "")
    out.done({"task": a.task, "state": state.value, "ready_ms": ready_ms}, text)


async def cmd_release(a: argparse.Namespace, s: Store, out: Printer) -> None:
    await (a.acting or s).release(a.task, a.token)
    out.done({"task": a.task, "state": "queued"}, f"{a.task} released")


async def cmd_show(a: argparse.Namespace, s: Store, out: Printer) -> None:
    task = await s.get(a.task)
    if task.bid_window_ms:
        await cli_bid.show(task, s, out)  # with its window's bids
        return
    out.task(task)


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
    changes = {k: v for k, v in given.items() if v is not UNGIVEN}
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


async def cmd_bid(a: argparse.Namespace, s: Store, out: Printer) -> None:
    await cli_bid.bid(a, s, out, await _agent(a, a.agent, "bid", task=a.task))


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
    "bid": cmd_bid,
    "plan": cli_plan.cmd_plan,
}
