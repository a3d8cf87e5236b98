"""Summaries of repeated measurements."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    minimum: float
    median: float
    maximum: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("no values to summarise")
        return cls(min(values), statistics.median(values), max(values), len(values))


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: always one of the observed values, so a p99 of
    200 samples is the second-worst sample, not an interpolation."""
    if not values:
        raise ValueError("no values for a percentile")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
