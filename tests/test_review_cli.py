"""``complete --review`` and ``claimroom review`` as an agent and an operator run them: real
processes on both backends, exit codes as the contract says."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from claimroom.core import constants
from claimroom.core.models import State
from claimroom.core.store import Store

CLAIMROOM = str(Path(sys.executable).parent / "claimroom")


@pytest.fixture
def env(store_url: str, namespace: str, tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.pop("CLAIMROOM_TOKEN", None)
    e |= {"CLAIMROOM_URL": store_url, "CLAIMROOM_NAMESPACE": namespace}
    home = tmp_path / "project"
    home.mkdir(exist_ok=True)
    e["CLAIMROOM_HOME"] = str(home)
    return e


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLAIMROOM, *args], env=env, capture_output=True, text=True, timeout=30)


def ok(env: dict[str, str], *args: str) -> dict:
    p = run(env, *args, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def delivered(env: dict[str, str]) -> tuple[str, str, int]:
    ok(env, "register", "w")
    ok(env, "register", "rev", "--can", constants.review_capability)
    tid = ok(env, "add", "login page")["id"]
    dep = ok(env, "add", "ship it", "--after", tid)["id"]
    claim = ok(env, "claim", "--agent", "w")
    token = claim["token"]
    out = ok(env, "complete", tid, "--token", str(token), "--review", "feature/login")
    assert out == {"task": tid, "state": "review", "unblocked": []}
    return tid, dep, token


def test_deliver_then_accept_by_an_agent(env: dict[str, str]) -> None:
    tid, dep, token = delivered(env)
    shown = ok(env, "show", tid)
    assert (shown["state"], shown["review_ref"], shown["agent"]) == ("review", "feature/login", "w")
    assert [t["id"] for t in ok(env, "ls", "--state", "review")["tasks"]] == [tid]
    assert "feature/login, delivered by w" in run(env, "show", tid).stdout
    stale = run(env, "heartbeat", tid, "--token", str(token))
    assert stale.returncode == 4, stale.stderr
    out = ok(env, "review", tid, "--accept", "--agent", "rev")
    assert out == {"task": tid, "state": "done", "verdict": "accept", "reviewer": "rev", "unblocked": [dep]}
    assert ok(env, "show", dep)["state"] == "queued"


def test_return_by_the_operator_and_refusals(env: dict[str, str]) -> None:
    tid, dep, _ = delivered(env)
    ok(env, "register", "plain")
    p = run(env, "review", tid, "--accept", "--agent", "plain")
    assert p.returncode == 6 and "lacks the review capability" in p.stderr
    ok(env, "register", "w", "--can", constants.review_capability)
    p = run(env, "review", tid, "--return", "redo", "--agent", "w")
    assert p.returncode == 6 and "its own delivery" in p.stderr
    p = run(env, "review", tid, "--return", "  ")
    assert p.returncode == 2 and "needs a note" in p.stderr
    p = run(env, "review", tid)
    assert p.returncode == 2  # --accept or --return: one is required
    assert ok(env, "show", tid)["state"] == "review"
    out = ok(env, "review", tid, "--return", "handle the empty password")
    assert (out["state"], out["reviewer"]) == ("queued", getpass.getuser())
    task = ok(env, "show", tid)
    assert task["checkpoint"] == constants.review_note_prefix + "handle the empty password"
    p = run(env, "review", tid, "--accept")
    assert p.returncode == 6 and "does not apply to a queued task" in p.stderr
    p = run(env, "review", "t999", "--accept")
    assert p.returncode == 3
    events = [json.loads(x) for x in run(env, "events", "--task", tid, "--json").stdout.splitlines()]
    returned = [e for e in events if e["type"] == "returned"]
    assert len(returned) == 1 and returned[0]["operator"] == getpass.getuser()
    assert ok(env, "show", dep)["state"] == "blocked"


def test_bad_review_reference_exits_2(env: dict[str, str]) -> None:
    ok(env, "add", "x")
    claim = ok(env, "claim", "--agent", "w")
    p = run(env, "complete", claim["task"]["id"], "--token", str(claim["token"]), "--review", "")
    assert p.returncode == 2 and "review reference is empty" in p.stderr
    assert ok(env, "show", claim["task"]["id"])["state"] == "claimed"


async def test_under_a_token_the_reviewer_is_the_token(env: dict[str, str], store: Store) -> None:
    tid, _, _ = delivered(env)
    rev = run(env, "token", "create", "--agent", "rev", "--role", "worker").stdout.strip()
    p = run(env | {"CLAIMROOM_TOKEN": rev}, "review", tid, "--accept", "--agent", "someone")
    assert p.returncode == 7 and "contradicts CLAIMROOM_TOKEN" in p.stderr
    out = ok(env | {"CLAIMROOM_TOKEN": rev}, "review", tid, "--accept")
    assert (out["reviewer"], out["state"]) == ("rev", "done")
    assert (await store.get(tid)).state is State.DONE
