"""Finding the store from inside the control room, so the app is on screen while it happens.

``resolve`` blocks (probes, Docker calls, process starts), so it runs in a thread worker
while a "finding the store…" screen is up. When nothing can be reached or started and the
user never answered, resolve's ``ask`` hook stops it *before* anything is written, and the
question goes to a dialog whose default is Cancel: choosing files resolves again with
``allow_file_fallback=True`` (which remembers the answer in ``.claimroom/config.json``);
Cancel ends the app with exit code 5 and prints what to do once the screen is restored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, LoadingIndicator, Static
from textual.worker import WorkerFailed

from claimroom.core import constants as C
from claimroom.core.errors import ClaimroomError
from claimroom.core.infra import Resolution, StartOptions, file_board_url, resolve
from claimroom.core.safetext import shown
from claimroom.core.store import Store
from claimroom.core.storeurl import redacted

from .dialogs import Choice, ChoiceDialog
from .room import Room

FILES = "files"  # the consent dialog's value for "use file-based coordination"


class NeedConsent(Exception):
    """Raised through ``resolve`` by its ``ask`` hook: the answer comes from a dialog, not stdin."""

    def __init__(self, question: str) -> None:
        super().__init__(question)
        self.question = question

    @property
    def tried(self) -> list[str]:
        """What resolve tried, one entry each (parsed from its question)."""
        m = re.match(r"No Redis could be found or started \((.*)\)\. Coordinate through", self.question, re.S)
        return m.group(1).split("; ") if m else [self.question]


def _ask(question: str) -> bool:
    raise NeedConsent(question)


@dataclass(frozen=True)
class Finder:
    """What the control room resolves its store from: ``resolve``'s arguments but the consent."""

    url: str | None
    namespace: str
    project: Path
    allow_file_fallback: bool | None = None
    default_port: int = C.default_redis_port
    options: StartOptions | None = None

    def attempt(self, allow: bool | None) -> Resolution | NeedConsent | ClaimroomError:
        """One resolution (blocks); the consent question or the error is returned, not raised."""
        try:
            return resolve(
                self.url,
                project=self.project,
                allow_file_fallback=allow,
                interactive=True,
                ask=_ask,
                default_port=self.default_port,
                options=self.options,
            )
        except (NeedConsent, ClaimroomError) as exc:
            return exc

    def doing(self) -> str:
        if self.url:
            return f"checking {redacted(self.url)}; if it is down and claimroom started it, starting it again"
        return (
            f"looking for Redis on 127.0.0.1:{self.default_port}; if none answers, starting one "
            "(a Docker container, else a local redis-server)"
        )


class FindingScreen(ModalScreen[None]):
    """Shown while the store is resolved; ctrl+q still quits."""

    def __init__(self, finder: Finder) -> None:
        super().__init__()
        self.finder = finder

    def compose(self) -> ComposeResult:
        with Vertical(id="finding", classes="dialog"):
            yield Label("finding the store…", id="finding-title")
            yield LoadingIndicator()
            yield Static(Text(shown(self.finder.doing())), id="finding-doing")
            yield Static(Text(shown(f"project {self.finder.project} · ctrl+q quits")), id="finding-note")


def consent_dialog(need: NeedConsent, project: Path) -> ChoiceDialog:
    board = Path(file_board_url(project).removeprefix("file://"))
    return ChoiceDialog(
        "No Redis could be found or started. Tried:",
        need.tried,
        [Choice("u", "Use files (this machine only)", FILES)],
        f"Coordinate through files in {board} instead? File-based coordination works only for "
        "agents on this machine. The answer is remembered in .claimroom/config.json.",
    )


def declined(need: NeedConsent, project: Path) -> str:
    """What to do, printed after the app exits when the operator said no to files."""
    return (
        f"no store for {project}: tried {'; '.join(need.tried)}; file-based coordination was declined. "
        "Fix: start Docker or install redis-server (apt-get install redis-server), then claimroom up; "
        "or set CLAIMROOM_URL to a running Redis; or claimroom up --allow-file-fallback "
        "(agents on this machine only)"
    )


async def find(app: Room, finder: Finder) -> None:
    """Resolve the store (asking for consent if need be), then hand it to the app; run as a worker."""
    screen = FindingScreen(finder)
    await app.push_screen(screen)
    allow = finder.allow_file_fallback
    while True:
        worker = app.run_worker(
            partial(finder.attempt, allow), name="resolve", group="resolve", thread=True, exit_on_error=False
        )
        try:
            outcome = await worker.wait()
        except WorkerFailed as failed:  # not a ClaimroomError: a bug, said plainly rather than a traceback
            app.quit_with(1, f"finding the store failed: {type(failed.error).__name__}: {failed.error}")
            return
        if isinstance(outcome, Resolution):
            break
        if isinstance(outcome, ClaimroomError):
            app.quit_with(outcome.exit_code, str(outcome))
            return
        choice = await app.push_screen_wait(consent_dialog(outcome, finder.project))
        if choice != FILES:
            app.quit_with(5, declined(outcome, finder.project))
            return
        allow = True
    try:
        store = Store.from_url(outcome.url, finder.namespace)
    except ClaimroomError as exc:
        app.quit_with(exc.exit_code, str(exc))
        return
    if app.screen is screen:
        app.pop_screen()
    app.attach(store, outcome)
