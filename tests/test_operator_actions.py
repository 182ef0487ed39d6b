"""Every operator action in every task state, on both backends, through the Store API.

The table in ``core/operator_actions.py`` says where each action applies and what it does;
move-1.lua gets it as a Lua literal, the file store and the control room read it. Here each
state is built by real operations (claims, failures, dependencies, an expired lease), then
each action runs on it: where it applies it does what the table says, anywhere else it is
refused with the documented error and the board is exactly as it was.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import redis

from claimroom.core.errors import Changed, ClaimroomError, ErrorCode, WrongState
from claimroom.core.models import State, Task
from claimroom.core.operator_actions import MOVES, OPERATOR_ACTIONS, states_in_words
from claimroom.core.redis import scripts
from claimroom.core.store import Store
from claimroom.core.store_admin import ACTIONS
from claimroom.tui.actions import ACTIONS as TUI_ACTIONS
from claimroom.tui.actions import not_applicable, split_targets
from claimroom.tui.operate import TASK_CHOICES

B, Q, C, R, D = State.BLOCKED, State.QUEUED, State.CLAIMED, State.RETRYING, State.DEAD

# The contract as the README states it: action -> (the states it applies to, the state after).
# Written out here so that a change to the table is a change to this line too.
DOCUMENTED: dict[str, tuple[set[State], State]] = {
    "kill": ({C}, Q),
    "kill-dead": ({C}, D),
    "requeue": ({C, State.ORPHANED, R, D}, Q),
    "cancel": ({B, Q, C, State.REVIEW, R, State.ORPHANED}, State.CANCELLED),
    "retry": ({D}, Q),
    "reassign": ({Q, C, R, State.ORPHANED, D}, Q),
    "extend": ({C}, C),
}

PAIRS = [(a, s) for a in DOCUMENTED for s in State]
OPERATOR = "op"


def test_the_table_is_the_documented_one() -> None:
    table = {a.name: (set(a.states), a.to) for a in OPERATOR_ACTIONS.values()}
    assert table == DOCUMENTED
    assert ACTIONS == ("kill", "kill-dead", "requeue", "cancel", "retry", "reassign")  # BadInput names them
    assert set(MOVES) == set(OPERATOR_ACTIONS) - {"extend"}
    assert OPERATOR_ACTIONS["cancel"].states == {s for s in State if not s.final}  # "not finished"
    assert states_in_words([D, C, State.ORPHANED]) == "claimed, orphaned or dead"
    assert states_in_words([D]) == "dead"


# --- building each state by real operations ----------------------------------------------


async def expire_late(store: Store, tid: str) -> None:
    """Wait (bounded) until the store's clock passes the lease and a reaper pass orphans it."""
    deadline = time.monotonic() + 10
    while tid not in (await store.reap()).orphaned:
        assert time.monotonic() < deadline, f"{tid}'s lease never expired"
        await asyncio.sleep(0.01)


async def build(store: Store, state: State) -> Task:
    """A task in ``state`` in queue "work", with agents "w" (its worker) and "chosen"."""
    await store.register("w")
    await store.register("chosen")
    if state is B:
        dep = await store.add("dependency", queue="other")
        tid = await store.add("subject", queue="work", after=[dep])
    else:
        tid = await store.add("subject", queue="work", max_attempts=1 if state is D else 3)
    if state in (C, State.REVIEW, R, State.ORPHANED, State.DONE, D):
        claim = await store.claim("w", queues=["work"], ttl_s=1 if state is State.ORPHANED else 600)
        assert claim is not None and claim.task.id == tid
        if state is C:
            await store.lock(["src/x.py"], "w", task=tid)  # a move out of the claim drops it
        elif state is R or state is D:
            assert (await store.fail(tid, claim.token, "broken"))[0] is state  # D: its one attempt
        elif state is State.ORPHANED:
            await store.heartbeat(tid, claim.token, progress=0.9, ttl_s=0.05)  # late work orphans
            await expire_late(store, tid)
        elif state is State.REVIEW:
            await store.lock(["src/x.py"], "w", task=tid)  # gone with the delivery
            await store.complete(tid, claim.token, review="feature/x")
        else:
            await store.complete(tid, claim.token)
    if state is State.CANCELLED:
        assert await store.act("cancel", tid, Q, 0, "builder") is State.CANCELLED
    task = await store.get(tid)
    assert task.state is state
    return task


async def board(store: Store) -> tuple[Any, ...]:
    """Everything an action could have changed."""
    return (
        await store.tasks(limit=100),
        await store.counts(),
        await store.events(count=1000),
        await store.locks(),
        await store.agents(),
        await store.paused(),
    )


async def run(store: Store, action: str, task: Task) -> State | int:
    """The action on ``task`` as the operator saw it (its state and token)."""
    if action == "extend":
        # Extend carries only the token of the claim seen; a task never claimed has none, so
        # the operator can only have seen an earlier claim's.
        return await store.extend(task.id, task.token or 1, 60, OPERATOR)
    agent = "chosen" if OPERATOR_ACTIONS[action].assigns else ""
    return await store.act(action, task.id, task.state, task.token, OPERATOR, agent)


# --- every action x every state --------------------------------------------------------------


@pytest.mark.parametrize(("action", "state"), [p for p in PAIRS if p[1] in DOCUMENTED[p[0]][0]])
async def test_an_action_where_it_applies_does_what_the_table_says(
    store: Store, action: str, state: State
) -> None:
    op = OPERATOR_ACTIONS[action]
    before = await build(store, state)
    events_before = await store.events(count=1000)

    result = await run(store, action, before)

    after = await store.get(before.id)
    assert after.state is op.to
    new = (await store.events(count=1000))[len(events_before) :]
    assert [(e.type, e.task, e.operator) for e in new] == [(op.event, before.id, OPERATOR)]
    if action == "extend":
        assert result == after.deadline_ms > before.deadline_ms
        assert new[0].data["deadline_ms"] == result and after.token == before.token
        return
    assert result is op.to
    assert (new[0].data["from"], new[0].data["to"]) == (state.value, op.to.value)
    assert after.reason == (op.reason_by(OPERATOR) if op.reason is not None else before.reason)
    kept = (before.failures, before.expiries)
    assert (after.failures, after.expiries) == ((0, 0) if op.reset_counts else kept)
    if state is C:
        assert await store.locks() == []  # the claim was rolled back, its lock with it
        assert new[0].data["locks"] == ["src/x.py"]
    if op.assigns:
        assert await store.claim("bystander", queues=["work"]) is None  # it waits for "chosen"
        got = await store.claim("chosen", queues=["work"])
        assert got is not None and got.task.id == before.id
    elif op.to is Q:
        got = await store.claim("anyone", queues=["work"])
        assert got is not None and got.task.id == before.id


@pytest.mark.parametrize(("action", "state"), [p for p in PAIRS if p[1] not in DOCUMENTED[p[0]][0]])
async def test_an_action_where_it_does_not_apply_is_refused_and_changes_nothing(
    store: Store, action: str, state: State
) -> None:
    op = OPERATOR_ACTIONS[action]
    task = await build(store, state)
    seen = await board(store)

    with pytest.raises(ClaimroomError) as refused:
        await run(store, action, task)

    if action == "extend":
        assert op.refusal is ErrorCode.CHANGED
        assert type(refused.value) is Changed
        assert str(refused.value) == f"{task.id} changed since you selected it"
    else:
        assert op.refusal is ErrorCode.WRONG_STATE
        assert type(refused.value) is WrongState
        assert str(refused.value) == f"{action} does not apply to a {state.value} task" == op.refused(state)
    assert refused.value.exit_code == 6
    assert await board(store) == seen


# --- the control room's view -----------------------------------------------------------------


def _runs(name: str) -> set[str]:
    """The engine actions the control room's dialog for ``name`` can run."""
    values = {c.value for c in TASK_CHOICES[name]} & set(OPERATOR_ACTIONS)
    return values or {name}  # extend's choices are durations


def test_the_control_room_offers_an_action_where_the_table_allows_it() -> None:
    task_specs = [s for s in TUI_ACTIONS.values() if s.kind == "task"]
    assert {r for s in task_specs for r in _runs(s.name)} == set(OPERATOR_ACTIONS)  # none unreachable
    for spec in task_specs:
        assert set(spec.runs) == _runs(spec.name)
        for state in State:
            allowed = all(OPERATOR_ACTIONS[r].applies(state) for r in _runs(spec.name))
            assert (state in spec.states) is allowed, (spec.name, state)
            task = Task(id="t1", title="x", state=state)
            ok, skipped = split_targets(spec, [task])
            assert ([t.task for t in ok], skipped) == (["t1"], []) if allowed else ([], [task])


def test_the_control_room_says_why_nothing_selected_applies() -> None:
    selected = [Task(id="t2", title="y", state=Q), Task(id="t1", title="x", state=State.DONE)]
    assert not_applicable(TUI_ACTIONS["kill"], selected) == "Kill claim does not apply to done, queued tasks"
    assert not_applicable(TUI_ACTIONS["retry"], []) == "Retry dead task does not apply to unknown tasks"


# --- the table as Lua -----------------------------------------------------------------------


def _eval_json(redis_url: str, text: str) -> Any:
    """Run ``text`` (``${name}`` tokens rendered) on the test's redis-server; its JSON reply."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return json.loads(client.eval(scripts.render(text, scripts.lua_values()), 0))
    finally:
        client.close()


def test_the_table_reaches_lua_as_it_is(redis_url: str) -> None:
    got = _eval_json(redis_url, "return cjson.encode(${operator_moves})")
    want = {
        name: {
            "states": {s.value: True for s in op.states},
            "to": op.to.value,
            "event": op.event,
            **({} if op.reason is None else {"reason": op.reason}),  # nil: no such field
            "reset_counts": op.reset_counts,
            "assigns": op.assigns,
            "restores": op.restores,
        }
        for name, op in MOVES.items()
    }
    assert got == want
    message = "return cjson.encode({(string.gsub(${wrong_state}, '{(%w+)}', {action='kill', state='done'}))})"
    assert _eval_json(redis_url, message) == [MOVES["kill"].refused(State.DONE)]


def test_a_lua_literal_round_trips_through_redis(redis_url: str) -> None:
    odd = 'quote " backslash \\ newline \n tab \t nul \x00 then 7, del \x7f, ]] -- é ✓'
    value = {
        "int": -42,
        "big": 2**42,
        "float": 0.8,
        "yes": True,
        "no": False,
        "text": odd,
        "list": [1, "two", [3]],
        "set": frozenset({"a", "kill-dead"}),
        "kill-dead": {"end": 1, "7": "key that is no Lua name"},
        "state": State.CLAIMED,
    }
    got = _eval_json(redis_url, f"return cjson.encode({scripts.lua_literal(value)})")
    assert got == {
        **value,
        "set": {"a": True, "kill-dead": True},
        "state": "claimed",
    }
    assert scripts.lua_literal({"a": None, 1: "x"}) == '{a=nil,[1]="x"}'
    for bad in (float("inf"), float("nan"), 2**53 + 1, b"bytes", object()):
        with pytest.raises((TypeError, ValueError)):
            scripts.lua_literal(bad)
    with pytest.raises(TypeError):
        scripts.lua_literal({(1, 2): "tuple key"})
    with pytest.raises(KeyError):
        scripts.render("return ${no_such_value}", scripts.lua_values())


def test_every_script_renders_with_no_token_left() -> None:
    for name in scripts.SCRIPTS:
        assert "${" not in scripts.source(name), name
