"""Store resolution and consent, and the doctor: real Redis servers, real config files.

Every test passes its own free port as the "default local port", so none ever looks at
the Redis on 6379.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from claimroom.core import constants as C
from claimroom.core.errors import BadInput, StoreUnavailable
from claimroom.core.infra import StartOptions, doctor, down, file_board_url, project_root, resolve, up
from claimroom.core.infra.probe import with_password
from claimroom.core.infra.project import read_password
from claimroom.core.local_redis import LocalRedis, free_port

NO_START = StartOptions(methods=())


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".git").mkdir()
    return tmp_path


@pytest.fixture
def nothing_can_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine with no Docker engine and no redis-server on PATH (for this process)."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))


def config(project: Path) -> dict[str, object]:
    return json.loads((project / ".claimroom" / "config.json").read_text())  # type: ignore[no-any-return]


def test_no_consent_non_interactive_is_exit_5_with_guidance(project: Path, nothing_can_start: None) -> None:
    port = free_port()
    with pytest.raises(StoreUnavailable) as err:
        resolve(None, project=project, allow_file_fallback=None, interactive=False, default_port=port)
    message = str(err.value)
    assert err.value.exit_code == 5
    assert "\n" not in message  # the CLI prints one line
    assert f"127.0.0.1:{port}: nothing listens there" in message  # what was tried, what failed
    assert "Docker: the Docker engine is not running" in message
    assert "redis-server: redis-server is not on PATH" in message
    assert "Fix: claimroom up --allow-file-fallback" in message  # the one command that fixes it
    assert not (project / ".claimroom" / "config.json").exists()  # nothing was decided for the user


def test_consent_flag_gives_the_file_board_and_is_remembered(project: Path, nothing_can_start: None) -> None:
    port = free_port()
    first = resolve(None, project=project, allow_file_fallback=True, interactive=False, default_port=port)
    assert first.how == "file"
    assert first.url == file_board_url(project)
    assert first.url.startswith("file:///") and first.url.endswith("/.claimroom/board")
    assert config(project) == {"allow_file_fallback": True, "fallback_url": first.url}
    assert (project / ".claimroom" / "board").is_dir()  # the file store wants it to exist
    again = resolve(None, project=project, interactive=False, default_port=port)
    assert again.url == first.url and again.how == "file"


def test_remembered_consent_in_config_is_used(project: Path) -> None:
    (project / ".claimroom").mkdir()
    (project / ".claimroom" / "config.json").write_text('{"allow_file_fallback": true}')
    got = resolve(None, project=project, interactive=False, default_port=free_port(), options=NO_START)
    assert got.how == "file" and "remembered" in got.detail


def test_the_file_board_stays_chosen_when_a_redis_appears(project: Path, redis_server: LocalRedis) -> None:
    """Agents that fell back to files must not be split from later ones that find a Redis."""
    board = resolve(
        None, project=project, allow_file_fallback=True, default_port=free_port(), options=NO_START
    ).url
    got = resolve(None, project=project, default_port=redis_server.port, options=NO_START)
    assert got.url == board


def test_interactive_answers_are_asked_once_and_remembered(project: Path) -> None:
    questions: list[str] = []

    def no(question: str) -> bool:
        questions.append(question)
        return False

    port = free_port()
    with pytest.raises(StoreUnavailable):
        resolve(None, project=project, interactive=True, default_port=port, options=NO_START, ask=no)
    assert len(questions) == 1 and "Coordinate through files" in questions[0]
    assert config(project)["allow_file_fallback"] is False
    with pytest.raises(StoreUnavailable, match="declined before"):
        resolve(None, project=project, interactive=True, default_port=port, options=NO_START, ask=no)
    assert len(questions) == 1
    # An explicit yes overrides the remembered no.
    got = resolve(None, project=project, allow_file_fallback=True, default_port=port, options=NO_START)
    assert got.how == "file"


def test_interactive_yes(project: Path) -> None:
    got = resolve(
        None,
        project=project,
        interactive=True,
        default_port=free_port(),
        options=NO_START,
        ask=lambda q: True,
    )
    assert got.how == "file" and config(project)["allow_file_fallback"] is True


def test_a_file_url_the_user_sets_is_the_choice(project: Path) -> None:
    got = resolve("file:///srv/board", project=project, interactive=False, default_port=free_port())
    assert got.url == "file:///srv/board" and got.how == "file"


def test_a_redis_on_the_default_port_is_used(project: Path, redis_server: LocalRedis) -> None:
    got = resolve(None, project=project, default_port=redis_server.port, options=NO_START)
    assert (got.how, got.url, got.started) == ("found", redis_server.url, False)


def test_a_named_store_is_never_replaced(project: Path, redis_server: LocalRedis) -> None:
    """A remote CLAIMROOM_URL that is down fails, even with a Redis answering locally."""
    remote = "redis://192.0.2.1:6379/0"  # TEST-NET-1: never answers
    with pytest.raises(StoreUnavailable) as err:
        resolve(remote, project=project, allow_file_fallback=True, default_port=redis_server.port)
    assert "another machine" in str(err.value) and "does not switch" in str(err.value)


def test_a_named_local_store_that_is_down_is_started_there_by_up_only(project: Path) -> None:
    port = free_port()
    url = f"redis://localhost:{port}/3"
    local = StartOptions(methods=("local",))
    with pytest.raises(StoreUnavailable, match="not a store claimroom started"):
        resolve(url, project=project, default_port=free_port(), options=local)
    assert not (project / ".claimroom" / "redis").exists()
    try:
        got = up(url, project=project, default_port=free_port(), options=local)
        # The URL as given (host, database), with the password of the store started there.
        assert (got.how, got.url, got.started) == ("local", with_password(url, read_password(project)), True)
        assert resolve(url, project=project).url == got.url
    finally:
        down(project)


def test_something_else_on_the_default_port_is_not_taken_over(project: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(StoreUnavailable, match="no answer in time"):
            resolve(None, project=project, default_port=port, options=StartOptions(methods=("local",)))


def test_a_broken_config_is_bad_input(project: Path) -> None:
    (project / ".claimroom").mkdir()
    (project / ".claimroom" / "config.json").write_text("{not json")
    with pytest.raises(BadInput, match=r"config\.json is not valid JSON") as err:
        resolve(None, project=project, default_port=free_port(), options=NO_START)
    assert err.value.exit_code == 2


def test_project_root(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    deep = tmp_path / "repo" / "a" / "b"
    deep.mkdir(parents=True)
    assert project_root(deep, env={}) == tmp_path / "repo"
    assert project_root(tmp_path, env={}) == tmp_path
    assert project_root(deep, env={"CLAIMROOM_HOME": str(tmp_path)}) == tmp_path


# --- doctor ----------------------------------------------------------------------------


@pytest.fixture
def careless_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """A Redis set up the way claimroom must not run: no persistence, evicting, no events."""
    server = LocalRedis.start(tmp_path / "careless")
    import redis

    with redis.Redis(port=server.port) as r:
        r.config_set("maxmemory-policy", "allkeys-lru")
        r.config_set("notify-keyspace-events", "")
    yield server
    server.stop()


def test_doctor_names_each_problem_and_its_fix(project: Path, careless_redis: LocalRedis) -> None:
    checks = {c.name: c for c in doctor(careless_redis.url, project=project)}
    assert checks["store"].status == "ok"
    assert checks["eviction"].status == "fail" and "noeviction" in checks["eviction"].fix
    assert checks["persistence"].status == "fail" and "appendonly yes" in checks["persistence"].fix
    assert checks["notifications"].status == "warn"
    assert f"notify-keyspace-events {C.keyspace_events_merged('')}" in checks["notifications"].fix
    assert checks["config"].status == "ok"
    assert {"docker", "redis-server", "version", "latency", "memory"} <= set(checks)
    assert all(c.fix for c in checks.values() if c.status != "ok")


def test_doctor_when_nothing_runs_and_nothing_can_start(project: Path, nothing_can_start: None) -> None:
    checks = {c.name: c for c in doctor(None, project=project, default_port=free_port())}
    assert checks["store"].status == "fail" and checks["store"].fix.startswith("claimroom up")
    assert checks["docker"].status == "warn"
    assert checks["redis-server"].status == "warn"
    assert checks["auto-start"].status == "fail"
    assert json.dumps([c.to_json() for c in checks.values()])  # the CLI's --json form
