"""Shutdown: from SIGTERM to the init until the init has exited.

The child is `sleep`, which dies at once on SIGTERM, so what is measured is
the init's own path: forward, reap, exit (interpreter teardown included).
A pidfd turns readable when the process exits: no polling of /proc.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Sequence

from pidbench.children import SLEEPER
from pidbench.errors import BenchError
from pidbench.inits import Init
from pidbench.measure import Metric, Round, Settings, each_init
from pidbench.namespace import Namespace
from pidbench.waiting import wait_until_quiet

EXIT_TIMEOUT = 5.0  # seconds
# The shell's status for "killed by SIGTERM": what a tini-compatible init passes on.
EXPECTED_STATUS = 128 + signal.SIGTERM

SHUTDOWN = Metric("shutdown", "SIGTERM to init exited", "ms", digits=2)


def _time_exit(pid: int) -> float:
    """SIGTERM `pid` and return ms until it exits."""
    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        sent = time.monotonic_ns()
        os.kill(pid, signal.SIGTERM)
        if not poller.poll(EXIT_TIMEOUT * 1000):
            raise BenchError(f"still running {EXIT_TIMEOUT:g} s after SIGTERM")
        return (time.monotonic_ns() - sent) / 1e6
    finally:
        os.close(pidfd)


class Shutdown:
    name = "shutdown"
    title = "Shutdown on SIGTERM"
    metrics = (SHUTDOWN,)

    def describe(self, settings: Settings) -> str:
        return (
            "SIGTERM to the init (child: `sleep`) until the init has exited, seen "
            "through a pidfd becoming readable; the init should exit with "
            f"{EXPECTED_STATUS} (its child killed by SIGTERM)."
        )

    def run_round(self, inits: Sequence[Init], settings: Settings, out: Round) -> None:
        def measure(init: Init) -> None:
            with Namespace(init, SLEEPER, settings.workdir) as ns:
                ns.running_child(SLEEPER[0])
                wait_until_quiet(ns.pid)
                out.record(SHUTDOWN, init.name, _time_exit(ns.pid))
                status = ns.wait_exit(10)
                if status != EXPECTED_STATUS:
                    out.note(f"{init.name} exited with {status}, not {EXPECTED_STATUS}")

        each_init(inits, out, measure)
