"""The hooks over HTTP: Claude Code's ``http`` hook handlers POST the event to the MCP server.

No process starts per edit: the server answers from its open connection to the store.
``hook_routes(make_acting)`` gives the Starlette routes the server mounts; the answers
come from the same ``acts.handle`` (and so ``decide``) as the command form.

``make_acting(request, session_id)`` is the server's: it authenticates the request (the
hook sends ``Authorization: Bearer ${CLAIMROOM_TOKEN}``) and returns that agent's
``Acting``; to refuse, it raises ``starlette.exceptions.HTTPException`` (401, 403), which
Claude Code treats as a non-blocking error. TeammateIdle is not served: Claude Code takes
that event's answer from a command's exit code only (``init claude`` keeps it a command).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..errors import BadInput, ClaimroomError
from . import decide
from .acts import handle
from .hook_cli import max_input_bytes

MakeActing = Callable[[Request, str], Awaitable[Any]]
SERVED = tuple(e for e in decide.EVENTS if e != "TeammateIdle")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def hook_routes(make_acting: MakeActing) -> list[Route]:
    """``POST /hooks/{event}`` (``?strict=1`` for strict mode on PreToolUse)."""

    async def endpoint(request: Request) -> JSONResponse:
        name = str(request.path_params["event"])
        if name not in SERVED:
            why = (
                "it is decided by exit code: use the command hook"
                if name == "TeammateIdle"
                else "no such hook"
            )
            return _error(404, f"{name[:40]!r}: {why} (served: {', '.join(SERVED)})")
        body = await request.body()
        if len(body) > max_input_bytes:
            return _error(413, f"hook input is larger than {max_input_bytes} bytes")
        try:
            event = decide.read_event(body, name)
        except BadInput as exc:
            return _error(400, str(exc))
        strict = request.query_params.get("strict", "") in ("1", "true", "yes")
        act = await make_acting(request, str(event.get("session_id", "")))
        try:
            outcome = await handle(name, event, act, strict=strict)
        except ClaimroomError as exc:  # the store went away: the session goes on
            outcome = decide.store_down(str(exc), strict=strict, event=name)
        body_out = dict(outcome.output or {})
        if outcome.stderr and "systemMessage" not in body_out:
            body_out["systemMessage"] = outcome.stderr  # what the command form says on stderr
        return JSONResponse(body_out)

    return [Route("/hooks/{event}", endpoint, methods=["POST"])]
