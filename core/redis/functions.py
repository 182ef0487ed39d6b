"""Calling the scripts: FCALL of the library's functions, loading the library when missing.

The library (scripts.py) is loaded once per server and kept by it (replicated, and saved
with the data when the server persists). A server that lost it (restarted without
persistence, FUNCTION FLUSH) answers a call "Function not found": the library is loaded and
that call made again, once. A call is never made again for any other error: a script whose
reply was lost may have run.
"""

from __future__ import annotations

from typing import Any

from redis import exceptions as rexc

from .scripts import library


def missing(exc: BaseException) -> bool:
    """Whether a call failed only because the server does not have the library."""
    return isinstance(exc, rexc.ResponseError) and "function not found" in str(exc).lower()


class OldServer(Exception):
    """The server has no Redis functions (before Redis 7.0)."""


async def load(redis: Any) -> None:
    """Load the library into the server; one already there (another client's load) is fine."""
    lib = library()
    try:
        await redis.execute_command("FUNCTION", "LOAD", lib.text)
    except rexc.ResponseError as exc:
        text = str(exc).lower()
        if "already exists" in text:
            return
        if "unknown command" in text:
            raise OldServer("the server has no Redis functions: claimroom needs Redis 7.0 or newer") from None
        raise


def name_of(script: str) -> str:
    """The function that runs ``script``."""
    return library().functions[script]


async def call(redis: Any, script: str, keys: list[str], args: list[Any]) -> Any:
    """FCALL ``script``'s function, loading the library first when the server lacks it."""
    fn = name_of(script)
    try:
        return await redis.execute_command("FCALL", fn, len(keys), *keys, *args)
    except rexc.ResponseError as exc:
        if not missing(exc):
            raise
    await load(redis)
    return await redis.execute_command("FCALL", fn, len(keys), *keys, *args)
