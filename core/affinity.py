"""Consistent-hash affinity: the hash ring both backends route affine tasks with.

A ring with virtual nodes, not rendezvous hashing: the ring lives in a sorted set (Redis) or
an indexed table (SQLite), so the owner of a key is one ordered seek (O(log n)) plus a walk
of at most ``affinity_walk_max`` points, whatever the number of agents (design rule 10);
rendezvous hashing would score every agent for every key. Each agent stands at
``affinity_vnodes`` points, which evens out the share of keys each one owns, so an agent
joining or leaving moves about 1/N of the keys, and only to or from itself.

A point is the first 8 hex digits of a sha1 as an integer: ``lua/lib.lua`` gets the same
number from ``redis.sha1hex``, so Python, Lua and SQLite agree bit for bit (ties between
equal points are broken by the member's text, as a Redis sorted set orders them).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Iterable, Mapping

from . import constants as C

Point = tuple[int, str]  # (point, member "<agent>#<i>")


def point(text: str) -> int:
    """Where ``text`` sits on the ring: 0 .. 2**32 - 1."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)


def members(agent: str) -> list[Point]:
    """An agent's virtual nodes on the ring."""
    return [(point(f"{agent}#{i}"), f"{agent}#{i}") for i in range(C.affinity_vnodes)]


def agent_of(member: str) -> str:
    """The agent a ring member stands for (agent names never hold '#')."""
    return member.rpartition("#")[0]


def walk(points: list[Point], key: str) -> list[Point]:
    """The points an owner lookup visits for ``key``: from the first at or after the key's
    point, clockwise (wrapping), at most ``affinity_walk_max`` (what the Lua's two ZRANGEs read)."""
    start = bisect.bisect_left(points, (point(key), ""))
    ahead = points[start : start + C.affinity_walk_max]
    return ahead + points[: C.affinity_walk_max - len(ahead)]


def owner(points: list[Point], key: str, usable: Callable[[str], bool]) -> str | None:
    """The first agent clockwise from ``key`` that is ``usable`` (live and capable), or None."""
    return first_usable((m for _, m in walk(points, key)), usable)


def first_usable(walked: Iterable[str], usable: Callable[[str], bool]) -> str | None:
    """The agent of the first member of a walk that is ``usable``, each agent asked once."""
    seen: set[str] = set()
    for member in walked:
        agent = agent_of(member)
        if agent not in seen:
            seen.add(agent)
            if usable(agent):
                return agent
    return None


def can_take(caps: Iterable[str], requires: str) -> bool:
    """Whether capabilities ``caps`` cover a task's ``requires`` ("a,b")."""
    have = set(caps)
    return all(c in have for c in requires.split(",") if c)


class Ring:
    """A ring of agents in memory: what the stores keep, for tests and tools."""

    def __init__(self, agents: Mapping[str, Iterable[str]] | Iterable[str] = ()) -> None:
        self.caps: dict[str, frozenset[str]] = {}
        self.points: list[Point] = []
        items = agents.items() if isinstance(agents, Mapping) else ((a, ()) for a in agents)
        for name, caps in items:
            self.caps[name] = frozenset(caps)
        self._build()

    def _build(self) -> None:
        self.points = sorted(p for a in self.caps for p in members(a))

    def join(self, agent: str, caps: Iterable[str] = ()) -> None:
        self.caps[agent] = frozenset(caps)
        self._build()

    def leave(self, agent: str) -> None:
        self.caps.pop(agent, None)
        self._build()

    def owner(self, key: str, requires: str = "") -> str | None:
        return owner(self.points, key, lambda a: can_take(self.caps[a], requires))
