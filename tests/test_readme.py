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


@pytest.mark.parametrize("code", ["0", "1", "2", "3", "4", "5", "6"])
def test_every_exit_code_is_documented(code: str) -> None:
    assert re.search(rf"^\| {code} \| \w", README, re.M)
