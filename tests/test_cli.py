"""The agent CLI from outside, as an agent runs it: real processes, a real store."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from waiting import clock_past, until_sync, waits_announced

from claimroom.core import constants
from claimroom.core.local_redis import free_port
from claimroom.core.store import Store

CLAIMROOM = str(Path(sys.executable).parent / "claimroom")
TESTS = str(Path(__file__).parent)


def run(
    env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLAIMROOM, *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout
    )


def ok(env: dict[str, str], *args: str, stdin: str | None = None) -> dict:
    p = run(env, *args, "--json", stdin=stdin)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def event_count(env: dict[str, str]) -> int:
    return len(run(env, "events", "--json").stdout.splitlines())


def test_agent_lifecycle_with_json(cli_env: dict[str, str]) -> None:
    ok(cli_env, "register", "ada", "--can", "python", "--max-claims", "2")
    first = ok(cli_env, "add", "write the parser", "--priority", "2", "--payload", '{"file": "parse.py"}')
    second = ok(cli_env, "add", "test the parser", "--after", first["id"])
    assert second["state"] == "blocked"

    claim = ok(cli_env, "claim", "--agent", "ada", "--ttl", "30")
    assert claim["task"]["id"] == first["id"]
    assert claim["task"]["payload"] == {"file": "parse.py"}
    token = str(claim["token"])

    hb = ok(cli_env, "heartbeat", first["id"], "--token", token, "--progress", "0.5", "--stage", "coding")
    assert hb["deadline_ms"] >= claim["deadline_ms"]
    done = ok(cli_env, "complete", first["id"], "--token", token, "--result", '{"lines": 120}')
    assert done["unblocked"] == [second["id"]]

    shown = ok(cli_env, "show", first["id"])
    assert (shown["state"], shown["result"], shown["stage"]) == ("done", {"lines": 120}, "coding")
    listed = ok(cli_env, "ls", "--state", "queued")
    assert [t["id"] for t in listed["tasks"]] == [second["id"]]
    agents = ok(cli_env, "agents")["agents"]
    assert agents[0]["name"] == "ada" and agents[0]["capabilities"] == ["python"]
    types = [json.loads(line)["type"] for line in run(cli_env, "events", "--json").stdout.splitlines()]
    assert types == ["registered", "added", "added", "claimed", "stage", "ready", "completed"]


def test_plain_output_is_one_line_per_result(cli_env: dict[str, str]) -> None:
    p = run(cli_env, "add", "plain task")
    assert p.returncode == 0 and p.stdout.strip().startswith("t")
    p = run(cli_env, "claim", "--agent", "bob")
    assert p.returncode == 0 and "token=" in p.stdout and "plain task" in p.stdout


def test_payload_from_file_and_stdin(cli_env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "payload.json"
    f.write_text('{"from": "file"}')
    a = ok(cli_env, "add", "from file", "--payload", f"@{f}")
    b = ok(cli_env, "add", "from stdin", "--payload", "-", stdin='{"from": "stdin"}')
    assert ok(cli_env, "show", a["id"])["payload"] == {"from": "file"}
    assert ok(cli_env, "show", b["id"])["payload"] == {"from": "stdin"}


def test_nothing_to_claim_and_no_such_task_exit_3(cli_env: dict[str, str]) -> None:
    p = run(cli_env, "claim", "--agent", "idle")
    assert p.returncode == 3 and "nothing to claim" in p.stderr
    p = run(cli_env, "show", "t999")
    assert p.returncode == 3 and "t999" in p.stderr


def test_stale_token_exits_4_and_changes_nothing(cli_env: dict[str, str]) -> None:
    tid = ok(cli_env, "add", "contested")["id"]
    token = ok(cli_env, "claim", "--agent", "a1")["token"]
    ok(cli_env, "release", tid, "--token", str(token))
    newer = ok(cli_env, "claim", "--agent", "a2")["token"]
    before = event_count(cli_env)
    for args in (
        ("heartbeat", tid, "--token", str(token)),
        ("complete", tid, "--token", str(token), "--result", '"mine"'),
        ("fail", tid, "--token", str(token), "--reason", "x"),
        ("release", tid, "--token", str(token)),
    ):
        p = run(cli_env, *args)
        assert p.returncode == 4, (args, p.stderr)
        assert "lease lost" in p.stderr
    assert event_count(cli_env) == before
    shown = ok(cli_env, "show", tid)
    assert (shown["state"], shown["agent"], shown["token"], shown["result"]) == ("claimed", "a2", newer, None)


BAD_INPUT = [
    (("add", "x", "--priority", "high"), "priority"),
    (("add", "x", "--priority", "5000"), "priority"),
    (("add", ""), "title"),
    (("add", "x", "--payload", "{not json"), "JSON"),
    (("add", "x", "--payload", "NaN"), "JSON"),
    (("add", "x", "--after", "bad id!"), "task id"),
    (("add", "x", "--queue", "a,b"), "queue"),
    (("add", "x", "--max-attempts", "0"), "max attempts"),
    (("claim", "--agent", ""), "agent"),
    (("claim", "--agent", "a", "--ttl", "0"), "ttl"),
    (("claim", "--agent", "a", "--ttl", "-5"), "ttl"),
    (("claim", "--agent", "a", "--ttl", "nan"), "ttl"),
    (("claim", "--agent", "a", "--wait", "-1"), "wait"),
    (("heartbeat", "t1", "--token", "1", "--progress", "1.5"), "progress"),
    (("heartbeat", "t1", "--token", "1", "--progress", "-0.1"), "progress"),
    (("heartbeat", "t1", "--token", "x"), "token"),
    (("heartbeat", "t1"), "token"),
    (("complete", "../etc", "--token", "1"), "task id"),
    (("fail", "t1", "--token", "1", "--reason", " "), "reason"),
    (("register", "bad name"), "agent"),
    (("register", "a", "--max-claims", "0"), "max claims"),
    (("lock", "..", "--agent", "a"), "path"),
    (("lock", "x", "--agent", "a", "--ttl", "0"), "ttl"),
    (("ls", "--state", "sleeping"), "state"),
    (("add", "x", "--payload", "[" * 50_000 + "]" * 50_000), "deeper than 64"),
    (("ls", "--limit", str(2**63)), "limit"),
    (("ls", "--offset", str(2**63)), "offset"),
    (("ls", "--url", "redis://127.0.0.1:abc/0"), "store URL"),
    (("ls", "--url", "redis://[::1/0"), "store URL"),
    (("doctor", "--url", "redis://:secret@127.0.0.1:abc/0"), "store URL"),
    (("reap", "--loop", "--interval", "-1"), "interval"),
    (("reap", "--loop", "--interval", "nan"), "interval"),
    (("events", "--limit", "-5"), "event count"),
    (("heartbeat", "t1", "--token", str(2**64)), "token"),
    (("demo", "--plain", "--seconds", "nan"), "seconds"),
    (("nosuchcommand",), "invalid choice"),
    (("tui", "--theme", "solarized"), "theme"),
    (("tui", "--namespace", "bad ns!"), "namespace"),
]


@pytest.mark.parametrize(("args", "word"), BAD_INPUT, ids=[" ".join(a)[:60] for a, _ in BAD_INPUT])
def test_bad_input_exits_2_with_one_line(cli_env: dict[str, str], args: tuple[str, ...], word: str) -> None:
    before = event_count(cli_env)
    p = run(cli_env, *args)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and word.lower() in lines[0].lower(), p.stderr
    assert "Traceback" not in p.stderr and p.stdout == "" and "secret" not in p.stderr
    assert event_count(cli_env) == before


def test_payload_over_limit_exits_2(cli_env: dict[str, str], tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"blob": "x" * (256 * 1024)}))
    p = run(cli_env, "add", "too big", "--payload", f"@{big}")
    assert p.returncode == 2 and "256 KiB" in p.stderr
    assert ok(cli_env, "ls")["tasks"] == []


def test_missing_payload_file_exits_2(cli_env: dict[str, str]) -> None:
    p = run(cli_env, "add", "x", "--payload", "@/nonexistent/file.json")
    assert p.returncode == 2 and "cannot read payload file" in p.stderr


def test_lock_conflict_exits_6_naming_holder(cli_env: dict[str, str]) -> None:
    ok(cli_env, "lock", "src/app.py", "--agent", "ada")
    p = run(cli_env, "lock", "src", "--agent", "bob")
    assert p.returncode == 6 and "ada" in p.stderr and "src/app.py" in p.stderr
    assert ok(cli_env, "unlock", "src/app.py", "--agent", "ada")["released"] == ["src/app.py"]
    ok(cli_env, "lock", "src", "--agent", "bob")


def test_store_unavailable_exits_5_with_guidance(cli_env: dict[str, str]) -> None:
    # A local URL that is down would be started; with auto-start switched off in the
    # project's config, nothing can start it, and the user is told what to do.
    home = Path(cli_env["CLAIMROOM_HOME"])
    (home / ".claimroom").mkdir()
    (home / ".claimroom" / "config.json").write_text('{"auto_start": []}')
    env = dict(cli_env, CLAIMROOM_URL=f"redis://127.0.0.1:{free_port()}/0")
    p = run(env, "add", "x")
    assert p.returncode == 5, p.stderr
    assert "store unavailable" in p.stderr and "claimroom up" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_doctor_reports_on_the_store(cli_env: dict[str, str]) -> None:
    p = run(cli_env, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(p.stdout)["checks"]}
    assert checks, p.stderr
    assert any(c["status"] == "ok" and "answers" in c["detail"] for c in checks.values()), checks


def test_up_reports_a_configured_store(cli_env: dict[str, str]) -> None:
    r = ok(cli_env, "up")
    assert (r["url"], r["how"]) == (cli_env["CLAIMROOM_URL"], "configured")


def test_unsupported_url_exits_2(cli_env: dict[str, str]) -> None:
    p = run(dict(cli_env, CLAIMROOM_URL="http://example"), "ls")
    assert p.returncode == 2 and "unsupported store URL" in p.stderr


# ``claimroom claim`` in a process of its own with two test hooks: it says each time it
# starts waiting for a hint, and its periodic re-check is ten minutes away, so that only the
# hint can end its wait in time.
WAITING_CLAIM = r"""
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from waiting import announce_waits
from claimroom.core import constants
from claimroom.core.entry import main
constants.wait_recheck_s = 600.0
announce_waits(Path(sys.argv[2]))
sys.exit(main(sys.argv[3:]))
"""


def test_claim_wait_wakes_on_new_task(cli_env: dict[str, str], tmp_path: Path) -> None:
    marker = tmp_path / "waits"
    waiter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WAITING_CLAIM,
            TESTS,
            str(marker),
            "claim",
            "--agent",
            "w",
            "--wait",
            "60",
            "--json",
        ],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        until_sync(
            lambda: waits_announced(marker) or waiter.poll() is not None, "the claimer waiting for a hint", 30
        )
        assert waiter.poll() is None, waiter.communicate()
        channel = constants.claimable_channel(cli_env["CLAIMROOM_NAMESPACE"])
        with redis.Redis.from_url(cli_env["CLAIMROOM_URL"], decode_responses=True) as r:
            assert r.pubsub_numsub(channel) == [(channel, 1)]  # really subscribed
        tid = ok(cli_env, "add", "arrives later")["id"]
        try:
            out, err = waiter.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("the hint of the new task did not wake the waiting claimer")
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()
    assert waiter.returncode == 0, err
    assert json.loads(out)["task"]["id"] == tid
    assert waits_announced(marker) == 1  # it waited once, and the hint ended that wait


def test_reap_reports_recovery(cli_env: dict[str, str]) -> None:
    ok(cli_env, "add", "short lease")
    deadline = ok(cli_env, "claim", "--agent", "gone", "--ttl", "0.2")["deadline_ms"]

    async def expired() -> None:
        async with Store.from_url(cli_env["CLAIMROOM_URL"], cli_env["CLAIMROOM_NAMESPACE"]) as s:
            await clock_past(s, deadline)

    asyncio.run(expired())
    assert ok(cli_env, "reap")["requeued"] == ["t1"]


def test_demo_shows_a_crash_recovered(tmp_path: Path) -> None:
    p = subprocess.run([CLAIMROOM, "demo"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "crashes while holding" in p.stdout
    assert "expired" in p.stdout and "outcome=queued" in p.stdout
    assert "end of demo: 6 done" in p.stdout


def test_migrate_redis_to_file_and_refuse_non_empty(cli_env: dict[str, str], tmp_path: Path) -> None:
    tid = ok(cli_env, "add", "carried over", "--priority", "3")["id"]
    token = ok(cli_env, "claim", "--agent", "ada", "--ttl", "60")["token"]
    board = (tmp_path / "board").as_uri()
    moved = ok(cli_env, "migrate", "--from", cli_env["CLAIMROOM_URL"], "--to", board)["moved"]
    assert moved["tasks"] == 1
    on_file = dict(cli_env, CLAIMROOM_URL=board)
    shown = ok(on_file, "show", tid)
    assert (shown["state"], shown["agent"], shown["token"]) == ("claimed", "ada", token)
    ok(on_file, "complete", tid, "--token", str(token))  # the live claim keeps working there
    p = run(cli_env, "migrate", "--from", cli_env["CLAIMROOM_URL"], "--to", board)
    assert p.returncode == 6, p.stderr
    assert "--merge" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_a_closed_standard_input_is_no_crash(cli_env: dict[str, str]) -> None:
    """An agent may run commands with standard input closed (``<&-``; Python's sys.stdin is
    then None): they work, and a payload to come from it is bad input."""

    def closed_stdin(*args: str) -> subprocess.CompletedProcess[str]:
        line = " ".join(f"'{a}'" for a in (CLAIMROOM, *args))
        return subprocess.run(
            ["sh", "-c", f"exec {line} <&-"], env=cli_env, capture_output=True, text=True, timeout=30
        )

    assert closed_stdin("add", "x").returncode == 0
    p = closed_stdin("add", "y", "--payload", "-")
    assert p.returncode == 2 and "standard input" in p.stderr and "Traceback" not in p.stderr
    assert [t["title"] for t in ok(cli_env, "ls")["tasks"]] == ["x"]
