"""The dialog flow of one operator action: pick, confirm, act, on what was on screen.

Targets are captured from the snapshot shown when the action starts, before any dialog
opens, and the Store calls carry exactly that state and token; a task that moved while the
dialog was open is refused by the engine ("changed since you selected it").
"""

from __future__ import annotations

from collections.abc import Sequence

from .actions import (
    ActionSpec,
    Outcome,
    cancelled_dependents,
    not_applicable,
    run_pause,
    run_reset,
    run_task_action,
    split_targets,
)
from .board import Snapshot
from .dialogs import AgentPicker, Choice, ChoiceDialog
from .messages import send_message
from .room import Room

# The choices each action's dialog offers after Cancel ([c]). A letter is never the key
# that opened the dialog (requeue opens with r, so it confirms with q): a key pressed twice
# must not act without a look at the dialog.
TASK_CHOICES: dict[str, list[Choice]] = {
    "reassign": [Choice("r", "Reassign", "reassign")],
    "kill": [Choice("r", "Kill → requeue", "kill"), Choice("d", "Kill → dead", "kill-dead", "error")],
    "requeue": [Choice("q", "Requeue", "requeue")],
    "retry": [Choice("r", "Retry", "retry")],
    "extend": [
        Choice("s", "+1 min", "60", "primary"),
        Choice("m", "+5 min", "300", "primary"),
        Choice("l", "+15 min", "900", "primary"),
    ],
    "cancel": [Choice("t", "Cancel task(s)", "cancel", "error")],
}
RESTORE = "retry-restore"  # the retry dialog's second choice, offered when a cascade cancelled dependents
PAUSE = Choice("p", "Pause", "go")
RESUME = Choice("r", "Resume", "go")
RESET = Choice("r", "Reset", "go")


async def confirm(
    app: Room, title: str, lines: list[str], choices: list[Choice], note: str = ""
) -> str | None:
    """The chosen value, or None for Cancel."""
    return await app.push_screen_wait(ChoiceDialog(title, lines, choices, note))


async def operate(app: Room, spec: ActionSpec, keys: Sequence[str], snap: Snapshot) -> Outcome | None:
    """Run ``spec`` on the rows ``keys`` of ``snap``; None when the operator backed out."""
    if spec.kind == "queue":
        by_name = {q.name: q for q in snap.queues}
        queues = [by_name[k] for k in keys if k in by_name]
        resume = all(q.paused for q in queues)  # all paused: resume them; else pause the lot
        offer = RESUME if resume else PAUSE
        lines = [f"{q.name}  {'paused' if q.paused else 'open'} · {q.ready:,} ready" for q in queues]
        if await confirm(app, f"{offer.label} {len(queues)} queue(s)?", lines, [offer]) is None:
            return None
        return await run_pause(app.store, [q.name for q in queues], app.operator, resume=resume)
    if spec.name == "message":
        return await send_message(app, keys)
    if spec.kind == "agent":
        lines = [f"agent {k}" for k in keys]
        title = f"Reset the breaker of {len(keys)} agent(s)?"
        if await confirm(app, title, lines, [RESET]) is None:
            return None
        return await run_reset(app.store, list(keys), app.operator)

    tasks = [t for k in keys if (t := snap.task(k)) is not None]
    targets, skipped = split_targets(spec, tasks)  # captured now: what the operator sees
    if not targets:
        app.notify(not_applicable(spec, skipped), severity="warning")
        return None
    note = f"skipping {len(skipped)} selected task(s) it does not apply to" if skipped else ""
    lines = [t.describe() for t in targets]
    title = f"{spec.label}: {len(targets)} task(s)?"
    agent = ""
    if spec.name == "reassign":
        picked = await app.push_screen_wait(AgentPicker(snap.agents, app.now_ms(), [t.task for t in targets]))
        if picked is None:
            return None
        agent, title = picked, f"Reassign {len(targets)} task(s) to {picked}?"
    choices = TASK_CHOICES[spec.name]
    if spec.name == "retry" and (n := await cancelled_dependents(app.store, targets)):
        choices = [*choices, Choice("a", f"Retry and restore {n} dependent{'s' * (n != 1)}", RESTORE)]
        more = (
            f"their end cancelled {n} dependent task(s); [a] brings them (and theirs) back, blocked on them"
        )
        note = f"{note}\n{more}" if note else more
    choice = await confirm(app, title, lines, choices, note)
    if choice is None:
        return None
    extra_s = float(choice) if spec.name == "extend" else 0.0
    action = choice if spec.name == "kill" else spec.name
    return await run_task_action(
        app.store, action, targets, app.operator, agent=agent, extra_s=extra_s, restore=choice == RESTORE
    )
