"""Bounded waits: every wait in the benchmark ends, with a message if it fails."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from pidbench import procfs
from pidbench.errors import BenchError

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.002
) -> T:
    """Call `probe` until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def wait_until_quiet(
    pids: int | Sequence[int], quiet: float = 0.1, timeout: float = 10.0, calm_windows: int = 3
) -> None:
    """Wait until the process(es) sleep and have not run for `quiet` seconds,
    so that what we read next is their steady state, not the tail of their
    start-up. An init with a tick (supervisord, honcho) never goes that quiet:
    `calm_windows` windows in a row in which it ran under 1% of the time count too."""
    group = [pids] if isinstance(pids, int) else list(pids)
    calm = 0

    def settled() -> bool | None:
        nonlocal calm
        switches = sum(procfs.context_switches(p) for p in group)
        runtime = sum(procfs.cpu_runtime_ns(p) for p in group)
        time.sleep(quiet)
        asleep = all(procfs.stat(p).state in ("S", "I") for p in group)
        if asleep and sum(procfs.context_switches(p) for p in group) == switches:
            return True
        ran = sum(procfs.cpu_runtime_ns(p) for p in group) - runtime
        calm = calm + 1 if ran < quiet * 1e9 * 0.01 else 0
        return True if calm >= calm_windows else None

    wait_for(settled, timeout, f"process(es) {group} to go quiet", interval=0)
