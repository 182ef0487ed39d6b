"""The store pane's topology, driven by key presses through Pilot on real topologies: the
sentinels' master with its replicas and sentinels, a cluster's masters with their slots, and
a failover shown without a restart (the error state while the master is gone, then the new
master). The blocking topology calls (kill, wait for the failover) run in a thread, so the
app keeps running while they wait, as it does for an operator.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from pathlib import Path

import pytest
from conftest import TOPOLOGY_PASSWORD
from pilot_wait import until
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Static

from claimroom.core import constants as C
from claimroom.core.local_topology import LocalCluster, LocalSentinel
from claimroom.core.store import Store
from claimroom.tui.app import ControlRoom
from claimroom.tui.storepane import StorePane

pytestmark = pytest.mark.heavy

SIZE = (120, 40)


def app_on(url: str) -> ControlRoom:
    return ControlRoom(Store.from_url(url, "tui" + uuid.uuid4().hex[:10]), operator="lead")


def box(app: ControlRoom) -> str:
    """The topology box as plain text (its title, then what it draws)."""
    widget = app.query_one("#store-topology", Static)
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(widget.content)
    return f"{widget.border_title}\n{console.export_text()}"


def row_of(app: ControlRoom, address: str) -> str:
    """The node's row: its role, then its address (below the title and the headline, which
    names the master too)."""
    rows = box(app).splitlines()[2:]
    return next((line for line in rows if line.split()[1:2] == [address]), "")


async def on_store_pane(pilot: Pilot[int], app: ControlRoom) -> StorePane:
    await until(pilot, lambda: app.attached, 10)
    await pilot.press("8")
    pane = app.query_one(StorePane)
    await until(pilot, lambda: app.active_pane == "store" and pane.topology is not None, 10)
    return pane


async def test_the_store_pane_shows_the_sentinels_master_replicas_and_sentinels(
    sentinel_topology: LocalSentinel,
) -> None:
    app = app_on(sentinel_topology.url)
    async with app.run_test(size=SIZE) as pilot:
        await on_store_pane(pilot, app)
        master = sentinel_topology.master()
        await until(pilot, lambda: "this board" in row_of(app, master.address), 5)
        text = box(app)
        assert text.startswith("topology: sentinel claimroom\n")
        assert f"master {master.address} · quorum 2" in text
        assert row_of(app, master.address).split()[:3] == ["master", master.address, "up"]
        for n in sentinel_topology.nodes:
            if n is not master:
                assert row_of(app, n.address).split()[:3] == ["replica", n.address, "up"]
        for s in sentinel_topology.sentinels:
            assert row_of(app, s.address).split()[:5] == [
                "sentinel",
                s.address,
                "up",
                "names",
                master.address,
            ]


async def test_the_store_pane_shows_the_clusters_slots(cluster_topology: LocalCluster) -> None:
    app = app_on(cluster_topology.url)
    async with app.run_test(size=SIZE) as pilot:
        pane = await on_store_pane(pilot, app)
        t = pane.topology
        assert t is not None
        assert box(app).startswith(f"topology: cluster, this board in slot {t.slot}\n")
        for shard in cluster_topology.masters():
            ranges = ",".join(f"{lo}-{hi}" for lo, hi in shard.slots)
            assert f"slots {ranges}" in row_of(app, f"127.0.0.1:{shard.port}")
        assert "this board" in row_of(app, t.master)


async def test_a_failover_shows_the_new_master_without_a_restart(tmp_path: Path) -> None:
    topo = await asyncio.to_thread(LocalSentinel.start, tmp_path / "sentinel", password=TOPOLOGY_PASSWORD)
    try:
        app = app_on(topo.url)
        async with app.run_test(size=SIZE) as pilot:
            pane = await on_store_pane(pilot, app)
            old = topo.master()
            await until(pilot, lambda: "this board" in row_of(app, old.address), 5)
            await asyncio.to_thread(topo.kill_master)
            # While it is gone: the pane says so (the master down, or the read's error) and lives on.
            await until(
                pilot,
                lambda: pane.topology_error != "" or row_of(app, old.address).split()[2:3] == ["down"],
                15,
            )
            new = await asyncio.to_thread(topo.wait_failover, old.port)
            await until(
                pilot,
                lambda: (
                    pane.topology is not None
                    and pane.topology.master == new.address
                    and not pane.topology_error
                    and "this board" in row_of(app, new.address)
                    and row_of(app, new.address).split()[:3] == ["master", new.address, "up"]
                ),
                C.topology_failover_timeout_s,
            )
            assert f"master {new.address}" in box(app)
            # Still the same app, answering keys.
            await pilot.press("1")
            await until(pilot, lambda: app.active_pane == "overview")
            await pilot.press("8")
            await until(pilot, lambda: app.active_pane == "store")
            assert app.is_running
    finally:
        await asyncio.to_thread(topo.stop)
