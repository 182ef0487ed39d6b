"""Every claim takes the best task it may take, whatever came before it.

A claim that has nothing to rank its queue against (one queue with ready tasks of the one
signature it looks at, no queues chosen, no task of its own) leaves the queue's place in
``heads:<sig>`` at the score of the task it took, below the queue's new head (lib.lua
claim_tasks); a later claim that has a rival puts it right. Random adds and claims, by
agents of different capabilities and with queues chosen or not, against a model that knows
nothing of indexes: the best task is the highest priority, then the oldest, among the open
queues the agent may take from.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

import redis as redis_py
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claimroom.core import constants as C
from claimroom.core.store import Store

QUEUES = ["q1", "q2"]  # two: a queue is often alone in its signature, then not
SIGS = [[], ["gpu"], ["gpu", "py"]]
AGENTS = {"plain": [], "gpu": ["gpu"], "both": ["gpu", "py"]}
_NS = itertools.count()


@dataclass
class Ready:
    title: str
    queue: str
    priority: int
    requires: list[str]
    order: int


# Mostly tasks any agent may take, at two priorities far apart: a queue's head and its
# next then often rank on either side of another queue's head.
adds = st.tuples(
    st.just("add"), st.sampled_from(QUEUES), st.sampled_from([0, 3]), st.sampled_from([0, 0, 0, 1, 2])
)
# Claims mostly by the agent of one signature with no queue chosen: the claims that find
# no rival, whose queue's place then stays below its head.
claims = st.tuples(
    st.just("claim"),
    st.sampled_from(["plain", "plain", "gpu", "both"]),
    st.sampled_from([None, None, *QUEUES]),
    st.integers(1, 3),
)
programs = st.lists(st.one_of(adds, adds, claims), min_size=10, max_size=40)


def _best(ready: list[Ready], caps: list[str], queue: str | None) -> Ready | None:
    fits = [r for r in ready if set(r.requires) <= set(caps) and queue in (None, r.queue)]
    return min(fits, key=lambda r: (-r.priority, r.order), default=None)


def _heads_below_their_head(r: redis_py.Redis, ns: str, exact: bool = False) -> None:
    """Each queue's place in heads:<sig> is at or below its ready set's head; a set a claim of
    one task emptied may keep it (and its entries in capsigs and queues) until the next claim
    looks there (lib.lua claim_tasks), and with ``exact`` none is left."""
    for sig in ("", "gpu", "gpu,py"):
        for queue, score in r.zrange(C.heads_key(ns, sig), 0, -1, withscores=True):
            head = r.zrange(C.ready_key(ns, queue.decode(), sig), 0, 0, withscores=True)
            assert head or not exact, f"the heads index of {sig!r} names {queue!r}, whose ready set is empty"
            if head:
                assert score <= head[0][1]
    if exact:
        for queue in r.smembers(C.queues_key(ns)):
            sigs = r.smembers(C.capsigs_key(ns, queue.decode()))
            assert sigs and all(r.zcard(C.ready_key(ns, queue.decode(), s.decode())) for s in sigs)


def test_each_claim_takes_the_best_task_it_may_take(redis_server: Any) -> None:
    r = redis_py.Redis.from_url(redis_server.url)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(programs)
    def check(program: list[tuple[Any, ...]]) -> None:
        asyncio.run(run(program))

    async def run(program: list[tuple[Any, ...]]) -> None:
        ns = f"order{next(_NS)}"
        store = Store.from_url(redis_server.url, ns)
        try:
            for name, caps in AGENTS.items():
                await store.register(name, caps, max_claims=64)
            ready: list[Ready] = []
            for step, op in enumerate(program):
                if op[0] == "add":
                    _, queue, priority, sig = op
                    title = f"t{step}"
                    await store.add(title, queue=queue, priority=priority, requires=SIGS[sig])
                    ready.append(Ready(title, queue, priority, SIGS[sig], step))
                    continue
                _, agent, queue, count = op
                want = []
                for _ in range(count):
                    best = _best(ready, AGENTS[agent], queue)
                    if best is None:
                        break
                    ready.remove(best)
                    want.append(best.title)
                got = await store.claim_many(agent, count, queues=[queue] if queue else [])
                assert [c.task.title for c in got] == want, f"step {step}: {op}"
                _heads_below_their_head(r, ns)
            # A claim that takes all there is (and then finds none) leaves every index exact.
            while await store.claim_many("both", 64):
                pass
            _heads_below_their_head(r, ns, exact=True)
        finally:
            await store.close()

    check()


async def test_a_queue_left_below_its_head_loses_to_a_better_rival(
    redis_store: Store, redis_url: str
) -> None:
    """The case the model test stands for, spelled out: q1's place stays at the task taken
    while q1 is alone; a task added to q2 then ranks between that place and q1's real head."""
    await redis_store.register("ada", max_claims=8)
    await redis_store.add("q1 first", queue="q1", priority=3)
    await redis_store.add("q1 later", queue="q1", priority=0)
    got = await redis_store.claim("ada")
    assert got is not None and got.task.title == "q1 first"
    r = redis_py.Redis.from_url(redis_url)
    ns = redis_store.namespace
    stale = r.zscore(C.heads_key(ns, ""), "q1")
    assert stale is not None and stale < r.zrange(C.ready_key(ns, "q1", ""), 0, 0, withscores=True)[0][1]
    await redis_store.add("q2 urgent", queue="q2", priority=3)
    got = await redis_store.claim("ada")
    assert got is not None and got.task.title == "q2 urgent"
    _heads_below_their_head(r, ns)
    assert (
        r.zscore(C.heads_key(ns, ""), "q1")
        == r.zrange(C.ready_key(ns, "q1", ""), 0, 0, withscores=True)[0][1]
    )
