"""The fault suite (bench/chaos.py): its small size run for real, and its parts.

The run starts its own redis-server (append-only), proxy, reaper and agent processes, and
injects every standalone fault; the test holds it to its invariants and to having injected
each fault at least once. The checker is also given trails that break each invariant, so
that a run whose invariants "held" is known to have been checked by something that fails.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from claimroom.core.local_redis import LocalRedis
from claimroom.core.models import Event, State, Task

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from _chaos_check import Acks, check  # noqa: E402  (bench/ is not a package)
from _chaos_proxy import CutProxy  # noqa: E402
from _chaos_run import CUT_OFF, FROZEN, KILLED, ZOMBIE  # noqa: E402
from _chaos_targets import CUT, RESTART  # noqa: E402
from _chaos_topology import FAILOVER, PROMOTION  # noqa: E402

STANDALONE_FAULTS = (KILLED, FROZEN, CUT, RESTART)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_the_small_run_injects_every_fault_and_every_invariant_holds(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / "chaos.py"), "--size", "small", "--seed", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=140,
    )
    shown = f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, shown
    (run,) = json.loads(out.read_text())
    assert run["ok"], shown
    assert [i["name"] for i in run["invariants"] if not i["ok"]] == [], shown
    for fault in STANDALONE_FAULTS:
        assert run["injected"].get(fault, 0) > 0, f"{fault} never injected\n{shown}"
    # The zombies came back and were refused; none was accepted.
    seen = run["seen"]
    assert seen.get(f"{ZOMBIE}: refused", 0) > 0, shown
    assert seen.get(f"{ZOMBIE}: accepted", 0) == seen.get(f"{CUT_OFF}: accepted", 0) == 0, shown
    assert seen.get("agent errors", 0) == 0, shown
    assert run["figures"]["tasks added"] >= 300, shown


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.heavy
@pytest.mark.parametrize(
    ("target", "fault"), [("sentinel", FAILOVER), ("cluster", PROMOTION)], ids=["sentinel", "cluster"]
)
def test_a_short_run_on_a_topology_kills_its_master_and_every_invariant_holds(
    tmp_path: Path, target: str, fault: str
) -> None:
    out = tmp_path / "chaos.json"
    args = ["--target", target, "--size", "small", "--seconds", "15", "--tasks", "150", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, str(BENCH / "chaos.py"), *args], capture_output=True, text=True, timeout=140
    )
    shown = f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, shown
    (run,) = json.loads(out.read_text())
    assert [i["name"] for i in run["invariants"] if not i["ok"]] == [], shown
    assert run["injected"].get(fault, 0) > 0, f"{fault} never injected\n{shown}"
    assert run["seen"].get(f"{ZOMBIE}: accepted", 0) == 0, shown


def test_bad_options_get_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "chaos.py"), "--ttl", "0.1"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "--ttl must be between" in done.stderr and "Traceback" not in done.stderr


# --- the checker: each invariant fails on a trail that breaks it --------------------------------


def _task(tid: str, state: State, **fields: Any) -> Task:
    return Task(id=tid, title=tid, state=state, **fields)


class Trail:
    """Events in order, with stream ids and store times that rise."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, kind: str, task: str, token: int = 0, at_ms: int | None = None, **data: Any) -> Trail:
        n = len(self.events) + 1
        at = 1000 + n if at_ms is None else at_ms
        self.events.append(Event(f"{at}-{n}", kind, at, task, "ag", token, "", data))
        return self

    def done(self, task: str, token: int) -> Trail:
        return (
            self.add("added", task, state="queued").add("claimed", task, token).add("completed", task, token)
        )


def _failed(invariants: list[Any]) -> set[str]:
    return {i.name for i in invariants if not i.ok}


DONE_FIELDS: dict[str, Any] = {"token": 5, "attempts": 1}


def test_a_clean_trail_holds_every_invariant() -> None:
    trail = Trail().done("t1", 5)
    trail.add("added", "t2", state="queued").add("claimed", "t2", 6)
    trail.add("expired", "t2", 6, outcome="queued", progress=0.1, expiries=1)
    trail.add("claimed", "t2", 7).add("failed", "t2", 7, next="dead", reason="chaos: fatal")
    tasks = [
        _task("t1", State.DONE, **DONE_FIELDS),
        _task("t2", State.DEAD, token=7, attempts=2, failures=1, expiries=1, reason="chaos: fatal"),
    ]
    assert _failed(check(tasks, trail.events, Acks(done=[("t1", 5, "ag")]), now_ms=5000)) == set()


def test_two_completions_of_one_task_break_none_done_twice() -> None:
    trail = Trail().done("t1", 5)
    trail.add("completed", "t1", 5)
    failed = _failed(check([_task("t1", State.DONE, **DONE_FIELDS)], trail.events, Acks(), now_ms=5000))
    assert "none done twice" in failed


def test_two_acknowledged_completions_break_none_done_twice() -> None:
    acks = Acks(done=[("t1", 5, "ag"), ("t1", 4, "ag")])
    failed = _failed(
        check([_task("t1", State.DONE, **DONE_FIELDS)], Trail().done("t1", 5).events, acks, 5000)
    )
    assert "none done twice" in failed
    assert "every completion acknowledged to an agent is in the store" in failed


def test_a_completion_with_an_old_token_breaks_the_stale_token_invariant() -> None:
    trail = Trail().add("added", "t1", state="queued").add("claimed", "t1", 4)
    trail.add("expired", "t1", 4, outcome="queued").add("claimed", "t1", 5).add("completed", "t1", 4)
    task = _task("t1", State.DONE, token=5, attempts=2, expiries=1)
    failed = _failed(check([task], trail.events, Acks(), now_ms=5000))
    assert "no completion accepted from a stale token" in failed


def test_a_zombie_told_yes_breaks_the_stale_token_invariant() -> None:
    acks = Acks(done=[("t1", 5, "ag")], zombie_accepted=[("t1", 3)])
    failed = _failed(
        check([_task("t1", State.DONE, **DONE_FIELDS)], Trail().done("t1", 5).events, acks, 5000)
    )
    assert "no completion accepted from a stale token" in failed


def test_a_completion_on_a_token_another_claim_had_breaks_the_stale_token_invariant() -> None:
    # The agent was told its completion with token 5 was accepted; the trail gives token 5's
    # claim, and its completion, to another agent: token 5 was handed out twice (a store that
    # lost writes issuing tokens again).
    acks = Acks(done=[("t1", 5, "zombie")])
    events = Trail().done("t1", 5).events
    invariants = check([_task("t1", State.DONE, **DONE_FIELDS)], events, acks, 5000)
    assert "no completion accepted from a stale token" in _failed(invariants)


def test_lost_acknowledged_completions_fail_unless_writes_were_lost_on_purpose() -> None:
    acks = Acks(done=[("t1", 4, "gone"), ("t1", 5, "ag")])  # 4's completion was lost, then redone
    events = Trail().done("t1", 5).events
    tasks = [_task("t1", State.DONE, **DONE_FIELDS)]
    failed = _failed(check(tasks, events, acks, 5000))
    assert {"none done twice", "every completion acknowledged to an agent is in the store"} <= failed
    assert _failed(check(tasks, events, acks, 5000, writes_lost=True)) == set()


def test_a_state_change_missing_from_the_trail_is_found() -> None:
    # The task was claimed twice (attempts 2), the trail shows one claim.
    task = _task("t1", State.DONE, token=5, attempts=2)
    failed = _failed(check([task], Trail().done("t1", 5).events, Acks(), now_ms=5000))
    assert "every state change in the audit trail, in order" in failed
    # The trail ends elsewhere than the task is.
    failed = _failed(check([_task("t2", State.DEAD, reason="x")], Trail().done("t2", 5).events, Acks(), 5000))
    assert "every state change in the audit trail, in order" in failed


def test_a_move_from_the_wrong_state_or_back_in_time_is_found() -> None:
    trail = Trail().add("added", "t1", state="blocked").add("claimed", "t1", 5).add("completed", "t1", 5)
    failed = _failed(check([_task("t1", State.DONE, **DONE_FIELDS)], trail.events, Acks(), now_ms=5000))
    assert "every state change in the audit trail, in order" in failed
    trail = Trail().add("added", "t1", state="queued").add("claimed", "t1", 5, at_ms=3000)
    trail.add("completed", "t1", 5, at_ms=2000)
    failed = _failed(check([_task("t1", State.DONE, **DONE_FIELDS)], trail.events, Acks(), now_ms=5000))
    assert "every state change in the audit trail, in order" in failed


def test_unfinished_tasks_dead_without_reason_and_stale_claims_are_found() -> None:
    trail = Trail().add("added", "t1", state="queued").add("claimed", "t1", 5)
    trail.add("added", "t2", state="queued").add("cancelled", "t2")
    tasks = [
        _task("t1", State.CLAIMED, token=5, attempts=1, deadline_ms=2000),
        _task("t2", State.CANCELLED),
    ]
    failed = _failed(check(tasks, trail.events, Acks(), now_ms=3500))
    assert "every task done, or dead/cancelled with its reason" in failed
    assert "no claim older than TTL + 1 s left" in failed
    assert "no claim older than TTL + 1 s left" not in _failed(
        check(tasks, trail.events, Acks(), now_ms=2900)
    )


# --- the parts the standalone faults stand on ---------------------------------------------------


def test_an_append_only_server_killed_and_restarted_keeps_its_data(tmp_path: Path) -> None:
    server = LocalRedis.start(tmp_path / "r", appendfsync="always")
    try:
        client = redis.Redis(port=server.port)
        client.set("kept", "yes")
        client.close()
        server.kill()
        server = LocalRedis.start(server.directory, server.port, appendfsync="always")
        client = redis.Redis(port=server.port)
        assert client.get("kept") == b"yes"
        client.close()
    finally:
        server.stop()


async def test_the_proxy_cut_drops_connections_refuses_new_ones_and_restores(
    redis_server: LocalRedis,
) -> None:
    proxy = CutProxy(redis_server.port)
    await proxy.start()
    client = redis.asyncio.Redis(port=proxy.port)
    try:
        assert await client.ping()
        await proxy.cut()
        with pytest.raises(redis.ConnectionError):
            await client.ping()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", proxy.port)
        await proxy.restore()
        assert await client.ping()
        assert (proxy.cuts, proxy.dropped) == (1, 1)
    finally:
        await client.aclose()
        await proxy.stop()
