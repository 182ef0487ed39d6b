"""``claimroom topology [--json] [--watch]``: where the board is served (``Store.topology``).

One server, a Sentinel-watched master with its replicas and sentinels, or a Redis
Cluster's masters with their slots and replicas, the board's own marked; then the token
epoch. ``--watch`` reads it again every ``topology_watch_every_s`` and prints it each time
it changes (offsets and lags aside) until ctrl-c, outages included: the store finds the
new master after a failover by itself, so the watch follows it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from . import constants as C
from .errors import StoreUnavailable
from .output import Printer
from .store import Store
from .topology import Topology, lines


async def cmd_topology(a: argparse.Namespace, s: Store, out: Printer) -> None:
    if not a.watch:
        read = await s.topology()
        out.done(read.to_json(), "\n".join(lines(read)))
        return
    seen: tuple[Any, ...] | None = None
    while True:
        at_ms = int(time.time() * 1000)
        stamp = "-- " + time.strftime("%H:%M:%S", time.localtime(at_ms / 1000))
        try:
            t: Topology | None = await s.topology()
        except StoreUnavailable as exc:
            t, why = None, str(exc).splitlines()[0]
        now = ("up", t.shape()) if t is not None else ("down",)  # not the reason: it varies by the read
        if now != seen:
            seen = now
            if t is not None:
                out.done(t.to_json() | {"at_ms": at_ms}, "\n".join([stamp, *lines(t)]))
            else:
                down = {"error": why, "exit_code": StoreUnavailable.exit_code, "kind": "StoreUnavailable"}
                out.done(down | {"at_ms": at_ms}, f"{stamp}\n{why}")
        await asyncio.sleep(C.topology_watch_every_s)
