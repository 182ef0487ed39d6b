"""Text from the store never writes control characters to the operator's terminal.

The store refuses control characters on the way in, but a board can hold them anyway: a
hand-run HSET, an older claimroom, a migrated board. Rich passes ESC through, so a title
like ``x ESC]0;PWNED BEL ESC[2J`` would retitle the window and clear the screen. Here such
text is written into a real Redis board by hand, every pane and dialog is rendered by
Pilot, and what would go to the terminal (the screen's segments) is checked.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest
from pilot_wait import dialog_open, screen_lines, screen_segments, until
from redis.asyncio import Redis
from textual.pilot import Pilot

from claimroom.core import constants as C
from claimroom.core.safetext import first_control
from claimroom.core.store import Plan, Store, TaskSpec
from claimroom.tui.app import PANES, ControlRoom
from claimroom.tui.dialogs import AgentPicker, ChoiceDialog
from claimroom.tui.infra import InfraFacts
from claimroom.tui.storepane import StorePane

# OSC (set the window title) ended by BEL, clear screen, red; then the C1 forms of CSI and NEL.
HOSTILE = "x\x1b]0;PWNED\x07\x1b[2J\x1b[31mfake\x9b31m\x85end"
SEEN = "x\\x1b]0;PWNED\\x07"  # how its start is drawn
AGENT = "ev\x1b[31mil"


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    r = Redis.from_url(redis_url, decode_responses=True)
    yield r
    await r.aclose()


async def hostile_board(store: Store, r: Redis, ns: str) -> tuple[str, str]:
    """A live claim and a dead task whose texts, an agent, a queue, a lock and an event, all
    carrying control characters, written by hand as only a direct write could."""
    await store.register("ada", max_claims=5)
    live = await store.add("fine title")
    assert await store.claim("ada", ttl_s=600) is not None
    dead = await store.add("fine too", queue="ops")
    claim = await store.claim("ada", ttl_s=600)
    assert claim is not None
    await store.fail(dead, claim.token, "fine reason", fatal=True)  # dead: on the orphans pane
    delivered = await store.add("fine again")
    claim = await store.claim("ada", ttl_s=600)
    assert claim is not None and claim.task.id == delivered
    await store.complete(delivered, claim.token, review="fine/ref")  # on the review pane
    now = int(time.time() * 1000)
    await r.hset(C.task_key(ns, delivered), mapping={"title": HOSTILE, "review_ref": HOSTILE})
    await r.hset(C.task_key(ns, live), mapping={"title": HOSTILE, "stage": HOSTILE})
    await r.hset(C.task_key(ns, dead), mapping={"title": HOSTILE, "reason": HOSTILE})
    await r.sadd(C.agents_key(ns), AGENT)
    await r.hset(C.agent_key(ns, AGENT), mapping={"name": AGENT, "caps": HOSTILE, "last_seen_ms": now})
    await r.sadd(C.queues_key(ns), "q" + HOSTILE)
    await r.sadd(C.paused_key(ns), "q" + HOSTILE)
    path = "src/" + HOSTILE
    await r.zadd(C.lockpaths_key(ns), {path: 0})
    await r.hset(C.lock_key(ns, path), mapping={f"h:{AGENT}": now + 600_000, "mode": "exclusive"})
    data = json.dumps({"reason": HOSTILE})
    fields = {"type": "killed", "at_ms": now, "task": live, "agent": AGENT, "operator": HOSTILE, "data": data}
    await r.xadd(C.events_key(ns), fields)
    plan = await store.plan(Plan(subtasks=[TaskSpec("fine step")], parent=TaskSpec("fine plan")))
    for tid in plan:  # the plans pane
        await r.hset(C.task_key(ns, tid), mapping={"title": HOSTILE})
    return live, dead


def controls_on_screen(pilot: Pilot[int]) -> list[str]:
    """Every segment of the screen on top whose text holds a control character."""
    return [
        seg.text for line in screen_segments(pilot.app) for seg in line if first_control(seg.text) is not None
    ]


def text_on_screen(pilot: Pilot[int]) -> str:
    return "\n".join(screen_lines(pilot.app))


async def test_hostile_store_text_is_escaped_in_every_pane_and_dialog(
    redis_store: Store, raw: Redis, redis_url: str, namespace: str
) -> None:
    live, _dead = await hostile_board(redis_store, raw, namespace)
    app = ControlRoom(Store.from_url(redis_url, namespace), operator="lead")
    async with app.run_test(size=(160, 40)) as pilot:
        await until(
            pilot, lambda: app.snapshot is not None and any(t.id == live for t in app.snapshot.claims)
        )
        pane = app.query_one(StorePane)
        pane.facts = InfraFacts(kind="local", name="redis", state="running", logs=("ready", HOSTILE))
        for number, name in enumerate(PANES, 1):
            await pilot.press(str(number % 10))
            # Each pane reads its own sections when shown: wait for the hostile row to arrive.
            await until(pilot, lambda: "PWN" in text_on_screen(pilot))
            assert controls_on_screen(pilot) == [], name
            assert "\\x1b" in text_on_screen(pilot), name  # escaped, and visible as such
        await pilot.press("1")
        await until(pilot, lambda: "qx\\x1b]0;PWN" in text_on_screen(pilot))  # the overview's queue list

        # The dialogs name their targets, and the picker lists agents, from the same store.
        await pilot.press("3")
        await until(pilot, lambda: bool(app.table_pane("claims").table.row_count))  # type: ignore[union-attr]
        await pilot.press("x")
        await until(pilot, lambda: dialog_open(app))
        assert isinstance(app.screen, ChoiceDialog) and SEEN in text_on_screen(pilot)
        assert controls_on_screen(pilot) == []
        await pilot.press("escape", "a")
        await until(pilot, lambda: isinstance(app.screen, AgentPicker) and app.focused is not None)
        assert "ev\\x1b[31mil" in text_on_screen(pilot)
        assert controls_on_screen(pilot) == []
        await pilot.press("escape")
