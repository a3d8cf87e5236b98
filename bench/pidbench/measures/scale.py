"""Scale: many supervised processes (200 unless --scale says otherwise).

Each is children/up.sh (says `up` on a FIFO, then becomes `sleep`): the
time from starting the init until all have said so; the init's memory and
its tree's once it is quiet; for pidone, /metrics scrapes over HTTP (the
body must name every process); then SIGTERM until the init has exited.
"""

from __future__ import annotations

import re
import statistics
import time
import urllib.request
from collections.abc import Sequence

from pidbench import procfs
from pidbench.channel import Channel
from pidbench.children import script
from pidbench.errors import BenchError
from pidbench.inits import Init
from pidbench.measure import Metric, Round, Settings, each_init
from pidbench.measures.common import heavy_rounds, supervisors, time_exit, tree_memory_kib
from pidbench.namespace import Namespace
from pidbench.waiting import wait_until_quiet
from pidbench.workload import LOOPBACK, Service, Workload, free_port

START_TIMEOUT = 120.0
STOP_TIMEOUT = 120.0
SCRAPE_TIMEOUT = 10.0

PROCESSES = Metric("scale_processes", "Supervised processes", "count", digits=0, better=None)
START_ALL = Metric("scale_start", "Start to all running", "ms", digits=0)
SCALE_RSS = Metric("scale_rss", "Init RSS", "MiB", digits=1)
SCALE_TREE_PSS = Metric("scale_tree_pss", "Supervision tree PSS", "MiB", digits=1)
SCRAPE = Metric("scale_scrape", "/metrics scrape, median", "ms", digits=1)
STOP_ALL = Metric("scale_stop", "SIGTERM to init exited", "ms", digits=0)

_PROCESS_LABEL = re.compile(rb'process="([^"]+)"')


class Scale:
    name = "scale"
    title = "Scale: many supervised processes"
    metrics = (PROCESSES, START_ALL, SCALE_RSS, SCALE_TREE_PSS, SCRAPE, STOP_ALL)

    def applies(self, init: Init) -> bool:
        return supervisors(init)

    def rounds(self, settings: Settings) -> int:
        return heavy_rounds(settings)

    def describe(self, settings: Settings) -> str:
        return (
            f"{settings.scale} services, each `sh up.sh` (says `up` on a FIFO, then execs "
            "`sleep`): from starting the init until all have said so; RSS of the init, and "
            "PSS summed over its supervision tree (RSS would count the pages that 200 forks "
            "share 200 times), once quiet; for pidone (which serves /metrics "
            f"here) the median of {settings.scrapes} GETs of /metrics over loopback, each "
            f"body naming all {settings.scale}; then SIGTERM until the init has exited."
        )

    def run_round(self, inits: Sequence[Init], settings: Settings, out: Round) -> None:
        def measure(init: Init) -> None:
            with Channel(settings.workdir) as channel:
                names = [f"p{i:03d}" for i in range(settings.scale)]
                workload = Workload(
                    tuple(Service(n, tuple(script("up", str(channel.path), n))) for n in names),
                    metrics_port=free_port() if init.is_pidone else None,
                )
                with Namespace(init, workload, settings.workdir) as ns:
                    up: set[str] = set()
                    last = 0
                    deadline = time.monotonic() + START_TIMEOUT
                    while len(up) < len(names):
                        line, last = channel.read_line_ns(max(0.0, deadline - time.monotonic()))
                        up.add(line.split()[1])
                    out.record(PROCESSES, init.name, len(names))
                    out.record(START_ALL, init.name, (last - ns.started_ns) / 1e6)
                    wait_until_quiet(ns.pid, timeout=30)
                    out.record(SCALE_RSS, init.name, procfs.memory_kib(ns.pid)["Rss"] / 1024)
                    _, pss = tree_memory_kib(ns.supervision_tree())
                    out.record(SCALE_TREE_PSS, init.name, pss / 1024)
                    if workload.metrics_port is not None:
                        times = _scrape(workload.metrics_port, settings.scrapes, set(names))
                        out.record(SCRAPE, init.name, statistics.median(times))
                    out.record(STOP_ALL, init.name, time_exit(ns, STOP_TIMEOUT))

        each_init(inits, out, measure)


def _scrape(port: int, count: int, names: set[str]) -> list[float]:
    """ms per GET /metrics; BenchError unless every body names every process."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        url = f"http://{LOOPBACK}:{port}/metrics"
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as reply:
            body = reply.read()
        times.append((time.perf_counter() - started) * 1000)
        missing = names - {m.decode() for m in _PROCESS_LABEL.findall(body)}
        if missing:
            raise BenchError(f"/metrics does not name {len(missing)} processes")
    return times
