"""``claimroom topology [--json] [--watch]`` and ``claimroom doctor`` on real topologies, as
an agent or an operator runs them: subprocesses, their output and exit codes.

The shared ``sentinel_topology`` and ``cluster_topology`` are only read; the watch that
follows a failover has a topology of its own.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import TOPOLOGY_PASSWORD
from waiting import until_sync

from claimroom.core import constants as C
from claimroom.core.local_redis import free_port
from claimroom.core.local_topology import LocalCluster, LocalSentinel

CLAIMROOM = str(Path(sys.executable).parent / "claimroom")

pytestmark = pytest.mark.heavy


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLAIMROOM, *args], env=env, capture_output=True, text=True, timeout=60)


def with_url(env: dict[str, str], url: str) -> dict[str, str]:
    return dict(env, CLAIMROOM_URL=url)


def test_topology_json_names_the_sentinels_master(
    cli_env: dict[str, str], sentinel_topology: LocalSentinel
) -> None:
    p = run(with_url(cli_env, sentinel_topology.url), "topology", "--json")
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    master = sentinel_topology.master()
    assert (got["kind"], got["service"], got["master"], got["quorum"]) == (
        "sentinel",
        "claimroom",
        master.address,
        2,
    )
    roles = sorted((n["role"], n["address"], n["up"]) for n in got["nodes"])
    expected = [("master", master.address, True)]
    expected += [("replica", n.address, True) for n in sentinel_topology.nodes if n is not master]
    expected += [("sentinel", s.address, True) for s in sentinel_topology.sentinels]
    assert roles == sorted(expected)
    assert [n["address"] for n in got["nodes"] if n["serves_board"]] == [master.address]


def test_topology_lines_name_the_boards_slot_on_a_cluster(
    cli_env: dict[str, str], cluster_topology: LocalCluster
) -> None:
    p = run(with_url(cli_env, cluster_topology.url), "topology")
    assert p.returncode == 0, p.stderr
    first, *nodes = p.stdout.splitlines()
    data = json.loads(run(with_url(cli_env, cluster_topology.url), "topology", "--json").stdout)
    slot, master = data["slot"], data["master"]
    assert first.startswith(
        f"cluster: master {master} (this board: slot {slot}), state ok, 16384/16384 slots ok"
    )
    # Masters serving slots (a young cluster's node may list a new replica as a master a while).
    masters = [line for line in nodes if line.startswith("master ") and " slots " in line]
    assert len(masters) == len(cluster_topology.masters())
    board = [line for line in masters if line.endswith(f"(this board: slot {slot})")]
    assert len(board) == 1 and master in board[0]
    for shard in cluster_topology.masters():
        ranges = ",".join(f"{lo}-{hi}" for lo, hi in shard.slots)
        line = next(line for line in masters if f"127.0.0.1:{shard.port} " in line)
        assert f"slots {ranges}" in line


def test_topology_of_a_store_that_does_not_answer_exits_5(cli_env: dict[str, str]) -> None:
    home = Path(cli_env["CLAIMROOM_HOME"])
    (home / ".claimroom").mkdir()
    (home / ".claimroom" / "config.json").write_text('{"auto_start": []}')  # nothing may be started
    for url in (f"redis://127.0.0.1:{free_port()}/0", f"redis+sentinel://127.0.0.1:{free_port()}/claimroom"):
        p = run(with_url(cli_env, url), "topology")
        assert p.returncode == 5, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


class Lines:
    """A child's stdout, line by line, read in a thread (a read never blocks the test)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stream = process.stdout
        threading.Thread(target=lambda: [self._queue.put(line) for line in stream], daemon=True).start()

    def until(self, check: Any, what: str, timeout_s: float) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            while not self._queue.empty():
                self.seen.append(self._queue.get())
            return next((d for d in map(json.loads, self.seen) if check(d)), None)

        return until_sync(found, what, timeout_s)


def test_watch_follows_a_failover_until_ctrl_c(cli_env: dict[str, str], tmp_path: Path) -> None:
    with LocalSentinel.start(tmp_path / "sentinel", password=TOPOLOGY_PASSWORD) as topo:
        old = topo.master()
        watch = subprocess.Popen(
            [CLAIMROOM, "topology", "--watch", "--json"],
            env=with_url(cli_env, topo.url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            lines = Lines(watch)
            lines.until(lambda d: d.get("master") == old.address, "the first master", 30)
            topo.kill_master()
            new = topo.wait_failover(old.port)

            def on_new(d: dict[str, Any]) -> bool:
                board = [n for n in d.get("nodes", []) if n["serves_board"]]
                return d.get("master") == new.address and bool(board) and board[0]["up"]

            lines.until(on_new, "the new master printed", C.topology_failover_timeout_s)
            assert all("at_ms" in json.loads(line) for line in lines.seen)
            watch.send_signal(signal.SIGINT)
            assert watch.wait(30) == 130
        finally:
            if watch.poll() is None:
                watch.kill()
                watch.wait()
            assert watch.stderr is not None
            watch.stderr.close()
            assert watch.stdout is not None
            watch.stdout.close()


def test_doctor_names_a_sentinel_topology(cli_env: dict[str, str], sentinel_topology: LocalSentinel) -> None:
    p = run(with_url(cli_env, sentinel_topology.url), "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(p.stdout)["checks"]}
    master = sentinel_topology.master().address
    assert checks["topology"]["status"] == "ok"
    assert checks["topology"]["detail"].startswith(
        "Redis Sentinel, master name 'claimroom': master " + master
    )
    assert checks["master"]["status"] == "ok" and master in checks["master"]["detail"]
    assert checks["replicas"]["status"] == "ok" and "2 of 2 replicas" in checks["replicas"]["detail"]
    assert (
        checks["sentinels"]["status"] == "ok" and "3 of 3 sentinels answer" in checks["sentinels"]["detail"]
    )
    text = run(with_url(cli_env, sentinel_topology.url), "doctor").stdout
    assert any(line.startswith("ok    sentinels      3 of 3 sentinels answer") for line in text.splitlines())
