"""Messages between agents as their users reach them: the CLI (send, inbox, claim --wait),
the MCP tools and the inbox resource, the control room's unread column and send dialog."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.subscriptions import ResourceUpdated
from mcp_support import MODES, ok, refused, serving
from mcp_support import client as mcp_client
from mcp_support import until as mcp_until
from pilot_wait import focused_id, screen_lines
from pilot_wait import until as pilot_until
from test_cli import CLAIMROOM, TESTS, WAITING_CLAIM
from textual.pilot import Pilot
from waiting import until_sync, waits_announced

from claimroom.core import constants
from claimroom.core.store import Store
from claimroom.core.tokens import create_token
from claimroom.tui.app import PANES, ControlRoom
from claimroom.tui.messages import MessageDialog


async def _agents(store: Store, *names: str) -> None:
    for name in names:
        await store.register(name)


# --- the CLI ------------------------------------------------------------------------------


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLAIMROOM, *args], env=env, input=stdin, capture_output=True, text=True, timeout=30
    )


def test_cli_send_and_inbox(cli_env: dict[str, str]) -> None:
    for name in ("ada", "bob"):
        assert _cli(cli_env, "register", name).returncode == 0
    p = _cli(cli_env, "send", "bob", "take t3\nit is half done", "--agent", "ada")
    assert p.returncode == 0 and p.stdout.startswith("sent message 1 to bob"), p.stderr
    sent = json.loads(
        _cli(cli_env, "send", "--all", "-", "--agent", "ada", "--json", stdin="from stdin\n").stdout
    )
    assert (sent["to"], sent["text"], sent["sender"]) == ("", "from stdin", "ada")
    out = json.loads(_cli(cli_env, "inbox", "--agent", "bob", "--unread", "--json").stdout)
    assert [(m["id"], m["text"], m["read"]) for m in out["messages"]] == [
        (1, "take t3\nit is half done", False), (2, "from stdin", False),
    ]  # fmt: skip
    assert json.loads(_cli(cli_env, "inbox", "--agent", "bob", "--unread", "--json").stdout)["messages"] == []
    text = _cli(cli_env, "inbox", "--agent", "bob").stdout
    assert "from ada" in text and "  it is half done" in text and "to all" in text and "(new)" not in text
    assert _cli(cli_env, "inbox", "--agent", "bob", "--unread").stdout.strip() == "no unread messages"


def test_cli_refusals_and_exit_codes(cli_env: dict[str, str]) -> None:
    assert _cli(cli_env, "register", "ada").returncode == 0
    p = _cli(cli_env, "send", "nobody", "hi", "--agent", "ada")
    assert (p.returncode, p.stderr.strip()) == (3, "claimroom: no such agent nobody")
    p = _cli(cli_env, "send", "ada", "bell \x07", "--agent", "ada")
    assert p.returncode == 2 and "control character" in p.stderr
    p = _cli(cli_env, "send", "ada", "-", "--agent", "ada", stdin="x" * (constants.max_message_bytes + 1))
    assert p.returncode == 2 and f"larger than {constants.max_message_bytes} bytes" in p.stderr
    for args in (("send", "ada", "--agent", "ada"), ("send", "--all", "ada", "hi", "--agent", "ada")):
        p = _cli(cli_env, *args)
        assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    p = _cli(cli_env, "send", "ada", "hi")
    assert p.returncode == 2 and "--agent" in p.stderr
    p = _cli(cli_env, "inbox", "--agent", "ghost")
    assert (p.returncode, p.stderr.strip()) == (3, "claimroom: no such agent ghost")
    assert json.loads(_cli(cli_env, "inbox", "--agent", "ada", "--json").stdout)["messages"] == []


def test_cli_claim_wait_returns_when_a_message_arrives(cli_env: dict[str, str], tmp_path: Path) -> None:
    for name in ("ada", "bob"):
        assert _cli(cli_env, "register", name).returncode == 0
    marker = tmp_path / "waits"
    waiter = subprocess.Popen(
        [sys.executable, "-c", WAITING_CLAIM, TESTS, str(marker), "claim", "--agent", "bob", "--wait", "60"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        until_sync(lambda: waits_announced(marker) or waiter.poll() is not None, "the claimer waiting", 30)
        assert waiter.poll() is None, waiter.communicate()
        assert _cli(cli_env, "send", "bob", "t3 is yours now", "--agent", "ada").returncode == 0
        try:
            _out, err = waiter.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("the message did not end the waiting claim")
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()
    assert waiter.returncode == 3
    assert err.strip() == "claimroom: a message arrived: claimroom inbox --agent bob"
    assert waits_announced(marker) == 1


# --- MCP: the tools, the inbox resource and its notification -------------------------------------


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_mcp_send_and_read_as_the_tokens_agent(store: Store, mode: str) -> None:
    ada = await create_token(store, "ada", "worker")
    olga = await create_token(store, "olga", "operator")
    await _agents(store, "ada", "bob")
    async with (
        serving(store) as served,
        mcp_client(served.url, ada, mode=mode) as worker,
        mcp_client(served.url, olga, mode=mode) as operator,
    ):
        sent = ok(await worker.call_tool("send_message", {"to": "bob", "text": "t2 is yours"}))
        assert (sent["sender"], sent["to"], sent["text"]) == ("ada", "bob", "t2 is yours")
        assert "no such agent nobody" in refused(
            await worker.call_tool("send_message", {"to": "nobody", "text": "x"})
        )
        assert "control character" in refused(
            await worker.call_tool("send_message", {"to": "bob", "text": "\x1b[2J"})
        )
        assert "operator role" in refused(
            await worker.call_tool("send_message", {"to": "*", "text": "x", "as_operator": True})
        )
        b = ok(await operator.call_tool("send_message", {"to": "*", "text": "freeze", "as_operator": True}))
        assert (b["sender"], b["to"]) == ("operator:olga", "")
        # An agent reads only its own inbox: ada's has the broadcast, not bob's message.
        mine = ok(await worker.call_tool("read_inbox", {}))
        assert mine["agent"] == "ada" and [m["text"] for m in mine["messages"]] == ["freeze"]
        assert ok(await worker.call_tool("read_inbox", {"unread": True}))["messages"] == []
    assert [m.text for m in await store.inbox("bob", unread=True)] == ["t2 is yours", "freeze"]


async def test_mcp_inbox_resource_is_updated_when_a_message_arrives(store: Store) -> None:
    bob = await create_token(store, "bob", "worker")
    await _agents(store, "ada", "bob")
    inbox_uri = "claimroom://agent/bob/inbox"
    async with serving(store) as served, mcp_client(served.url, bob, mode="auto") as c:
        async with c.listen(resource_subscriptions=[inbox_uri]) as sub:
            await store.send("ada", "bob", "hand-off: t7")  # elsewhere, straight on the store
            async with asyncio.timeout(10):
                async for event in sub:
                    if event == ResourceUpdated(inbox_uri):
                        break
        data = json.loads((await c.read_resource(inbox_uri)).contents[0].text)  # type: ignore[union-attr]
        assert [(m["text"], m["read"]) for m in data["messages"]] == [("hand-off: t7", False)]
        assert data["events"][-1]["type"] == "message" and "text" not in data["events"][-1]["data"]
    assert await store.unread(["bob"]) == {"bob": 1}  # reading the resource marks nothing


async def test_mcp_waiting_claim_ends_on_a_message(store: Store) -> None:
    bob = await create_token(store, "bob", "worker")
    await _agents(store, "ada", "bob")
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    async with serving(store) as served, mcp_client(served.url, bob, mode="auto") as c:
        waiting = asyncio.create_task(c.call_tool("claim", {"wait_s": 60}, progress_callback=on_progress))
        await mcp_until(lambda: len(progress) >= 1)
        await store.send("ada", "bob", "stop: t3 is broken")
        got = ok(await asyncio.wait_for(waiting, 10))
    assert got["claimed"] is False and "read_inbox" in got["why"]


# --- the control room ------------------------------------------------------------------------------

SIZE = (80, 24)


async def _on_agent(pilot: Pilot[int], app: ControlRoom, name: str) -> None:
    await pilot.press(str(PANES.index("agents") + 1))
    tp = app.table_pane("agents")
    assert tp is not None
    await pilot_until(pilot, lambda: name in [r.key.value for r in tp.table.ordered_rows])
    target = tp.table.get_row_index(name)
    while tp.table.cursor_row != target:
        await pilot.press("j" if tp.table.cursor_row < target else "k")


def _cell(app: ControlRoom, agent: str, column: str) -> str:
    tp = app.table_pane("agents")
    assert tp is not None
    return str(tp.table.get_cell(agent, column))


async def test_tui_unread_column_and_sending_by_keys(store: Store, store_url: str, namespace: str) -> None:
    await _agents(store, "ada", "bob")
    await store.send("ada", "bob", "one")
    await store.send("ada", "bob", "two")
    async with Store.from_url(store_url, namespace) as app_store:
        app = ControlRoom(app_store, operator="lead")
        async with app.run_test(size=SIZE) as pilot:
            await _on_agent(pilot, app, "bob")
            await pilot_until(
                pilot, lambda: _cell(app, "bob", "unread") == "2" and _cell(app, "ada", "unread") == ""
            )
            # m opens the dialog on the selected agent; the text box has the focus, its letters are text.
            await pilot.press("m")
            await pilot_until(
                pilot, lambda: isinstance(app.screen, MessageDialog) and focused_id(app) == "message-text"
            )
            await pilot.press(*"pls rebase", "enter")  # enter: done typing, the focus goes to Cancel
            await pilot_until(pilot, lambda: focused_id(app) == "cancel")
            assert any(
                "[c] Cancel" in line and "[s] Send" in line and "[a] Send to all" in line
                for line in screen_lines(app)
            )
            await pilot.press("tab")  # Send
            assert focused_id(app) == "send"
            await pilot.press("enter")
            await pilot_until(pilot, lambda: app.last_outcome is not None)
            assert app.last_outcome is not None and app.last_outcome.done and not app.last_outcome.failed
            await pilot_until(pilot, lambda: _cell(app, "bob", "unread") == "3")
            # The message event shows in the events pane.
            await pilot.press(str(PANES.index("events") + 1))
            events = app.table_pane("events")
            assert events is not None
            await pilot_until(
                pilot, lambda: any("message" in " ".join(map(str, r)) for r in _table_rows(events.table))
            )
            # A broadcast by its letter, from the buttons.
            app.last_outcome = None
            await _on_agent(pilot, app, "ada")
            await pilot.press("m", *"all stop", "tab", "a")
            await pilot_until(pilot, lambda: app.last_outcome is not None)
            # Empty text is refused in the dialog, which stays open; escape then cancels.
            app.last_outcome = None
            await pilot.press("m")
            await pilot_until(pilot, lambda: isinstance(app.screen, MessageDialog))
            await pilot.press("tab", "tab", "s")
            await pilot_until(pilot, lambda: "empty" in " ".join(screen_lines(app)))
            assert isinstance(app.screen, MessageDialog)
            await pilot.press("escape")
            await pilot_until(pilot, lambda: not isinstance(app.screen, MessageDialog))
    got = await store.inbox("bob", mark_read=False)
    assert [(m.sender, m.text) for m in got][-2:] == [
        ("operator:lead", "pls rebase"),
        ("operator:lead", "all stop"),
    ]
    assert [m.text for m in await store.inbox("ada", unread=True)] == ["all stop"]
    assert app.last_outcome is None  # the cancelled dialog sent nothing


async def test_tui_cancel_is_the_default_and_readonly_refuses(
    store: Store, store_url: str, namespace: str
) -> None:
    await _agents(store, "bob")
    async with Store.from_url(store_url, namespace) as app_store:
        app = ControlRoom(app_store, operator="lead")
        async with app.run_test(size=SIZE) as pilot:
            await _on_agent(pilot, app, "bob")
            for leave in (("enter", "enter"), ("tab", "c"), ("escape",)):  # enter twice: Cancel
                await pilot.press("m")
                await pilot_until(pilot, lambda: isinstance(app.screen, MessageDialog))
                await pilot.press(*"hello", *leave)
                await pilot_until(pilot, lambda: not isinstance(app.screen, MessageDialog))
            assert app.last_outcome is None
        ro = ControlRoom(app_store, operator="lead", readonly=True)
        async with ro.run_test(size=SIZE) as pilot:
            await _on_agent(pilot, ro, "bob")
            await pilot.press("m")
            await pilot.pause(0.1)  # nothing is to open: a look a while on
            assert not isinstance(ro.screen, MessageDialog)
            assert "read-only mode: send message is disabled" in ro.notices[-1]
    assert await store.inbox("bob") == []


def _table_rows(table: Any) -> list[list[object]]:
    return [table.get_row(k) for k in table.rows]
