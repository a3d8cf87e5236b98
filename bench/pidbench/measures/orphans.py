"""Orphans: how fast an init reaps zombies that are not its children.

OrphanStorm is the storm as it comes: the child program forks and counts
zombies itself, from inside the namespace, and reports when the last one
was gone. Forking is slower than any init reaps, so that time is mostly
the storm's own; ZombieBurst isolates the reaping: with the init stopped,
the zombies pile up, and the clock runs from SIGCONT until all are reaped.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Sequence

from pidbench import procfs
from pidbench.channel import Channel
from pidbench.children import program
from pidbench.errors import BenchError
from pidbench.inits import Init
from pidbench.measure import Metric, Round, Settings, each_init
from pidbench.measures.common import heavy_rounds
from pidbench.namespace import Namespace
from pidbench.waiting import wait_for, wait_until_quiet

CLEAR = Metric("storm_clear", "Storm start to no zombie left", "ms", digits=1)
DRAIN = Metric("storm_drain", "Last fork to no zombie left", "ms", digits=1)
PEAK = Metric("storm_peak", "Most zombies at once", "count", digits=0)
LEAKED = Metric("storm_leaked", "Zombies leaked", "count", digits=0)
# The inits the burst is for: it stops the init and counts its children.
BURST_INITS = ("pidone", "pidone run", "tini", "dumb-init")
BURST = Metric("burst_reap", "Burst: SIGCONT to no zombie left", "ms", digits=2)
BURST_CPU = Metric("burst_cpu", "Burst: init's CPU time to reap it", "ms", digits=2)
# Reading the children list takes the kernel's tasklist lock, which the
# reaping init needs too: polling flat out slowed every init down by up to 2x.
POLL_GAP = 0.0005


class OrphanStorm:
    name = "orphans"
    title = "Orphan storm"
    metrics = (CLEAR, DRAIN, PEAK, LEAKED)

    def applies(self, init: Init) -> bool:
        return not init.variant

    def rounds(self, settings: Settings) -> int:
        return heavy_rounds(settings)

    def describe(self, settings: Settings) -> str:
        return (
            f"the child (a supervisor's only service) forks {settings.storm_size} "
            "intermediates that each orphan a grandchild that exits at once, so the init "
            f"must reap {settings.storm_size} zombies it did not start. The child counts "
            "zombies (state Z in its namespace's /proc/*/stat) and times from its first fork "
            f"until none is left; zombies still there {settings.storm_timeout:g} s after "
            f"the last fork, or once none has been reaped for {settings.storm_stall:g} s, "
            "are leaked."
        )

    def run_round(self, inits: Sequence[Init], settings: Settings, out: Round) -> None:
        def measure(init: Init) -> None:
            with Channel(settings.workdir) as channel:
                args = (
                    str(channel.path),
                    str(settings.storm_size),
                    str(settings.storm_timeout),
                    str(settings.storm_stall),
                )
                with Namespace(init, program("orphan_storm", "timed", *args), settings.workdir):
                    # Forking takes a few seconds; the timeout is on top of it.
                    result = json.loads(channel.read_line(settings.storm_timeout + 120))
            if result["failed"]:
                out.note(f"{init.name}: {result['failed']} of the storm's forks failed")
            out.record(PEAK, init.name, result["peak"])
            out.record(LEAKED, init.name, result["leaked"])
            if result["clear_ms"] is None:
                out.flag(CLEAR, init.name, "leaks")
                out.flag(DRAIN, init.name, "leaks")
                return
            out.record(CLEAR, init.name, result["clear_ms"])
            out.record(DRAIN, init.name, result["clear_ms"] - result["storm_ms"])

        each_init(inits, out, measure)


class ZombieBurst:
    name = "burst"
    title = "Zombie burst"
    metrics = (BURST, BURST_CPU)

    def applies(self, init: Init) -> bool:
        return init.name in BURST_INITS

    def rounds(self, settings: Settings) -> int:
        return heavy_rounds(settings)

    def describe(self, settings: Settings) -> str:
        return (
            "the init is stopped (SIGSTOP from the host) while the child makes "
            f"{settings.storm_size} orphans the same way, so they wait as zombies; "
            "then SIGCONT, and the clock runs until the init's only child left is the "
            "storm program (/proc/PID/task/PID/children, polled from the host every "
            f"{POLL_GAP * 1000:g} ms); the init's CPU time over the same span is from schedstat."
        )

    def run_round(self, inits: Sequence[Init], settings: Settings, out: Round) -> None:
        def measure(init: Init) -> None:
            with Channel(settings.workdir) as channel:
                storm = program("orphan_storm", "held", str(channel.path), str(settings.storm_size))
                with Namespace(init, storm, settings.workdir) as ns:
                    channel.expect("ready", 10)
                    children = procfs.children(ns.pid)
                    if len(children) != 1:
                        raise BenchError(f"expected one child of the init, found {children}")
                    child = children[0]
                    wait_until_quiet(ns.pid)
                    wall_ms, cpu_ms = _time_burst(ns.pid, child, channel, settings)
            out.record(BURST, init.name, wall_ms)
            out.record(BURST_CPU, init.name, cpu_ms)

        each_init(inits, out, measure)


def _time_burst(
    init_pid: int, child: int, channel: Channel, settings: Settings
) -> tuple[float, float]:
    """Stop the init, have `child` storm, then SIGCONT: return (ms until no
    zombie is left, ms the init spent on CPU meanwhile)."""
    os.kill(init_pid, signal.SIGSTOP)
    wait_for(lambda: procfs.stat(init_pid).state == "T" or None, 5, "the init to stop")
    os.kill(child, signal.SIGUSR1)  # straight to the child: the stopped init forwards nothing
    failed = int(channel.read_line(120).removeprefix("done "))
    pending = len(procfs.children(init_pid)) - 1
    if failed or pending != settings.storm_size:
        raise BenchError(f"{pending} zombies waiting ({failed} forks failed)")
    deadline = time.monotonic() + settings.storm_timeout
    cpu_before = procfs.cpu_runtime_ns(init_pid)
    sent = time.monotonic_ns()
    os.kill(init_pid, signal.SIGCONT)
    while len(procfs.children(init_pid)) > 1:
        if time.monotonic() > deadline:
            raise BenchError(f"zombies left {settings.storm_timeout:g} s after SIGCONT")
        time.sleep(POLL_GAP)
    wall_ms = (time.monotonic_ns() - sent) / 1e6
    return wall_ms, (procfs.cpu_runtime_ns(init_pid) - cpu_before) / 1e6
