"""Resident memory of an init whose child sleeps, next to a bare interpreter.

The bare interpreter (`python -c 'import time; time.sleep(100)'` from the
venv, outside any namespace) is what pidone cannot go below, so it is the
yardstick for pidone's RSS target. Each subject runs alone, so no two of
them share pages that would lower each other's PSS.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from pidbench import procfs
from pidbench.children import SLEEPER
from pidbench.errors import BenchError
from pidbench.inits import REPO, VENV_PYTHON, Init
from pidbench.measure import Metric, Round, Settings, each_init
from pidbench.namespace import Namespace, die_with_parent
from pidbench.waiting import wait_until_quiet

BASELINE = "python (bare)"
BASELINE_ARGV = (str(VENV_PYTHON), "-c", "import time; time.sleep(100)")

RSS = Metric("rss", "RSS", "MiB")
PSS = Metric("pss", "PSS", "MiB")
STARTUP_CPU = Metric("startup_cpu", "CPU to start up", "ms", digits=1)


def _record(pid: int, subject: str, out: Round) -> None:
    memory = procfs.memory_kib(pid)
    out.record(RSS, subject, memory["Rss"] / 1024)
    out.record(PSS, subject, memory["Pss"] / 1024)
    out.record(STARTUP_CPU, subject, procfs.cpu_runtime_ns(pid) / 1e6)


class Memory:
    name = "memory"
    title = "Memory with a sleeping child"
    metrics = (RSS, PSS, STARTUP_CPU)

    def describe(self, settings: Settings) -> str:
        return (
            "RSS and PSS from /proc/PID/smaps_rollup of the init once its child "
            "(`sleep`) runs and the init has gone quiet, each init alone; CPU to start "
            "up is its schedstat runtime at that point. The baseline is "
            f"`{VENV_PYTHON.relative_to(REPO)} -c '{BASELINE_ARGV[2]}'`, outside any namespace. "
            "PSS counts pages shared with the benchmark, which runs on the same interpreter."
        )

    def run_round(self, inits: Sequence[Init], settings: Settings, out: Round) -> None:
        def measure(init: Init) -> None:
            with Namespace(init, SLEEPER, settings.workdir) as ns:
                ns.running_child(SLEEPER[0])
                wait_until_quiet(ns.pid)
                _record(ns.pid, init.name, out)

        each_init(inits, out, measure)
        try:
            self._measure_baseline(out)
        except BenchError as exc:
            out.note(f"{BASELINE}: {exc}")

    def _measure_baseline(self, out: Round) -> None:
        proc = subprocess.Popen(BASELINE_ARGV, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        try:
            wait_until_quiet(proc.pid)
            _record(proc.pid, BASELINE, out)
        finally:
            proc.kill()
            proc.wait(timeout=10)
