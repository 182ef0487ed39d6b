"""Rule 9, text bound for a terminal: control characters are refused on the way in (every
text field, through the API and the CLI) and escaped on the way out, for text that reached
the store some other way (written by hand into Redis or the SQLite board, an older
claimroom): ``ls``, ``show``, ``events``, ``agents``, ``claim`` and error messages never
write an ESC, a BEL, a CR or any other control character to the operator's terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import redis

from claimroom.core import constants as C
from claimroom.core.errors import BadInput
from claimroom.core.migrate import migrate
from claimroom.core.store import Store

CLAIMROOM = str(Path(sys.executable).parent / "claimroom")

# Retitles the window, clears the screen, fakes a colour (also by the one-byte C1 CSI),
# rubs out, returns the cursor and starts a fake line.
HOSTILE = "x\x1b]0;PWNED\x07\x1b[2J\x1b[31mfake\x9b2J\x7f\rover\nline2\tend"
# What a terminal acts on: C0 (newline aside: the CLI's own line ends), DEL, C1.
ACTS = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def env_for(url: str, namespace: str, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, CLAIMROOM_URL=url, CLAIMROOM_NAMESPACE=namespace)
    home = tmp_path / "project"
    home.mkdir(exist_ok=True)
    env["CLAIMROOM_HOME"] = str(home)
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([CLAIMROOM, *args], env=env, capture_output=True, timeout=60)


def terminal_safe(raw: bytes) -> str:
    """``raw`` as text, after checking it holds nothing a terminal would act on."""
    text = raw.decode()  # strict: a lone C1 byte is not even UTF-8
    found = ACTS.search(text)
    assert found is None, f"{found.group()!r} reached the terminal in {text!r}"
    return text


def poison(url: str, namespace: str) -> None:
    """Hostile text straight into the store, past every check: titles, stage, reason,
    checkpoint, affinity of t1 and t2, agent ada's name and capabilities, the holder of
    ada's lock, and one audit event."""
    texts = {f: HOSTILE for f in ("title", "stage", "reason", "checkpoint", "affinity")}
    event = {"type": HOSTILE, "task": "t1", "agent": HOSTILE, "operator": HOSTILE}
    data = json.dumps({"reason": HOSTILE, HOSTILE: [HOSTILE]})
    if url.startswith("redis"):
        r = redis.Redis.from_url(url, decode_responses=True)
        try:
            r.hset(C.task_key(namespace, "t1"), mapping=texts)
            r.hset(C.task_key(namespace, "t2"), "title", HOSTILE)
            r.hset(C.agent_key(namespace, "ada"), mapping={"name": HOSTILE, "caps": HOSTILE})
            lock = C.lock_key(namespace, "src/a.py")
            r.hset(lock, "h:" + HOSTILE, r.hget(lock, "h:ada") or "0")
            r.hdel(lock, "h:ada")
            eid = r.xadd(C.events_key(namespace), {**event, "at_ms": "1700000000000", "data": data})
            r.rpush(C.task_events_key(namespace, "t1"), eid)  # in t1's index, as every audit() writes
        finally:
            r.close()
        return
    db = Path(unquote(urlsplit(url).path)) / C.file_db_name
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        sets = ", ".join(f"{f} = :{f}" for f in texts)
        conn.execute(f"UPDATE tasks SET {sets} WHERE ns = :ns AND id = 't1'", {**texts, "ns": namespace})
        conn.execute("UPDATE tasks SET title = ? WHERE ns = ? AND id = 't2'", (HOSTILE, namespace))
        conn.execute("UPDATE agents SET name = ?, caps = ? WHERE ns = ?", (HOSTILE, HOSTILE, namespace))
        conn.execute("UPDATE holds SET agent = ? WHERE ns = ?", (HOSTILE, namespace))
        conn.execute(
            "INSERT INTO events (ns, seq, type, at_ms, task, agent, operator, data) "
            "VALUES (:ns, (SELECT MAX(seq) + 1 FROM events WHERE ns = :ns), :type, 1700000000000, "
            ":task, :agent, :operator, :data)",
            {**event, "ns": namespace, "data": data},
        )
        conn.execute("UPDATE counters SET value = value + 1 WHERE ns = ? AND name = 'event'", (namespace,))


async def test_text_that_reached_the_store_by_hand_is_escaped_by_every_command(
    store: Store, store_url: str, namespace: str, tmp_path: Path
) -> None:
    await store.register("ada", ["py"])
    await store.add("one")
    claim = await store.claim("ada", ttl_s=600)
    assert claim is not None
    await store.lock(["src/a.py"], "ada")
    await store.add("two")
    poison(store_url, namespace)
    env = env_for(store_url, namespace, tmp_path)

    plain = {
        "ls": cli(env, "ls"),
        "show": cli(env, "show", "t1"),
        "events": cli(env, "events"),
        "events of t1": cli(env, "events", "--task", "t1"),
        "agents": cli(env, "agents"),
        "claim": cli(env, "claim", "--agent", "bob"),  # t2, whose title is hostile
    }
    for name, p in plain.items():
        assert p.returncode == 0, (name, p.stderr)
        out = terminal_safe(p.stdout)
        terminal_safe(p.stderr)
        # The text is there, escaped where it is shown (not dropped).
        assert "\\x1b]0;PWNED\\x07" in out, (name, out)
    assert "\\n" in plain["show"].stdout.decode() and "\\x9b" in plain["show"].stdout.decode()

    # An error message that names what the store holds: the lock's (hostile) holder.
    p = cli(env, "lock", "src/a.py", "--agent", "bob")
    assert p.returncode == 6, p.stderr
    assert p.stdout == b"" and "PWNED" in terminal_safe(p.stderr)
    assert len(p.stderr.splitlines()) == 1

    # --json: pure ASCII (json.dumps escapes controls, and C1 too), and lossless.
    shown = cli(env, "show", "t1", "--json")
    assert shown.returncode == 0 and shown.stdout.isascii()
    task = json.loads(terminal_safe(shown.stdout))
    assert task["title"] == task["stage"] == task["reason"] == task["checkpoint"] == HOSTILE
    for args in (("ls",), ("events",), ("agents",)):
        p = cli(env, *args, "--json")
        assert p.returncode == 0 and p.stdout.isascii(), args
        assert HOSTILE in terminal_safe(p.stdout).encode().decode("unicode_escape"), args


# --- refused on the way in ------------------------------------------------------------------

ONE_LINE_BAD = {
    "ESC": "x\x1b]0;PWNED\x07",
    "C1 CSI": "x\x9b2J",
    "DEL": "x\x7f",
    "tab": "a\tb",
    "newline": "a\nb",
    "CR": "a\rb",
    "NUL": "a\x00b",
}


def test_the_message_names_the_field_the_character_and_where() -> None:
    from claimroom.core import validate

    with pytest.raises(BadInput) as exc:
        validate.title("x\x1b]0;PWNED\x07\x1b[2J\x1b[31mfake")
    assert str(exc.value) == (
        "title contains a control character (U+001B (ESC) at position 2); "
        "control characters are refused in text shown to operators"
    )
    with pytest.raises(BadInput) as exc:
        validate.text("reason", "first line\nsecond\x07", multiline=True)
    assert str(exc.value) == (
        "reason contains a control character (U+0007 (BEL) at position 18); "
        "control characters other than tab and newline are refused in text shown to operators"
    )


# A few kinds through real processes (argv cannot carry NUL); the API test below takes them all.
@pytest.mark.parametrize("kind", ["ESC", "C1 CSI", "DEL", "newline"])
def test_the_cli_refuses_control_characters_in_every_field_and_changes_nothing(
    cli_env: dict[str, str], kind: str
) -> None:
    bad = ONE_LINE_BAD[kind]
    assert cli(cli_env, "register", "ada").returncode == 0
    assert cli(cli_env, "add", "ok").returncode == 0
    claim = json.loads(cli(cli_env, "claim", "--agent", "ada", "--json").stdout)
    token = str(claim["token"])
    events = cli(cli_env, "events", "--json").stdout
    # What is refused, and the words the message names it by.
    calls: dict[tuple[str, ...], str] = {
        ("add", bad): "title",
        ("add", "x", "--queue", bad): "queue name",
        ("add", "x", "--requires", bad): "capability name",
        ("add", "x", "--affinity", bad): "affinity",
        ("register", bad): "agent name",
        ("register", "bob", "--can", bad): "capability name",
        ("heartbeat", "t1", "--token", token, "--stage", bad): "stage",
        ("heartbeat", "--agent", bad): "agent name",
        ("lock", bad, "--agent", "ada"): "lock path",
        ("show", bad): "task id",
        ("ls", "--namespace", bad): "namespace name",
    }
    free_text: dict[tuple[str, ...], str] = {
        ("heartbeat", "t1", "--token", token, "--checkpoint", bad): "checkpoint",
        ("fail", "t1", "--token", token, "--reason", bad): "reason",  # last: it ends the claim
    }
    if kind not in ("tab", "newline"):
        calls.update(free_text)
    for args, word in calls.items():
        p = cli(cli_env, *args)
        err = terminal_safe(p.stderr)
        assert p.returncode == 2, (args, err)
        assert len(err.splitlines()) == 1 and f"{word} contains a control character" in err, (args, err)
        assert p.stdout == b""
    assert cli(cli_env, "events", "--json").stdout == events  # nothing changed
    if kind in ("tab", "newline"):  # free text may hold them
        for args in free_text:
            assert cli(cli_env, *args).returncode == 0, args


async def test_the_api_refuses_control_characters_in_every_text(store: Store) -> None:
    await store.register("ada")
    tid = await store.add("ok")
    claim = await store.claim("ada", ttl_s=600)
    assert claim is not None
    token = claim.token
    before = await store.events(count=1000)

    def calls(bad: str, free_text: bool) -> dict[str, Callable[[], Awaitable[Any]]]:
        """What is refused, by the words the message names it by."""
        out: dict[str, Callable[[], Awaitable[Any]]] = {
            "title": lambda: store.add(bad),
            "queue name": lambda: store.add("x", queue=bad),
            "capability name": lambda: store.add("x", requires=[bad]),
            "affinity": lambda: store.add("x", affinity=bad),
            "agent name": lambda: store.register(bad),
            "stage": lambda: store.heartbeat(tid, token, stage=bad),
            "lock path": lambda: store.lock([bad], "ada"),
            "task id": lambda: store.get(bad),
            "operator name": lambda: store.pause("default", bad),
        }
        if free_text:
            out["reason"] = lambda: store.fail(tid, token, bad)
            out["checkpoint"] = lambda: store.heartbeat(tid, token, checkpoint=bad)
        return out

    for kind, bad in ONE_LINE_BAD.items():
        for word, call in calls(bad, kind not in ("tab", "newline")).items():
            with pytest.raises(BadInput) as exc:
                await call()
            assert f"{word} contains a control character" in str(exc.value), (kind, word)
            assert not ACTS.search(str(exc.value))
        with pytest.raises(BadInput, match="agent name contains a control character"):
            await store.act("reassign", tid, "claimed", token, "op", agent=bad)
        with pytest.raises(BadInput, match="namespace name contains a control character"):
            Store.from_url("redis://127.0.0.1:1/0", "ns" + bad)
    assert await store.events(count=1000) == before
    # Free text keeps its lines and tabs.
    await store.heartbeat(tid, token, checkpoint="step 1\n\tdone")
    assert (await store.get(tid)).checkpoint == "step 1\n\tdone"


async def test_a_migrated_board_arrives_with_its_control_characters_escaped(
    store: Store, store_url: str, namespace: str, tmp_path: Path
) -> None:
    """A board from an older claimroom may hold what this one refuses: it migrates, its
    texts escaped (a refusal would strand the board), and says how many."""
    await store.register("ada")
    await store.add("one")
    claim = await store.claim("ada", ttl_s=600)
    assert claim is not None
    await store.add("two")
    poison(store_url, namespace)
    dest = tmp_path / "dest"
    dest.mkdir()
    async with Store.from_url(dest.as_uri(), namespace) as dst:
        moved = await migrate(store, dst)
        assert moved["escaped"] == 6  # t1: five texts; t2: its title
        t1, t2 = await dst.get("t1"), await dst.get("t2")
    one_line = "x\\x1b]0;PWNED\\x07\\x1b[2J\\x1b[31mfake\\x9b2J\\x7f\\rover\\nline2\\tend"
    assert t1.title == t2.title == t1.stage == t1.affinity == one_line
    free_text = "x\\x1b]0;PWNED\\x07\\x1b[2J\\x1b[31mfake\\x9b2J\\x7f\\rover\nline2\tend"
    assert t1.reason == t1.checkpoint == free_text
