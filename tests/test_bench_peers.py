"""bench/_claims_peers.py without the network: a driver's result line, the "not installed"
path, the zombie verdict and the table's rows. Installing and running the peers is the
bench's part (bench/peers/setup), never the suite's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import _claims_peers as peers  # noqa: E402  (bench/ is not a package)

LINE = json.dumps(
    {
        "peer": "bullmq",
        "version": "6.7.0",
        "tasks": 20000,
        "seconds": 2.5,
        "cycles_per_s": 8000.0,
        "worker_cpu_s": 1.4,
        "note": "one Worker, concurrency 10",
    }
)


def test_a_driver_line_is_parsed_and_checked() -> None:
    assert peers.parse_result(LINE)["cycles_per_s"] == 8000.0
    broken = json.loads(LINE)
    del broken["worker_cpu_s"]
    with pytest.raises(ValueError, match="worker_cpu_s"):
        peers.parse_result(json.dumps(broken))


def test_an_empty_peers_dir_says_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAIMROOM_PEERS_DIR", str(tmp_path))
    results = peers.run_peers(tasks=10, agents=1, trials=1)
    assert [r.name.split(",")[0] for r in results] == ["bullmq", "saq", "arq", "arq", "rq"]
    for r in results:
        assert r.cycles_per_s is None
        assert r.note == "not installed: run bench/peers/setup"
    rows = peers.peer_rows(results)
    assert len(rows) == len(results)
    assert all("not installed: run bench/peers/setup" in row.measure for row in rows)


def test_the_zombie_verdict_follows_the_stored_result() -> None:
    refused = peers.judge({"state": "completed", "result": "fresh"}, {"event": "error", "error": "lock"})
    assert refused[0] == "refused" and "error: lock" in refused[1]
    assert peers.judge({"state": "complete", "result": "zombie"}, {"event": "completed"})[0] == "accepted"
    # Counted twice is accepted too, whichever result the store shows last.
    assert peers.judge({"state": "finished", "result": "fresh", "completions": 2}, None)[0] == "accepted"


def test_rows_of_a_measured_peer() -> None:
    r = peers.PeerResult(
        "bullmq", "6.7.0", 20000, 8000.0, 70.0, 60.0, 4.0, "recovered", "refused", "stored completed", "n"
    )
    rows = peers.peer_rows([r, peers.PeerResult("rq", orphan="never (not in 75 s)", cycles_per_s=400.0)])
    assert [row.value for row in rows[:4]] == ["8,000", "70 / 60", "4.0", "refused"]
    assert rows[6].value == "never"
