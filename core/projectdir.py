"""A project's folder, read without importing anything heavy: the Claude Code hooks use it on every edit.

The project root is ``CLAIMROOM_HOME`` when set, else the nearest folder (from the working
directory up) that holds ``.git``, else the working directory. Everything claimroom keeps
for a project lives in ``<root>/.claimroom/`` (``infra/project.py`` writes there): its
config, and the records of the stores claimroom started. Reading them is here, with the
store a command would use found without probing, starting or importing a Redis client
(``store_url``): the hooks take the store the project already uses and never start one (a
hook that waits for Docker would stall the session; a store that does not answer is the
hook's to report). ``infra/resolve.py`` goes the same way, with its probes and starts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from . import constants as C
from . import validate
from .errors import BadInput
from .storeurl import is_local, local_url, password_of, port_of, with_password


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


# --- config.json -------------------------------------------------------------------


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


# --- started.json: the stores claimroom started for the project (written by infra/project.py) ---


class Started(NamedTuple):
    """A store claimroom started for this project: a container or a local server.

    A NamedTuple rather than a dataclass: the hooks read these records on every edit, and
    importing dataclasses (which imports inspect) costs them ~15 ms."""

    kind: str  # "docker" | "local" | "sentinel" | "cluster" (C.topology_kinds: a whole topology)
    url: str
    port: int  # a topology's: its first sentinel's, or its first seed node's
    container: str = ""
    volume: str = ""
    image: str = ""
    pid_file: str = ""
    directory: str = ""  # a topology's folder, whose topology.json lists its processes and pids
    password: str = ""
    stopped: bool = False  # stopped on purpose (down, the store pane): the health monitor leaves it

    @property
    def where(self) -> str:
        """Where its data lives: the volume, the data directory, or the topology's folder."""
        if self.kind in C.topology_kinds:
            return self.directory
        return f"volume {self.volume}" if self.kind == "docker" else str(Path(self.directory) / "data")

    @property
    def label(self) -> str:
        """How messages name it."""
        if self.kind in C.topology_kinds:
            hosts = self.url.split("://", 1)[-1].rpartition("@")[2].split("/", 1)[0]
            what = "sentinels" if self.kind == "sentinel" else "seeds"
            return f"{C.topology_names[self.kind]} ({what} {hosts})"
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


def started_path(project: Path) -> Path:
    return project / C.infra_dirname / C.started_filename


def read_started(project: Path) -> list[Started]:
    """Every store claimroom started for ``project``, oldest first (unreadable records skipped).

    The file holds ``{"stores": [...]}``; before, it held one record alone, read as a list of one.
    """
    try:
        data = json.loads(started_path(project).read_text())
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


def newest_topology(project: Path) -> Started | None:
    """The Sentinel or Cluster topology claimroom started for ``project``, when it is the
    newest store claimroom started there (``claimroom up --sentinel`` / ``--cluster``)."""
    records = read_started(project)
    return records[-1] if records and records[-1].kind in C.topology_kinds else None


# --- the store the project uses ------------------------------------------------------------


def remembered_fallback(config: Mapping[str, object]) -> str:
    """The file board URL this project fell back to ("" when it did not)."""
    remembered = config.get("fallback_url")
    return remembered if isinstance(remembered, str) else ""


def known_url(project: Path, url: str) -> str:
    """``url`` with the password of the store claimroom started there, when it names none.

    The one place where a started store's password joins a URL: the CLI, the control room
    and doctor pass every store URL through here (``resolve`` does), so ``CLAIMROOM_URL=
    redis://127.0.0.1:PORT/0``, or no URL at all, reaches the project's private store.
    """
    if not is_local(url) or password_of(url):
        return url
    try:
        port = port_of(url)
    except BadInput:
        return url  # the caller reports the bad URL
    record = next((r for r in read_started(project) if r.port == port), None)
    return with_password(url, record.password) if record is not None and record.password else url


def store_url(project: Path, env: Mapping[str, str] | None = None) -> str:
    """The URL of the store the project uses (see the module's docstring), with the password
    of the store claimroom started there (``known_url``); ``BadInput`` for a malformed
    ``CLAIMROOM_URL`` or config."""
    environ = os.environ if env is None else env
    named = environ.get(C.env_url)
    if named:
        return known_url(project, validate.store_url(named))
    fallback = remembered_fallback(load_config(project))
    if fallback:
        return fallback
    topology = newest_topology(project)
    if topology is not None:
        return topology.url
    return known_url(project, local_url(C.default_redis_port))


def namespace(env: Mapping[str, str] | None = None) -> str:
    """``CLAIMROOM_NAMESPACE`` (default ``default``), checked."""
    environ = os.environ if env is None else env
    return validate.namespace(environ.get("CLAIMROOM_NAMESPACE") or "default")
