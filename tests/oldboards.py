"""What file-board schemas 8 to 12 added, undone: the tests that build a board as an older
claimroom left it (to check the upgrade in place) start from a fresh board, drop what that
older schema lacked, and set its version. Kept in one place so a new schema adds one list.
"""

from __future__ import annotations

import sqlite3

# Newest first, so nothing is dropped while something added later still refers to it.
UNDO_SINCE_7 = (
    # 12: plans (core/plan.py)
    "DROP INDEX tasks_plan",
    "DROP INDEX tasks_plans",
    *(
        f"ALTER TABLE tasks DROP COLUMN {c}"
        for c in ("paths", "plan", "plan_left", "plan_total", "plan_wait", "plan_failed", "plan_depth")
    ),
    # 11: review
    "ALTER TABLE tasks DROP COLUMN review_ref",
    "ALTER TABLE tasks DROP COLUMN review_ms",
    # 10: affinity (tasks_ready regains its older form)
    "DROP INDEX tasks_ready",
    "DROP INDEX tasks_owned",
    "DROP INDEX tasks_steal",
    "DROP INDEX agents_live",
    "DROP TABLE ring",
    "ALTER TABLE tasks DROP COLUMN owner",
    "ALTER TABLE tasks DROP COLUMN steal_ms",
    "ALTER TABLE tasks DROP COLUMN steal_after_ms",
    "ALTER TABLE agents DROP COLUMN ring",
    "CREATE INDEX tasks_ready ON tasks (ns, queue, requires, priority DESC, seq)"
    " WHERE state = 'queued' AND assigned = ''",
    # 9: bidding
    "ALTER TABLE tasks DROP COLUMN bid_window_ms",
    "ALTER TABLE tasks DROP COLUMN bid_close_ms",
    "ALTER TABLE tasks DROP COLUMN bid_winner",
    "DROP TABLE auctions",
    "DROP TABLE bids",
    "DROP TABLE won",
    # 8: messages
    "DROP TABLE message_reads",
    "DROP TABLE messages",
)


def undo_since_7(conn: sqlite3.Connection) -> None:
    """Take a fresh file board back to what schema 7 had (the caller drops what is older)."""
    for sql in UNDO_SINCE_7:
        conn.execute(sql)
