"""What several measurements share: their workloads, and who takes part."""

from __future__ import annotations

import os
import select
import signal
import time

from pidbench import procfs
from pidbench.children import SLEEPER, program
from pidbench.errors import BenchError
from pidbench.inits import Init
from pidbench.measure import Settings
from pidbench.namespace import Namespace
from pidbench.workload import Service, Workload

SLEEPERS = Workload(tuple(Service(f"sleep{i}", SLEEPER) for i in range(1, 4)))


def main_inits(init: Init) -> bool:
    """Every init but the variants."""
    return not init.variant


def supervisors(init: Init) -> bool:
    return init.supervises and not init.variant


def services(fifo: str, names: str, **options: str) -> Workload:
    """children/service.py for each name in `names` ("abc"), independent."""
    extra = [arg for key, value in options.items() for arg in (f"--{key}", value)]
    return Workload(tuple(Service(n, tuple(program("service", fifo, n, *extra))) for n in names))


def heavy_rounds(settings: Settings) -> int:
    return min(settings.rounds, settings.heavy_rounds)


def time_exit(ns: Namespace, timeout: float, signum: int = signal.SIGTERM) -> float:
    """Send `signum` to the init and return ms until it has exited (its pidfd
    turns readable: no polling)."""
    pidfd = ns.pidfd()
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        sent = time.monotonic_ns()
        os.kill(ns.pid, signum)
        if not poller.poll(timeout * 1000):
            raise BenchError(f"still running {timeout:g} s after {signal.Signals(signum).name}")
        return (time.monotonic_ns() - sent) / 1e6
    finally:
        os.close(pidfd)


def tree_memory_kib(pids: list[int]) -> tuple[int, int]:
    """(RSS, PSS) summed over `pids`, in KiB; processes that went away count 0."""
    rss = pss = 0
    for pid in pids:
        try:
            memory = procfs.memory_kib(pid)
        except BenchError:
            continue
        rss += memory["Rss"]
        pss += memory.get("Pss", 0)
    return rss, pss
