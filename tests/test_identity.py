"""Identity on both backends: bearer tokens (only a hash on the board), roles, and an agent
acting only on its own claims and locks, every refusal audited and changing nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oldboards import undo_since_7

from claimroom.core import constants as C
from claimroom.core.acting import Acting
from claimroom.core.errors import BadInput, Forbidden, LeaseLost, StoreUnavailable
from claimroom.core.file.schema import SCHEMA_VERSION, db_path
from claimroom.core.identity import Identity, Role
from claimroom.core.models import State
from claimroom.core.redis.store import RedisStore
from claimroom.core.store import Store, TaskSpec
from claimroom.core.tokens import create_token, list_tokens, resolve_token, revoke_tokens, well_formed


def as_(store: Store, agent: str, role: Role = Role.WORKER, **kw: str) -> Acting:
    return Acting(store, Identity(agent, role, **kw))


async def board_text(store: Store) -> str:
    """Everything the board holds, as text: every key and value of the namespace on Redis,
    the database file and its WAL on the file store."""
    if isinstance(store, RedisStore):
        r, parts = store._redis, []  # raw keys: every key the namespace holds, whatever wrote it
        async for key in r.scan_iter(match=C.prefix(store.namespace) + "*"):
            kind = await r.type(key)
            if kind == "hash":
                value: Any = await r.hgetall(key)
            elif kind == "stream":
                value = await r.xrange(key)
            elif kind == "list":
                value = await r.lrange(key, 0, -1)
            elif kind == "set":
                value = await r.smembers(key)
            elif kind == "zset":
                value = await r.zrange(key, 0, -1, withscores=True)
            else:
                value = await r.get(key)
            parts.append(f"{key} {value!r}")
        return "\n".join(parts)
    path = db_path(store.url)
    return "".join(p.read_bytes().decode("latin-1") for p in (path, Path(f"{path}-wal")) if p.exists())


async def refused(store: Store) -> list[Any]:
    return [e for e in await store.events() if e.type == "refused"]


# --- tokens ----------------------------------------------------------------------------


async def test_a_token_resolves_to_its_agent_until_revoked(store: Store) -> None:
    bob = await create_token(store, "bob", "worker")
    bob2 = await create_token(store, "bob", Role.PLANNER)
    op = await create_token(store, "lead", "operator")
    assert well_formed(bob) and bob.startswith("crm_") and len(bob) == 47
    assert len({bob, bob2, op}) == 3
    assert await resolve_token(store, bob) == Identity("bob", Role.WORKER)
    assert await resolve_token(store, bob2) == Identity("bob", Role.PLANNER)
    assert await resolve_token(store, op) == Identity("lead", Role.OPERATOR)

    listed = await list_tokens(store)
    # By agent, then age (two made in the same ms: by hint).
    assert [t.agent for t in listed] == ["bob", "bob", "lead"]
    assert {(t.agent, t.role, t.hint) for t in listed} == {
        ("bob", Role.WORKER, bob[:8]),
        ("bob", Role.PLANNER, bob2[:8]),
        ("lead", Role.OPERATOR, op[:8]),
    }
    assert all(t.created_ms > 0 for t in listed)

    assert await revoke_tokens(store, "bob") == 2
    assert await resolve_token(store, bob) is None and await resolve_token(store, bob2) is None
    assert await resolve_token(store, op) == Identity("lead", Role.OPERATOR)
    assert await revoke_tokens(store, "bob") == 0
    assert [e.type for e in await store.events()] == [
        "token-created", "token-created", "token-created", "token-revoked",
    ]  # fmt: skip


async def test_only_a_hash_of_the_token_is_on_the_board(store: Store) -> None:
    token = await create_token(store, "ada", "operator")
    await as_(store, "ada", Role.OPERATOR).add("something")  # the board holds more than tokens
    text = await board_text(store)
    assert "ada" in text  # the scan does see the board
    assert token not in text and token[8:] not in text and token[-20:] not in text
    from claimroom.core.tokens import digest

    assert digest(token) in text


async def test_unknown_and_malformed_tokens_resolve_to_none(store: Store) -> None:
    await create_token(store, "ada", "worker")
    unknown = "crm_" + "A" * 43
    odd = ("", "crm_", "crm_short", unknown + "x", "CRM_" + "A" * 43, "crm_" + "A" * 42 + "=")
    for token in (unknown, *odd):
        assert await resolve_token(store, token) is None


@pytest.fixture
def down_url(backend: str, tmp_path: Path) -> str:
    """A store of each backend that is down: nothing listens on port 1; the directory is missing."""
    return "redis://127.0.0.1:1/0" if backend == "redis" else (tmp_path / "missing").as_uri()


# The function-scoped fixture is a URL, the same for every example: nothing to share.
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.text(max_size=80)
    | st.binary(max_size=60).map(lambda b: "crm_" + b.decode("latin-1"))
    | st.from_regex(r"crm_[A-Za-z0-9_-]{0,42}", fullmatch=True)
    | st.from_regex(r"crm_[A-Za-z0-9_-]{44,60}", fullmatch=True)
)
def test_a_malformed_token_never_reaches_the_store(down_url: str, token: str) -> None:
    """Refused by its form alone: resolving it on a store that is down still says None."""
    import asyncio

    down = Store.from_url(down_url, "nobody")

    async def go() -> Any:
        try:
            return await resolve_token(down, token)
        finally:
            await down.close()

    assert not well_formed(token)
    assert asyncio.run(go()) is None


async def test_a_well_formed_token_is_looked_up(down_url: str) -> None:
    down = Store.from_url(down_url, "nobody")
    try:
        with pytest.raises(StoreUnavailable):
            await resolve_token(down, "crm_" + "A" * 43)
    finally:
        await down.close()


async def test_bad_roles_and_names_are_refused(store: Store) -> None:
    with pytest.raises(BadInput, match="unknown role 'admin': one of worker, planner, operator"):
        await create_token(store, "ada", "admin")
    with pytest.raises(BadInput, match="invalid agent name"):
        await create_token(store, "ada smith", "worker")
    with pytest.raises(BadInput):
        Identity("ada", "root")  # type: ignore[arg-type]
    with pytest.raises(BadInput):
        Identity("ada", Role.WORKER, session="a b")
    assert await list_tokens(store) == []


# --- roles -----------------------------------------------------------------------------


async def test_a_worker_may_not_add_nor_act(store: Store) -> None:
    bob = as_(store, "bob", via="mcp-http")
    with pytest.raises(Forbidden, match="bob is a worker: add needs the planner role"):
        await bob.add("sneaky")
    with pytest.raises(Forbidden):
        await bob.add_many([TaskSpec("a"), TaskSpec("b")])
    assert await store.tasks() == []

    tid = await store.add("real work")
    claim = await store.claim("ada")
    assert claim is not None
    before = await store.get(tid)
    with pytest.raises(Forbidden, match="act needs the operator role"):
        await bob.act("kill", tid, "claimed", claim.token)
    with pytest.raises(Forbidden):
        await bob.extend(tid, claim.token, 60)
    with pytest.raises(Forbidden):
        await bob.pause("default")
    with pytest.raises(Forbidden):
        await as_(store, "pam", Role.PLANNER).act("requeue", tid, "claimed", claim.token)
    assert await store.get(tid) == before and await store.paused() == set()

    events = await refused(store)
    assert [(e.agent, e.task, e.data["call"]) for e in events] == [
        ("bob", "", "add"), ("bob", "", "add"), ("bob", tid, "act"), ("bob", tid, "extend"),
        ("bob", "", "pause"), ("pam", tid, "act"),
    ]  # fmt: skip
    assert events[0].data["via"] == "mcp-http" and events[0].data["needs"] == "planner"
    assert events[2].data["action"] == "kill"


async def test_a_planner_adds_named_as_itself(store: Store) -> None:
    pam = as_(store, "pam", Role.PLANNER)
    tid = await pam.add("plan it", queue="web")
    more = await pam.add_many([TaskSpec("a"), TaskSpec("b", after=["$0"])])
    added = [e for e in await store.events() if e.type == "added"]
    assert [(e.task, e.agent) for e in added] == [(tid, "pam"), (more[0], "pam"), (more[1], "pam")]
    assert (await store.get(tid)).queue == "web"


async def test_an_operator_acts_on_anyones_tasks_named_as_itself(store: Store) -> None:
    tid = await store.add("stuck work")
    claim = await store.claim("ada")
    assert claim is not None
    lead = as_(store, "lead", Role.OPERATOR)
    deadline = await lead.extend(tid, claim.token, 600)
    assert deadline > claim.deadline_ms
    assert await lead.act("kill", tid, "claimed", claim.token) is State.QUEUED
    assert await lead.add("and a new one")
    assert await lead.pause("default") is True
    events = {e.type: e for e in await store.events()}
    assert events["extended"].operator == "lead" and events["killed"].operator == "lead"
    assert events["paused"].operator == "lead"
    assert await refused(store) == []


# --- ownership --------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.WORKER, Role.PLANNER, Role.OPERATOR])
async def test_nobody_acts_on_anothers_claim(store: Store, role: Role) -> None:
    tid = await store.add("ada's work")
    ada = as_(store, "ada")
    claim = await ada.claim()
    assert claim is not None
    await ada.heartbeat(tid, claim.token, progress=0.4, stage="coding")
    before = (await store.get(tid)).to_json()
    n_events = len(await store.events())
    bob = as_(store, "bob", role, via="hook")

    calls = {
        "heartbeat": lambda: bob.heartbeat(tid, claim.token, progress=0.9),
        "complete": lambda: bob.complete(tid, claim.token, {"stolen": True}),
        "fail": lambda: bob.fail(tid, claim.token, "sabotage", fatal=True),
        "release": lambda: bob.release(tid, claim.token),
    }
    for call in calls.values():
        with pytest.raises(Forbidden, match=f"^{tid} is claimed by ada, not bob: an agent acts only on"):
            await call()
    assert (await store.get(tid)).to_json() == before
    events = (await store.events())[n_events:]
    assert [(e.type, e.agent, e.task, e.data["call"], e.data["holder"], e.data["via"]) for e in events] == [
        ("refused", "bob", tid, call, "ada", "hook") for call in calls
    ]
    assert [e.type for e in await store.events(task=tid)][-4:] == ["refused"] * 4

    # Its holder goes on as if nothing happened, and is named in the trail.
    await ada.heartbeat(tid, claim.token, progress=0.8)
    assert await ada.complete(tid, claim.token, {"ok": True}) == []
    done = (await store.events())[-1]
    assert (done.type, done.agent) == ("completed", "ada")


async def test_a_stale_token_is_still_lease_lost(store: Store) -> None:
    tid = await store.add("x")
    first = await store.claim("ada", ttl_s=30)
    assert first is not None
    await store.release(tid, first.token)
    again = await as_(store, "bob").claim()
    assert again is not None
    with pytest.raises(LeaseLost):
        await as_(store, "bob").complete(tid, first.token)  # ada's old claim: over, not bob's
    with pytest.raises(Forbidden):
        await as_(store, "ada").complete(tid, again.token)
    assert await refused(store) != []


async def test_nobody_unlocks_anothers_lock(store: Store) -> None:
    ada, bob = as_(store, "ada"), as_(store, "bob")
    await ada.lock(["src/app.py", "docs"])
    await bob.lock(["README.md"])
    await ada.lock(["shared.txt"], shared=True)
    await bob.lock(["shared.txt"], shared=True)
    before = await store.locks()
    with pytest.raises(Forbidden, match=r"^src/app\.py is locked by ada, not bob: an agent unlocks only"):
        await bob.unlock(["README.md", "src/app.py"])  # all or nothing: README.md stays too
    assert await store.locks() == before
    (event,) = await refused(store)
    assert (event.agent, event.data["call"], event.data["holder"]) == ("bob", "unlock", "ada")

    # A path nobody holds is passed over as before; a shared one drops only the caller's hold.
    assert await bob.unlock(["README.md", "nothing/here", "shared.txt"]) == ["README.md", "shared.txt"]
    shared = [lk for lk in await store.locks() if lk.path == "shared.txt"]
    assert [h.agent for h in shared[0].holders] == ["ada"]
    # Direct store access is unchanged: another's path is passed over, not refused.
    assert await store.unlock(["src/app.py"], "bob") == []


async def test_locks_are_taken_as_the_identity(store: Store) -> None:
    tid = await store.add("x")
    bob = as_(store, "bob")
    claim = await bob.claim()
    assert claim is not None
    await bob.lock(["src"], task=tid)
    (lock,) = await store.locks()
    assert [(h.agent, h.task) for h in lock.holders] == [("bob", tid)]
    with pytest.raises(Exception, match="locked by bob"):
        await as_(store, "ada").lock(["src/x.py"])
    assert [t.id for t in await bob.current_claims()] == [tid]
    assert await as_(store, "ada").current_claims() == []
    await bob.release(tid, claim.token)
    assert await bob.current_claims() == [] and await store.locks() == []


async def test_current_claims_are_the_agents_own(store: Store) -> None:
    await store.add_many([TaskSpec(f"t{i}") for i in range(4)])
    ada = as_(store, "ada")
    await ada.register(max_claims=3)
    got = [await ada.claim() for _ in range(3)]
    other = await store.claim("bob")
    assert other is not None
    held = await ada.current_claims()
    assert sorted(t.id for t in held) == sorted(c.task.id for c in got if c)
    assert all(t.agent == "ada" and t.state is State.CLAIMED for t in held)


# --- sessions and the audit -----------------------------------------------------------------


async def test_an_agent_registers_with_its_session(store: Store) -> None:
    session = "3f2b8c1e-5d4a-4e7b-9c61-0a8f2d7e4b13"
    await as_(store, "ada", session=session).register(["python"], 2)
    await store.register("bob")
    agents = {a.name: a for a in await store.agents()}
    assert agents["ada"].session == session and agents["bob"].session == ""
    assert agents["ada"].to_json()["session"] == session
    event = next(e for e in await store.events() if e.type == "registered" and e.agent == "ada")
    assert event.data["session"] == session
    await store.register("ada", ["python"])  # registering again says which session it is now
    assert {a.name: a.session for a in await store.agents()}["ada"] == ""
    with pytest.raises(BadInput, match="session contains a control character"):
        await store.register("ada", session="x\x1b[2J")
    with pytest.raises(BadInput, match="invalid session"):
        await store.register("ada", session="a b")


async def test_audit_writes_an_event_that_is_no_change(store: Store) -> None:
    tid = await store.add("x")
    before = await store.get(tid)
    await store.audit("refused", agent="bob", task=tid, detail={"call": "complete", "via": "cli"})
    await store.audit("refused", agent="bob", task="t999", detail={"call": "act"})
    await store.audit("note", agent="bob", detail={})
    assert await store.get(tid) == before
    events = (await store.events())[-3:]
    assert [(e.type, e.agent, e.task, e.data) for e in events] == [
        ("refused", "bob", tid, {"call": "complete", "via": "cli"}),
        ("refused", "bob", "", {"call": "act", "task": "t999"}),
        ("note", "bob", "", {}),
    ]
    assert [e.type for e in await store.events(task=tid)] == ["added", "refused"]
    for bad in ({"kind": "Refused!"}, {"kind": "x" * 40}, {"agent": "a b"}, {"task": "t 1"}, {"detail": [1]}):
        args: dict[str, Any] = {"kind": "refused", "agent": "bob", "task": "", "detail": {}} | bad
        with pytest.raises(BadInput):
            await store.audit(args.pop("kind"), **args)
    with pytest.raises(BadInput):
        await store.audit("refused", agent="bob", detail={"big": "x" * 10_000})


@pytest.mark.parametrize("backend", ["file"], indirect=True)
async def test_a_file_board_of_schema_6_gains_tokens_and_sessions(store_url: str, namespace: str) -> None:
    async with Store.from_url(store_url, namespace) as s:
        await s.register("ada", ["python"])
    with sqlite3.connect(db_path(store_url)) as conn:  # as claimroom with schema 6 left it
        conn.execute("ALTER TABLE agents DROP COLUMN session")
        conn.execute("DROP TABLE tokens")
        undo_since_7(conn)  # and everything after 7
        conn.execute("UPDATE meta SET value = '6' WHERE key = 'schema'")
    async with Store.from_url(store_url, namespace) as s:
        (agent,) = await s.agents()
        assert (agent.name, agent.capabilities, agent.session) == ("ada", ("python",), "")
        token = await create_token(s, "ada", "worker")
        assert await resolve_token(s, token) == Identity("ada", Role.WORKER)
        await s.register("ada", session="s1")
        assert (await s.agents())[0].session == "s1"
    with sqlite3.connect(db_path(store_url)) as conn:
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        assert version == str(SCHEMA_VERSION)


# --- the control room shows which session an agent is ------------------------------------------


async def test_the_agents_pane_shows_the_session(store: Store, store_url: str, namespace: str) -> None:
    from pilot_wait import until

    from claimroom.tui.app import ControlRoom

    await as_(store, "ada", session="3f2b8c1e-5d4a-4e7b-9c61-0a8f2d7e4b13").register()
    await store.register("bob")
    app = ControlRoom(Store.from_url(store_url, namespace), operator="lead")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("4")  # the agents pane
        pane = app.table_pane("agents")
        assert pane is not None
        await until(pilot, lambda: pane.table.row_count == 2)
        cells = {
            str(r.key.value): [str(c) for c in pane.table.get_row(r.key)] for r in pane.table.ordered_rows
        }
        assert "3f2b8c1e" in cells["ada"] and "3f2b8c1e-5d4a" not in " ".join(cells["ada"])
        assert not any("3f2b8c1e" in c for c in cells["bob"])
        await until(pilot, lambda: "3f2b8c1e" in app.export_screenshot())
        # A session registered while it runs reaches the screen too.
        await as_(store, "bob", session="a71d09e4-2c6b-4f38").register()
        await until(pilot, lambda: "a71d09e4" in app.export_screenshot())
