"""Plans from outside: ``claimroom plan`` as a user runs it (both backends), ``show``, and a
board dump (``claimroom migrate``) that keeps plans working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_plans import EXAMPLE, REFUSED, add, claim_one, plan_text

from claimroom.core.migrate import migrate
from claimroom.core.models import State
from claimroom.core.store import Store

CLAIMROOM = str(Path(sys.executable).parent / "claimroom")


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLAIMROOM, *args], env=env, input=stdin, capture_output=True, text=True, timeout=30
    )


@pytest.fixture(params=["redis", "file"])
def env(request: pytest.FixtureRequest, cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    if request.param == "file":
        (tmp_path / "board").mkdir()
        return {**cli_env, "CLAIMROOM_URL": f"file://{tmp_path}/board"}
    return cli_env


def count(env: dict[str, str]) -> int:
    p = run(env, "ls", "--json")
    assert p.returncode == 0, p.stderr
    return len(json.loads(p.stdout)["tasks"])


def test_cli_plan_from_a_file_and_from_stdin(env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "plan.json"
    f.write_text(EXAMPLE)
    p = run(env, "plan", str(f), "--json")
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert set(got) == {"parent", "subtasks"} and list(got["subtasks"]) == ["parse", "docs"]
    shown = json.loads(run(env, "show", got["subtasks"]["docs"], "--json").stdout)
    assert shown["paths"] == ["docs/cli.md"] and shown["plan"] == got["parent"]
    p = run(env, "plan", "-", stdin=EXAMPLE)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert (
        lines[0].startswith("parent t") and lines[1].startswith("parse t") and lines[2].startswith("docs t")
    )
    assert count(env) == 6


@pytest.mark.parametrize(("text", "message"), REFUSED[:5])
def test_cli_a_bad_plan_is_exit_2_and_adds_nothing(env: dict[str, str], text: str, message: str) -> None:
    assert run(env, "add", "already here").returncode == 0
    p = run(env, "plan", "-", stdin=text)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr
    assert count(env) == 1


def test_cli_a_planner_plans_under_its_claim(env: dict[str, str]) -> None:
    top = run(env, "add", "plan the port").stdout.strip()
    c = json.loads(run(env, "claim", "--agent", "boss", "--json").stdout)
    token = str(c["token"])
    text = plan_text({"ref": "a", "title": "a"})
    p = run(env, "plan", "-", "--parent", top, "--token", token, "--agent", "eve", stdin=text)
    assert p.returncode != 0 and "boss" in p.stderr  # another agent's claim
    p = run(env, "plan", "-", "--parent", top, "--token", token, "--agent", "boss", "--json", stdin=text)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert got["parent"] == top
    assert run(env, "complete", top, "--token", token).returncode == 0
    assert json.loads(run(env, "show", top, "--json").stdout)["state"] == "blocked"


# --- a board dump (claimroom migrate) keeps plans working -----------------------------------


async def test_a_plan_round_trips_through_migrate(redis_url: str, namespace: str, tmp_path: Path) -> None:
    folder = tmp_path / "board"
    folder.mkdir()
    async with (
        Store.from_url(redis_url, namespace) as red,
        Store.from_url(folder.as_uri(), namespace) as filed,
        Store.from_url(redis_url, namespace + "b") as back,
        Store.from_url(redis_url, namespace + "m") as merged,
    ):
        out = await add(red, EXAMPLE)
        parent, ids = out["parent"], out["subtasks"]
        await red.register("ada", ["python"])
        await red.complete(ids["parse"], await claim_one(red, ids["parse"]))
        await migrate(red, filed)
        await migrate(filed, back)
        await merged.add("already here", requires=["nobody"])
        await migrate(back, merged, merge=True)
        for s, shift in ((filed, 0), (back, 0), (merged, 1)):
            p_id, docs = f"t{int(parent[1:]) + shift}", f"t{int(ids['docs'][1:]) + shift}"
            d = await s.get(docs)
            assert d.paths == ("docs/cli.md",) and d.plan == p_id
            p = await s.get(p_id)
            assert (p.state, p.plan_total, p.plan_left, p.plan_wait) == (State.BLOCKED, 2, 1, True)
            [tree] = (await s.snapshot(sections=["plans"])).plans
            assert tree.parent.id == p_id and [t.id for t in tree.subtasks][-1] == docs
            await s.complete(docs, await claim_one(s, docs))
            assert (await s.get(p_id)).state is State.DONE


def test_cli_show_names_paths_and_a_plans_progress(env: dict[str, str]) -> None:
    got = json.loads(run(env, "plan", "-", "--json", stdin=EXAMPLE).stdout)
    text = run(env, "show", got["subtasks"]["docs"]).stdout
    assert "paths       docs/cli.md" in text
    text = run(env, "show", got["parent"]).stdout
    assert "subtasks    0 of 2 ended" in text
