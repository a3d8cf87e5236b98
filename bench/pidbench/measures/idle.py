"""What an init costs while nothing happens: wakeups and CPU over a window.

Every init idles at the same time, each with a sleeping child in its own
namespace, so the window is paid once per round rather than once per init.
A wakeup is a context switch: the init ran, whatever woke it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from pidbench import procfs
from pidbench.children import SLEEPER
from pidbench.errors import BenchError
from pidbench.inits import Init
from pidbench.measure import Metric, Round, Settings
from pidbench.namespace import Namespace
from pidbench.waiting import wait_until_quiet

WAKEUPS = Metric("idle_wakeups", "Wakeups while idle", "/s")
IDLE_CPU = Metric("idle_cpu", "CPU over the idle window (utime+stime)", "ms", digits=0)
IDLE_RUNTIME = Metric("idle_runtime", "Time on CPU over the idle window", "us", digits=0)


@dataclass(frozen=True)
class _Snapshot:
    at: float
    cpu_ms: float
    runtime_ns: int
    switches: int

    @classmethod
    def take(cls, pid: int) -> _Snapshot:
        return cls(
            at=time.monotonic(),
            cpu_ms=procfs.stat(pid).cpu_ms,
            runtime_ns=procfs.cpu_runtime_ns(pid),
            switches=procfs.context_switches(pid),
        )


class Idle:
    name = "idle"
    title = "Idle with a sleeping child"
    metrics = (WAKEUPS, IDLE_CPU, IDLE_RUNTIME)

    def describe(self, settings: Settings) -> str:
        return (
            f"all inits idle at once for {settings.idle_window:g} s, each with a sleeping "
            "child; wakeups are voluntary + involuntary context switches "
            "(/proc/PID/status) per second; CPU is utime+stime (/proc/PID/stat, 10 ms "
            "ticks) and time on CPU from /proc/PID/schedstat."
        )

    def run_round(self, inits: Sequence[Init], settings: Settings, out: Round) -> None:
        with ExitStack() as stack:
            idle: dict[str, int] = {}  # init name -> host pid
            for init in inits:
                try:
                    ns = stack.enter_context(Namespace(init, SLEEPER, settings.workdir))
                    ns.running_child(SLEEPER[0])
                    idle[init.name] = ns.pid
                except BenchError as exc:
                    out.note(f"{init.name}: {exc}")
            for name, pid in list(idle.items()):
                try:
                    wait_until_quiet(pid)
                except BenchError as exc:
                    out.note(f"{name}: {exc}")
                    del idle[name]
            before = {name: _Snapshot.take(pid) for name, pid in idle.items()}
            time.sleep(settings.idle_window)
            for name, pid in idle.items():
                try:
                    after = _Snapshot.take(pid)
                except BenchError as exc:
                    out.note(f"{name}: {exc}")
                    continue
                start = before[name]
                out.record(WAKEUPS, name, (after.switches - start.switches) / (after.at - start.at))
                out.record(IDLE_CPU, name, after.cpu_ms - start.cpu_ms)
                out.record(IDLE_RUNTIME, name, (after.runtime_ns - start.runtime_ns) / 1000)
