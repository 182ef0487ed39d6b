"""`claimroom complete --next`: finish a task and claim the next in one command (real processes)."""

from __future__ import annotations

from test_cli import ok, run


def test_complete_next_finishes_and_claims_the_unblocked_task(cli_env: dict[str, str]) -> None:
    first = ok(cli_env, "add", "write the parser", "--priority", "2")["id"]
    second = ok(cli_env, "add", "test the parser", "--after", first)["id"]
    claim = ok(cli_env, "claim", "--agent", "ada", "--ttl", "60")
    got = ok(
        cli_env, "complete", first, "--token", str(claim["token"]), "--next", "--agent", "ada", "--ttl", "30"
    )
    assert (got["task"], got["state"], got["unblocked"]) == (first, "done", [second])
    nxt = got["next"]
    assert nxt["task"]["id"] == second and nxt["token"] > claim["token"] and nxt["task"]["agent"] == "ada"
    assert nxt["task"]["ttl_ms"] == 30_000
    assert ok(cli_env, "show", second)["state"] == "claimed"
    # Nothing left: the completion stands, next is null, exit 0; the text says why.
    p = run(cli_env, "complete", second, "--token", str(nxt["token"]), "--next", "--agent", "ada")
    assert p.returncode == 0, p.stderr
    assert "done; nothing to claim (empty)" in p.stdout
    assert ok(cli_env, "show", second)["state"] == "done"


def test_complete_next_refuses_bad_combinations_with_one_line(cli_env: dict[str, str]) -> None:
    tid = ok(cli_env, "add", "x")["id"]
    token = str(ok(cli_env, "claim", "--agent", "ada")["token"])
    cases = [
        (("--next",), "name the agent"),  # no --agent and no CLAIMROOM_TOKEN
        (("--next", "--agent", "ada", "--review", "main"), "--review"),
        (("--agent", "ada"), "--next"),  # --agent means nothing without --next
        (("--next", "--agent", "ada", "--ttl", "-1"), "ttl"),
    ]
    for extra, says in cases:
        p = run(cli_env, "complete", tid, "--token", token, *extra)
        assert p.returncode == 2, (extra, p.stderr)
        assert says in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert ok(cli_env, "show", tid)["state"] == "claimed"  # nothing happened
    # Another agent's claim: forbidden (exit 7, rule 11), and nothing claimed for bob.
    waiting = ok(cli_env, "add", "waiting")["id"]
    p = run(cli_env, "complete", tid, "--token", token, "--next", "--agent", "bob")
    assert p.returncode == 7 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert ok(cli_env, "show", waiting)["state"] == "queued"
    assert ok(cli_env, "show", tid)["state"] == "claimed"


def test_complete_next_acts_as_the_tokens_agent(cli_env: dict[str, str]) -> None:
    made = ok(cli_env, "token", "create", "--agent", "ada", "--role", "worker")
    as_ada = cli_env | {"CLAIMROOM_TOKEN": made["token"]}
    ids = [ok(cli_env, "add", f"t{i}")["id"] for i in range(2)]
    claim = ok(as_ada, "claim")
    got = ok(as_ada, "complete", claim["task"]["id"], "--token", str(claim["token"]), "--next")
    assert got["next"]["task"]["id"] == ids[1] and got["next"]["task"]["agent"] == "ada"
    # Naming another agent than the token's is refused (audited), and nothing happens.
    p = run(as_ada, "complete", ids[1], "--token", str(got["next"]["token"]), "--next", "--agent", "bob")
    assert p.returncode == 7 and "contradicts" in p.stderr, p.stderr
    assert ok(cli_env, "show", ids[1])["state"] == "claimed"
