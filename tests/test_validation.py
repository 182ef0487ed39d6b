"""Rule 9 at the API level: bad input raises ``BadInput`` (exit code 2) with a message,
and changes nothing: the board (tasks, counts, agents, locks, paused queues, the audit
stream) reads back identical before and after. Hypothesis drives arbitrary text through
the API (it either validates or is refused with ``BadInput``, never another exception)
and checks that claims follow priority order for random priority lists.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claimroom.core import constants
from claimroom.core.errors import BadInput
from claimroom.core.models import State
from claimroom.core.store import Store, TaskSpec

HYPOTHESIS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


async def snapshot(store: Store) -> tuple[Any, ...]:
    """Everything a bad call could have touched."""
    return (
        await store.counts(),
        await store.tasks(limit=1000),
        await store.agents(),
        await store.locks(),
        await store.paused(),
        await store.events(count=100_000),
    )


class Board:
    """A small board with a live claim, a lock and an agent, for bad calls to aim at."""

    def __init__(self, store: Store, task: str, token: int) -> None:
        self.store, self.task, self.token = store, task, token


async def make_board(store: Store) -> Board:
    await store.register("worker", ["py"], max_claims=2)
    tid = await store.add("real task", payload={"k": 1})
    await store.add("waiting task", after=[tid])
    c = await store.claim("worker", ttl_s=600)
    assert c is not None
    await store.lock(["src/app.py"], "worker", task=tid)
    return Board(store, tid, c.token)


BIG = "x" * (constants.max_payload_bytes + 1)


def nested(depth: int) -> list[Any]:
    """A list ``depth`` levels deep: ``[[[...]]]``."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def reaper(b: Board, interval_s: float) -> Awaitable[None]:
    """The reaper loop, refused at once; a loop it accepts fails the test in 5 s, not never."""
    return asyncio.wait_for(b.store.run_reaper(asyncio.Event(), interval_s), 5)


DEEP = nested(100_000)  # json.dumps of it: RecursionError
LOOP: list[Any] = []
LOOP.append(LOOP)

BadCall = Callable[[Board], Awaitable[Any]]
BAD_CALLS: dict[str, BadCall] = {
    # task ids
    "get empty id": lambda b: b.store.get(""),
    "get id with space": lambda b: b.store.get("t 1"),
    "get id path": lambda b: b.store.get("../t1"),
    "get id too long": lambda b: b.store.get("t" * 65),
    "heartbeat bad id": lambda b: b.store.heartbeat("t1;DEL", b.token),
    "complete bad id": lambda b: b.store.complete("*", b.token),
    "add after bad id": lambda b: b.store.add("x", after=["no such id!"]),
    "add parent bad id": lambda b: b.store.add("x", parent="a b"),
    "events bad task id": lambda b: b.store.events(task="a b"),
    # payloads and results
    "payload over 256 KiB": lambda b: b.store.add("x", payload=BIG),
    "payload nested over 256 KiB": lambda b: b.store.add("x", payload={"a": [BIG[:200_000], BIG[:70_000]]}),
    "payload NaN": lambda b: b.store.add("x", payload={"v": math.nan}),
    "payload not JSON": lambda b: b.store.add("x", payload={1, 2}),
    "result over 256 KiB": lambda b: b.store.complete(b.task, b.token, BIG),
    # durations
    "claim ttl zero": lambda b: b.store.claim("worker2", ttl_s=0),
    "claim ttl negative": lambda b: b.store.claim("worker2", ttl_s=-5),
    "claim ttl NaN": lambda b: b.store.claim("worker2", ttl_s=math.nan),
    "claim ttl inf": lambda b: b.store.claim("worker2", ttl_s=math.inf),
    "claim ttl text": lambda b: b.store.claim("worker2", ttl_s="soon"),
    "claim ttl too long": lambda b: b.store.claim("worker2", ttl_s=constants.max_lease_ttl_s * 2),
    "claim wait negative": lambda b: b.store.claim("worker2", wait_s=-1),
    "claim wait NaN": lambda b: b.store.claim("worker2", wait_s=math.nan),
    "heartbeat ttl zero": lambda b: b.store.heartbeat(b.task, b.token, ttl_s=0),
    "heartbeat ttl NaN": lambda b: b.store.heartbeat(b.task, b.token, ttl_s=math.nan),
    "lock ttl negative": lambda b: b.store.lock(["other.py"], "worker", ttl_s=-1),
    "lock ttl NaN": lambda b: b.store.lock(["other.py"], "worker", ttl_s=math.nan),
    "extend zero": lambda b: b.store.extend(b.task, b.token, 0, "alice"),
    "extend NaN": lambda b: b.store.extend(b.task, b.token, math.nan, "alice"),
    # progress
    "progress negative": lambda b: b.store.heartbeat(b.task, b.token, progress=-0.01),
    "progress over one": lambda b: b.store.heartbeat(b.task, b.token, progress=1.01),
    "progress NaN": lambda b: b.store.heartbeat(b.task, b.token, progress=math.nan),
    "progress text": lambda b: b.store.heartbeat(b.task, b.token, progress="half"),
    # numbers
    "priority text": lambda b: b.store.add("x", priority="high"),
    "priority None": lambda b: b.store.add("x", priority=None),
    "priority fraction": lambda b: b.store.add("x", priority=1.5),
    "priority too high": lambda b: b.store.add("x", priority=constants.max_priority + 1),
    "priority too low": lambda b: b.store.add("x", priority=constants.min_priority - 1),
    "priority NaN": lambda b: b.store.add("x", priority=math.nan),
    "priority inf": lambda b: b.store.add("x", priority=math.inf),
    "max attempts zero": lambda b: b.store.add("x", max_attempts=0),
    "max attempts inf": lambda b: b.store.add("x", max_attempts=math.inf),
    "max claims zero": lambda b: b.store.register("worker", max_claims=0),
    "max claims inf": lambda b: b.store.register("worker", max_claims=math.inf),
    "claim count zero": lambda b: b.store.claim_many("worker", 0),
    "claim count inf": lambda b: b.store.claim_many("worker", math.inf),
    "token zero": lambda b: b.store.heartbeat(b.task, 0),
    "token negative": lambda b: b.store.complete(b.task, -1),
    "token text": lambda b: b.store.release(b.task, "abc"),
    "token inf": lambda b: b.store.heartbeat(b.task, math.inf),
    # names
    "register empty agent": lambda b: b.store.register(""),
    "register blank agent": lambda b: b.store.register("   "),
    "claim empty agent": lambda b: b.store.claim(""),
    "claim agent with space": lambda b: b.store.claim("two words"),
    "claim agent too long": lambda b: b.store.claim("a" * 65),
    "alive empty agent": lambda b: b.store.alive(""),
    "lock empty agent": lambda b: b.store.lock(["other.py"], ""),
    "unlock empty agent": lambda b: b.store.unlock(["src/app.py"], ""),
    "capability bad": lambda b: b.store.register("worker", ["g p u"]),
    "requires bad": lambda b: b.store.add("x", requires=["has,comma"]),
    "queue bad": lambda b: b.store.add("x", queue="my queue"),
    "claim queue bad": lambda b: b.store.claim("worker", queues=["a/b"]),
    "title empty": lambda b: b.store.add(""),
    "title blank": lambda b: b.store.add("  \n "),
    "title too long": lambda b: b.store.add("x" * (constants.max_title_chars + 1)),
    "operator empty": lambda b: b.store.pause("default", ""),
    "operator control char": lambda b: b.store.pause("default", "al\nice"),
    # reasons and texts
    "fail empty reason": lambda b: b.store.fail(b.task, b.token, ""),
    "fail blank reason": lambda b: b.store.fail(b.task, b.token, "   "),
    "fail reason too long": lambda b: b.store.fail(b.task, b.token, "x" * (constants.max_text_chars + 1)),
    "fail reason not text": lambda b: b.store.fail(b.task, b.token, 42),
    "stage too long": lambda b: b.store.heartbeat(
        b.task, b.token, stage="s" * (constants.max_text_chars + 1)
    ),
    "checkpoint too big": lambda b: b.store.heartbeat(
        b.task, b.token, checkpoint="c" * (constants.max_checkpoint_bytes + 1)
    ),
    "affinity too long": lambda b: b.store.add("x", affinity="a" * 257),
    # text that is not valid Unicode (e.g. undecodable bytes from argv, surrogate-escaped)
    "title lone surrogate": lambda b: b.store.add("bad \udcff title"),
    "reason lone surrogate": lambda b: b.store.fail(b.task, b.token, "bad \udcff"),
    "stage lone surrogate": lambda b: b.store.heartbeat(b.task, b.token, stage="\ud800"),
    "checkpoint lone surrogate": lambda b: b.store.heartbeat(b.task, b.token, checkpoint="\udfff"),
    "affinity lone surrogate": lambda b: b.store.add("x", affinity="\udcff"),
    "lock path lone surrogate": lambda b: b.store.lock(["src/\udcff.py"], "worker"),
    # lock paths
    "lock path empty": lambda b: b.store.lock([""], "worker"),
    "lock path blank": lambda b: b.store.lock(["  "], "worker"),
    "lock path dotdot": lambda b: b.store.lock([".."], "worker"),
    "lock path escapes": lambda b: b.store.lock(["../x"], "worker"),
    "lock path escapes deep": lambda b: b.store.lock(["a/../../x"], "worker"),
    "lock path dot": lambda b: b.store.lock(["."], "worker"),
    "lock path root": lambda b: b.store.lock(["/"], "worker"),
    "lock path root twice": lambda b: b.store.lock(["//"], "worker"),
    "lock path root dot": lambda b: b.store.lock(["//."], "worker"),
    "lock path newline": lambda b: b.store.lock(["a\nb"], "worker"),
    "lock path NUL": lambda b: b.store.lock(["a\0b"], "worker"),
    "lock no paths": lambda b: b.store.lock([], "worker"),
    "lock one bad path among good": lambda b: b.store.lock(["ok.py", "../bad"], "worker"),
    "unlock path escapes": lambda b: b.store.unlock(["../x"], "worker"),
    "unlock no paths": lambda b: b.store.unlock([], "worker"),
    # listing
    "tasks unknown state": lambda b: b.store.tasks(state="sleeping"),
    "tasks bad queue": lambda b: b.store.tasks(queue="a b"),
    "tasks zero limit": lambda b: b.store.tasks(limit=0),
    "tasks negative offset": lambda b: b.store.tasks(offset=-1),
    "events bad after": lambda b: b.store.events(after="not-an-id"),
    "events after a follow marker": lambda b: b.store.events(after="$"),
    "follow bad after": lambda b: anext(b.store.follow(after="(0")),
    "tasks limit past 64 bits": lambda b: b.store.tasks(limit=2**63),
    "tasks offset past 64 bits": lambda b: b.store.tasks(offset=2**63),
    "tasks limit huge": lambda b: b.store.tasks(limit=10**30),
    "tasks offset huge": lambda b: b.store.tasks(offset=10**30),
    "tasks limit NaN": lambda b: b.store.tasks(limit=math.nan),
    "events negative count": lambda b: b.store.events(count=-5),
    "events zero count": lambda b: b.store.events(count=0),
    "events count past 64 bits": lambda b: b.store.events(count=2**64),
    "events after an id past 64 bits": lambda b: b.store.events(after="99999999999999999999"),
    "events after a seq past 64 bits": lambda b: b.store.events(after="1-99999999999999999999"),
    "reaper interval NaN": lambda b: reaper(b, math.nan),
    "reaper interval negative": lambda b: reaper(b, -1),
    "reaper interval zero": lambda b: reaper(b, 0),
    "reaper interval inf": lambda b: reaper(b, math.inf),
    # numbers past what the stores hold, or than a float holds
    "token past 64 bits": lambda b: b.store.heartbeat(b.task, 2**64),
    "complete token past 64 bits": lambda b: b.store.complete(b.task, 10**30),
    "act seen token past 64 bits": lambda b: b.store.act("kill", b.task, State.CLAIMED, 2**64, "alice"),
    "claim ttl past a float": lambda b: b.store.claim("worker2", ttl_s=10**400),
    "claim wait past a float": lambda b: b.store.claim("worker2", wait_s=10**400),
    "progress past a float": lambda b: b.store.heartbeat(b.task, b.token, progress=10**400),
    # JSON nested past what the stack (and anyone reading it) takes
    "payload nested deeply": lambda b: b.store.add("x", payload=DEEP),
    "payload nested one level too deep": lambda b: b.store.add(
        "x", payload=nested(constants.max_json_depth + 1)
    ),
    "result nested deeply": lambda b: b.store.complete(b.task, b.token, DEEP),
    "payload that contains itself": lambda b: b.store.add("x", payload=LOOP),
    # batches
    "batch forward reference": lambda b: b.store.add_many([TaskSpec("a", after=["$1"]), TaskSpec("b")]),
    "batch self reference": lambda b: b.store.add_many([TaskSpec("a", after=["$0"])]),
    "batch one bad spec": lambda b: b.store.add_many([TaskSpec("good"), TaskSpec("bad", priority="x")]),
    "batch too large": lambda b: b.store.add_many([TaskSpec("x")] * (constants.max_batch_add + 1)),
    # operator actions
    "act unknown action": lambda b: b.store.act("explode", b.task, State.CLAIMED, b.token, "alice"),
    "act unknown seen state": lambda b: b.store.act("kill", b.task, "sleeping", b.token, "alice"),
    "act seen token text": lambda b: b.store.act("kill", b.task, State.CLAIMED, "abc", "alice"),
    "act bad task id": lambda b: b.store.act("kill", "a b", State.CLAIMED, b.token, "alice"),
    "act empty operator": lambda b: b.store.act("kill", b.task, State.CLAIMED, b.token, ""),
    "reassign to empty agent": lambda b: b.store.act("reassign", b.task, State.CLAIMED, b.token, "alice", ""),
    "reset breaker empty operator": lambda b: b.store.reset_breaker("worker", ""),
    "pause bad queue": lambda b: b.store.pause("a b", "alice"),
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
async def test_bad_input_is_refused_and_changes_nothing(store: Store, name: str) -> None:
    board = await make_board(store)
    before = await snapshot(store)
    with pytest.raises(BadInput) as exc:
        await BAD_CALLS[name](board)
    assert exc.value.exit_code == 2
    message = str(exc.value)
    assert message and "\n" not in message and "Traceback" not in message
    assert await snapshot(store) == before


async def test_the_board_of_the_bad_input_tests_is_live(store: Store) -> None:
    """The snapshot really notices changes, and the board's claim really is usable."""
    board = await make_board(store)
    before = await snapshot(store)
    await store.heartbeat(board.task, board.token, stage="changed")
    assert await snapshot(store) != before
    assert await store.complete(board.task, board.token) != []


async def test_unknown_state_message_lists_the_states(store: Store) -> None:
    with pytest.raises(BadInput) as exc:
        await store.tasks(state="sleeping")
    assert all(s.value in str(exc.value) for s in State)


async def test_payload_nested_to_the_limit_is_accepted(store: Store) -> None:
    tid = await store.add("deep", payload=nested(constants.max_json_depth))
    assert (await store.get(tid)).payload == nested(constants.max_json_depth)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:abc/0",
        "redis://127.0.0.1:99999/0",
        "redis://[::1/0",
        "redis://:secret@127.0.0.1:abc/0",
        "redis://127.0.0.1:0/0",
        "redis://127.0.0.1:6379/db",
        "unix://",
        "ftp://example.com",
        "",
        "redis://127.0.0.1:6379/0\x1b[2J",
    ],
)
def test_a_malformed_store_url_is_bad_input(url: str) -> None:
    with pytest.raises(BadInput) as exc:
        Store.from_url(url, "ns")
    assert "secret" not in str(exc.value) and "\n" not in str(exc.value)


async def test_payload_at_the_limit_is_accepted(store: Store) -> None:
    payload = "p" * (constants.max_payload_bytes - 2)  # plus two quotes: exactly the limit
    tid = await store.add("big", payload=payload)
    assert (await store.get(tid)).payload == payload


# --- hypothesis -----------------------------------------------------------------------


def run(coro_fn: Callable[[Store], Awaitable[None]], url: str) -> None:
    """Run one example on a fresh namespace of the store at ``url`` (a function-scoped
    ``store`` would be shared by every example; ``store_url``, one per backend, may be:
    the examples share the server or the directory, never a board)."""

    async def main() -> None:
        async with Store.from_url(url, "h" + uuid.uuid4().hex[:12]) as store:
            await coro_fn(store)

    asyncio.run(main())


# Any text, and text with a lone surrogate in it (what undecodable argv bytes become under
# surrogateescape); st.text() never generates those on its own.
texts = (
    st.text(max_size=80)
    | st.builds(
        lambda a, s, b: a + s + b,
        st.text(max_size=30),
        st.characters(categories=["Cs"]),
        st.text(max_size=30),
    )
    | st.sampled_from(["", " ", "ok", "a.b@c+d-e_f", "../x", "//", "x" * 64, "x" * 65])
)


@HYPOTHESIS
@given(name=texts)
def test_any_agent_name_validates_or_is_bad_input(store_url: str, name: str) -> None:
    async def body(store: Store) -> None:
        before = await snapshot(store)
        try:
            await store.register(name, ["py"])
        except BadInput as exc:
            assert exc.exit_code == 2
            assert await snapshot(store) == before
            with pytest.raises(BadInput):
                await store.claim(name)
            assert await snapshot(store) == before
            return
        assert [a.name for a in await store.agents()] == [name]
        await store.add("x")
        c = await store.claim(name)
        assert c is not None and c.task.agent == name

    run(body, store_url)


@HYPOTHESIS
@given(
    value=texts, field=st.sampled_from(["title", "queue", "stage", "reason", "path", "operator", "affinity"])
)
def test_any_text_in_any_field_validates_or_is_bad_input(store_url: str, value: str, field: str) -> None:
    async def body(store: Store) -> None:
        board = await make_board(store)
        before = await snapshot(store)
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "title": lambda: store.add(value),
            "queue": lambda: store.add("x", queue=value),
            "stage": lambda: store.heartbeat(board.task, board.token, stage=value),
            "reason": lambda: store.fail(board.task, board.token, value),
            "path": lambda: store.lock([value], "worker"),
            "operator": lambda: store.pause("default", value),
            "affinity": lambda: store.add("x", affinity=value),
        }
        try:
            await calls[field]()
        except BadInput as exc:
            assert exc.exit_code == 2 and str(exc)
            assert await snapshot(store) == before
            return
        # Accepted: it reads back as given.
        if field == "title":
            assert (await store.tasks(limit=10))[-1].title == value
        elif field == "stage":
            assert (await store.get(board.task)).stage == value
        elif field == "reason":
            assert (await store.get(board.task)).reason == value
        elif field == "operator":
            assert (await store.events(count=1000))[-1].operator == value

    run(body, store_url)


@HYPOTHESIS
@given(
    priorities=st.lists(st.integers(constants.min_priority, constants.max_priority), min_size=1, max_size=15)
)
def test_claims_follow_priority_then_creation_order(store_url: str, priorities: list[int]) -> None:
    async def body(store: Store) -> None:
        # Half added one by one, half in one batch: the order must not care.
        half = len(priorities) // 2
        ids = [await store.add(f"t{i}", priority=p) for i, p in enumerate(priorities[:half])]
        ids += await store.add_many(
            [TaskSpec(f"t{i}", priority=p) for i, p in enumerate(priorities[half:], half)]
        )
        expected = [
            tid for _, _, tid in sorted(zip([-p for p in priorities], range(len(ids)), ids, strict=True))
        ]
        await store.register("w", max_claims=len(ids))
        got = await store.claim_many("w", len(ids))
        assert [c.task.id for c in got] == expected
        assert [c.task.priority for c in got] == sorted(priorities, reverse=True)

    run(body, store_url)


@HYPOTHESIS
@given(
    progress=st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.text(max_size=5),
    ttl=st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10, 10**9),
)
def test_any_number_validates_or_is_bad_input(store_url: str, progress: Any, ttl: Any) -> None:
    async def body(store: Store) -> None:
        board = await make_board(store)
        before = await snapshot(store)
        try:
            deadline = await store.heartbeat(board.task, board.token, progress=progress, ttl_s=ttl)
        except BadInput:
            assert await snapshot(store) == before
            return
        t = await store.get(board.task)
        assert 0.0 <= t.progress <= 1.0 and t.progress == float(progress)
        assert t.deadline_ms == deadline and 0 < t.ttl_ms <= constants.max_lease_ttl_s * 1000

    run(body, store_url)
