"""The README's promises, checked against the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_python_example_runs(redis_url: str, namespace: str) -> None:
    block = re.search(r"```python\n(.*?)```", README, re.S)
    assert block, "the README has a Python example"
    code = block.group(1).replace("redis://127.0.0.1:6379/0", redis_url).replace('"myproj"', f'"{namespace}"')
    assert redis_url in code  # the example must not touch the Redis on 6379
    code += (
        "\nasync def check():\n"
        f"    async with Store.from_url({redis_url!r}, {namespace!r}) as b:\n"
        "        print([t.state.value for t in await b.tasks()])\n"
        "asyncio.run(check())\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "['done']"


@pytest.mark.parametrize("code", ["0", "1", "2", "3", "4", "5", "6", "7"])
def test_every_exit_code_is_documented(code: str) -> None:
    assert re.search(rf"^\| {code} \| \w", README, re.M)


ROOT = Path(__file__).parent.parent


def _layout() -> str:
    start = README.index("## Layout\n")
    return README[start : README.index("\n## ", start + 1)]


def test_the_layout_names_every_module_and_folder_of_the_tree() -> None:
    words = set(re.findall(r"[\w]+", _layout()))
    missing = []
    for top in ("core", "tui", "themes"):
        for path in sorted((ROOT / top).rglob("*")):
            if "__pycache__" in path.parts or path.name == "__init__.py":
                continue
            if path.is_dir() or path.suffix == ".py":
                name = path.stem if path.suffix == ".py" else path.name
                if name not in words:
                    missing.append(str(path.relative_to(ROOT)))
    assert not missing, "README's Layout does not mention: " + ", ".join(missing)


def test_every_file_the_layout_names_exists() -> None:
    named = set(re.findall(r"\b([\w]+\.py)\b", _layout()))
    present = {
        p.name for top in ("core", "tui", "themes", "tests", "bench") for p in (ROOT / top).rglob("*.py")
    }
    present |= {"setup.py"}
    assert named - present == set(), f"README's Layout names files that are gone: {sorted(named - present)}"
