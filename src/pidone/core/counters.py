"""Counts the loop keeps for /metrics, in a module of their own so that the
loop can keep them without loading the metrics server when metrics are off."""

from __future__ import annotations


class PidoneCounters:
    """Counts the loop keeps for /metrics. The loop is the only writer; the
    scrape thread reads (copying the dicts), so a value may be one event stale."""

    def __init__(self) -> None:
        self.zombies_reaped = 0
        self.signals_received: dict[int, int] = {}
        self.signals_forwarded: dict[int, int] = {}

    @staticmethod
    def count(counter: dict[int, int], signum: int) -> None:
        counter[signum] = counter.get(signum, 0) + 1
