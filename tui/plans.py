"""The plans pane: each unfinished plan (core/plan.py) as a tree, parent -> subtasks.

A node shows its task's state; a plan's parent shows its progress rolled up (subtasks done
of all, and their mean progress, a done one counting as 1). The critical path is marked
``»``: the longest chain of unfinished subtasks through their after-dependencies, each
weighing the work it has left (1 - progress, at least 0.1), so a chain of nearly finished
tasks counts for less than one fresh task. Enter or space folds a plan, right unfolds it,
left folds it (from a subtask: goes to its plan); j / k move like the arrows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Static, Tree
from textual.widgets.tree import TreeNode

from claimroom.core import constants as C
from claimroom.core.models import State, Task
from claimroom.core.safetext import shown

from .board import Snapshot
from .tables import Palette

CRITICAL = "»"
MIN_WEIGHT = 0.1  # a task that says it is all but done still lies on its chain
TITLE_WIDTH = 34  # at 80 columns: guides, id, state and the rolled-up figures beside it


def critical_path(subtasks: Sequence[Task]) -> list[str]:
    """The ids on the longest chain of unfinished subtasks through their ``after``
    dependencies (among ``subtasks``), first to last; each weighs 1 - progress (at least
    ``MIN_WEIGHT``). Subtasks are in creation order, which a plan makes dependency order."""
    open_ = {t.id: t for t in subtasks if not t.state.final}
    best: dict[str, float] = {}
    back: dict[str, str] = {}
    for t in sorted(open_.values(), key=lambda t: t.seq):
        before = [d for d in t.after if d in best]
        lead = max(before, key=lambda d: (best[d], -open_[d].seq), default=None)
        best[t.id] = max(1.0 - t.progress, MIN_WEIGHT) + (best[lead] if lead else 0.0)
        if lead:
            back[t.id] = lead
    if not best:
        return []
    end = max(best, key=lambda i: (best[i], -open_[i].seq))
    chain = [end]
    while chain[-1] in back:
        chain.append(back[chain[-1]])
    return chain[::-1]


def rollup(parent: Task, subtasks: Sequence[Task]) -> tuple[int, int, float]:
    """(done, total, mean progress) of a plan: total from the parent's count, the rest
    over the subtasks read."""
    done = sum(1 for t in subtasks if t.state is State.DONE)
    mean = (
        sum(1.0 if t.state is State.DONE else t.progress for t in subtasks) / len(subtasks)
        if subtasks
        else 0.0
    )
    return done, max(parent.plan_total, len(subtasks)), mean


def _state_style(state: State, pal: Palette) -> Style | str:
    if state is State.DONE:
        return pal.success
    if state in (State.DEAD, State.CANCELLED):
        return pal.error
    if state in (State.RETRYING, State.ORPHANED):
        return pal.warning
    if state is State.BLOCKED:
        return pal.muted
    return ""


def _clip(text: str, width: int) -> str:
    text = shown(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def parent_label(parent: Task, subtasks: Sequence[Task], pal: Palette) -> Text:
    done, total, mean = rollup(parent, subtasks)
    line = Text()
    line.append(f"{parent.id:<6} ", "bold")
    line.append(f"{parent.state.value:<9} ", _state_style(parent.state, pal))
    line.append(f"{_clip(parent.title, TITLE_WIDTH - 2):<{TITLE_WIDTH - 2}} ", "bold")
    line.append(f"{done}/{total} done {mean:4.0%}", pal.accent)
    return line


def subtask_label(t: Task, critical: bool, pal: Palette) -> Text:
    line = Text()
    line.append(f"{CRITICAL if critical else ' '} ", pal.accent)
    line.append(f"{t.id:<6} ")
    line.append(f"{t.state.value:<9} ", _state_style(t.state, pal))
    line.append(_clip(t.title, TITLE_WIDTH - 4))
    if t.plan_total:  # itself planned under (a planner's plan): its own roll-up
        line.append(f"  plan {t.plan_total - t.plan_left}/{t.plan_total}", pal.muted)
    elif t.state is State.CLAIMED:
        line.append(f"  {t.progress:.0%} {shown(t.agent)[:12]}", pal.muted)
    return line


class PlanTreeView(Tree[str]):
    """The plans' tree; folds by enter, space, left and right, moves by arrows and j / k."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("right", "unfold", "Unfold", show=False, id="plans.unfold"),
        Binding("left", "fold", "Fold", show=False, id="plans.fold"),
        Binding("j", "cursor_down", "Down", show=False, id="plans.down"),
        Binding("k", "cursor_up", "Up", show=False, id="plans.up"),
    ]

    def action_unfold(self) -> None:
        node = self.cursor_node
        if node is not None and node.allow_expand:
            node.expand()

    def action_fold(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.allow_expand and node.is_expanded:
            node.collapse()
        elif node.parent is not None and node.parent is not self.root:
            self.move_cursor(node.parent)
            node.parent.collapse()


class PlansPane(Vertical):
    """The plans as a tree, rebuilt only when their shape changes (labels update in place),
    keeping what the operator folded and where the cursor is."""

    def __init__(self) -> None:
        super().__init__(id="pane-plans")
        self.folded: set[str] = set()  # plan parents the operator folded
        self._shape: list[tuple[str, tuple[str, ...]]] | None = None  # None: never drawn

    def compose(self) -> ComposeResult:
        tree: PlanTreeView = PlanTreeView("plans", id="plans-tree")
        tree.show_root = False
        tree.guide_depth = 2
        yield tree
        yield Static("", id="plans-status", classes="pane-status")

    @property
    def view(self) -> PlanTreeView:
        return self.query_one(PlanTreeView)

    def on_tree_node_collapsed(self, event: Tree.NodeCollapsed[str]) -> None:
        if event.node.data:
            self.folded.add(event.node.data)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[str]) -> None:
        if event.node.data:
            self.folded.discard(event.node.data)

    def show(self, snap: Snapshot, now_ms: int, pal: Palette) -> None:
        tree = self.view
        shape = [(p.parent.id, tuple(t.id for t in p.subtasks)) for p in snap.plans]
        labels: dict[str, Text] = {}
        for plan in snap.plans:
            labels[plan.parent.id] = parent_label(plan.parent, plan.subtasks, pal)
            on_path = set(critical_path(plan.subtasks))
            for t in plan.subtasks:
                labels[f"{plan.parent.id}/{t.id}"] = subtask_label(t, t.id in on_path, pal)
        if shape != self._shape:
            self._rebuild(tree, snap, labels)
            self._shape = shape
        else:
            for node in _walk(tree.root):
                key = _key(node)
                if key in labels:
                    node.set_label(labels[key])
        status = f"{len(snap.plans)} unfinished plan{'s' if len(snap.plans) != 1 else ''}"
        if len(snap.plans) >= C.snapshot_plans:
            status += f" (the newest {C.snapshot_plans})"
        status += f" · {CRITICAL} critical path · enter/space fold · ←/→"
        self.query_one("#plans-status", Static).update(Text(status), layout=False)

    def _rebuild(self, tree: PlanTreeView, snap: Snapshot, labels: dict[str, Text]) -> None:
        at = _key(tree.cursor_node) if tree.cursor_node is not None else None
        tree.clear()
        target: TreeNode[str] | None = None
        for plan in snap.plans:
            pid = plan.parent.id
            node = tree.root.add(labels[pid], data=pid, expand=pid not in self.folded)
            target = node if at == pid else target
            for t in plan.subtasks:
                leaf = node.add_leaf(labels[f"{pid}/{t.id}"], data=f"{pid}/{t.id}")
                target = leaf if at == f"{pid}/{t.id}" else target
            if len(plan.subtasks) < plan.parent.plan_total:
                node.add_leaf(Text(f"  … {plan.parent.plan_total - len(plan.subtasks)} more", "dim"))
        if not snap.plans:
            tree.root.add_leaf(Text("no unfinished plans (claimroom plan FILE adds one)", "dim"))
        if target is not None:
            tree.move_cursor(target)
        else:
            tree.cursor_line = 0  # the newest plan


def _key(node: TreeNode[str] | None) -> str:
    return "" if node is None or node.data is None else node.data


def _walk(node: TreeNode[str]) -> list[TreeNode[str]]:
    out: list[TreeNode[str]] = []
    for child in node.children:
        out.append(child)
        out += _walk(child)
    return out
