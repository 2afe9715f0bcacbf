"""Paired timings against direct ComfyUI: the one way every benchmark here compares two paths."""

from __future__ import annotations

import statistics
from collections.abc import Callable


def interleaved(n: int, direct: Callable[[], float], other: Callable[[], float]) -> tuple[list[float], list[float]]:
    """`n` timings of each side, taken in pairs whose order alternates so neither profits from going second."""
    direct_s: list[float] = []
    other_s: list[float] = []
    for i in range(n):
        pair = [(direct, direct_s), (other, other_s)]
        for fn, times in pair if i % 2 == 0 else reversed(pair):
            times.append(fn())
    return direct_s, other_s


def ratio_figures(direct_s: list[float], other_s: list[float], other: str) -> dict[str, float]:
    """Medians in ms, the ratio of medians and the median of pair-by-pair ratios (other / direct)."""
    ratios = [o / d for o, d in zip(other_s, direct_s, strict=True)]
    return {
        "direct_ms": statistics.median(direct_s) * 1000,
        f"{other}_ms": statistics.median(other_s) * 1000,
        "ratio_of_medians": statistics.median(other_s) / statistics.median(direct_s),
        "median_ratio": statistics.median(ratios),
    }
