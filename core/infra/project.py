"""A project's ``.claimroom/`` folder: its config, the start lock, and what claimroom started.

The project root is ``CLAIMROOM_HOME`` when set, else the nearest folder (from the working
directory up) that holds ``.git``, else the working directory. Everything claimroom keeps
for a project lives in ``<root>/.claimroom/``, which ignores itself for git.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .. import constants as C
from ..errors import BadInput, StoreUnavailable


def project_root(cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """``CLAIMROOM_HOME``, else the nearest folder with ``.git``, else ``cwd``."""
    environ = os.environ if env is None else env
    home = environ.get(C.env_home)
    if home:
        return Path(home).expanduser().resolve()
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return here


def infra_dir(project: Path, *, create: bool = True) -> Path:
    """``<project>/.claimroom``; created (with a ``.gitignore`` of ``*``) when asked."""
    folder = project / C.infra_dirname
    if create and not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        ignore = folder / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# claimroom's local state: never commit it\n*\n")
    return folder


def _write_atomic(path: Path, text: str) -> None:
    import tempfile  # only to write: the hooks read this folder on every edit

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --- config.json --------------------------------------------------------------------


def config_path(project: Path) -> Path:
    return project / C.infra_dirname / C.config_filename


def load_config(project: Path) -> dict[str, Any]:
    """The project's config (``{}`` when there is none); ``BadInput`` when it is not JSON."""
    path = config_path(project)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}): fix or delete it") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path} must hold a JSON object: fix or delete it")
    return data


@contextlib.contextmanager
def _flock(path: Path, timeout_s: float, what: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(
                        f"{what}: the lock {path} is still held after {timeout_s:.0f} s; "
                        "if no claimroom process is starting a store, delete that file and retry"
                    ) from None
                time.sleep(C.start_lock_poll_s)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def update_config(project: Path, **changes: Any) -> dict[str, Any]:
    """Set (or, with ``None``, remove) config keys atomically; returns the new config."""
    folder = infra_dir(project)
    with _flock(folder / "config.lock", C.start_lock_timeout_s, "cannot write the config"):
        config = load_config(project)
        for key, value in changes.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
        _write_atomic(config_path(project), json.dumps(config, indent=2, sort_keys=True) + "\n")
    return config


# --- the start lock -------------------------------------------------------------------


@contextlib.contextmanager
def start_lock(project: Path, timeout_s: float = C.start_lock_timeout_s) -> Iterator[None]:
    """Held while a store is started, so concurrent agents start exactly one."""
    with _flock(infra_dir(project) / C.start_lock_filename, timeout_s, "cannot start the store"):
        yield


# --- started.json: every store claimroom started, so that down, doctor, the health monitor
# and the control room find them all, and a restart uses the same data ----------------------


class Started(NamedTuple):
    """A store claimroom started for this project: a container or a local server.

    A NamedTuple rather than a dataclass: the hooks read these records on every edit, and
    importing dataclasses (which imports inspect) costs them ~15 ms."""

    kind: str  # "docker" | "local"
    url: str
    port: int
    container: str = ""
    volume: str = ""
    image: str = ""
    pid_file: str = ""
    directory: str = ""
    password: str = ""
    stopped: bool = False  # stopped on purpose (down, the store pane): the health monitor leaves it

    @property
    def where(self) -> str:
        """Where its data lives: the volume, or the data directory."""
        return f"volume {self.volume}" if self.kind == "docker" else str(Path(self.directory) / "data")

    @property
    def label(self) -> str:
        """How messages name it."""
        if self.kind == "docker":
            return f"docker container {self.container} on 127.0.0.1:{self.port}"
        return f"redis-server on 127.0.0.1:{self.port}"

    def to_json(self) -> dict[str, Any]:
        return self._asdict()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Started:
        known = set(cls._fields)
        values = {k: v for k, v in data.items() if k in known}
        values["port"] = int(values.get("port", 0))
        values["stopped"] = values.get("stopped") is True
        return cls(**values)


def _started_path(project: Path) -> Path:
    return project / C.infra_dirname / C.started_filename


def read_started(project: Path) -> list[Started]:
    """Every store claimroom started for ``project``, oldest first (unreadable records skipped).

    The file holds ``{"stores": [...]}``; before, it held one record alone, read as a list of one.
    """
    try:
        data = json.loads(_started_path(project).read_text())
    except (OSError, ValueError):
        return []
    entries = data.get("stores") if isinstance(data, dict) and "stores" in data else [data]
    records = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            records.append(Started.from_json(entry))
        except (AttributeError, TypeError, ValueError):
            continue
    return records


def _write_started(project: Path, records: list[Started]) -> None:
    path = infra_dir(project) / C.started_filename
    if not records:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    # mkstemp's mode 0600 stays: the URLs may hold the store's password.
    _write_atomic(path, json.dumps({"stores": [r.to_json() for r in records]}, indent=2) + "\n")


def record_started(project: Path, started: Started) -> None:
    """Remember ``started`` (call under the start lock), in place of what served its port before.

    The project has one local server (its data directory is ``.claimroom/redis``), so a new
    local record also replaces the old one, whatever its port.
    """
    kept = [
        r for r in read_started(project) if r.port != started.port and not (r.kind == started.kind == "local")
    ]
    _write_started(project, [*kept, started])


def mark_stopped(project: Path, record: Started, stopped: bool = True) -> None:
    """Note that ``record``'s store was stopped on purpose (or, with False, started again)."""
    records = read_started(project)
    same = (record.kind, record.port)
    _write_started(project, [r._replace(stopped=stopped) if (r.kind, r.port) == same else r for r in records])
