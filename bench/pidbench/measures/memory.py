"""Memory with 3 sleeping children: the init, and its whole supervision tree.

RSS and PSS of the init, and summed over its supervision tree (the init and
its helpers: runsv and s6-supervise per service, honcho's worker and shell
per process; not the children themselves), next to a bare interpreter:
`python -c 'import time; time.sleep(100)'` from the venv, what pidone
cannot go below. Each subject runs alone, so that no two of them share
pages that would lower each other's PSS.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from pidbench import procfs
from pidbench.children import SLEEP
from pidbench.errors import BenchError
from pidbench.inits import REPO, VENV_PYTHON, Init
from pidbench.measure import Metric, Round, Settings, each_init
from pidbench.measures.common import SLEEPERS, tree_memory_kib
from pidbench.namespace import Namespace, die_with_parent
from pidbench.waiting import wait_until_quiet

BASELINE = "python (bare)"
BASELINE_ARGV = (str(VENV_PYTHON), "-c", "import time; time.sleep(100)")
METRICS_VARIANT = "pidone run +metrics"

RSS = Metric("rss", "Init RSS", "MiB")
PSS = Metric("pss", "Init PSS", "MiB")
TREE_RSS = Metric("tree_rss", "Supervision tree RSS", "MiB")
TREE_PSS = Metric("tree_pss", "Supervision tree PSS", "MiB")
TREE_SIZE = Metric("tree_size", "Supervision tree processes", "count", digits=0, better=None)
STARTUP_CPU = Metric("startup_cpu", "Init CPU to start up", "ms", digits=1)


def _record(pid: int, subject: str, out: Round) -> None:
    memory = procfs.memory_kib(pid)
    out.record(RSS, subject, memory["Rss"] / 1024)
    out.record(PSS, subject, memory["Pss"] / 1024)
    out.record(STARTUP_CPU, subject, procfs.cpu_runtime_ns(pid) / 1e6)


class Memory:
    name = "memory"
    title = "Memory with 3 sleeping children"
    metrics = (RSS, PSS, TREE_RSS, TREE_PSS, TREE_SIZE, STARTUP_CPU)

    def applies(self, init: Init) -> bool:
        return not init.variant or init.name == METRICS_VARIANT

    def rounds(self, settings: Settings) -> int:
        return settings.rounds

    def describe(self, settings: Settings) -> str:
        return (
            "each init alone with 3 `sleep` children (single-command inits: through the "
            "launcher shell), once all 3 run and the init's tree has gone quiet: RSS and PSS "
            "from /proc/PID/smaps_rollup of the init, and summed over its supervision tree "
            "(the init and its helpers, not the children); CPU to start up is the init's "
            "schedstat runtime at that point. The baseline is "
            f"`{VENV_PYTHON.relative_to(REPO)} -c '{BASELINE_ARGV[2]}'`, outside any namespace. "
            f"`{METRICS_VARIANT}` serves /metrics. PSS counts pages shared with the benchmark, "
            "which runs on the same interpreter."
        )

    def run_round(self, inits: Sequence[Init], settings: Settings, out: Round) -> None:
        def measure(init: Init) -> None:
            with Namespace(init, SLEEPERS, settings.workdir) as ns:
                ns.wait_workload(SLEEP, 3)
                wait_until_quiet(ns.supervision_tree())
                tree = ns.supervision_tree()
                _record(ns.pid, init.name, out)
                rss, pss = tree_memory_kib(tree)
                out.record(TREE_RSS, init.name, rss / 1024)
                out.record(TREE_PSS, init.name, pss / 1024)
                out.record(TREE_SIZE, init.name, len(tree))

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
