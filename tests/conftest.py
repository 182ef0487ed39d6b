"""Shared fixtures: a private redis-server per test session, a fresh namespace per test.

Tests never use the Redis on 6379 nor flush anything: each test gets its own namespace
on a server this session started on a free port.
"""

from __future__ import annotations

import compileall
import gc
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from claimroom.core.local_redis import LocalRedis
from claimroom.core.local_topology import LocalCluster, LocalSentinel
from claimroom.core.store import Store

# --- running in parallel (pytest-xdist) ------------------------------------------------------
#
# ``./dev test`` runs one xdist worker per core with ``--dist loadgroup`` (pyproject.toml
# addopts; ``-n 0`` runs serially). Each worker is its own process with its own
# ``redis-server`` (``redis_server`` below), so tests share nothing across workers, and tests
# are handed out one at a time, except for the tests of an ``xdist_group``, which all go to
# one worker, in order, one after another.
#
# One such group, HEAVY, holds every test that loads the machine (many processes, a build,
# a Docker engine): the worker that gets it runs them one at a time while the other workers
# run the light tests, so two heavy tests never load the machine at once. A test joins it
#   - by the ``heavy`` marker: ``@pytest.mark.heavy`` on the test, or
#     ``pytestmark = pytest.mark.heavy`` for a whole module (which also builds the module's
#     scoped fixtures once, in that one worker, rather than once per worker); use it for a
#     test that starts several processes or servers (a Sentinel or Cluster topology too);
#   - by using the ``docker_engine`` fixture (directly or through another fixture): the
#     engine the session fixture may start (tests/infra_image.py) is then started, shared
#     and stopped by one process, never stopped under another worker's containers.
# The group is serial, so its total time is a floor under the suite's: keep heavy tests lean.
# Whatever the load, a test waits on conditions with deadlines (tests/waiting.py), and a
# timing it asserts must not depend on how busy the machine is.
HEAVY = "heavy"


def runs_in_the_heavy_group(item: pytest.Item) -> bool:
    heavy = item.get_closest_marker("heavy") is not None
    return heavy or "docker_engine" in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if runs_in_the_heavy_group(item):
            item.add_marker(pytest.mark.xdist_group(HEAVY))


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


@pytest.hookimpl(tryfirst=True)  # first: pytest looks for unraisables at the end of teardown
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """A failed test's leftovers (a subprocess's pipes an assertion left open, say) are
    collected now, so that their ResourceWarnings fail this test rather than whichever later
    test of the worker happens to run the garbage collector."""
    if item.stash.get(FAILED, False):
        for name in ("last_exc", "last_type", "last_value", "last_traceback"):  # hold its frames
            if hasattr(sys, name):
                setattr(sys, name, None)
        gc.collect()


ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """Bytecode for claimroom's own modules, written once before the tests start. The suite
    starts the ``claimroom`` command about two thousand times, and with
    PYTHONDONTWRITEBYTECODE set (as some machines do) each start compiled the modules it
    imports again: a quarter of its CPU (0.22 -> 0.16 s a command). __pycache__ is ignored
    by git; Python checks each file's stamp, so an edited module is never run stale."""
    if not hasattr(config, "workerinput"):  # the controller, or a run without workers
        for folder in ("core", "tui", "themes"):
            compileall.compile_dir(ROOT / folder, quiet=1)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    server = LocalRedis.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: LocalRedis) -> str:
    return redis_server.url


@pytest.fixture
def namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]


# The conformance suite: every test that takes ``store`` (or ``store_url``) runs once per
# backend. A test that truly needs Redis itself takes ``redis_store`` or ``redis_url``.
BACKENDS = ("redis", "file")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of the store under test: the session's redis-server, or a fresh directory."""
    if backend == "redis":
        return str(request.getfixturevalue("redis_url"))
    folder = tmp_path / "board"
    folder.mkdir()
    return folder.as_uri()


@pytest.fixture
async def store(store_url: str, namespace: str) -> AsyncIterator[Store]:
    s = Store.from_url(store_url, namespace)
    yield s
    await s.close()


@pytest.fixture
async def redis_store(redis_url: str, namespace: str) -> AsyncIterator[Store]:
    s = Store.from_url(redis_url, namespace)
    yield s
    await s.close()


@pytest.fixture
def cli_env(redis_url: str, namespace: str, tmp_path: Path) -> dict[str, str]:
    """Environment for running the ``claimroom`` command against this test's board.

    CLAIMROOM_HOME points the project (its .claimroom/ config) at a fresh directory, so a
    test never reads or writes the repository's own.
    """
    env = dict(os.environ)
    env["CLAIMROOM_URL"] = redis_url
    env["CLAIMROOM_NAMESPACE"] = namespace
    home = tmp_path / "project"
    home.mkdir(exist_ok=True)
    env["CLAIMROOM_HOME"] = str(home)
    env.pop("NO_COLOR", None)
    return env


# --- local Redis Sentinel and Redis Cluster topologies (core/local_topology.py) -------------------
# One of each per session (or xdist worker), started on first use (~2.5 s each) and only READ:
# write keys in your own namespace, but never kill, restart or reconfigure a node. A test that
# does (a failover, a chaos run) starts its own: `with LocalSentinel.start(tmp_path / "s",
# password=...) as topo:` (or LocalCluster), and marks itself pytest.mark.heavy.
TOPOLOGY_PASSWORD = "topology-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def sentinel_topology() -> Iterator[LocalSentinel]:
    """A master, 2 replicas, 3 sentinels (master name ``claimroom``), with a password; ``.url``."""
    with LocalSentinel.start(password=TOPOLOGY_PASSWORD) as topology:
        yield topology


@pytest.fixture(scope="session")
def cluster_topology() -> Iterator[LocalCluster]:
    """3 masters with a replica each, every slot assigned, with a password; ``.url``."""
    with LocalCluster.start(password=TOPOLOGY_PASSWORD) as topology:
        yield topology
