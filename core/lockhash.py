"""The holds in a Redis lock hash (``lock:<path>``), read without the models' dataclasses.

A hold keyed ``<agent>`` (untied) or ``<agent>|<task>`` has the fields ``h:<key>``
(expiry, ms) and ``m:<key>`` (mode); a hash written before holds had modes keeps one
``mode`` field for the path. ``models.LockHold.all_in`` and the hooks' board read
(``claude/board.py``, which must start fast) both read it here.
"""

from __future__ import annotations


def holds_in(f: dict[str, str]) -> list[tuple[str, str, int, bool]]:
    """Every hold in the hash, live or not, as (agent, task, expires_ms, shared), ordered
    by agent then task."""
    holds = []
    for k, v in f.items():
        if k.startswith("h:"):
            agent, _, task = k[2:].partition("|")
            mode = f.get("m:" + k[2:], f.get("mode", "exclusive"))
            holds.append((agent, task, int(v), mode == "shared"))
    return sorted(holds, key=lambda h: (h[0], h[1]))
