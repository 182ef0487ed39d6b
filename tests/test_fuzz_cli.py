"""Every command's options fuzzed through the real CLI entry point (``cli.main``, in
process for speed), on both backends: whatever the arguments, the exit code is one of the
contract's (0, 2, 3, 4, 6; never 1, the unexpected error), standard error holds at most
one line and never a traceback, nothing a terminal would act on is printed, and a refusal
(exit 2) changes nothing on the board. The cases found by earlier fuzzing are pinned as
explicit examples.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import resource
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from claimroom.core import constants as C
from claimroom.core.cli import main
from claimroom.core.store import Store

ALLOWED = {0, 2, 3, 4, 6}  # done, bad input, nothing to claim / no such task, lease lost, conflict
ACTS = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # what a terminal acts on (newline aside)

DEEP = "[" * 100_000 + "]" * 100_000  # RecursionError in json.loads before
BIG_INT = str(2**63)  # Redis ResponseError (ls --limit/--offset) before
HUGE_INT = "1" + "0" * 30  # OverflowError in SQLite before
BAD_URLS = [
    "redis://127.0.0.1:abc/0",  # exit 5 before
    "redis://127.0.0.1:99999/0",
    "redis://127.0.0.1:-1/0",
    "redis://[::1/0",  # exit 1 before (ValueError: Invalid IPv6 URL)
    "redis://:secret@127.0.0.1:abc/0",
    "rediss://example.invalid:0/0",  # port 0: redis-py quietly took 6379
    "redis://127.0.0.1:6399/db",  # redis-py quietly took database 0
    "unix://",  # no socket path
    "http://example.invalid",
    "redis://127.0.0.1:6399/0\x1b[2J",
    "",
]
BAD_NUMBERS = (
    st.sampled_from(["-1", "0", "-0", "1", "2", "0.5", "1.5", "0x10", "1_000", "abc", "", " ", "\u0663"])
    | st.sampled_from(["1e400", "-1e400", "nan", "inf", "-inf", "1e-400", "5e-324", "1e308"])
    | st.sampled_from([BIG_INT, "-" + BIG_INT, HUGE_INT, "9" * 5000])
    | st.integers().map(str)
    | st.floats().map(repr)
)
BAD_TEXT = (
    st.sampled_from(["", " ", "-", "--", "-x", "--json", "a" * 100_000, "../x", "//", "t1 ", "@/nonexistent"])
    | st.sampled_from(["x\x1b]0;PWNED\x07\x1b[2J", "a\x9bb", "a\x7fb", "a\nb", "a\tb", "a\rb", "a\x00b"])
    | st.sampled_from(["bad \udcff", "\ud800"])
    | st.text(max_size=40)
)
BAD_JSON = (
    st.sampled_from([DEEP, "[" * 65 + "]" * 65, "[" + "1," * 200_000 + "1]", "NaN", "1e400", '"\\ud800"'])
    | st.sampled_from(["-", "@/dev/zero", "@/nonexistent", "@", "@/"])
    | BAD_TEXT
)


def mix(good: list[str], bad: SearchStrategy[str]) -> SearchStrategy[str]:
    """Two times in three a value the command takes, so that most runs get past the first
    check into the store with whatever else is wrong; else a hostile one. (``map`` keeps
    ``bad``'s own choices from being flattened into this one and outweighing ``good``.)"""
    return st.one_of(st.sampled_from(good), st.sampled_from(good), bad.map(str))


def num(*good: str) -> SearchStrategy[str]:
    return mix(list(good), BAD_NUMBERS)


def text(*good: str) -> SearchStrategy[str]:
    return mix(list(good), BAD_TEXT)


IDS = text("t1", "t2", "t3", "t999")
AGENTS = text("ada", "bob", "cy")
TOKENS = num("1", "2", "3", "4")
JSON = mix(['{"a": 1}', "[1, 2]", '"s"', "null"], BAD_JSON)
WAIT = st.sampled_from(["-1", "nan", "inf", "-inf", "1e400", "abc", "", "0", "0.01"])  # never a long wait
URLS = st.sampled_from(BAD_URLS)

Opt = tuple[str, SearchStrategy[str] | None]  # a flag and its value (None: a switch)


def command(
    name: str,
    *positional: SearchStrategy[str],
    required: tuple[Opt, ...] = (),
    optional: tuple[Opt, ...] = (),
) -> SearchStrategy[list[str]]:
    """``name``, its positional arguments, its required options, some of its optional ones."""

    @st.composite
    def build(draw: st.DrawFn) -> list[str]:
        argv = [name, *(draw(p) for p in positional)]
        picked = draw(st.lists(st.sampled_from(optional), unique=True)) if optional else []
        for flag, value in (*required, *picked):
            argv.append(flag)
            if value is not None:
                argv.append(draw(value))
        if draw(st.booleans()):
            argv.append("--json")
        return argv

    return build()


ARGV = st.one_of(
    command(
        "register",
        AGENTS,
        optional=(("--can", text("py", "go")), ("--max-claims", num("1", "3")), ("--session", text("s-1"))),
    ),
    command(
        "token",
        st.just("create"),
        required=(("--agent", AGENTS), ("--role", text("worker", "planner", "operator"))),
    ),
    command("token", st.sampled_from(["ls", "revoke"])),
    command("token", st.just("revoke"), AGENTS),
    command(
        "add",
        text("fix the bug", "x"),
        optional=(
            ("--queue", text("default", "web")),
            ("--priority", num("0", "5", "-5")),
            ("--requires", text("py")),
            ("--after", IDS),
            ("--parent", IDS),
            ("--affinity", text("src/", "cli")),
            ("--payload", JSON),
            ("--max-attempts", num("1", "3")),
        ),
    ),
    command(
        "claim",
        required=(("--agent", AGENTS),),
        optional=(("--queue", text("default", "web")), ("--ttl", num("60", "0.5")), ("--wait", WAIT)),
    ),
    command(
        "heartbeat",
        IDS,
        optional=(
            ("--token", TOKENS),
            ("--agent", AGENTS),
            ("--ttl", num("60")),
            ("--progress", num("0.5", "1", "0")),
            ("--stage", text("build", "test")),
            ("--checkpoint", text("step 2", "line\nline")),
        ),
    ),
    command("heartbeat", required=(("--agent", AGENTS),)),
    command("complete", IDS, required=(("--token", TOKENS),), optional=(("--result", JSON),)),
    command(
        "fail",
        IDS,
        required=(("--token", TOKENS), ("--reason", text("flaky", "why\nnot"))),
        optional=(("--fatal", None),),
    ),
    command("release", IDS, required=(("--token", TOKENS),)),
    command("show", IDS),
    command(
        "ls",
        optional=(
            ("--state", text("queued", "claimed", "done")),
            ("--queue", text("default")),
            ("--limit", num("10", "1")),
            ("--offset", num("0", "1")),
        ),
    ),
    command("agents"),
    command("events", optional=(("--task", IDS), ("--limit", num("5", "1000")))),
    command(
        "lock",
        text("src/a.py", "src", "docs/x.md"),
        required=(("--agent", AGENTS),),
        optional=(("--ttl", num("60")), ("--shared", None), ("--task", IDS)),
    ),
    command("unlock", text("src/a.py", "src/app.py"), required=(("--agent", AGENTS),)),
    command("reap", optional=(("--interval", num("0.5", "1")),)),
    command(
        "retention",
        optional=(
            ("--queue", text("default", "web")),
            ("--done-for", num("60", "0", "forever")),
            ("--keep-done", num("5", "0", "all")),
            ("--failed-for", num("3600", "forever")),
            ("--keep-failed", num("10", "all")),
            ("--events-for", num("60", "forever")),
            ("--events-bytes", num("100000", "all")),
            ("--agents-for", num("60", "forever")),
            ("--reset", None),
        ),
    ),
    # --loop only with an interval it refuses: a valid one loops for good.
    command(
        "reap",
        required=(
            ("--loop", None),
            ("--interval", st.sampled_from(["-1", "0", "nan", "inf", "1e400", "x", "0.001", "61", HUGE_INT])),
        ),
    ),
    # demo only with a length it refuses: a valid one starts a redis-server.
    command(
        "demo",
        required=(("--plain", None), ("--seconds", st.sampled_from(["-1", "0", "nan", "inf", "1e400"]))),
    ),
    command("ls", required=(("--url", URLS),)),
    command("ls", required=(("--namespace", BAD_TEXT),)),
    command("migrate", required=(("--from", URLS), ("--to", URLS))),
)


class Zeros(io.RawIOBase):
    """Standard input that never ends (like /dev/zero); counts what was read from it."""

    served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        buffer[:] = b"0" * len(buffer)
        self.served += len(buffer)
        return len(buffer)


class TookTooLong(BaseException):
    """A command ran past its time (e.g. a loop that never sleeps); a BaseException so that
    the CLI's last line of defence (``except Exception``) passes it on to the test."""


@contextlib.contextmanager
def guarded(seconds: float, headroom_bytes: int) -> Iterator[None]:
    """A command that loops forever or reads without bound fails this test rather than
    hanging it or eating the machine's memory: a per-run alarm, and an address-space cap
    ``headroom_bytes`` above what the process uses now (MemoryError past it)."""

    def expired(signum: int, frame: object) -> None:
        raise TookTooLong(f"still running after {seconds} s")

    handler = signal.signal(signal.SIGALRM, expired)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)  # pytest-timeout's, if any
    start = time.monotonic()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    used = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    cap = used + headroom_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, handler)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(0.001, outer - (time.monotonic() - start)))


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    zeros = Zeros()
    stdin = io.TextIOWrapper(io.BufferedReader(zeros))
    with (
        guarded(10.0, 1 << 30),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        swapped_stdin(stdin),
    ):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
            code = exc.code if isinstance(exc.code, int) else 1
    # Standard input is read only as far as a JSON text may go (and a buffer beyond).
    assert zeros.served <= C.max_json_text_bytes + (1 << 16), zeros.served
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def swapped_stdin(stream: io.TextIOWrapper) -> Iterator[None]:
    real, sys.stdin = sys.stdin, stream
    try:
        yield
    finally:
        sys.stdin = real


async def _snapshot(url: str, namespace: str) -> tuple[Any, ...]:
    async with Store.from_url(url, namespace) as s:
        return (
            await s.counts(),
            await s.tasks(limit=100_000),
            await s.agents(),
            await s.locks(),
            await s.paused(),
            await s.events(count=1_000_000),
            await s.token_list(),
        )


Board = tuple[str, str]  # the store's URL and the namespace


def snapshot(board: Board) -> tuple[Any, ...]:
    return asyncio.run(_snapshot(*board))


async def _board(url: str, namespace: str) -> None:
    """t1 claimed by ada (token 1) holding a lock, t2 queued, t3 waiting on t1."""
    async with Store.from_url(url, namespace) as s:
        await s.register("ada", ["py"], max_claims=3)
        t1 = await s.add("first")
        await s.add("second")
        await s.add("third", after=[t1])
        assert await s.claim("ada", ttl_s=3600) is not None
        await s.lock(["src/app.py"], "ada", task=t1)


@pytest.fixture
def board(store_url: str, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Board:
    """The board the CLI runs on (CLAIMROOM_URL and CLAIMROOM_NAMESPACE point at it)."""
    monkeypatch.setenv("CLAIMROOM_URL", store_url)
    monkeypatch.setenv("CLAIMROOM_NAMESPACE", namespace)
    monkeypatch.setenv("CLAIMROOM_HOME", str(tmp_path))
    monkeypatch.delenv("CLAIMROOM_DEBUG", raising=False)
    asyncio.run(_board(store_url, namespace))
    return store_url, namespace


def check(board: Board, argv: list[str]) -> None:
    before = snapshot(board)
    code, out, err = run(argv)
    event(f"{argv[0]} exit {code}")
    assert code in ALLOWED, (argv[:6], code, err)
    assert "Traceback" not in err and len(err.splitlines()) <= 1, (argv[:6], err)
    found = ACTS.search(out + err)
    assert found is None, (argv[:6], found, out[:300], err)
    if code == 2:
        assert err.startswith("claimroom: "), (argv[:6], err)
        assert snapshot(board) == before, argv[:6]


FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "100")),  # FUZZ_EXAMPLES=2000 for a deeper search
    deadline=None,
    # A failure is reported as found (every failing run may cost the 10 s alarm: no shrinking).
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    report_multiple_bugs=False,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@FUZZ
@given(argv=ARGV)
# Found by fuzzing (each exited 1, 5 or never ended before):
@example(argv=["add", "x", "--payload", DEEP])
@example(argv=["complete", "t1", "--token", "1", "--result", DEEP])
@example(argv=["ls", "--limit", BIG_INT])
@example(argv=["ls", "--offset", BIG_INT])
@example(argv=["ls", "--limit", HUGE_INT])
@example(argv=["ls", "--offset", HUGE_INT])
@example(argv=["add", "x", "--payload", "@/dev/zero"])
@example(argv=["add", "x", "--payload", "-"])  # standard input that never ends
@example(argv=["ls", "--url", "redis://127.0.0.1:abc/0"])
@example(argv=["reap", "--loop", "--interval", "-1"])
@example(argv=["reap", "--loop", "--interval", "nan"])
@example(argv=["events", "--limit", "-5"])
# ... and found since, beyond the listed ones:
@example(argv=["heartbeat", "t1", "--token", HUGE_INT])
@example(argv=["ls", "--url", "redis://[::1/0"])
@example(argv=["ls", "--url", "rediss://example.invalid:0/0"])
@example(argv=["ls", "--url", "unix://"])
@example(argv=["add", "x", "--payload", "@bad\x00name"])
@example(argv=["add", "x\x1b]0;PWNED\x07\x1b[2J\x1b[31mfake"])
@example(argv=["ls", "--state", "\x1b[2J", "--json"])
@example(argv=["doctor", "--url", "redis://[::1/0"])
@example(argv=["demo", "--plain", "--seconds", "nan"])
def test_any_arguments_get_a_contract_exit_code_and_one_clean_line(board: Board, argv: list[str]) -> None:
    check(board, argv)


def test_a_payload_file_that_is_not_utf8_is_bad_input(board: Board, tmp_path: Path) -> None:
    blob = tmp_path / "blob.json"
    blob.write_bytes(b'{"a": "\xff\xfe"}')
    before = snapshot(board)
    code, _, err = run(["add", "x", "--payload", f"@{blob}"])
    assert code == 2 and "is not UTF-8 text" in err
    assert snapshot(board) == before


def test_a_payload_file_past_the_text_limit_is_refused_unread(board: Board, tmp_path: Path) -> None:
    """Indented JSON a little over the stored limit is read (its compact form decides);
    text past max_json_text_bytes is refused without being read whole."""
    pretty = tmp_path / "pretty.json"
    pretty.write_text('{\n    "k":\n' + " " * (C.max_payload_bytes + 10) + '"v"\n}')
    assert run(["add", "pretty", "--payload", f"@{pretty}"])[0] == 0
    big = tmp_path / "big.json"
    big.write_text(" " * C.max_json_text_bytes + "1")
    code, _, err = run(["add", "x", "--payload", f"@{big}"])
    assert code == 2 and "larger than" in err
