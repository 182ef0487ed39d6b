"""The control room's plans pane (tui/plans.py): each unfinished plan as a tree with its
progress rolled up and the critical path marked, folded and unfolded by keys only; the
snapshot's plans section on both backends; a picture of the pane at 80x24."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from pilot_wait import until
from textual.pilot import Pilot
from textual.widgets.tree import TreeNode

from claimroom.core import constants
from claimroom.core import plan as plans
from claimroom.core.local_redis import LocalRedis
from claimroom.core.models import State, Task
from claimroom.core.store import Store
from claimroom.tui.app import PANES, ControlRoom
from claimroom.tui.plans import CRITICAL, PlansPane, critical_path
from claimroom.tui.seed import pin_app, pinned_clock

PLAN = {
    "title": "port the CLI to click",
    "queue": "backend",
    "subtasks": [
        {"ref": "parse", "title": "parser"},
        {"ref": "args", "title": "arguments", "after": ["parse"]},
        {"ref": "help", "title": "help texts", "after": ["args"]},
        {"ref": "docs", "title": "docs", "after": ["parse"]},
        {"ref": "tests", "title": "tests", "after": ["help", "docs"]},
    ],
}


async def seed(store: Store) -> dict[str, str]:
    out = await plans.add(store, plans.load(PLAN))
    ids: dict[str, str] = {"parent": out["parent"], **out["subtasks"]}
    c = await store.claim("ada", ttl_s=600)
    assert c is not None and c.task.id == ids["parse"]
    await store.complete(c.task.id, c.token)
    c = await store.claim("ada", ttl_s=600)
    assert c is not None
    await store.heartbeat(c.task.id, c.token, progress=0.5)
    await plans.add(
        store, plans.load({"title": "second plan", "subtasks": [{"ref": "only", "title": "alone"}]})
    )
    return ids


@pytest.fixture
async def app_store(store_url: str, namespace: str) -> AsyncIterator[Store]:
    s = Store.from_url(store_url, namespace)
    yield s
    await s.close()


def t(tid: str, after: tuple[str, ...] = (), state: State = State.QUEUED, progress: float = 0.0) -> Task:
    return Task(id=tid, title=tid, state=state, after=after, progress=progress, seq=int(tid[1:]))


def test_the_critical_path_is_the_heaviest_chain_of_unfinished_work() -> None:
    subs = [
        t("t1", state=State.DONE),
        t("t2", ("t1",), State.CLAIMED, progress=0.5),
        t("t3", ("t2",)),
        t("t4", ("t1",)),
        t("t5", ("t3", "t4")),
    ]
    assert critical_path(subs) == ["t2", "t3", "t5"]  # 0.5 + 1 + 1 beats 1 + 1
    nearly = [t("t1", progress=0.95), t("t2", ("t1",), progress=0.95), t("t3")]
    assert critical_path(nearly) == ["t3"]  # weighted by work left: 0.1 + 0.1 < 1
    assert critical_path([t("t1", state=State.DONE)]) == []


async def test_the_snapshot_reads_the_newest_unfinished_plans(store: Store) -> None:
    ids = await seed(store)
    snap = await store.snapshot(sections=["plans"])
    assert [p.parent.title for p in snap.plans] == ["second plan", "port the CLI to click"]
    tree = snap.plans[1]
    assert tree.parent.id == ids["parent"] and tree.parent.plan_total == 5
    assert [s.id for s in tree.subtasks] == [ids[r] for r in ("parse", "args", "help", "docs", "tests")]
    assert (await store.snapshot(sections=["claims"])).plans == ()  # only when asked for
    only = snap.plans[0].subtasks[0].id
    c = await store.claim("bob", ttl_s=600, queues=["default"])
    assert c is not None and c.task.id == only
    await store.complete(only, c.token)  # the second plan is done: it leaves the pane
    assert [p.parent.title for p in (await store.snapshot(sections=["plans"])).plans] == [
        "port the CLI to click"
    ]


def labels(app: ControlRoom) -> list[str]:
    """The tree's lines as shown: folded nodes' children are not."""
    tree = app.query_one(PlansPane).view
    out: list[str] = []

    def walk(node: TreeNode[str], depth: int) -> None:
        for child in node.children:
            out.append("  " * depth + str(child.label))
            if child.is_expanded:
                walk(child, depth + 1)

    walk(tree.root, 0)
    return out


def cursor(app: ControlRoom) -> str:
    node = app.query_one(PlansPane).view.cursor_node
    return "" if node is None else str(node.label)


async def test_the_pane_folds_and_unfolds_by_keys(store: Store, app_store: Store) -> None:
    ids = await seed(store)
    app = ControlRoom(app_store, operator="lead")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(str(PANES.index("plans") + 1))
        assert PANES.index("plans") + 1 == 9
        await until(pilot, lambda: any("port the CLI" in line for line in labels(app)))
        lines = labels(app)
        top = next(line for line in lines if "port the CLI" in line)
        assert "1/5 done" in top and "30%" in top  # (1 + 0.5) / 5
        marked = [line.split()[1] for line in lines if line.strip().startswith(CRITICAL)]
        assert marked[1:] == [ids["args"], ids["help"], ids["tests"]]  # the second plan's one task first
        assert len(lines) == 2 + 5 + 1
        await until(pilot, lambda: "second plan" in cursor(app))  # the newest plan first
        await pilot.press("space")  # fold the second plan
        await until(pilot, lambda: len(labels(app)) == 7)
        await pilot.press("down")
        assert "port the CLI" in cursor(app)
        await pilot.press("left")  # fold it
        await until(pilot, lambda: len(labels(app)) == 2)
        await pilot.press("right")  # unfold it
        await until(pilot, lambda: len(labels(app)) == 7)
        await pilot.press("j", "j")
        assert ids["args"] in cursor(app)
        await pilot.press("left")  # from a subtask: back to its plan, folded
        await until(pilot, lambda: len(labels(app)) == 2 and "port the CLI" in cursor(app))
        await pilot.press("enter")  # enter unfolds (and folds) too
        await until(pilot, lambda: len(labels(app)) == 7)
        # A change on the board redraws in place: folds and the cursor stay.
        await pilot.press("left")
        await until(pilot, lambda: len(labels(app)) == 2)
        c = await store.claim("bob", ttl_s=600, queues=["backend"])
        assert c is not None
        await store.complete(c.task.id, c.token)
        await until(pilot, lambda: "2/5 done" in labels(app)[1])
        assert len(labels(app)) == 2 and "port the CLI" in cursor(app)


# --- a picture of the pane at 80x24 --------------------------------------------------------

NAMESPACE = "planboard"


@pytest.fixture(scope="module")
def plan_board(redis_server: LocalRedis) -> str:
    async def go() -> None:
        async with Store.from_url(redis_server.url, NAMESPACE) as s:
            await seed(s)

    asyncio.run(go())
    return redis_server.url


@pytest.mark.parametrize("theme", ["dark", "16"])
def test_the_pane_at_80x24(snap_compare: Callable[..., bool], plan_board: str, theme: str) -> None:
    store = Store.from_url(plan_board, NAMESPACE)
    app = pin_app(ControlRoom(store, operator="snap", clock=pinned_clock, theme=theme))

    async def before(pilot: Pilot[int]) -> None:
        await until(pilot, lambda: app.snapshot is not None and app.link.status.live)
        await pilot.press("9")
        await until(pilot, lambda: any("port the CLI" in line for line in labels(app)))
        await pilot.press("space", "down")  # the second plan folded, the cursor on the first
        await until(pilot, lambda: len(labels(app)) == 7)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(80, 24), run_before=before)


def test_pane_keys_run_1_to_9_then_0() -> None:
    from claimroom.tui.keys import BINDINGS

    keys = {b.id: b.key for b in BINDINGS if getattr(b, "id", "") and b.id.startswith("pane.")}  # type: ignore[union-attr]
    assert keys["pane.plans"] == "9" and keys["pane.overview"] == "1"
    assert constants.snapshot_plans >= 2
