"""Scrape time of /metrics with many supervised processes.

    .venv/bin/python bench/metrics_scrape.py [--processes 200] [--children 1] [--scrapes 20]
                                             [--parent-scan]

Starts `--processes` real sleeping processes, each with `--children` sleeping
children of its own (a master and its workers: the collector walks every
tree), builds a Snapshot that has them all READY, and serves it with a real
MetricsServer on 127.0.0.1. Then it times `--scrapes` scrapes two ways:

- trees: the process-tree sampling alone (descendants and their /proc numbers);
- collect: the exposition in this process (prometheus-client's
  generate_latest over the server's registry: the collector with its tree
  sampling, and the library's process_*/python_* collectors), what a scrape
  costs pidone;
- http: GET /metrics over loopback, what Prometheus waits for.

`--parent-scan` finds descendants the fallback way (psutil's children(),
a pass over every /proc/PID/stat per tree) instead of the kernel's child
lists.

It reports the median, 90th percentile and maximum of each, and checks that
every process shows up with its whole tree. The budget is 250 ms per scrape.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pidone.core.counters import PidoneCounters
from pidone.core.snapshot import ProcessStatus, Snapshot
from pidone.core.states import ProcessState
from pidone.observe.metrics import MetricsServer, TreeSampler

BUDGET = 0.250


def start_trees(count: int, children: int) -> list[subprocess.Popen[bytes]]:
    # sh starts the children in the background, then becomes a sleep itself,
    # so every root is a sleeping process with `children` sleeping children.
    script = "".join("sleep 3600 & " for _ in range(children)) + "exec sleep 3600"
    return [
        subprocess.Popen(["/bin/sh", "-c", script], start_new_session=True) for _ in range(count)
    ]


def wait_for_trees(procs: list[subprocess.Popen[bytes]], children: int) -> None:
    deadline = time.monotonic() + 30
    for proc in procs:
        path = f"/proc/{proc.pid}/task/{proc.pid}/children"
        while True:
            with open(path) as f:
                kids = f.read().split()
            with open(f"/proc/{proc.pid}/comm") as f:
                comm = f.read().strip()
            if len(kids) >= children and comm == "sleep":
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"process {proc.pid} did not settle into its tree")
            time.sleep(0.005)


def summary(label: str, times: list[float]) -> str:
    times = sorted(times)
    p90 = times[min(len(times) - 1, round(0.9 * (len(times) - 1)))]
    return (
        f"{label:8} median {statistics.median(times) * 1000:7.1f} ms"
        f"   p90 {p90 * 1000:7.1f} ms   max {times[-1] * 1000:7.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=200)
    parser.add_argument("--children", type=int, default=1)
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--parent-scan", action="store_true")
    args = parser.parse_args()

    procs = start_trees(args.processes, args.children)
    try:
        wait_for_trees(procs, args.children)
        now = time.monotonic()
        snap = Snapshot(
            tuple(
                ProcessStatus(
                    name=f"p{i:03d}",
                    state=ProcessState.READY,
                    ready=True,
                    pid=proc.pid,
                    started_at=now,
                    restarts=0,
                    restarts_by_reason={},
                    exits_by_status={},
                    last_exit=None,
                    has_ready_check=True,
                )
                for i, proc in enumerate(procs)
            ),
            shutting_down=False,
        )
        sampler = TreeSampler(use_kernel_children=not args.parent_scan)
        server = MetricsServer(
            "127.0.0.1:0", lambda: snap, time.monotonic, PidoneCounters(), sample=sampler
        )
        roots = [proc.pid for proc in procs]
        try:
            trees: list[float] = []
            collect: list[float] = []
            http: list[float] = []
            body = b""
            for _ in range(args.scrapes):
                started = time.perf_counter()
                sampler(roots)
                trees.append(time.perf_counter() - started)
                started = time.perf_counter()
                generate_latest(server.registry)
                collect.append(time.perf_counter() - started)
                started = time.perf_counter()
                with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics") as reply:
                    body = reply.read()
                http.append(time.perf_counter() - started)
        finally:
            server.close()

        counts = {
            s.labels["process"]: s.value
            for family in text_string_to_metric_families(body.decode())
            if family.name == "pidone_process_processes"
            for s in family.samples
        }
        expected = 1 + args.children
        wrong = {name: n for name, n in counts.items() if n != expected}
        if len(counts) != args.processes or wrong:
            print(f"FAILED: trees not all seen: {len(counts)} counted, wrong sizes {wrong}")
            return 1
        total = args.processes * expected
        print(
            f"{args.processes} supervised processes, {total} processes in their trees,"
            f" {args.scrapes} scrapes, /metrics body {len(body) / 1024:.0f} KiB,"
            f" descendants from {'a parent scan' if args.parent_scan else 'child lists'}"
        )
        print(summary("trees", trees))
        print(summary("collect", collect))
        print(summary("http", http))
        ok = statistics.median(http) < BUDGET
        print(f"budget {BUDGET * 1000:.0f} ms per scrape: {'ok' if ok else 'EXCEEDED'}")
        return 0 if ok else 1
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in procs:
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
