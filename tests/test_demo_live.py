"""``claimroom demo`` in a real terminal (a pty), as the README's run command starts it."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from waiting import until_sync

CLAIMROOM = str(Path(sys.executable).parent / "claimroom")
pytestmark = pytest.mark.heavy  # the control room and seven agent processes


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text().split() if (task / "children").exists() else []
        kids.update(int(k) for k in text)
    return kids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"


def _read_until(fd: int, needle: bytes, timeout_s: float) -> bytes:
    seen = b""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and needle not in seen:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen


def _drain(fd: int) -> threading.Thread:
    """Keep reading the terminal, as a real one does: a full pty would block the app."""

    def run() -> None:
        while True:
            try:
                if not os.read(fd, 65536):
                    return
            except OSError:
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _all_started(pid: int) -> set[int]:
    """The demo's helper processes, once all are up: the private redis-server, six agents
    and the feeder."""

    def all_up() -> set[int]:
        kids = _children(pid)
        return kids if len(kids) >= 7 else set()

    return until_sync(all_up, "the demo's helpers starting", 20)


def _start() -> tuple[int, int]:
    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal of 100x30 running the demo
        os.environ.update(TERM="xterm-256color", COLUMNS="100", LINES="30")
        os.execv(CLAIMROOM, [CLAIMROOM, "demo"])
    return pid, fd


def test_live_demo_runs_agents_in_the_control_room_and_quits_cleanly() -> None:
    pid, fd = _start()
    try:
        shown = _read_until(fd, b"claimed", 30)
        assert b"claimroom" in shown and b"Claims" in shown
        _drain(fd)
        helpers = _all_started(pid)
        os.write(fd, b"\x11")  # ctrl+q
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        until_sync(lambda: not [p for p in helpers if _alive(p)], "the helpers ending with the demo")
    finally:
        os.close(fd)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def test_live_demo_cleans_up_when_its_terminal_goes_away() -> None:
    pid, fd = _start()
    try:
        _read_until(fd, b"claimed", 30)
        helpers = _all_started(pid)
    finally:
        os.close(fd)  # the terminal is gone: SIGHUP

    def gone() -> list[int]:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return [p for p in (pid, *helpers) if _alive(p)]

    until_sync(lambda: not gone(), "the demo and its helpers ending with the terminal", 15)
