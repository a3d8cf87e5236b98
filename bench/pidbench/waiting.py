"""Bounded waits: every wait in the benchmark ends, with a message if it fails."""

from __future__ import annotations

import time
from collections.abc import Callable
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


def wait_until_quiet(pid: int, quiet: float = 0.1, timeout: float = 10.0) -> None:
    """Wait until `pid` sleeps and has not run for `quiet` seconds, so that
    what we read next is its steady state, not the tail of its start-up."""

    def settled() -> bool | None:
        before = procfs.context_switches(pid)
        time.sleep(quiet)
        if procfs.stat(pid).state == "S" and procfs.context_switches(pid) == before:
            return True
        return None

    wait_for(settled, timeout, f"process {pid} to go quiet", interval=0)
