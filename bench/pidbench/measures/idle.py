"""What an init costs while nothing happens: wakeups and CPU over a window.

Every init idles at the same time, each with 3 sleeping children in its
own namespace, so the window is paid once per round rather than once per
init. A wakeup is a context switch of any of its threads: it ran, whatever
woke it. The supervision tree is the init and its helpers (runsv,
s6-supervise, honcho's workers), not the children.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from pidbench import procfs
from pidbench.children import SLEEP
from pidbench.errors import BenchError
from pidbench.inits import Init
from pidbench.measure import Metric, Round, Settings
from pidbench.measures.common import SLEEPERS, heavy_rounds
from pidbench.measures.memory import METRICS_VARIANT
from pidbench.namespace import Namespace
from pidbench.waiting import wait_until_quiet

WAKEUPS = Metric("idle_wakeups", "Init wakeups while idle", "/s")
TREE_WAKEUPS = Metric("idle_tree_wakeups", "Supervision tree wakeups while idle", "/s")
IDLE_RUNTIME = Metric("idle_runtime", "Init time on CPU over the idle window", "us", digits=0)
TREE_RUNTIME = Metric(
    "idle_tree_runtime", "Supervision tree time on CPU over the idle window", "us", digits=0
)


@dataclass(frozen=True)
class _Snapshot:
    at: float
    runtime_ns: int
    switches: int

    @classmethod
    def take(cls, pids: Sequence[int]) -> _Snapshot:
        return cls(
            at=time.monotonic(),
            runtime_ns=sum(procfs.cpu_runtime_ns(p) for p in pids),
            switches=sum(procfs.context_switches(p) for p in pids),
        )


class Idle:
    name = "idle"
    title = "Idle with 3 sleeping children"
    metrics = (WAKEUPS, TREE_WAKEUPS, IDLE_RUNTIME, TREE_RUNTIME)

    def applies(self, init: Init) -> bool:
        return not init.variant or init.name == METRICS_VARIANT

    def rounds(self, settings: Settings) -> int:
        return heavy_rounds(settings)

    def describe(self, settings: Settings) -> str:
        return (
            f"all inits idle at once for {settings.idle_window:g} s, each with 3 `sleep` "
            "children, once every tree has gone quiet; wakeups are voluntary + involuntary "
            "context switches of every thread (/proc/PID/task/*/status) per second, CPU is "
            "time on CPU from /proc/PID/task/*/schedstat; for the init, and summed over its "
            "supervision tree."
        )

    def run_round(self, inits: Sequence[Init], settings: Settings, out: Round) -> None:
        with ExitStack() as stack:
            idle: dict[str, Namespace] = {}
            for init in inits:
                try:
                    ns = stack.enter_context(Namespace(init, SLEEPERS, settings.workdir))
                    idle[init.name] = ns
                except BenchError as exc:
                    out.note(f"{init.name}: {exc}")
            trees: dict[str, list[int]] = {}
            for name, ns in idle.items():
                try:
                    ns.wait_workload(SLEEP, 3)
                    wait_until_quiet(ns.supervision_tree())
                    trees[name] = ns.supervision_tree()
                except BenchError as exc:
                    out.note(f"{name}: {exc}")
            before = {n: (_Snapshot.take([t[0]]), _Snapshot.take(t)) for n, t in trees.items()}
            time.sleep(settings.idle_window)
            for name, tree in trees.items():
                try:
                    init_after, tree_after = _Snapshot.take([tree[0]]), _Snapshot.take(tree)
                except BenchError as exc:
                    out.note(f"{name}: {exc}")
                    continue
                init_before, tree_before = before[name]
                for wakeups, runtime, start, end in (
                    (WAKEUPS, IDLE_RUNTIME, init_before, init_after),
                    (TREE_WAKEUPS, TREE_RUNTIME, tree_before, tree_after),
                ):
                    out.record(wakeups, name, (end.switches - start.switches) / (end.at - start.at))
                    out.record(runtime, name, (end.runtime_ns - start.runtime_ns) / 1000)
