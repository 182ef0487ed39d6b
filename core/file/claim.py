"""The file store's claim: the SQL twin of ``lua/claim-1.lua`` (conventions as in ``ops``).

Bounded work (design rule 10): a claim reads the signatures in use (at most
``max_capsigs``) that the agent can take and one row of the ``heads`` index for each, never
the queues one by one; every query is one index seek (tests/test_scale.py reads their plans).
"""

from __future__ import annotations

from .. import constants as C
from . import affinity as file_affinity
from . import bidding as file_bidding
from .ops import promote_due, reap_due
from .states import HEAD_TASK, PICK, enter, ready_entered
from .tx import SIGS, Row, Tx, split

# Whether the reaper has work: one cheap look on the partial indexes before each claim.
_ANY_DUE = (
    "SELECT EXISTS (SELECT 1 FROM tasks WHERE ns = :ns AND state = 'claimed' AND deadline_ms <= :now)"
    " OR EXISTS (SELECT 1 FROM tasks WHERE ns = :ns AND state = 'retrying' AND ready_ms <= :now)"
    " OR EXISTS (SELECT 1 FROM cascades WHERE ns = :ns)"
    " OR " + file_bidding.ANY_DUE
)

# The claim's queries.
# INDEXED BY: left to choose, SQLite weighs the partial indexes against the value bound to
# :a and so compiles the statement again at every execution (5x the cost).
ASSIGNED = (
    f"SELECT {PICK} FROM tasks INDEXED BY tasks_assigned WHERE ns = :ns AND assigned = :a"
    " AND state = 'queued' AND assigned <> '' ORDER BY priority DESC, seq LIMIT 1"
)
BEST_HEAD = (
    "SELECT queue, priority, seq FROM heads INDEXED BY heads_best WHERE ns = :ns AND sig = :s"
    " ORDER BY priority DESC, seq LIMIT 1"
)
HELD = "SELECT COUNT(*) FROM tasks WHERE ns = :ns AND agent = :a AND state = 'claimed'"


def best_head_in(n: int) -> str:
    """BEST_HEAD among ``n`` named queues (:q0 ...): one primary-key seek each."""
    marks = ", ".join(f":q{i}" for i in range(n))
    return (
        f"SELECT queue, priority, seq FROM heads WHERE ns = :ns AND sig = :s AND queue IN ({marks})"
        " ORDER BY priority DESC, seq LIMIT 1"
    )


Head = tuple[int, int, str]  # (-priority, seq, queue): the smallest is claimed first


def look(tx: Tx, sig: str, queues: list[str]) -> Head | None:
    """The best claimable task needing ``sig`` in ``queues`` (all when empty)."""
    if queues:
        named = {f"q{i}": q for i, q in enumerate(queues)}
        row = tx.one(best_head_in(len(queues)), s=sig, **named)
    else:
        row = tx.one(BEST_HEAD, s=sig)
    return None if row is None else (-row["priority"], row["seq"], row["queue"])


def heads(tx: Tx, caps: set[str], queues: list[str]) -> dict[str, Head | None]:
    """The best head of each signature in use that ``caps`` cover (at most max_capsigs),
    and of the empty one, which every agent can take."""
    found = {sig: look(tx, sig, queues) for (sig,) in tx.all(SIGS) if set(split(sig)) <= caps}
    return {"": look(tx, "", queues), **found}


def claim(tx: Tx, agent: str, ttl_ms: int, queues: list[str], count: int) -> tuple[list[Row], str, int]:
    """Lease up to ``count`` tasks; returns (the claimed rows, miss reason, next change in ms)."""
    due = tx.one(_ANY_DUE, now=tx.now)
    if due is not None and due[0]:
        reap_due(tx)
        promote_due(tx)
        file_bidding.close_auctions(tx)
    if file_affinity.due(tx):
        file_affinity.steal_due(tx, ready_entered)
        file_affinity.ring_reap(tx, ready_entered)
    # The agent's liveness, and its row: registered on its first claim.
    a = tx.one(
        "UPDATE agents SET last_seen_ms = :now WHERE ns = :ns AND name = :a RETURNING *", now=tx.now, a=agent
    )
    if a is None:
        a = tx.one(
            "INSERT INTO agents (ns, name, caps, max_claims, last_seen_ms, registered_ms, auto)"
            " VALUES (:ns, :a, '', :m, :now, :now, 1) RETURNING *",
            a=agent,
            m=C.default_max_claims,
            now=tx.now,
        )
        assert a is not None
        tx.audit("registered", agent=agent, data={"auto": True})
    if not a["ring"]:
        file_affinity.touch(tx, agent)
    # Claims it won in an auction come first (already its own: no capacity or breaker check).
    won = file_bidding.won_claims(tx, agent, min(count, C.claim_batch_max))
    if won:
        return won, "", -1
    if a["breaker_open_until_ms"] > tx.now:
        return [], "breaker-open", a["breaker_open_until_ms"] - tx.now
    held = tx.one(HELD, a=agent)
    room = a["max_claims"] - (held[0] if held else 0)
    if room <= 0:
        return [], "at-capacity", -1
    count = min(count, room, C.claim_batch_max)

    caps = set(split(a["caps"]))
    best_of = heads(tx, caps, queues)
    out: list[Row] = []
    while len(out) < count:
        best: Row | None = tx.one(ASSIGNED, a=agent)
        sig = None
        if best is None:
            found = [(head, s) for s, head in best_of.items() if head is not None]
            own = file_affinity.own_head(tx, agent, caps, queues)
            if own is not None and (not found or (-own["priority"], own["seq"]) < min(found)[0][:2]):
                found, best = [], own
            elif not found:
                break
        if best is None:
            (_, _, queue), sig = min(found)
            best = tx.one(HEAD_TASK, q=queue, s=sig)
            if best is None:  # a head without a task (never left so by enter): drop it
                tx.run("DELETE FROM heads WHERE ns = :ns AND sig = :s AND queue = :q", s=sig, q=queue)
        if best is not None:
            token = tx.incr("token")
            attempts = best["attempts"] + 1
            deadline = tx.now + ttl_ms
            claimed = enter(
                tx, best, "claimed", assigned="", returning=True, agent=agent, token=token,
                deadline_ms=deadline, claimed_ms=tx.now, ttl_ms=ttl_ms, attempts=attempts,
            )  # fmt: skip
            assert claimed is not None
            tx.audit("claimed", best["id"], agent, token, {"deadline_ms": deadline, "attempt": attempts})
            out.append(claimed)
        if sig is not None and len(out) < count:
            best_of[sig] = look(tx, sig, queues)
    if out:
        return out, "", -1
    return [], "empty", next_change(tx)


def next_change(tx: Tx) -> int:
    """Until the next lease or backoff ends, in ms; -1 when none is running."""
    out = -1
    for sql in (
        "SELECT MIN(deadline_ms) FROM tasks WHERE ns = :ns AND state = 'claimed'",
        "SELECT MIN(ready_ms) FROM tasks WHERE ns = :ns AND state = 'retrying'",
        file_affinity.NEXT_STEAL,
    ):
        head = tx.one(sql)
        if head is not None and head[0] is not None:
            wait = max(0, head[0] - tx.now)
            if out < 0 or wait < out:
                out = wait
    return out


def could_claim(tx: Tx, agent: str, queues: list[str]) -> bool:
    """Whether a claim by ``agent`` might lease something now: read only, what a waiting
    claimer asks when the claimable counter moved, before it takes the write lock."""
    due = tx.one(_ANY_DUE, now=tx.now)
    if due is not None and due[0]:
        return True  # the claim's own recovery pass may free something
    # A claim it won in an auction waits to be handed over: the won claim is one it holds
    # already, so this comes before the capacity check that claim would fail (claim_tx too).
    if tx.one("SELECT 1 FROM won WHERE ns = :ns AND agent = :a LIMIT 1", a=agent) is not None:
        return True
    a = tx.one(
        "SELECT caps, max_claims, breaker_open_until_ms FROM agents WHERE ns = :ns AND name = :a",
        a=agent,
    )
    if a is not None:
        held = tx.one(HELD, a=agent)
        if a["breaker_open_until_ms"] > tx.now or a["max_claims"] <= (held[0] if held else 0):
            return False
    if tx.one(ASSIGNED, a=agent) is not None:
        return True
    caps = set(split(a["caps"])) if a is not None else set()
    if file_affinity.due(tx):
        return True
    if file_affinity.own_head(tx, agent, caps, queues) is not None:
        return True
    return any(head is not None for head in heads(tx, caps, queues).values())
