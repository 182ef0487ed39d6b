"""Figures shared by the benchmark scripts (a module, not a benchmark: ./dev bench skips it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    """One line of a benchmark's table: what, how much, in what, against what target."""

    measure: str
    value: str
    unit: str
    target: str = "-"
    ok: str = "-"


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]; NaN when there is nothing to measure."""
    if not values:
        return float("nan")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)
