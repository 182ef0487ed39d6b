"""Move a whole board between stores (a file store and Redis, either way).

A board travels as one backend-neutral dump (``dump.Board``): ``Store.export_board`` on the
source, ``Store.import_board`` on the destination. Stop the agents first: work done on the
source after the export is not carried over.
"""

from __future__ import annotations

from . import constants as C
from .dump import shifted, without_controls
from .errors import BadInput
from .store import Store


async def migrate(src: Store, dst: Store, *, merge: bool = False) -> dict[str, int]:
    """Copy ``src``'s board into ``dst``; refuses a non-empty ``dst`` unless ``merge``.

    With ``merge`` the incoming tasks are renumbered after the destination's (references
    follow), existing agents keep their records, and a lock that would clash with one the
    destination holds refuses the whole merge. Returns what was written, by kind.
    """
    if (src.url, src.namespace) == (dst.url, dst.namespace):
        raise BadInput("source and destination are the same board")
    src_now = await src.now_ms()
    skew = await dst.now_ms() - src_now
    board, escaped = without_controls(await src.export_board())
    shift = skew if abs(skew) > C.migrate_clock_skew_ms else 0
    if shift:
        board = shifted(board, shift)
    counts = await dst.import_board(board, merge=merge)
    counts["escaped"] = escaped
    counts["clock_shift_ms"] = shift
    return counts
