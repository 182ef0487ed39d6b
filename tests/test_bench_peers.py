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
    results = peers.run_peers(tasks=10, agents=1, trials=1, only=["bullmq", "saq", "arq", "rq"])
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


def test_ratios_to_bullmq_are_held_to_the_goals() -> None:
    bull = peers.PeerResult("bullmq", cycles_per_s=10_000.0, redis_us_per_cycle=50.0)
    one = peers.PeerResult("claimroom", cycles_per_s=12_000.0, redis_us_per_cycle=100.0)
    batched = peers.PeerResult("claimroom, claim_many(8)", cycles_per_s=14_000.0, redis_us_per_cycle=40.0)
    rows = {row.measure: row for row in peers.ratio_rows([one, batched, bull])}
    assert (rows["claimroom / BullMQ: cycles/s"].value, rows["claimroom / BullMQ: cycles/s"].ok) == (
        "1.20",
        "yes",
    )
    assert rows["claimroom / BullMQ: Redis CPU per cycle"].ok == "NO"  # 2.00x
    assert rows["claimroom, claim_many(8) / BullMQ: cycles/s"].ok == "NO"  # 1.40x < 1.5x
    assert rows["claimroom, claim_many(8) / BullMQ: Redis CPU per cycle"].ok == "yes"
    assert "no BullMQ figure" in peers.ratio_rows([one])[0].measure


def test_ratios_are_taken_trial_by_trial_when_the_trials_are_there() -> None:
    # The machine slowed down during the third turn: by the medians claimroom reads at half
    # BullMQ's pace; trial by trial it is 1.1x ahead in two turns of three.
    bull = peers.PeerResult("bullmq", cycles_per_s=8_000.0, redis_us_per_cycle=60.0)
    bull.trials = [(10_000.0, 50.0), (5_000.0, 100.0), (8_000.0, 60.0)]
    mine = peers.PeerResult("claimroom, complete_and_claim", cycles_per_s=5_500.0, redis_us_per_cycle=90.0)
    mine.trials = [(11_000.0, 45.0), (5_500.0, 90.0), (2_000.0, 300.0)]
    rows = {row.measure: row for row in peers.ratio_rows([mine, bull])}
    assert rows["claimroom, complete_and_claim / BullMQ: cycles/s"].value == "1.10"
    assert rows["claimroom, complete_and_claim / BullMQ: Redis CPU per cycle"].value == "0.90"
    each = rows["  claimroom, complete_and_claim: each turn's ratios (cycles/s / Redis CPU)"].value
    assert each == "1.10/0.90 1.10/0.90 0.25/5.00"
    # A trial without its Redis figure: the ratio of the medians instead.
    mine.trials[1] = (5_500.0, None)
    rows = {row.measure: row for row in peers.ratio_rows([mine, bull])}
    assert rows["claimroom, complete_and_claim / BullMQ: Redis CPU per cycle"].value == "1.50"


def test_the_trials_take_turns_with_bullmq_first_in_each() -> None:
    names = ["claimroom", "claimroom, complete_and_claim", "bullmq", "saq"]
    assert peers.turns(names, 2) == [
        "bullmq", "claimroom", "claimroom, complete_and_claim", "saq",
        "bullmq", "claimroom", "claimroom, complete_and_claim", "saq",
    ]  # fmt: skip
    assert peers.turns(["claimroom"], 0) == ["claimroom"]


@pytest.mark.heavy
def test_claimroom_runs_on_the_peers_harness() -> None:
    # The real driver on real redis-servers: throughput, a SIGKILLed holder's task taken
    # over, and a frozen holder's stale completion refused.
    (r,) = peers.run_peers(tasks=300, agents=4, trials=1, only=["claimroom"])[:1]
    assert r.name == "claimroom" and r.cycles_per_s is not None and r.cycles_per_s > 0, r.note
    assert r.orphan == "recovered" and r.orphan_recovery_s is not None and r.orphan_recovery_s < 10
    assert r.zombie == "refused", r.zombie_detail
