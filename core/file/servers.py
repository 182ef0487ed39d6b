"""The file store's twin of ``lua/server-1.lua``: MCP server records on the board.

A server record is a lease on being alive, so it lives in the ``leases`` table beside the
reaper's leader lease: one row per server, named ``server:<id>``, whose ``holder`` column
holds the record's JSON and ``expires_ms`` when it goes if not refreshed. No schema change.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from .. import constants as C
from .tx import Tx

_PREFIX = "server:"


def _drop_expired(tx: Tx) -> None:
    tx.run(
        "DELETE FROM leases WHERE ns = :ns AND name IN (SELECT name FROM leases WHERE ns = :ns "
        "AND name >= 'server:' AND name < 'server;' AND expires_ms <= :now LIMIT :n)",
        now=tx.now,
        n=C.max_servers,
    )


def refresh(tx: Tx, server_id: str, record: str, ttl_ms: int) -> tuple[int, int]:
    """Write or refresh a server's record (``record`` empty: retire it); (now, started)."""
    _drop_expired(tx)
    name = _PREFIX + server_id
    if not record:
        tx.run("DELETE FROM leases WHERE ns = :ns AND name = :name", name=name)
        return tx.now, 0
    started = tx.now
    row = tx.one("SELECT holder FROM leases WHERE ns = :ns AND name = :name", name=name)
    if row is not None:
        with contextlib.suppress(ValueError, AttributeError):  # a damaged record starts over
            started = int(json.loads(row[0]).get("started_ms") or tx.now)
    data: dict[str, Any] = json.loads(record)
    data.update(started_ms=started, seen_ms=tx.now)
    tx.run(
        "INSERT INTO leases (ns, name, holder, expires_ms) VALUES (:ns, :name, :rec, :e) "
        "ON CONFLICT (ns, name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms",
        name=name,
        rec=json.dumps(data, separators=(",", ":")),
        e=tx.now + ttl_ms,
    )
    return tx.now, started


def live(tx: Tx) -> list[dict[str, Any]]:
    """The records of the servers whose leases have not run out."""
    rows = tx.all(
        "SELECT holder FROM leases WHERE ns = :ns AND name >= 'server:' AND name < 'server;' "
        "AND expires_ms > :now ORDER BY name LIMIT :n",
        now=tx.now,
        n=C.max_servers,
    )
    return [json.loads(r[0]) for r in rows]
