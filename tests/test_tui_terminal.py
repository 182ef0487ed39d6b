"""`claimroom tui` in a real terminal: tmux at 80x24, driven by keys alone.

Pilot delivers keys to the app directly; this test goes the way an operator over SSH does:
the installed ``claimroom`` command runs in a tmux pane (its own tmux server, on its own
socket), keys arrive as terminal input (``tmux send-keys``), and the screen is read back
with ``capture-pane``. It kills a live claim and reassigns an orphan, then checks the store.
"""

from __future__ import annotations

import asyncio
import getpass
import shlex
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from waiting import clock_past

from claimroom.core.models import State
from claimroom.core.store import Store

CLAIMROOM = Path(sys.executable).with_name("claimroom")  # the venv's installed command

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Terminal:
    """One tmux server (its own socket, in the test's directory; no config) running one
    80x24 session."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-S", str(self.socket), *args], check=True, capture_output=True, text=True, timeout=10
        )
        return out.stdout

    def start(self, command: str) -> None:
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "room", "-x", "80", "-y", "24", command)

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "room", *keys)

    def screen(self) -> str:
        try:
            return self.tmux("capture-pane", "-p", "-t", "room")
        except subprocess.CalledProcessError as exc:  # the session ended with the app
            return f"(no screen: {exc.stderr.strip()})"

    def stop(self) -> None:
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True, timeout=10)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(tmp_path / "tmux.sock")
    try:
        yield term
    finally:
        term.stop()


async def until(cond: Callable[[], Awaitable[bool]] | Callable[[], bool], what: str, term: Terminal) -> None:
    """Poll ``cond`` (sync or async) until it holds; fail after 10 s showing the screen."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    while True:
        got = cond()
        if isinstance(got, Awaitable):
            got = await got
        if got:
            return
        if loop.time() > end:
            raise AssertionError(f"{what} did not happen within 10 s; the screen:\n{term.screen()}")
        await asyncio.sleep(0.05)


def on_screen(term: Terminal, *texts: str) -> Callable[[], bool]:
    return lambda: all(t in term.screen() for t in texts)


async def test_kill_and_reassign_by_keys_in_a_real_terminal(
    redis_store: Store, redis_url: str, namespace: str, tmp_path: Path, terminal: Terminal
) -> None:
    store = redis_store
    for agent in ("ada", "grace"):
        await store.register(agent, max_claims=2)
    live = await store.add("kill this claim")
    assert await store.claim("ada", ttl_s=600) is not None
    orphan = await store.add("reassign this orphan")
    claim = await store.claim("linus")
    assert claim is not None and claim.task.id == orphan
    silent = await store.heartbeat(orphan, claim.token, progress=0.8, ttl_s=0.001)  # late-stage work ...
    await clock_past(store, silent)  # ... then silence past its deadline
    await store.reap()
    assert (await store.get(orphan)).state is State.ORPHANED

    env = {"TERM": "xterm-256color", "CLAIMROOM_URL": redis_url, "CLAIMROOM_NAMESPACE": namespace,
           "CLAIMROOM_HOME": str(tmp_path)}  # fmt: skip
    exit_file = tmp_path / "exit-status"
    command = "env " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    # The shell writes the app's exit status where the test can read it once the app is gone.
    terminal.start(f"{command} {shlex.quote(str(CLAIMROOM))} tui; echo $? > {shlex.quote(str(exit_file))}")
    await until(on_screen(terminal, f"claimroom {namespace}", "events live"), "the control room", terminal)

    # Kill the live claim: claims pane, x, Tab from Cancel to "Kill → requeue", Enter.
    terminal.keys("3")
    await until(on_screen(terminal, live, "kill this claim"), "the claims pane", terminal)
    terminal.keys("x")
    dialog = ("Kill claim: 1 task(s)?", "[c] Cancel", "[r] Kill → requeue", "[d] Kill → dead")
    await until(on_screen(terminal, *dialog), "the kill dialog", terminal)
    terminal.keys("Tab", "Enter")

    async def killed() -> bool:
        return (await store.get(live)).state is State.QUEUED

    await until(killed, "the kill", terminal)

    # Reassign the orphan: orphans pane, a, arrows to grace in the picker, Enter, then confirm.
    terminal.keys("5")
    await until(on_screen(terminal, orphan, "orphaned", "linus"), "the orphans pane", terminal)
    terminal.keys("a")
    await until(on_screen(terminal, f"Reassign {orphan} to:", "grace"), "the agent picker", terminal)
    names = [a.name for a in await store.agents()]  # the picker lists them in this order
    terminal.keys(*["Down"] * names.index("grace"), "Enter")
    await until(
        on_screen(terminal, "Reassign 1 task(s) to grace?", "[r] Reassign"), "the confirmation", terminal
    )
    terminal.keys("Right", "Enter")

    async def reassigned() -> bool:
        return any(e.type == "reassigned" for e in await store.events(task=orphan))

    await until(reassigned, "the reassignment", terminal)

    terminal.keys("C-q")
    await until(lambda: exit_file.exists() and exit_file.read_text().strip() != "", "quitting", terminal)
    assert exit_file.read_text().strip() == "0"

    operator = getpass.getuser()
    kill = [e for e in await store.events(task=live) if e.type == "killed"]
    assert kill and kill[0].operator == operator
    event = next(e for e in await store.events(task=orphan) if e.type == "reassigned")
    assert event.operator == operator and event.data["assigned"] == "grace"
    assert (await store.get(orphan)).state is State.QUEUED
    first = await store.claim("ada")
    assert first is not None and first.task.id == live  # the killed claim is back in its queue
    assert await store.claim("ada") is None  # the orphan waits for grace
    got = await store.claim("grace")
    assert got is not None and got.task.id == orphan
