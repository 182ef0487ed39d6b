"""Helpers for the infrastructure tests: agents racing to start a store, an agent that rides out an outage."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from claimroom.core.errors import LeaseLost, StoreUnavailable
from claimroom.core.infra.probe import local_url
from claimroom.core.infra.project import read_password
from claimroom.core.models import State
from claimroom.core.store import Store

# One agent process: get ready (imports done), wait for the starting shot, resolve, report.
RACER = r"""
import json, sys, time
from pathlib import Path
from claimroom.core.infra import StartOptions, resolve
project, port, go, methods, image, name = sys.argv[1:7]
options = StartOptions(methods=tuple(methods.split(",")), image=image, container=name, volume=name)
print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.002)
print(json.dumps(resolve(None, project=Path(project), default_port=int(port), options=options).to_json()))
"""


def race(
    count: int, project: Path, port: int, methods: str, image: str = "", name: str = ""
) -> list[dict[str, Any]]:
    """Start ``count`` agent processes that resolve the store at the same instant; their resolutions."""
    go = project / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(project), str(port), str(go), methods, image, name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        for _ in range(count)
    ]
    for p in procs:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready", p.stderr.read() if p.stderr else ""
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def private_url(project: Path, port: int, db: int = 0) -> str:
    """The URL of the store claimroom started for ``project`` on ``port``: its password included."""
    password = read_password(project)
    assert password, f"no password was made for {project}"
    return local_url(port, password).removesuffix("/0") + f"/{db}"


def shown_url(port: int, db: int = 0) -> str:
    """How messages and JSON show that URL: the password hidden."""
    return f"redis://:***@127.0.0.1:{port}/{db}"


async def eventually(condition: Callable[[], bool], timeout_s: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.02)


class Agent:
    """Claims and completes tasks until ``total`` are done, riding out store outages."""

    def __init__(self, store: Store, name: str, total: int) -> None:
        self.store, self.name, self.total = store, name, total
        self.done: set[str] = set()
        self.outages = 0  # StoreUnavailable errors it saw (and carried on after)

    async def _finished(self) -> bool:
        return (await self.store.counts()).get(State.DONE, 0) >= self.total

    async def run(self) -> None:
        claim = None
        while True:
            try:
                if await self._finished():
                    return
                if claim is None:
                    claim = await self.store.claim(self.name, ttl_s=2.0, wait_s=0.2)
                if claim is not None:
                    await asyncio.sleep(0.01)  # the work
                    try:
                        await self.store.complete(claim.task.id, claim.token)
                        self.done.add(claim.task.id)
                    except LeaseLost:  # done just before the outage, or expired and requeued
                        pass
                    claim = None
            except StoreUnavailable:
                self.outages += 1
                await asyncio.sleep(0.05)
