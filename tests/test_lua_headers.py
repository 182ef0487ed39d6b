"""Each Lua script's header says what the script touches and returns, and stays true.

A script (``core/redis/lua/<op>-<numKeys>.lua``) opens with a header: what it does, its KEYS and
ARGV, the keys it reaches through the namespace prefix P (``Touches P .. task:<id>, ...``), the
channels it announces on (``Publishes on P .. hints``) and what it returns. The header is read
against the script's code and the lib.lua functions it calls (and those they call), both ways:
what the code can touch or return is in the header, and what the header lists the code can
touch or return. Every key the Lua spells must also be one a builder in ``core/constants.py``
spells, so the builders stay the one list of the board's keys; and Python code spells keys
only through them.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from claimroom.core import constants as C
from claimroom.core.errors import ErrorCode
from claimroom.core.redis import scripts

ROOT = Path(__file__).resolve().parent.parent
LIB = (scripts.LUA_DIR / "lib.lua").read_text()
_ARG = "\0"  # stands for a builder's arguments, to find where its fixed spelling ends


def _spellings() -> dict[str, tuple[str, bool]]:
    """Builder name -> (its spelling after the namespace prefix up to its first argument,
    whether it takes arguments): ``task_key`` -> ("task:", True)."""
    out: dict[str, tuple[str, bool]] = {}
    start = C.prefix("ns")
    for name, builder in vars(C).items():
        if not (callable(builder) and name.endswith(("_key", "_channel"))):
            continue
        n = len(inspect.signature(builder).parameters) - 1
        key = builder("ns", *[_ARG] * n)
        assert key.startswith(start), f"{name} spells a key outside the namespace: {key!r}"
        out[name] = (key[len(start) :].split(_ARG)[0], n > 0)
    return out


BUILDERS = _spellings()


def builder_of(spelled: str) -> str | None:
    """The builder that spells ``spelled`` (a key's text after P, up to where code goes on with
    something variable): exactly, or as its fixed start when the builder takes arguments."""
    found = [
        name
        for name, (part, takes) in BUILDERS.items()
        if spelled == part or (takes and part and spelled.startswith(part))
    ]
    return max(found, key=lambda name: len(BUILDERS[name][0]), default=None)


def code_only(lua: str) -> str:
    """``lua`` without its comments (strings kept: keys are spelled in them)."""
    out, i, n = [], 0, len(lua)
    while i < n:
        c = lua[i]
        if c in "'\"":
            j = i + 1
            while j < n and lua[j] != c:
                j += 2 if lua[j] == "\\" else 1
            out.append(lua[i : j + 1])
            i = j + 1
        elif lua.startswith("--[[", i):
            i = lua.index("]]", i) + 2
        elif lua.startswith("--", i):
            i = lua.find("\n", i)
            i = n if i < 0 else i
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _lib_functions() -> tuple[dict[str, str], str]:
    """lib.lua's functions by name (their code), and its code outside them (run on include)."""
    code = code_only(LIB)
    functions = {m[1]: m[0] for m in re.finditer(r"(?ms)^local function (\w+)\(.*?^end$", code)}
    rest = re.sub(r"(?ms)^local function (\w+)\(.*?^end$", "", code)
    return functions, rest


def reachable_code(body: str) -> str:
    """``body`` (code) and, when it includes lib, lib's top level and every lib function it
    calls, and those they call."""
    if "--@include lib" not in body:
        return code_only(body)
    functions, top = _lib_functions()
    code = code_only(body) + "\n" + top
    seen: set[str] = set()
    todo = [code]
    while todo:
        for called in re.findall(r"\b(\w+)\s*\(", todo.pop()):
            if called in functions and called not in seen:
                seen.add(called)
                todo.append(functions[called])
    return code + "".join("\n" + functions[name] for name in sorted(seen))


def listed(header: str, lead: str) -> list[str]:
    """The items of the header's list that opens with ``lead``: comma-separated, going on over
    the lines below that are indented deeper."""
    lines = header.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith(lead):
            depth = len(line) - len(line.lstrip())
            text = line.lstrip()[len(lead) :]
            for more in lines[i + 1 :]:
                if not more.strip() or len(more) - len(more.lstrip()) <= depth:
                    break
                text += " " + more.strip()
            return [item.strip().rstrip(".;") for item in text.split(",") if item.strip()]
    return []


def _codes(text: str) -> set[int]:
    """Negative codes in ``text``: literal (``{-5, ...}``) or by ErrorCode name (``{BAD_INPUT, ...}``,
    or ``{${bad_input}, ...}`` in code)."""
    found = {int(c) for c in re.findall(r"\{\s*(-\d+)\s*,", text)}
    names = {name.upper() for name in re.findall(r"\{\s*(?:\$\{)?([A-Za-z_]\w*)\}?\s*,", text)}
    return found | {ErrorCode[name].value for name in names if name in ErrorCode.__members__}


def _argv(text: str) -> tuple[set[int], int | None]:
    """The ARGV indexes ``text`` names, and where a trailing ``ARGV[n..]`` starts (None: none)."""
    fixed = {int(n) for n in re.findall(r"ARGV\[(\d+)\]", text)}
    open_ended = [int(n) for n in re.findall(r"ARGV\[(\d+)\.\.\]", text)]
    return fixed, min(open_ended, default=None)


def problems(file_name: str, text: str) -> list[str]:
    """What ``text``'s header (the script ``file_name``) leaves out or says wrongly."""
    m = re.match(r"--\[\[\n(.*?)\n\]\]\n", text, re.S)
    if not m:
        return ["no --[[ header ]] at the top"]
    header, body = m[1], text[m.end() :]
    code = reachable_code(body)
    out: list[str] = []

    # KEYS: as many as the file name says, each with its spelling in backquotes.
    n_keys = int(file_name.rsplit("-", 1)[1].removesuffix(".lua"))
    declared = {int(k): s for k, s in re.findall(r"KEYS\[(\d+)\] `([^`]+)`", header)}
    if set(declared) != set(range(1, n_keys + 1)):
        out.append(f"header declares KEYS {sorted(declared)}, the file name says {n_keys} (KEYS[n] `key`)")
    for k in sorted({int(k) for k in re.findall(r"KEYS\[(\d+)\]", code)} - set(range(1, n_keys + 1))):
        out.append(f"code reads KEYS[{k}], past the {n_keys} the file name says")

    # Keys and channels the code spells after P, each one a builder spells; a key spelled
    # from a declared one (KEYS[1] .. ':records') is named as such in the header.
    spelled = set(re.findall(r"\bP\s*\.\.\s*'([^']*)'", code))
    if re.search(r"\bP\s*\.\.\s*[^\s']", code):
        out.append("a key is built from P without its name spelled right after it (P .. 'name:' ..)")
    from_keys = set()
    for k, tail in re.findall(r"KEYS\[(\d+)\]\s*\.\.\s*'([^']*)'", code):
        from_keys.add(declared.get(int(k), "?") + tail)
        if f"KEYS[{k}] .. '{tail}'" not in header:
            out.append(f"header does not say the code reaches KEYS[{k}] .. '{tail}'")
    for text in sorted(spelled | from_keys):
        if builder_of(text) is None:
            out.append(f"code spells key {text!r}, which no builder in core/constants.py spells")

    def covers(item: str, text: str) -> bool:
        """Whether the header's ``item`` (``seq:task``, ``ready:<queue>:<sig>``) is the key or
        channel the code spells as ``text`` (``seq:task``, ``ready:``)."""
        fixed = item.split("<")[0]
        return text.startswith(fixed) and builder_of(fixed) == builder_of(text) is not None

    lists = (("Touches", "_key", list(declared.values())), ("Publishes on", "_channel", []))
    for what, kind, declared_too in lists:
        items = listed(header, what + " P ..")
        code_has = {t for t in spelled if (builder_of(t) or "").endswith(kind)}
        for item in items:
            if builder_of(item.split("<")[0]) is None:
                out.append(f"header's {what} names {item!r}, which no builder in core/constants.py spells")
            elif not any(covers(item, t) for t in code_has):
                out.append(f"header's {what} names {item!r}, which the code never spells")
        for t in sorted(code_has):
            if not any(covers(item, t) for item in items + declared_too):
                out.append(f"code spells P .. {t!r} ({builder_of(t)}), not in the header's {what}")

    # Return codes, both ways; each one ErrorCode has.
    said, done = _codes(header), _codes(code)
    for c in sorted(done - said):
        out.append(f"code returns {c}, which the header does not mention")
    for c in sorted(said - done):
        out.append(f"header mentions code {c}, which the code never returns")
    for c in sorted((said | done) - {e.value for e in ErrorCode}):
        out.append(f"code {c} is no ErrorCode (core/errors.py)")

    # ARGV: what the code reads is declared; what is declared is read.
    (have, rest), (reads, _) = _argv(header), _argv(code)
    for a in sorted(reads - have):
        if rest is None or a < rest:
            out.append(f"code reads ARGV[{a}], which the header does not declare")
    for a in sorted(have - reads):
        out.append(f"header declares ARGV[{a}], which the code never reads")
    return out


SCRIPT_FILES = sorted(scripts.SCRIPTS.values())


@pytest.mark.parametrize("file_name", SCRIPT_FILES)
def test_header_lists_every_key_channel_argument_and_code(file_name: str) -> None:
    assert problems(file_name, (scripts.LUA_DIR / file_name).read_text()) == []


def test_every_script_file_is_registered() -> None:
    on_disk = {p.name for p in scripts.LUA_DIR.glob("*.lua")} - {"lib.lua"}
    assert on_disk == set(SCRIPT_FILES)


def _edited(file_name: str, old: str, new: str) -> list[str]:
    text = (scripts.LUA_DIR / file_name).read_text()
    assert old in text, f"{file_name} no longer has {old!r}: pick another edit for this test"
    return problems(file_name, text.replace(old, new, 1))


def test_a_header_that_no_longer_matches_its_code_is_caught() -> None:
    """Each kind of drift, made on a real script, is reported (so the test above can fail)."""
    # A key reached only through lib.lua (add -> enter -> ready_add), dropped from the list.
    found = _edited("add-1.lua", "ready:<queue>:<sig>, ", "")
    assert "code spells P .. 'ready:' (ready_key), not in the header's Touches" in found
    # A code the header does not give, and one it gives that the code never returns.
    found = _edited("add-1.lua", "{-5, message}", "{-7, message}")
    assert "code returns -5, which the header does not mention" in found
    assert "header mentions code -7, which the code never returns" in found
    # A code returned by a lib.lua check (check_lease) the script calls.
    found = _edited("complete-1.lua", " {-2, id} lease lost;", "")
    assert "code returns -2, which the header does not mention" in found
    # A code by its ErrorCode name counts as the code.
    assert _edited("reset_breaker-1.lua", "{-1, agent} when", "{NOT_FOUND, agent} when") == []
    found = _edited("reset_breaker-1.lua", "return {-1, agent}", "return {${changed}, agent}")
    assert found == [
        "code returns -4, which the header does not mention",
        "header mentions code -1, which the code never returns",
    ]
    # A key the Lua spells that no builder spells, and one built without its name after P.
    found = _edited("alive-1.lua", "P .. 'agent:' .. agent", "P .. 'agnet:' .. agent")
    assert "code spells key 'agnet:', which no builder in core/constants.py spells" in found
    found = _edited("alive-1.lua", "P .. 'agent:' .. agent", "P .. agent")
    assert any("without its name spelled" in p for p in found)
    # A channel, an argument, a declared key.
    found = _edited("alive-1.lua", "rcall('PUBLISH', P .. 'hints'", "rcall('PUBLISH', P .. 'claimable'")
    assert "code spells P .. 'claimable' (claimable_channel), not in the header's Publishes on" in found
    assert "header's Publishes on names 'hints', which the code never spells" in found
    found = _edited("alive-1.lua", "ARGV[1], ARGV[2]", "ARGV[1], ARGV[3]")
    assert "code reads ARGV[3], which the header does not declare" in found
    found = _edited("server-1.lua", "records = KEYS[1] .. ':records'", "records = KEYS[1] .. ':recs'")
    assert "code spells key 'servers:recs', which no builder in core/constants.py spells" in found
    assert "header does not say the code reaches KEYS[1] .. ':recs'" in found


def test_lua_key_spellings_are_the_builders() -> None:
    """The few keys the Lua spells from a declared key rather than from P are the builders' too."""
    assert C.server_records_key("ns") == C.servers_key("ns") + ":records"  # server-1.lua
    assert builder_of("seq:finished") == "seq_key" and builder_of("taskevents:") == "task_events_key"


# --- Python spells keys through the builders only -------------------------------------------

# Builder spellings that only a key would contain: "task:", "cascades:cancel", not "events".
_KEY_TEXT = sorted({part for part, _ in BUILDERS.values() if ":" in part})
_SCANNED = ("core", "tui", "bench", "tests")


def _hand_spelled(tree: ast.AST, is_prefix: Callable[[ast.expr], bool]) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if any(text == part or ":" + part in text for part in _KEY_TEXT):
                lines.append(node.lineno)
        elif (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Add)
            and is_prefix(node.left)
            and not (isinstance(node.right, ast.Constant) and node.right.value == "*")
        ):
            lines.append(node.lineno)  # prefix + "...": a key spelled by hand (a scan's "*" is fine)
    return sorted(lines)


def _is_prefix(node: ast.expr) -> bool:
    """``prefix(...)``, ``C.prefix(...)``, ``self._prefix``: the namespace's key prefix."""
    if isinstance(node, ast.Call):
        called = node.func
        return getattr(called, "id", None) == "prefix" or getattr(called, "attr", None) == "prefix"
    return isinstance(node, ast.Attribute) and node.attr == "_prefix"


def test_python_spells_keys_only_through_the_builders() -> None:
    found = []
    for top in _SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            # .venv, bench/peers/.envs (the peers' installed packages)
            hidden = any(part.startswith(".") for part in path.relative_to(ROOT).parts)
            if path in (ROOT / "core" / "constants.py", Path(__file__).resolve()) or hidden:
                continue
            lines = _hand_spelled(ast.parse(path.read_text()), _is_prefix)
            found += [f"{path.relative_to(ROOT)}:{n}" for n in lines]
    assert found == [], "keys spelled by hand; use (or add) a builder in core/constants.py"


def test_the_python_scan_finds_a_hand_spelled_key() -> None:
    code = 'a = C.prefix(ns) + "tasklocks:" + t\nb = f"{{claimroom:{ns}}}:task:{t}"\nc = self._prefix + "x"\n'
    assert _hand_spelled(ast.parse(code), _is_prefix) == [1, 1, 2, 3]
