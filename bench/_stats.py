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


def yes(ok: bool) -> str:
    """The ok column: "yes", or "NO" to stand out."""
    return "yes" if ok else "NO"


def fmt(v: float, digits: int = 1) -> str:
    """A figure with ``digits`` decimals; "n/a" when there was nothing to measure (NaN)."""
    return "n/a" if v != v else f"{v:.{digits}f}"


def ms_rows(
    label: str,
    values: list[float],
    target_ms: float | None = None,
    qs: tuple[int, ...] = (50, 99),
    marked: tuple[int, ...] = (99,),
    digits: int = 1,
) -> list[Row]:
    """One row per percentile in ``qs`` of ``values`` (ms); those in ``marked`` held to
    ``target_ms`` when given. ``label`` holds "{q}" where the percentile's number goes."""
    rows = []
    for q in qs:
        v = percentile(values, q)
        if target_ms is not None and q in marked:
            rows.append(Row(label.format(q=q), fmt(v, digits), "ms", f"< {target_ms:g}", yes(v < target_ms)))
        else:
            rows.append(Row(label.format(q=q), fmt(v, digits), "ms"))
    return rows
