"""Tokens and identity through the real ``claimroom`` command, on both backends: ``token
create|ls|revoke``, ``register --session``, and ``CLAIMROOM_TOKEN`` making the CLI act as
its agent (exit 7 for another's claim or lock, or a role that may not; audited, no change)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CLAIMROOM = str(Path(sys.executable).parent / "claimroom")


@pytest.fixture
def env(store_url: str, namespace: str, tmp_path: Path) -> dict[str, str]:
    """The command's environment: this test's board (Redis or files), no token."""
    import os

    e = dict(os.environ)
    e.pop("CLAIMROOM_TOKEN", None)
    home = tmp_path / "project"
    home.mkdir(exist_ok=True)
    e |= {"CLAIMROOM_URL": store_url, "CLAIMROOM_NAMESPACE": namespace, "CLAIMROOM_HOME": str(home)}
    return e


def run(env: dict[str, str], *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    e = env if token is None else env | {"CLAIMROOM_TOKEN": token}
    return subprocess.run([CLAIMROOM, *args], env=e, capture_output=True, text=True, timeout=60)


def ok(env: dict[str, str], *args: str, token: str | None = None) -> dict:
    p = run(env, *args, "--json", token=token)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def refused(p: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert text in p.stderr, p.stderr


def events(env: dict[str, str], *args: str) -> list[dict]:
    return [json.loads(line) for line in run(env, "events", "--json", *args).stdout.splitlines()]


def test_token_create_ls_revoke(env: dict[str, str]) -> None:
    made = ok(env, "token", "create", "--agent", "bob", "--role", "worker")
    assert made["agent"] == "bob" and made["role"] == "worker" and made["token"].startswith("crm_")
    p = run(env, "token", "create", "--agent", "lead", "--role", "operator")
    assert p.returncode == 0
    plain = p.stdout.strip()  # the token alone on stdout (so `$(claimroom token create ...)` works)
    assert plain.startswith("crm_") and len(plain) == 47 and "shown only this once" in p.stderr

    listed = ok(env, "token", "ls")["tokens"]
    assert [(t["agent"], t["role"], t["hint"]) for t in listed] == [
        ("bob", "worker", made["token"][:8]), ("lead", "operator", plain[:8]),
    ]  # fmt: skip
    p = run(env, "token", "ls")
    assert p.returncode == 0 and "bob" in p.stdout and "operator" in p.stdout
    assert made["token"] not in p.stdout and plain not in p.stdout

    assert ok(env, "token", "revoke", "bob") == {"agent": "bob", "revoked": 1}
    refused(run(env, "token", "revoke", "bob"), 3, "bob has no tokens to revoke")
    assert [t["agent"] for t in ok(env, "token", "ls")["tokens"]] == ["lead"]
    assert [e["type"] for e in events(env)] == ["token-created", "token-created", "token-revoked"]


def test_token_bad_input_is_exit_2(env: dict[str, str]) -> None:
    refused(run(env, "token", "create", "--agent", "bob", "--role", "admin"), 2, "unknown role 'admin'")
    refused(run(env, "token", "create", "--agent", "bo b", "--role", "worker"), 2, "invalid agent name")
    refused(run(env, "token", "create", "--agent", "x\x1b[2J", "--role", "worker"), 2, "control character")
    refused(run(env, "token", "create", "--role", "worker"), 2, "--agent")
    refused(run(env, "token"), 2, "ACTION")
    refused(run(env, "token", "revoke", "a b"), 2, "invalid agent name")
    assert ok(env, "token", "ls") == {"tokens": []}


def test_a_token_acts_only_on_its_own_claims(env: dict[str, str]) -> None:
    bob = ok(env, "token", "create", "--agent", "bob", "--role", "worker")["token"]
    tid = ok(env, "add", "ada's work")["id"]
    claim = ok(env, "claim", "--agent", "ada")
    token = str(claim["token"])
    before = ok(env, "show", tid)

    for args in (
        ("complete", tid, "--token", token),
        ("fail", tid, "--token", token, "--reason", "no", "--fatal"),
        ("release", tid, "--token", token),
        ("heartbeat", tid, "--token", token, "--progress", "0.9"),
    ):
        refused(run(env, *args, token=bob), 7, f"{tid} is claimed by ada, not bob")
    assert ok(env, "show", tid) == before
    mine = [e for e in events(env, "--task", tid) if e["type"] == "refused"]
    assert [(e["agent"], e["data"]["call"], e["data"]["via"]) for e in mine] == [
        ("bob", call, "cli") for call in ("complete", "fail", "release", "heartbeat")
    ]

    # Without the token the CLI is direct store access, as before (rule 11).
    ok(env, "complete", tid, "--token", token)


def test_a_token_is_its_agent_and_no_other(env: dict[str, str]) -> None:
    bob = ok(env, "token", "create", "--agent", "bob", "--role", "worker")["token"]
    ok(env, "add", "bob's work")
    refused(run(env, "claim", "--agent", "ada", token=bob), 7, "claim as ada contradicts CLAIMROOM_TOKEN")
    refused(run(env, "lock", "src", "--agent", "ada", token=bob), 7, "contradicts CLAIMROOM_TOKEN")
    refused(run(env, "register", "ada", token=bob), 7, "contradicts CLAIMROOM_TOKEN")
    assert ok(env, "agents")["agents"] == []

    claim = ok(env, "claim", token=bob)  # no --agent: the token's
    assert claim["task"]["agent"] == "bob"
    # Naming itself is fine: this claim is bob's own, refused only for his capacity.
    refused(run(env, "claim", "--agent", "bob", token=bob), 3, "bob already holds its maximum")
    tid, token = claim["task"]["id"], str(claim["token"])
    ok(env, "lock", "src/app.py", "--task", tid, token=bob)
    ok(env, "heartbeat", tid, "--token", token, "--stage", "coding", token=bob)
    assert ok(env, "complete", tid, "--token", token, token=bob)["state"] == "done"
    types = [(e["type"], e.get("agent", "")) for e in events(env)]
    assert ("claimed", "bob") in types and ("completed", "bob") in types and ("locked", "bob") in types
    assert [e["data"]["call"] for e in events(env) if e["type"] == "refused"] == ["claim", "lock", "register"]


def test_a_tokens_role_limits_the_cli(env: dict[str, str]) -> None:
    bob = ok(env, "token", "create", "--agent", "bob", "--role", "worker")["token"]
    pam = ok(env, "token", "create", "--agent", "pam", "--role", "planner")["token"]
    lead = ok(env, "token", "create", "--agent", "lead", "--role", "operator")["token"]
    refused(run(env, "add", "x", token=bob), 7, "bob is a worker: add needs the planner role")
    assert ok(env, "ls")["tasks"] == []
    tid = ok(env, "add", "planned", token=pam)["id"]
    added = next(e for e in events(env) if e["type"] == "added")
    assert (added["task"], added["agent"]) == (tid, "pam")

    # Tokens are an operator's to make: a worker must not mint itself an operator's token.
    mint = run(env, "token", "create", "--agent", "bob", "--role", "operator", token=bob)
    refused(mint, 7, "operator role")
    refused(run(env, "token", "revoke", "lead", token=pam), 7, "operator role")
    refused(run(env, "token", "ls", token=bob), 7, "operator role")
    refused(run(env, "retention", "--keep-done", "5", token=pam), 7, "operator role")
    assert len(ok(env, "token", "ls", token=lead)["tokens"]) == 3
    ok(env, "token", "create", "--agent", "carol", "--role", "worker", token=lead)
    ok(env, "retention", "--keep-done", "5", token=lead)
    ok(env, "retention", token=bob)  # showing the settings is a read


def test_an_unknown_token_is_refused(env: dict[str, str]) -> None:
    ok(env, "add", "x")
    for bad in ("crm_" + "A" * 43, "nonsense", ""):
        refused(run(env, "claim", token=bad), 7, "CLAIMROOM_TOKEN is not a token of this board")
    revoked = ok(env, "token", "create", "--agent", "bob", "--role", "worker")["token"]
    ok(env, "token", "revoke", "bob")
    refused(run(env, "ls", token=revoked), 7, "not a token of this board")
    assert ok(env, "ls")["tasks"][0]["state"] == "queued"


def test_unlocking_anothers_lock_under_a_token(env: dict[str, str]) -> None:
    bob = ok(env, "token", "create", "--agent", "bob", "--role", "worker")["token"]
    ok(env, "lock", "src", "--agent", "ada")
    refused(run(env, "unlock", "src", token=bob), 7, "src is locked by ada, not bob")
    assert ok(env, "unlock", "src", "--agent", "bob") == {"released": []}  # direct: passed over, as before
    p = run(env, "unlock", "src", "--agent", "ada")
    assert p.returncode == 0 and "unlocked src" in p.stdout


def test_register_with_a_session(env: dict[str, str]) -> None:
    session = "3f2b8c1e-5d4a-4e7b-9c61-0a8f2d7e4b13"
    assert ok(env, "register", "ada", "--can", "python", "--session", session)["session"] == session
    (agent,) = ok(env, "agents")["agents"]
    assert agent["session"] == session
    p = run(env, "agents")
    assert f"session {session}" in p.stdout
    refused(run(env, "register", "ada", "--session", "a b"), 2, "invalid session")
    refused(run(env, "register"), 2, "name the agent")
    bob = ok(env, "token", "create", "--agent", "bob", "--role", "worker")["token"]
    assert ok(env, "register", "--session", "s-2", token=bob)["agent"] == "bob"
    assert {a["name"]: a["session"] for a in ok(env, "agents")["agents"]} == {"ada": session, "bob": "s-2"}
