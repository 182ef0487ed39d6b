"""The file store's bidding: the SQL twin of ``lua/bid-1.lua``, ``lua/won-1.lua`` and
lib.lua's ``open_auction``/``close_auctions``/``won_claims`` (core/bidding.py says what
bidding is). Conventions as in ``ops``; the tables are schema version 8's (``BIDDING``).
"""

from __future__ import annotations

from typing import Any

from .. import constants as C
from ..bidding import Bid as BidRow
from ..bidding import rank
from ..errors import ErrorCode
from .states import enter
from .tx import Refused, Row, Tx, load_task, split

# Whether a window's time is up: a claim's cheap look before it closes any.
ANY_DUE = "EXISTS (SELECT 1 FROM auctions WHERE ns = :ns AND close_ms <= :now)"


def _num(x: float) -> float | int:
    """A number as cjson writes it: whole numbers without a fraction."""
    return int(x) if x == int(x) else x


def open_auction(tx: Tx, tid: str, window_ms: int, after: str = "") -> None:
    """Task ``tid`` (blocked, waiting on nothing) opens its bidding window now."""
    close = tx.now + window_ms
    tx.run("UPDATE tasks SET bid_close_ms = :c WHERE ns = :ns AND id = :id", c=close, id=tid)
    tx.run("INSERT OR REPLACE INTO auctions (ns, task, close_ms) VALUES (:ns, :t, :c)", t=tid, c=close)
    data: dict[str, Any] = {"close_ms": close}
    if after:
        data["after"] = after
    tx.audit("auction-opened", tid, data=data)


def cannot_take(tx: Tx, agent: str, t: Row, room: bool) -> str:
    """Why ``agent`` may not take task ``t`` now ("" : it may); ``room``: capacity counts."""
    a = tx.one(
        "SELECT caps, max_claims, breaker_open_until_ms FROM agents WHERE ns = :ns AND name = :a", a=agent
    )
    if a is None:
        return "not registered"
    if a["breaker_open_until_ms"] > tx.now:
        return "breaker open"
    caps = set(split(a["caps"]))
    for c in split(t["requires"]):
        if c not in caps:
            return f"lacks capability {c}"
    if room:
        held = tx.one(
            "SELECT COUNT(*) FROM tasks WHERE ns = :ns AND agent = :a AND state = 'claimed'", a=agent
        )
        if (held[0] if held else 0) >= a["max_claims"]:
            return "at capacity"
    return ""


def bids_of(tx: Tx, tid: str) -> list[BidRow]:
    """One window's bids, best first."""
    rows = tx.all("SELECT agent, cost, at_ms, ttl_ms FROM bids WHERE ns = :ns AND task = :t", t=tid)
    return rank(BidRow(tid, r["agent"], float(r["cost"]), r["at_ms"], r["ttl_ms"]) for r in rows)


def close_one(tx: Tx, t: Row) -> str:
    """One window's end (lib.lua close_one): returns the winner, "" when none."""
    tid = t["id"]
    bids = bids_of(tx, tid)
    tx.run("DELETE FROM bids WHERE ns = :ns AND task = :t", t=tid)
    passed: list[dict[str, str]] = []
    win = None
    for b in bids:
        why = cannot_take(tx, b.agent, t, room=True)
        if not why:
            win = b
            break
        passed.append({"agent": b.agent, "reason": why})
    data: dict[str, Any] = {"bids": len(bids)}
    if passed:
        data["passed"] = passed
    if win is None:
        data["to"] = "queued"
        enter(tx, t, "queued")
        tx.audit("auction-closed", tid, data=data)
        return ""
    token = tx.incr("token")
    attempts = t["attempts"] + 1
    deadline = tx.now + win.ttl_ms
    enter(
        tx, t, "claimed", assigned="", agent=win.agent, token=token, deadline_ms=deadline,
        claimed_ms=tx.now, ttl_ms=win.ttl_ms, attempts=attempts, bid_winner=win.agent,
    )  # fmt: skip
    tx.run(
        "INSERT OR REPLACE INTO won (ns, agent, task, token) VALUES (:ns, :a, :t, :tok)",
        a=win.agent, t=tid, tok=token,
    )  # fmt: skip
    data |= {"to": "claimed", "winner": win.agent, "cost": _num(win.cost)}
    tx.audit("auction-closed", tid, win.agent, token, data)
    tx.audit(
        "claimed", tid, win.agent, token, {"deadline_ms": deadline, "attempt": attempts, "auction": True}
    )
    tx.claimable = True  # the winner's waiting claim hands it over (its wake: channel on Redis)
    return win.agent


def close_auctions(tx: Tx) -> list[str]:
    """Close the windows whose time is up, at most ``auction_batch`` (rule 10); returns
    their tasks. An entry whose task left its window meanwhile goes with its bids."""
    due = tx.all(
        "SELECT task FROM auctions INDEXED BY auctions_close WHERE ns = :ns AND close_ms <= :now"
        " ORDER BY close_ms, task LIMIT :n",
        now=tx.now,
        n=C.auction_batch,
    )
    out = []
    for (tid,) in due:
        tx.run("DELETE FROM auctions WHERE ns = :ns AND task = :t", t=tid)
        t = load_task(tx, tid)
        if t is not None and t["state"] == "blocked" and t["waiting"] <= 0:
            close_one(tx, t)
            out.append(tid)
        else:
            tx.run("DELETE FROM bids WHERE ns = :ns AND task = :t", t=tid)
    return out


def won_claims(tx: Tx, agent: str, count: int) -> list[Row]:
    """Claims ``agent`` won and was not handed yet, still the won ones (at most ``count``);
    every entry looked at is dropped."""
    out = []
    for r in tx.all(
        "SELECT task, token FROM won WHERE ns = :ns AND agent = :a ORDER BY token LIMIT :n", a=agent, n=count
    ):
        tx.run("DELETE FROM won WHERE ns = :ns AND agent = :a AND task = :t", a=agent, t=r["task"])
        t = load_task(tx, r["task"])
        if (
            t is not None and t["state"] == "claimed" and t["agent"] == agent
            and t["token"] == r["token"] and t["deadline_ms"] > tx.now
        ):  # fmt: skip
            out.append(t)
    return out


# --- bid-1.lua, won-1.lua --------------------------------------------------------------


def _is_open(tx: Tx, t: Row) -> Row | None:
    """The window's auctions row when it is open (its time may be up), else None."""
    if t["state"] != "blocked" or t["waiting"] > 0:
        return None
    return tx.one("SELECT close_ms FROM auctions WHERE ns = :ns AND task = :t", t=t["id"])


def bid(tx: Tx, tid: str, agent: str, cost: float, ttl_ms: int) -> tuple[int, int]:
    """Place or replace a bid; returns (its time, the window's close time)."""
    t = load_task(tx, tid)
    if t is None:
        raise Refused(ErrorCode.NOT_FOUND, tid)
    row = _is_open(tx, t)
    if row is None:
        if t["bid_window_ms"] <= 0:
            raise Refused(ErrorCode.BID_REFUSED, f"{tid} opens no bidding window")
        if t["bid_close_ms"] <= 0:
            raise Refused(
                ErrorCode.BID_REFUSED,
                f"the bidding window of {tid} is not open yet: it waits on its dependencies",
            )
        raise Refused(ErrorCode.BID_REFUSED, f"the bidding window of {tid} has closed ({t['state']})")
    close = int(row["close_ms"])
    if close <= tx.now:
        raise Refused(ErrorCode.BID_REFUSED, f"the bidding window of {tid} has closed")
    why = cannot_take(tx, agent, t, room=False)
    if why:
        raise Refused(ErrorCode.BID_REFUSED, f"{agent} may not bid on {tid}: {why}")
    replaced = (
        tx.one("SELECT 1 FROM bids WHERE ns = :ns AND task = :t AND agent = :a", t=tid, a=agent) is not None
    )
    if not replaced:
        n = tx.one("SELECT COUNT(*) FROM bids WHERE ns = :ns AND task = :t", t=tid)
        if n is not None and n[0] >= C.max_bids_per_task:
            raise Refused(ErrorCode.BID_REFUSED, f"{tid} has {C.max_bids_per_task} bids already")
    tx.run(
        "INSERT OR REPLACE INTO bids (ns, task, agent, cost, at_ms, ttl_ms)"
        " VALUES (:ns, :t, :a, :c, :now, :ttl)",
        t=tid, a=agent, c=cost, now=tx.now, ttl=ttl_ms,
    )  # fmt: skip
    tx.run("UPDATE agents SET last_seen_ms = :now WHERE ns = :ns AND name = :a", now=tx.now, a=agent)
    tx.audit("bid", tid, agent, data={"cost": _num(cost), "ttl_ms": ttl_ms, "replaced": replaced})
    return tx.now, close


def outcome(tx: Tx, tid: str, agent: str) -> tuple[str, str, int, Row | None]:
    """(status, winner, close time, the won claim's row when handed over now): won-1.lua."""
    t = load_task(tx, tid)
    if t is None:
        raise Refused(ErrorCode.NOT_FOUND, tid)
    if t["bid_window_ms"] <= 0:
        raise Refused(ErrorCode.BID_REFUSED, f"{tid} opens no bidding window")
    close, winner = int(t["bid_close_ms"]), str(t["bid_winner"])
    if close <= 0:
        return "waiting", "", 0, None
    if _is_open(tx, t) is not None:
        return "open", "", close, None
    if winner == agent:
        tx.run("DELETE FROM won WHERE ns = :ns AND agent = :a AND task = :t", a=agent, t=tid)
        held = t["state"] == "claimed" and t["agent"] == agent and t["deadline_ms"] > tx.now
        return "won", winner, close, t if held else None
    return ("lost" if winner else "queued"), winner, close, None


def auctions(tx: Tx, limit: int) -> list[tuple[Row, list[BidRow]]]:
    """The open windows closing first (at most ``limit``), each with its bids best first."""
    rows = tx.all(
        "SELECT t.id, t.title, t.queue, a.close_ms FROM auctions a INDEXED BY auctions_close"
        " JOIN tasks t ON t.ns = a.ns AND t.id = a.task"
        " WHERE a.ns = :ns AND t.state = 'blocked' AND t.waiting <= 0 ORDER BY a.close_ms, a.task LIMIT :n",
        n=limit,
    )
    return [(r, bids_of(tx, r["id"])) for r in rows]
