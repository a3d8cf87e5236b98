"""Shutdown: from SIGTERM to the init until the init has exited.

Three children (children/service.py) that exit at once on SIGTERM, after
saying so on a FIFO: what is measured is the init's own path (pass the
signal on, reap, exit, interpreter teardown included), and how many of the
children were told at all (an init that exits without passing SIGTERM on
leaves them to the kernel's SIGKILL when PID 1 dies). Then the same with
one child that takes SLOW_STOP to stop: a shutdown should take that long
and no longer, never a tick or a fixed sleep more.
"""

from __future__ import annotations

from collections.abc import Sequence

from pidbench.channel import Channel
from pidbench.errors import BenchError
from pidbench.inits import Init
from pidbench.measure import Metric, Round, Settings, each_init
from pidbench.measures.common import services, time_exit
from pidbench.namespace import Namespace
from pidbench.waiting import wait_until_quiet
from pidbench.workload import Service, Workload

SLOW_STOP = 0.2  # seconds the slow child takes to stop
EXIT_TIMEOUT = 15.0
START_TIMEOUT = 20.0

SHUTDOWN = Metric("shutdown", "3 prompt children: SIGTERM to init exited", "ms", digits=2)
TOLD = Metric(
    "shutdown_told", "3 prompt children: children that got SIGTERM", "of 3", 0, better="higher"
)
SLOW_EXTRA = Metric(
    "shutdown_slow", f"One child stops in {SLOW_STOP * 1000:g} ms: exit beyond that", "ms", 2
)


def run_until_term(
    ns: Namespace, channel: Channel, count: int, timeout: float = EXIT_TIMEOUT
) -> tuple[float, list[str]]:
    """SIGTERM the init (its workload up and quiet): ms until it exited, and the
    names of the children that reported SIGTERM, in the order they did."""
    wait_until_quiet(ns.supervision_tree())
    took = time_exit(ns, timeout)
    told = []
    while True:
        try:
            event, name, *_ = channel.read_line(0.05).split()
        except BenchError:
            break
        if event == "term":
            told.append(name)
    return took, told[:count]


class Shutdown:
    name = "shutdown"
    title = "Shutdown on SIGTERM"
    metrics = (SHUTDOWN, TOLD, SLOW_EXTRA)

    def applies(self, init: Init) -> bool:
        return not init.variant

    def rounds(self, settings: Settings) -> int:
        return settings.rounds

    def describe(self, settings: Settings) -> str:
        return (
            "3 independent children that report SIGTERM on a FIFO and exit 0 at once; once "
            "all 3 run and the init is quiet, SIGTERM to the init until it has exited (a "
            "pidfd turns readable), and how many children got SIGTERM (the others died by "
            "the kernel's SIGKILL when PID 1 exited). Then the same with one child taking "
            f"{SLOW_STOP * 1000:g} ms to stop: the time beyond those {SLOW_STOP * 1000:g} ms."
        )

    def run_round(self, inits: Sequence[Init], settings: Settings, out: Round) -> None:
        def measure(init: Init) -> None:
            with Channel(settings.workdir) as channel:
                workload = services(str(channel.path), "abc")
                with Namespace(init, workload, settings.workdir) as ns:
                    channel.read_lines(3, START_TIMEOUT)
                    took, told = run_until_term(ns, channel, 3)
            out.record(SHUTDOWN, init.name, took)
            out.record(TOLD, init.name, len(told))
            with Channel(settings.workdir) as channel:
                slow = _with_slow_child(services(str(channel.path), "abc"))
                with Namespace(init, slow, settings.workdir) as ns:
                    channel.read_lines(3, START_TIMEOUT)
                    took, told = run_until_term(ns, channel, 3)
            if "c" in told:
                out.record(SLOW_EXTRA, init.name, took - SLOW_STOP * 1000)
            else:
                out.flag(SLOW_EXTRA, init.name, "not told")

        each_init(inits, out, measure)


def _with_slow_child(workload: Workload) -> Workload:
    *first, last = workload.services
    slow = Service(last.name, (*last.argv, "--term-delay", str(SLOW_STOP)))
    return Workload((*first, slow))
