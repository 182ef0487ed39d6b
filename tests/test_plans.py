"""Hierarchical plans (core/plan.py, Store.plan): a parent and its subtasks added whole and
atomically, refused whole when bad, the parent rolling up its subtasks' ends; a planner's
plan under its claim, rolled back with it. Every store test runs on both backends.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waiting import clock_past

from claimroom.core import constants
from claimroom.core import plan as plans
from claimroom.core.errors import BadInput, LeaseLost
from claimroom.core.models import State
from claimroom.core.store import Store

EXAMPLE = """{"title": "port the CLI to click", "queue": "backend",
 "subtasks": [{"ref": "parse", "title": "parser", "requires": ["python"], "affinity": "cli/"},
              {"ref": "docs", "title": "docs", "after": ["parse"], "paths": ["docs/cli.md"]}]}"""


def plan_text(*subtasks: dict[str, Any], **parent: Any) -> str:
    return json.dumps({"title": "the plan", **parent, "subtasks": list(subtasks)}, indent=1)


async def total(store: Store) -> int:
    return sum((await store.counts()).values())


async def add(store: Store, text: str, **kw: Any) -> dict[str, Any]:
    return await plans.add(store, plans.parse(text), **kw)


async def claim_one(store: Store, tid: str, agent: str = "ada") -> int:
    c = await store.claim(agent, ttl_s=30)
    assert c is not None and c.task.id == tid, f"expected {tid}, got {c and c.task.id}"
    return c.token


async def test_the_design_notes_example_is_added_whole(store: Store) -> None:
    await store.register("ada", ["python"])
    out = await add(store, EXAMPLE)
    parent, ids = out["parent"], out["subtasks"]
    assert set(ids) == {"parse", "docs"}
    p = await store.get(parent)
    assert p.state is State.BLOCKED and p.plan_wait and p.plan_total == 2 and p.plan_left == 2
    parse, docs = await store.get(ids["parse"]), await store.get(ids["docs"])
    assert parse.queue == docs.queue == "backend"  # the parent's fields are the subtasks' defaults
    assert parse.requires == ("python",) and parse.affinity == "cli/" and parse.plan == parent
    assert parse.parent == parent and docs.after == (parse.id,) and docs.state is State.BLOCKED
    assert docs.paths == ("docs/cli.md",) and docs.to_json()["paths"] == ["docs/cli.md"]
    assert await total(store) == 3


async def test_the_parent_is_done_when_its_last_subtask_is(store: Store) -> None:
    await store.register("ada", ["python"])
    out = await add(store, EXAMPLE)
    parent, ids = out["parent"], out["subtasks"]
    after = await store.add("after the plan", after=[parent])
    await store.complete(ids["parse"], await claim_one(store, ids["parse"]))
    assert (await store.get(parent)).state is State.BLOCKED
    assert (await store.get(parent)).plan_left == 1
    await store.complete(ids["docs"], await claim_one(store, ids["docs"]))
    p = await store.get(parent)
    assert p.state is State.DONE and p.plan_left == 0 and not p.plan_wait
    assert (await store.get(after)).state is State.QUEUED  # the parent's dependents go on
    assert [e.type for e in await store.events(task=parent)][-1] == "plan-done"


async def a_then_b_and_c(store: Store) -> tuple[str, dict[str, str]]:
    """A plan of three: a (one attempt), b after a, and c; its parent and subtask ids."""
    text = plan_text(
        {"ref": "a", "title": "a", "max_attempts": 1},
        {"ref": "b", "title": "b", "after": ["a"]},
        {"ref": "c", "title": "c"},
    )
    out = await add(store, text)
    return out["parent"], out["subtasks"]


async def test_the_parent_dies_with_the_first_dead_subtask_after_the_cascade(store: Store) -> None:
    parent, ids = await a_then_b_and_c(store)
    downstream = await store.add("after the plan", after=[parent])
    await store.fail(ids["a"], await claim_one(store, ids["a"]), "the parser broke", fatal=True)
    b = await store.get(ids["b"])
    assert b.state is State.CANCELLED and b.cancelled_by == ids["a"]  # the cascade ran
    p = await store.get(parent)
    assert p.state is State.DEAD and p.reason == f"subtask {ids['a']} died: the parser broke"
    d = await store.get(downstream)
    assert d.state is State.CANCELLED and d.cancelled_by == parent  # the parent's own cascade
    assert (await store.get(ids["c"])).state is State.QUEUED  # other subtasks are left as they are
    await store.complete(ids["c"], await claim_one(store, ids["c"]))
    assert (await store.get(parent)).state is State.DEAD


async def test_a_subtask_cancelled_by_a_cascade_counts_as_ended_for_its_parent(store: Store) -> None:
    # The cascade's cancel settles each subtask it ends with its plan parent, as any other
    # end does: the parent counts one unfinished subtask fewer (plan_left), so a retry that
    # restores them counts them back exactly and the plan can still finish.
    parent, ids = await a_then_b_and_c(store)
    token = await claim_one(store, ids["a"])
    await store.fail(ids["a"], token, "broke", fatal=True)
    assert (await store.get(ids["b"])).state is State.CANCELLED
    assert (await store.get(parent)).plan_left == 1  # only c is left unfinished
    await store.act("retry", ids["a"], State.DEAD, token, "op", restore=True)
    assert (await store.get(ids["b"])).state is State.BLOCKED  # restored, waiting on a again
    assert (await store.get(parent)).plan_left == 3


async def test_subtasks_are_added_in_dependency_order(store: Store) -> None:
    text = plan_text(
        {"ref": "d", "title": "d", "after": ["c", "b"]},
        {"ref": "c", "title": "c", "after": ["a"]},
        {"ref": "b", "title": "b", "after": ["a"]},
        {"ref": "a", "title": "a"},
    )
    pf = plans.parse(text)
    assert [pf.refs[i] for i in pf.order] == ["a", "c", "b", "d"]
    out = await plans.add(store, pf)
    seq = {ref: int(tid[1:]) for ref, tid in out["subtasks"].items()}
    assert seq["a"] < seq["c"] < seq["b"] < seq["d"]  # the ids follow the order written
    assert list(out["subtasks"]) == ["d", "c", "b", "a"]  # reported in file order
    d = await store.get(out["subtasks"]["d"])
    assert set(d.after) == {out["subtasks"]["b"], out["subtasks"]["c"]}


REFUSED = [
    ('{"title": "x", "subtasks": [\n  {"ref": "a" "title": "a"}]}', "invalid JSON at line 2 column 15"),
    (
        plan_text({"ref": "a", "title": "a", "after": ["b"]}, {"ref": "b", "title": "b", "after": ["a"]}),
        "cycle: ",
    ),
    (
        plan_text({"ref": "a", "title": "a"}, {"ref": "docs", "title": "d", "after": ["nope"]}),
        'subtasks[1] ("docs")',
    ),
    (plan_text({"ref": "a", "title": "a"}, {"ref": "a", "title": "again"}), "duplicate ref 'a'"),
    (plan_text({"ref": "a", "title": "a", "colour": "red"}), "unknown field 'colour' (line"),
    (plan_text({"ref": "a", "title": "a", "priority": "high"}), "field 'priority' must be a whole number"),
    (plan_text({"ref": "a", "title": "a", "paths": ["../outside"]}), "leaves the project"),
    (plan_text({"ref": "a", "title": "a\x1b[2J"}), 'subtasks[0] ("a")'),
    (plan_text({"ref": "a", "title": "a", "after": ["t999999"]}), "no such task"),
    (plan_text({"ref": "a", "title": "a"}, colour="red"), "plan: unknown field 'colour'"),
    (json.dumps({"title": "x", "subtasks": []}), "non-empty list"),
]


@pytest.mark.parametrize(("text", "message"), REFUSED)
async def test_a_bad_plan_is_refused_whole(store: Store, text: str, message: str) -> None:
    await store.add("already here")
    before = await total(store)
    with pytest.raises(BadInput) as err:
        await add(store, text)
    assert message in str(err.value)
    assert await total(store) == before


def test_a_cycle_is_named_by_its_refs() -> None:
    text = plan_text(
        {"ref": "a", "title": "a"},
        {"ref": "b", "title": "b", "after": ["a", "d"]},
        {"ref": "c", "title": "c", "after": ["b"]},
        {"ref": "d", "title": "d", "after": ["c"]},
    )
    with pytest.raises(BadInput, match=r"cycle: (b -> c -> d -> b|c -> d -> b -> c|d -> b -> c -> d)"):
        plans.parse(text)


def test_a_dangling_ref_names_the_item_the_ref_and_the_line() -> None:
    text = plan_text({"ref": "a", "title": "a"}, {"ref": "docs", "title": "d", "after": ["nope"]})
    with pytest.raises(BadInput) as err:
        plans.parse(text)
    line = text.splitlines().index(next(x for x in text.splitlines() if '"docs"' in x)) + 1
    assert (
        str(err.value)
        == f"plan: subtasks[1] (\"docs\"): after names 'nope', no ref of this plan (line {line})"
    )


async def test_a_plan_past_its_cap_is_refused(store: Store) -> None:
    subs = [{"ref": f"s{i}", "title": "s"} for i in range(constants.max_plan_tasks)]
    with pytest.raises(BadInput, match="at most"):
        await add(store, plan_text(*subs))
    assert await total(store) == 0


async def test_a_planner_adds_its_plan_under_its_claim(store: Store) -> None:
    top = await store.add("break the port down", requires=["planner"])
    await store.register("boss", ["planner"])
    token = await claim_one(store, top, "boss")
    text = plan_text({"ref": "a", "title": "a"}, {"ref": "b", "title": "b", "after": ["a"]})
    out = await add(store, text, parent=top, token=token, agent="boss")
    assert out["parent"] == top
    a, b = out["subtasks"]["a"], out["subtasks"]["b"]
    assert (await store.get(a)).parent == top and (await store.get(a)).plan == top
    await store.complete(top, token)  # the planner is done; its subtasks are not
    p = await store.get(top)
    assert p.state is State.BLOCKED and p.plan_wait and p.plan_left == 2
    await store.complete(a, await claim_one(store, a))
    await store.complete(b, await claim_one(store, b))
    assert (await store.get(top)).state is State.DONE


async def test_a_planner_plan_needs_its_own_live_claim(store: Store) -> None:
    top = await store.add("plan it")
    token = await claim_one(store, top, "boss")
    text = plan_text({"ref": "a", "title": "a"})
    before = await total(store)
    with pytest.raises(LeaseLost):
        await add(store, text, parent=top, token=token + 1)
    with pytest.raises(Exception, match="boss"):
        await add(store, text, parent=top, token=token, agent="eve")
    assert await total(store) == before


@pytest.mark.parametrize("end", ["release", "expire"])
async def test_the_planners_plan_is_rolled_back_with_its_claim(store: Store, end: str) -> None:
    top = await store.add("plan it")
    c = await store.claim("boss", ttl_s=0.2 if end == "expire" else 30)
    assert c is not None
    text = plan_text(
        {"ref": "a", "title": "a"}, {"ref": "b", "title": "b"}, {"ref": "c", "title": "c", "after": ["a"]}
    )
    out = await add(store, text, parent=top, token=c.token, agent="boss")
    a = out["subtasks"]["a"]
    taken = await claim_one(store, a, "ada")  # claimed: it stays
    if end == "release":
        await store.release(top, c.token)
    else:
        await clock_past(store, c.deadline_ms)
        await store.reap()
    states = {ref: (await store.get(tid)).state for ref, tid in out["subtasks"].items()}
    assert states == {"a": State.CLAIMED, "b": State.CANCELLED, "c": State.CANCELLED}
    p = await store.get(top)
    assert p.state is State.QUEUED and p.plan_left == 1  # only a is still unfinished
    await store.complete(a, taken)
    assert (await store.get(top)).state is State.QUEUED  # not waiting: a planner claims it again
    again = await claim_one(store, top, "boss")
    await store.complete(top, again)  # the rolled-back subtasks are no failure of the plan
    assert (await store.get(top)).state is State.DONE


async def test_a_subtask_dying_while_the_planner_works_ends_the_parent_at_completion(store: Store) -> None:
    top = await store.add("plan it")
    token = await claim_one(store, top, "boss")
    out = await add(
        store, plan_text({"ref": "a", "title": "a"}, {"ref": "b", "title": "b"}), parent=top, token=token
    )
    a = out["subtasks"]["a"]
    await store.fail(a, await claim_one(store, a, "ada"), "no disk", fatal=True)
    assert (await store.get(top)).state is State.CLAIMED
    await store.complete(top, token)
    p = await store.get(top)
    assert p.state is State.DEAD and p.reason == f"subtask {a} died: no disk"


async def test_nested_plans_roll_up_level_by_level(store: Store) -> None:
    out = await add(store, plan_text({"ref": "x", "title": "x"}, {"ref": "y", "title": "y"}))
    outer, x = out["parent"], out["subtasks"]["x"]
    token = await claim_one(store, x, "boss")
    inner = await add(store, plan_text({"ref": "x1", "title": "x1"}), parent=x, token=token)
    await store.complete(x, token)
    assert (await store.get(x)).state is State.BLOCKED
    y = out["subtasks"]["y"]
    await store.complete(y, await claim_one(store, y))
    x1 = inner["subtasks"]["x1"]
    await store.complete(x1, await claim_one(store, x1))
    assert (await store.get(x)).state is State.DONE
    assert (await store.get(outer)).state is State.DONE


async def test_a_plan_added_while_agents_claim(store: Store) -> None:
    """Agents claim while a plan goes in: no task twice, no subtask before its dependencies."""
    n = 40
    subs = [
        {"ref": f"s{i}", "title": f"s{i}", "after": [f"s{j}" for j in (i - 1, i // 2) if 0 <= j < i]}
        for i in range(n)
    ]
    for i in range(5):
        await store.add(f"plain {i}")
    claimed: list[str] = []
    started = asyncio.Event()

    async def agent(name: str) -> None:
        await started.wait()
        idle = 0
        while idle < 50 and len([c for c in claimed if c not in plain]) < n:
            c = await store.claim(name, ttl_s=30)
            if c is None:
                idle += 1
                await asyncio.sleep(0)
                continue
            idle = 0
            claimed.append(c.task.id)
            for dep in c.task.after:  # the store's own word, read after the claim
                assert (await store.get(dep)).state is State.DONE, (
                    f"{c.task.id} claimed before {dep} was done"
                )
            await store.complete(c.task.id, c.token)

    plain = {t.id for t in await store.tasks()}
    workers = [asyncio.create_task(agent(f"a{i}")) for i in range(4)]
    started.set()
    out = await add(store, plan_text(*subs))
    await asyncio.wait_for(asyncio.gather(*workers), 60)
    assert len(claimed) == len(set(claimed))
    assert set(out["subtasks"].values()) <= set(claimed)
    assert (await store.get(out["parent"])).state is State.DONE


# --- a property over random DAG plans (parsing only: no store needed) -----------------------


@st.composite
def dags(draw: st.DrawFn) -> list[list[int]]:
    n = draw(st.integers(1, 12))
    return [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(n)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(), st.randoms(use_true_random=False), st.sampled_from(["none", "cycle", "dangling"]))
def test_random_plans(dag: list[list[int]], rnd: Any, flaw: str) -> None:
    n = len(dag)
    perm = list(range(n))
    rnd.shuffle(perm)  # file order is not dependency order
    refs = [f"r{i}" for i in range(n)]
    afters = {i: [refs[j] for j in dag[i]] for i in range(n)}
    if flaw == "cycle":
        if n < 2:
            afters[0].append(refs[0])  # a task after itself
        else:
            lo, hi = sorted(rnd.sample(range(n), 2))
            path = [hi]
            afters[lo].append(refs[hi])  # hi after ... after lo: lo after hi closes it
            if refs[lo] not in afters[hi]:
                afters[hi].append(refs[lo])
            del path
    elif flaw == "dangling":
        afters[rnd.randrange(n)].append("ghost")
    text = plan_text(*[{"ref": refs[i], "title": refs[i], "after": afters[i]} for i in perm])
    if flaw != "none":
        with pytest.raises(BadInput, match="cycle" if flaw == "cycle" else "ghost"):
            plans.parse(text)
        return
    pf = plans.parse(text)
    position = {pf.refs[fi]: k for k, fi in enumerate(pf.order)}
    for i in range(n):
        spec = pf.plan.subtasks[position[refs[i]]]
        assert sorted(spec.after) == sorted(f"${position[refs[j]]}" for j in dag[i])
        assert all(int(a[1:]) < position[refs[i]] for a in spec.after)  # points back


@pytest.mark.parametrize("seed", range(3))
async def test_random_plans_are_added_with_their_dependencies(store: Store, seed: int) -> None:
    import random

    rnd = random.Random(seed)
    n = rnd.randint(5, 30)
    refs = [f"r{i}" for i in range(n)]
    dag = [sorted(rnd.sample(range(i), min(i, rnd.randint(0, 3)))) for i in range(n)]
    perm = list(range(n))
    rnd.shuffle(perm)
    items = {i: {"ref": refs[i], "title": refs[i], "after": [refs[j] for j in dag[i]]} for i in range(n)}
    out = await add(store, plan_text(*[items[i] for i in perm]))
    ids = out["subtasks"]
    for i in range(n):
        t = await store.get(ids[refs[i]])
        assert set(t.after) == {ids[refs[j]] for j in dag[i]}
        assert t.state is (State.BLOCKED if dag[i] else State.QUEUED)
    before = await total(store)
    for flaw in ("nowhere", refs[n - 1]):  # a dangling ref; r0 after the last one: a cycle when
        items[0]["after"] = [flaw]  # the last one comes from r0, else a valid plan
        text = plan_text(*[items[i] for i in perm])
        if flaw == "nowhere" or 0 in _ancestors(dag, n - 1):
            with pytest.raises(BadInput, match="nowhere" if flaw == "nowhere" else "cycle"):
                await add(store, text)
            assert await total(store) == before


def _ancestors(dag: list[list[int]], i: int) -> set[int]:
    out: set[int] = set()
    todo = list(dag[i])
    while todo:
        j = todo.pop()
        if j not in out:
            out.add(j)
            todo += dag[j]
    return out


async def test_the_parents_after_and_fields_go_to_its_subtasks(store: Store) -> None:
    first = await store.add("migrate the schema")
    text = plan_text(
        {"ref": "a", "title": "a"},
        {"ref": "b", "title": "b", "after": ["a"], "priority": 1, "queue": "docs"},
        after=[first],
        priority=7,
        queue="backend",
    )
    out = await add(store, text)
    a, b = [await store.get(out["subtasks"][r]) for r in "ab"]
    assert a.after == (first,) and set(b.after) == {a.id, first}
    assert (a.priority, a.queue) == (7, "backend") and (b.priority, b.queue) == (1, "docs")
    p = await store.get(out["parent"])
    assert p.after == () and p.state is State.BLOCKED  # it waits for its subtasks only
    assert a.state is State.BLOCKED
    await store.complete(first, await claim_one(store, first))
    assert (await store.get(a.id)).state is State.QUEUED


# --- the property on the store: random DAG plans, valid or flawed, on both backends ----------

_EXAMPLE_NS = iter(range(1_000_000))


@pytest.mark.parametrize("backend_name", ["redis", "file"])
def test_random_plans_on_the_store(redis_server: Any, tmp_path: Path, backend_name: str) -> None:
    """Valid random plans are added with every dependency intact; the same plan with an
    injected cycle or dangling ref is refused whole (the board's task count unchanged)."""
    url = redis_server.url if backend_name == "redis" else tmp_path.as_uri()

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(dags(), st.randoms(use_true_random=False), st.sampled_from(["none", "cycle", "dangling"]))
    def check(dag: list[list[int]], rnd: Any, flaw: str) -> None:
        asyncio.run(one(dag, rnd, flaw))

    async def one(dag: list[list[int]], rnd: Any, flaw: str) -> None:
        n = len(dag)
        refs = [f"r{i}" for i in range(n)]
        items = [{"ref": refs[i], "title": refs[i], "after": [refs[j] for j in dag[i]]} for i in range(n)]
        if flaw == "cycle":
            lo, hi = sorted(rnd.sample(range(n), 2)) if n > 1 else (0, 0)
            items[lo]["after"].append(refs[hi])
            items[hi]["after"].append(refs[lo])
        elif flaw == "dangling":
            items[rnd.randrange(n)]["after"].append("ghost")
        rnd.shuffle(items)
        async with Store.from_url(url, f"hyp{next(_EXAMPLE_NS)}") as s:
            await s.add("already here")
            if flaw != "none":
                with pytest.raises(BadInput):
                    await add(s, plan_text(*items))
                assert await total(s) == 1
                return
            ids = (await add(s, plan_text(*items)))["subtasks"]
            assert await total(s) == 2 + n
            for i in range(n):
                t = await s.get(ids[refs[i]])
                assert set(t.after) == {ids[refs[j]] for j in dag[i]}
                assert all(int(d[1:]) < int(t.id[1:]) for d in t.after)  # added after what it waits on

    check()
