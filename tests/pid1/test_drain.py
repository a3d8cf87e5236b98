"""[pidone] shutdown_delay, for real (PID 1, and a subreaper): a SIGTERM
stops nothing until the delay is over; a second SIGTERM during it stops at
once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.helpers.stack import Stack


def drained(stack: Stack) -> str:
    return f"""
[pidone]
shutdown_delay = 1.5
settle_time = 0.1
[process.a]
command = "{stack.svc("a")}"
"""


def test_sigterm_stops_nothing_before_the_shutdown_delay(mode: str, tmp_path: Path) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(drained(stack))
        stack.wait_for("a up")
        sent = time.monotonic_ns()
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
        term = next(e.ns for e in stack.journal() if e.event == "term")
    assert term - sent >= 1.5e9  # the stop began after the delay, not before
    assert "pidone | received SIGTERM: draining (/readyz 503) for 1.5 s" in stack.output()[0]


def test_a_second_sigterm_during_the_drain_stops_at_once(mode: str, tmp_path: Path) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(drained(stack).replace("1.5", "60"))
        stack.wait_for("a up")
        stack.init.signal(signal.SIGTERM)
        wait = time.monotonic()
        while "draining" not in stack.stdout_so_far():
            assert time.monotonic() - wait < 10, stack.stdout_so_far()
            time.sleep(0.02)
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0  # well before the 60 s delay (Init.wait: 20 s)
        out, _ = stack.output()
    assert "pidone | received SIGTERM while draining: stopping" in out
    assert stack.count("a term") == 1
