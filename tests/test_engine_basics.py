"""The engine's everyday behaviour against a real redis-server: ordering, capabilities,
dependencies, leases, failures and retries, capacity, the circuit breaker, path locks and
the operator's actions. Every assertion reads the store back (task hashes, the agent
list, the lock list, the audit stream), never just a return value.
"""

from __future__ import annotations

import pytest
from waiting import clock_past

from claimroom.core import constants
from claimroom.core import store as store_module
from claimroom.core.errors import BadInput, Changed, Conflict, LeaseLost
from claimroom.core.models import Event, State
from claimroom.core.store import Miss, Store, TaskSpec


async def events_of(store: Store, etype: str, task: str | None = None) -> list[Event]:
    return [e for e in await store.events(task=task, count=100_000) if e.type == etype]


async def claim_all(store: Store, agent: str) -> list[str]:
    """Claim and complete until nothing is left; the ids in claim order."""
    order = []
    while (c := await store.claim(agent)) is not None:
        order.append(c.task.id)
        await store.complete(c.task.id, c.token)
    return order


# --- ordering ------------------------------------------------------------------------


async def test_priority_first_then_fifo_within_a_priority(store: Store) -> None:
    spec = [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -1), ("f", 1000), ("g", -1000), ("h", 5)]
    ids = await store.add_many([TaskSpec(title=t, priority=p) for t, p in spec])
    by_title = dict(zip([t for t, _ in spec], ids, strict=True))
    order = await claim_all(store, "w1")
    assert order == [by_title[t] for t in ["f", "b", "d", "h", "a", "c", "e", "g"]]
    assert (await store.counts())[State.DONE] == len(spec)


async def test_fifo_holds_across_separate_adds(store: Store) -> None:
    first = [await store.add(f"t{i}", priority=3) for i in range(5)]
    low = await store.add("low", priority=2)
    later = [await store.add(f"u{i}", priority=3) for i in range(3)]
    assert await claim_all(store, "w1") == [*first, *later, low]


# --- capabilities ----------------------------------------------------------------------


async def test_agent_lacking_a_capability_never_gets_the_task(store: Store) -> None:
    gpu = await store.add("train", priority=10, requires=["gpu"])
    both = await store.add("train-py", priority=9, requires=["gpu", "py"])
    plain = await store.add("docs", priority=0)
    await store.register("plain")
    await store.register("gpu-only", ["gpu"])
    await store.register("gpu-py", ["py", "gpu"])

    c = await store.claim("plain")
    assert c is not None and c.task.id == plain  # lower priority, but the only one it can do
    await store.complete(c.task.id, c.token)
    assert await store.claim("plain") is None
    assert (await store.get(gpu)).state is State.QUEUED

    c = await store.claim("gpu-only")
    assert c is not None and c.task.id == gpu
    await store.complete(c.task.id, c.token)
    assert await store.claim("gpu-only") is None  # lacks "py"
    assert (await store.get(both)).state is State.QUEUED

    c = await store.claim("gpu-py")
    assert c is not None and c.task.id == both
    assert c.task.requires == ("gpu", "py")
    claimed = await events_of(store, "claimed")
    assert [(e.task, e.agent) for e in claimed] == [(plain, "plain"), (gpu, "gpu-only"), (both, "gpu-py")]


async def test_registering_capabilities_later_makes_the_task_claimable(store: Store) -> None:
    tid = await store.add("needs rust", requires=["rust"])
    assert await store.claim("late") is None
    await store.register("late", ["rust"])
    c = await store.claim("late")
    assert c is not None and c.task.id == tid


# --- dependencies ------------------------------------------------------------------------


async def test_dependencies_block_until_all_are_done(store: Store) -> None:
    a = await store.add("a")
    b = await store.add("b")
    c = await store.add("c", after=[a, b], priority=100)
    d = await store.add("d", after=[c], priority=100)
    assert (await store.get(c)).state is State.BLOCKED
    assert (await store.get(c)).after == (a, b)
    assert (await store.get(d)).state is State.BLOCKED

    await store.register("w", max_claims=10)
    got = await store.claim_many("w", 10)
    assert sorted(x.task.id for x in got) == sorted([a, b])  # c and d are not claimable
    tokens = {x.task.id: x.token for x in got}

    assert await store.complete(a, tokens[a]) == []
    assert (await store.get(c)).state is State.BLOCKED
    assert await store.claim("w") is None

    assert await store.complete(b, tokens[b]) == [c]
    assert (await store.get(c)).state is State.QUEUED
    assert (await store.get(d)).state is State.BLOCKED
    ready = await events_of(store, "ready", c)
    assert len(ready) == 1 and ready[0].data["after"] == b

    cc = await store.claim("w")
    assert cc is not None and cc.task.id == c
    assert await store.complete(c, cc.token) == [d]
    dd = await store.claim("w")
    assert dd is not None and dd.task.id == d


async def test_dependency_on_a_done_task_is_ready_at_once(store: Store) -> None:
    a = await store.add("a")
    c = await store.claim("w")
    assert c is not None
    await store.complete(a, c.token)
    b = await store.add("b", after=[a])
    assert (await store.get(b)).state is State.QUEUED


async def test_a_dependency_named_twice_still_unblocks(store: Store) -> None:
    a = await store.add("a")
    b = await store.add("b", after=[a, a])
    c = await store.claim("w")
    assert c is not None and c.task.id == a
    assert await store.complete(a, c.token) == [b]
    assert (await store.get(b)).state is State.QUEUED


async def test_batch_references_in_add_many(store: Store) -> None:
    ids = await store.add_many(
        [
            TaskSpec("plan"),
            TaskSpec("build", after=["$0"], parent="$0"),
            TaskSpec("test", after=["$1"], parent="$0"),
            TaskSpec("docs", after=["$0", "$1"]),
        ]
    )
    plan, build, test, docs = ids
    assert len(set(ids)) == 4
    tb, tt, td = (await store.get(build)), (await store.get(test)), (await store.get(docs))
    assert tb.after == (plan,) and tb.parent == plan
    assert tt.after == (build,) and tt.parent == plan
    assert td.after == (plan, build)
    assert [tb.state, tt.state, td.state] == [State.BLOCKED] * 3
    assert await claim_all(store, "w") == [plan, build, test, docs]


async def test_batch_reference_must_name_an_earlier_spec(store: Store) -> None:
    before = await store.counts()
    for bad in (["$0"], ["$1"], ["$7"]):
        with pytest.raises(BadInput):
            await store.add_many([TaskSpec("x", after=bad), TaskSpec("y")])
    assert await store.counts() == before
    assert await store.events() == []


# --- heartbeat, complete, release ---------------------------------------------------------


async def test_heartbeat_extends_the_deadline_and_records_progress(store: Store) -> None:
    tid = await store.add("work")
    c = await store.claim("w", ttl_s=1.0)
    assert c is not None
    assert c.deadline_ms - c.task.claimed_ms == 1000
    await clock_past(store, c.task.claimed_ms + 300)  # time passes: the new deadline is later
    new = await store.heartbeat(tid, c.token, progress=0.25, stage="build", checkpoint="step-3")
    assert new >= c.deadline_ms + 250  # now + the claim's own ttl
    t = await store.get(tid)
    assert t.deadline_ms == new and t.ttl_ms == 1000
    assert (t.progress, t.stage, t.checkpoint) == (0.25, "build", "step-3")
    stage = await events_of(store, "stage", tid)
    assert [(e.data["stage"], e.token) for e in stage] == [("build", c.token)]

    # An explicit ttl replaces the claim's; the same stage is not audited again.
    longer = await store.heartbeat(tid, c.token, ttl_s=5, progress=0.75, stage="build")
    assert longer - new >= 4_000
    t = await store.get(tid)
    assert (t.deadline_ms, t.ttl_ms, t.progress, t.checkpoint) == (longer, 5_000, 0.75, "step-3")
    assert len(await events_of(store, "stage", tid)) == 1

    # Past the original deadline, the lease still holds.
    await clock_past(store, c.deadline_ms)
    report = await store.reap()
    assert report.requeued == () and report.orphaned == ()
    assert (await store.get(tid)).state is State.CLAIMED
    await store.complete(tid, c.token)


async def test_complete_records_result_and_releases_task_locks(store: Store) -> None:
    tid = await store.add("edit")
    c = await store.claim("w")
    assert c is not None
    await store.lock(["src/a.py", "src/b.py"], "w", task=tid)
    await store.lock(["docs"], "w")  # not bound to the task
    locks = {lk.path: lk for lk in await store.locks()}
    assert set(locks) == {"src/a.py", "src/b.py", "docs"}
    assert locks["src/a.py"].holders[0].task == tid
    assert locks["docs"].holders[0].task == ""

    assert await store.complete(tid, c.token, {"files": 2, "ok": True}) == []
    t = await store.get(tid)
    assert t.state is State.DONE
    assert t.result == {"files": 2, "ok": True}
    assert t.progress == 1.0
    assert [lk.path for lk in await store.locks()] == ["docs"]
    done = await events_of(store, "completed", tid)
    assert len(done) == 1
    assert done[0].token == c.token and done[0].agent == "w"
    assert sorted(done[0].data["locks"]) == ["src/a.py", "src/b.py"]
    # Another agent can now take the released paths.
    await store.lock(["src"], "other")
    # A completed claim cannot be completed again.
    with pytest.raises(LeaseLost):
        await store.complete(tid, c.token, "again")
    assert (await store.get(tid)).result == {"files": 2, "ok": True}


async def test_release_returns_the_task_without_a_failure(store: Store) -> None:
    first = await store.add("first")
    second = await store.add("second")
    c = await store.claim("w", ttl_s=30)
    assert c is not None and c.task.id == first
    await store.lock(["x.py"], "w", task=first)
    await store.release(first, c.token)

    t = await store.get(first)
    assert t.state is State.QUEUED
    assert t.failures == 0 and t.reason == ""
    assert await store.locks() == []
    agent = next(a for a in await store.agents() if a.name == "w")
    assert agent.consecutive_failures == 0 and agent.held == ()
    released = await events_of(store, "released", first)
    assert len(released) == 1 and released[0].data["locks"] == ["x.py"]
    with pytest.raises(LeaseLost):
        await store.heartbeat(first, c.token)

    # It keeps its place ahead of the later task, under a new, larger token.
    again = await store.claim("w2")
    assert again is not None and again.task.id == first
    assert again.token > c.token
    assert (await store.get(second)).state is State.QUEUED


# --- failures and retries ----------------------------------------------------------------


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999999])
async def test_recoverable_failure_retries_with_exponential_backoff(
    store: Store, monkeypatch: pytest.MonkeyPatch, jitter: float
) -> None:
    monkeypatch.setattr(store_module.random, "random", lambda: jitter)
    tid = await store.add("flaky", max_attempts=5)
    delays = []
    for n in range(1, 5):
        c = await store.claim(f"w{n}")  # a fresh agent each time keeps the breaker closed
        assert c is not None and c.task.id == tid
        state, ready = await store.fail(tid, c.token, f"boom {n}")
        assert state is State.RETRYING
        t = await store.get(tid)
        assert t.state is State.RETRYING and t.failures == n and t.reason == f"boom {n}"
        assert t.ready_ms == ready
        ev = (await events_of(store, "failed", tid))[-1]
        assert ev.data["next"] == "retrying" and ev.data["ready_ms"] == ready and not ev.data["fatal"]
        delay = constants.backoff_base_ms * 2 ** (n - 1)
        waited = ready - ev.at_ms  # ev.at_ms is the store's "now" of that fail
        assert delay / 2 <= waited <= delay
        assert waited == int(delay / 2 + delay / 2 * jitter)
        delays.append(waited)
        # Still backing off: nobody gets it yet.
        miss = Miss()
        assert await store.claim("other", miss=miss) is None
        assert miss.last.reason == "empty" and 0 < miss.last.next_change_in_ms <= delay
        await store.act("requeue", tid, State.RETRYING, c.token, "op")  # skip the wait
    assert delays == sorted(delays) and delays[-1] > delays[0] * 4

    c = await store.claim("w5")
    assert c is not None
    state, ready = await store.fail(tid, c.token, "last straw")
    assert (state, ready) == (State.DEAD, 0)
    t = await store.get(tid)
    assert t.state is State.DEAD and t.failures == 5 and t.reason == "last straw"
    assert await store.claim("w6") is None


async def test_backoff_ends_and_the_task_becomes_claimable(store: Store) -> None:
    tid = await store.add("flaky", max_attempts=2)
    c = await store.claim("w")
    assert c is not None
    _, ready = await store.fail(tid, c.token, "transient")
    assert await store.claim("w2") is None
    again = await store.claim("w2", wait_s=3)
    assert again is not None and again.task.id == tid
    assert again.task.claimed_ms >= ready
    assert again.task.attempts == 2
    ready_events = await events_of(store, "ready", tid)
    assert len(ready_events) == 1 and ready_events[0].data["after"] == "backoff"
    state, _ = await store.fail(tid, again.token, "again")
    assert state is State.DEAD


async def test_fatal_failure_is_dead_at_once(store: Store) -> None:
    tid = await store.add("doomed", max_attempts=10)
    c = await store.claim("w")
    assert c is not None
    assert await store.fail(tid, c.token, "syntax error in spec", fatal=True) == (State.DEAD, 0)
    t = await store.get(tid)
    assert t.state is State.DEAD and t.failures == 1 and t.reason == "syntax error in spec"
    ev = await events_of(store, "failed", tid)
    assert len(ev) == 1 and ev[0].data["fatal"] is True and ev[0].data["next"] == "dead"
    assert await store.claim("w2") is None
    with pytest.raises(LeaseLost):
        await store.fail(tid, c.token, "twice")


# --- agents ------------------------------------------------------------------------------


async def test_max_claims_caps_concurrent_claims(store: Store) -> None:
    await store.add_many([TaskSpec(f"t{i}") for i in range(5)])
    await store.register("pair", max_claims=2)
    a = await store.claim("pair")
    b = await store.claim("pair")
    assert a is not None and b is not None and a.task.id != b.task.id
    miss = Miss()
    assert await store.claim("pair", miss=miss) is None
    assert miss.last.reason == "at-capacity"
    assert (await store.counts())[State.CLAIMED] == 2

    await store.complete(a.task.id, a.token)
    assert len(await store.claim_many("pair", 5)) == 1  # bounded by the one free slot
    agent = next(x for x in await store.agents() if x.name == "pair")
    assert len(agent.held) == 2 and agent.max_claims == 2

    await store.register("many", max_claims=10)
    got = await store.claim_many("many", 10)
    assert len(got) == 2  # only two left
    assert len({g.token for g in got}) == 2


async def test_claim_registers_an_unknown_agent(store: Store) -> None:
    assert [a.name for a in await store.agents()] == []
    miss = Miss()
    assert await store.claim("newcomer", miss=miss) is None
    assert miss.last.reason == "empty"
    (agent,) = await store.agents()
    assert agent.name == "newcomer"
    assert agent.capabilities == () and agent.max_claims == constants.default_max_claims
    assert agent.registered_ms > 0 and agent.last_seen_ms >= agent.registered_ms
    reg = await events_of(store, "registered")
    assert len(reg) == 1 and reg[0].agent == "newcomer" and reg[0].data == {"auto": True}

    # A second claim does not register it again.
    await store.add("x")
    assert await store.claim("newcomer") is not None
    assert len(await events_of(store, "registered")) == 1


async def test_breaker_opens_after_consecutive_failures_and_resets(store: Store) -> None:
    n = constants.breaker_threshold
    await store.add_many([TaskSpec(f"t{i}", max_attempts=1) for i in range(2 * n + 3)])
    # A completion in between resets the count: n - 1 failures, a success, then n failures.
    for _ in range(n - 1):
        c = await store.claim("flaky")
        assert c is not None
        await store.fail(c.task.id, c.token, "nope")
    c = await store.claim("flaky")
    assert c is not None
    await store.complete(c.task.id, c.token)
    assert next(a for a in await store.agents() if a.name == "flaky").consecutive_failures == 0
    for i in range(n):
        assert await events_of(store, "breaker-opened") == []
        c = await store.claim("flaky")
        assert c is not None, f"breaker opened early, after {i} failures"
        await store.fail(c.task.id, c.token, "nope", fatal=i % 2 == 0)

    miss = Miss()
    assert await store.claim("flaky", miss=miss) is None
    assert miss.last.reason == "breaker-open"
    assert 0 < miss.last.next_change_in_ms <= constants.breaker_cooldown_ms
    agent = next(a for a in await store.agents() if a.name == "flaky")
    assert agent.consecutive_failures == n and agent.breaker_open_until_ms > 0
    opened = await events_of(store, "breaker-opened")
    assert len(opened) == 1 and opened[0].agent == "flaky"
    # Other agents are not affected.
    other = await store.claim("steady")
    assert other is not None
    await store.complete(other.task.id, other.token)

    await store.reset_breaker("flaky", "alice")
    agent = next(a for a in await store.agents() if a.name == "flaky")
    assert agent.consecutive_failures == 0 and agent.breaker_open_until_ms == 0
    reset = await events_of(store, "breaker-reset")
    assert len(reset) == 1 and reset[0].operator == "alice" and reset[0].agent == "flaky"
    assert await store.claim("flaky") is not None


# --- path locks ---------------------------------------------------------------------------


async def test_exclusive_lock_conflict_names_the_holder(store: Store) -> None:
    expires = await store.lock(["src/app.py"], "alice-agent", ttl_s=60)
    with pytest.raises(Conflict) as exc:
        await store.lock(["src/app.py"], "bob-agent")
    assert "alice-agent" in str(exc.value) and "src/app.py" in str(exc.value)
    assert exc.value.exit_code == 6
    (lk,) = await store.locks()
    assert lk.path == "src/app.py" and not lk.shared
    assert [(h.agent, h.expires_ms) for h in lk.holders] == [("alice-agent", expires)]
    # Re-locking by the holder itself is fine (and extends).
    assert await store.lock(["src/app.py"], "alice-agent", ttl_s=120) > expires


async def test_lock_is_all_or_none(store: Store) -> None:
    await store.lock(["b.py"], "alice")
    with pytest.raises(Conflict):
        await store.lock(["a.py", "b.py", "c.py"], "bob")
    assert [lk.path for lk in await store.locks()] == ["b.py"]


@pytest.mark.parametrize(
    ("first", "second"),
    [("src", "src/app.py"), ("src/app.py", "src"), ("src", "src/deep/er/x.py"), ("a/b/c", "a")],
)
async def test_directory_and_file_locks_conflict(store: Store, first: str, second: str) -> None:
    await store.lock([first], "alice")
    with pytest.raises(Conflict) as exc:
        await store.lock([second], "bob")
    assert "alice" in str(exc.value)
    # Shared against exclusive conflicts too.
    with pytest.raises(Conflict):
        await store.lock([second], "bob", shared=True)
    assert [lk.path for lk in await store.locks()] == [first]


async def test_siblings_and_prefixes_do_not_conflict(store: Store) -> None:
    await store.lock(["src/app.py"], "alice")
    await store.lock(["src/app.pyc", "src/app", "srcs", "src/other.py"], "bob")
    assert len(await store.locks()) == 5


async def test_shared_locks_coexist_exclusive_does_not(store: Store) -> None:
    await store.lock(["README.md"], "alice", shared=True)
    await store.lock(["README.md"], "bob", shared=True)
    (lk,) = await store.locks()
    assert lk.shared and sorted(h.agent for h in lk.holders) == ["alice", "bob"]
    with pytest.raises(Conflict):
        await store.lock(["README.md"], "carol")
    # The lock lasts until its last holder leaves.
    assert await store.unlock(["README.md"], "alice") == ["README.md"]
    with pytest.raises(Conflict) as exc:
        await store.lock(["README.md"], "carol")
    assert "bob" in str(exc.value)
    assert await store.unlock(["README.md"], "bob") == ["README.md"]
    assert await store.locks() == []
    await store.lock(["README.md"], "carol")


async def test_unlock_only_drops_own_holds(store: Store) -> None:
    await store.lock(["a.py", "b.py"], "alice")
    assert await store.unlock(["a.py"], "bob") == []
    assert len(await store.locks()) == 2
    assert await store.unlock(["a.py", "./b.py", "c.py"], "alice") == ["a.py", "b.py"]
    assert await store.locks() == []
    unlocked = await events_of(store, "unlocked")
    assert len(unlocked) == 1 and unlocked[0].data["paths"] == ["a.py", "b.py"]
    await store.lock(["a.py"], "bob")


async def test_task_lock_needs_the_claim(store: Store) -> None:
    tid = await store.add("x")
    from claimroom.core.errors import NotFound, WrongState

    with pytest.raises(WrongState):
        await store.lock(["a.py"], "w", task=tid)  # not claimed by w
    with pytest.raises(NotFound):
        await store.lock(["a.py"], "w", task="t999")
    assert await store.locks() == []


@pytest.mark.parametrize("ending", ["complete", "fail", "fatal", "release", "expiry"])
async def test_task_bound_locks_end_with_the_claim(store: Store, ending: str) -> None:
    tid = await store.add("x", max_attempts=3)
    c = await store.claim("w", ttl_s=1.0 if ending == "expiry" else 30)
    assert c is not None
    await store.lock(["pkg/mod.py", "pkg/data"], "w", task=tid)
    await store.lock(["notes.md"], "w")
    with pytest.raises(Conflict):
        await store.lock(["pkg"], "other")
    if ending == "complete":
        await store.complete(tid, c.token)
    elif ending == "fail":
        await store.fail(tid, c.token, "x")
    elif ending == "fatal":
        await store.fail(tid, c.token, "x", fatal=True)
    elif ending == "release":
        await store.release(tid, c.token)
    else:
        await clock_past(store, c.deadline_ms)
        assert (await store.reap()).requeued == (tid,)
    assert [lk.path for lk in await store.locks()] == ["notes.md"]
    await store.lock(["pkg"], "other")


# --- operator actions ----------------------------------------------------------------------


async def test_pause_makes_claims_skip_the_queue(store: Store) -> None:
    urgent = await store.add("urgent", queue="deploy", priority=100)
    normal = await store.add("normal", queue="default")
    assert await store.pause("deploy", "alice") is True
    assert await store.pause("deploy", "alice") is False
    assert await store.paused() == {"deploy"}
    c = await store.claim("w")
    assert c is not None and c.task.id == normal
    await store.complete(normal, c.token)
    assert await store.claim("w") is None
    assert await store.claim("w", queues=["deploy"]) is None
    assert (await store.get(urgent)).state is State.QUEUED

    assert await store.pause("deploy", "alice", resume=True) is True
    assert await store.paused() == set()
    c = await store.claim("w")
    assert c is not None and c.task.id == urgent
    evs = [e for e in await store.events() if e.type in ("paused", "resumed")]
    assert [(e.type, e.operator, e.data["queue"]) for e in evs] == [
        ("paused", "alice", "deploy"),
        ("resumed", "alice", "deploy"),
    ]


async def test_stale_seen_token_raises_changed_and_changes_nothing(store: Store) -> None:
    tid = await store.add("x")
    old = await store.claim("a", ttl_s=30)
    assert old is not None
    await store.release(tid, old.token)
    new = await store.claim("b", ttl_s=30)
    assert new is not None and new.token > old.token
    before_task = await store.get(tid)
    before_events = await store.events()

    for action in ("kill", "kill-dead", "requeue", "cancel", "reassign"):
        with pytest.raises(Changed) as exc:
            await store.act(action, tid, State.CLAIMED, old.token, "alice", agent="a")
        assert exc.value.exit_code == 6
    with pytest.raises(Changed):
        await store.act("cancel", tid, State.QUEUED, new.token, "alice")  # state moved on
    with pytest.raises(Changed):
        await store.extend(tid, old.token, 60, "alice")

    assert await store.get(tid) == before_task
    assert await store.events() == before_events
    await store.heartbeat(tid, new.token)  # b still holds it


async def test_extend_gives_a_live_claim_more_time(store: Store) -> None:
    tid = await store.add("x")
    c = await store.claim("w", ttl_s=30)
    assert c is not None
    deadline = await store.extend(tid, c.token, 90, "alice")
    assert deadline == c.deadline_ms + 90_000
    assert (await store.get(tid)).deadline_ms == deadline
    (ev,) = await events_of(store, "extended", tid)
    assert ev.operator == "alice" and ev.data["deadline_ms"] == deadline and ev.token == c.token


async def test_kill_requeue_cancel_and_retry(store: Store) -> None:
    a, b, d = await store.add_many([TaskSpec("a"), TaskSpec("b"), TaskSpec("d")])
    ca = await store.claim("w1")
    assert ca is not None and ca.task.id == a
    assert await store.act("kill", a, State.CLAIMED, ca.token, "op") is State.QUEUED
    with pytest.raises(LeaseLost):
        await store.complete(a, ca.token)
    ca = await store.claim("w1")
    assert ca is not None and ca.task.id == a
    assert await store.act("kill-dead", a, "claimed", ca.token, "op") is State.DEAD
    assert (await store.get(a)).reason == "killed by op"
    assert await store.act("retry", a, State.DEAD, ca.token, "op") is State.QUEUED
    assert await store.act("cancel", b, State.QUEUED, 0, "op") is State.CANCELLED
    assert (await store.get(b)).state is State.CANCELLED
    order = await claim_all(store, "w2")
    assert order == [a, d]
    types = [e.type for e in await store.events() if e.operator == "op"]
    assert types == ["killed", "killed", "retried", "cancelled"]


async def test_reassign_hands_the_task_to_the_chosen_agent(store: Store) -> None:
    tid = await store.add("special", priority=10)
    other = await store.add("ordinary", priority=0)
    await store.register("chosen")
    c = await store.claim("first", ttl_s=30)
    assert c is not None and c.task.id == tid
    await store.lock(["x.py"], "first", task=tid)
    assert await store.act("reassign", tid, State.CLAIMED, c.token, "alice", agent="chosen") is State.QUEUED
    assert await store.locks() == []
    with pytest.raises(LeaseLost):
        await store.heartbeat(tid, c.token)

    # Not to others, even though it is the highest priority task.
    for name in ("first", "bystander"):
        got = await store.claim(name)
        assert got is not None and got.task.id == other
        await store.release(other, got.token)
    await store.pause("default", "alice")
    assert await store.claim("bystander") is None

    mine = await store.claim("chosen")
    assert mine is not None and mine.task.id == tid and mine.task.agent == "chosen"
    assert mine.token > c.token
    (ev,) = await events_of(store, "reassigned", tid)
    assert ev.operator == "alice" and ev.data["assigned"] == "chosen" and ev.data["from"] == "claimed"


async def test_reassign_to_an_unknown_agent_is_refused(store: Store) -> None:
    from claimroom.core.errors import NotFound

    tid = await store.add("x")
    with pytest.raises(NotFound):
        await store.act("reassign", tid, State.QUEUED, 0, "alice", agent="ghost")
    assert (await store.get(tid)).state is State.QUEUED


async def test_batch_parent_reference_must_name_an_earlier_task(store: Store) -> None:
    with pytest.raises(BadInput):
        await store.add_many([TaskSpec("a"), TaskSpec("b", parent="$5")])
    assert sum((await store.counts()).values()) == 0  # all or none


async def test_a_claim_reports_the_task_as_it_now_stands_after_an_earlier_claim(store: Store) -> None:
    # A claim answers with the task as read plus what it wrote (lib.lua claim_tasks): what an
    # earlier claim left (agent, ttl, claimed time, a failure's reason) must not show through.
    tid = await store.add("again", max_attempts=5)
    first = await store.claim("ada", ttl_s=120)
    assert first is not None
    await store.fail(tid, first.token, "broken", fatal=True)
    assert await store.act("retry", tid, State.DEAD, first.token, "op") is State.QUEUED
    second = await store.claim("bob", ttl_s=30)
    assert second is not None and second.task.id == tid
    got, stored = second.task, await store.get(tid)
    assert (got.agent, got.state, got.attempts, got.ttl_ms) == ("bob", State.CLAIMED, 2, 30_000)
    assert got.token == second.token > first.token and got.deadline_ms == second.deadline_ms
    assert got.claimed_ms == stored.claimed_ms == got.deadline_ms - 30_000 == got.updated_ms
    assert got.reason == "" and got == stored  # every field as the store now holds it
