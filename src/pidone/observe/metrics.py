"""Prometheus metrics and health endpoints, served off the loop's thread.

    server = MetricsServer("0.0.0.0:9100", snapshot=..., heartbeat=..., counters=...,
                           wake=signals.wake_loop, log=...)
    GET /metrics   prometheus-client's WSGI app: the text format 0.0.4, or
                   OpenMetrics when the Accept header asks; gzip when the
                   client accepts it (Prometheus does)
    GET /healthz   200 "ok": the event loop turns and no `required` process is FATAL;
                   503 otherwise
    GET /readyz    200 "ready": every process with a `ready` check is ready and
                   pidone is not shutting down; 503 with the reason otherwise

The loop thread never serves anything: it publishes immutable Snapshots,
bumps PidoneCounters and stamps a heartbeat; the HttpServer (http.py:
why not the library's own server, and its limits) reads them from its own
threads. Everything is collected at scrape time, never polled, and the
collector serializes scrapes, so a burst of scrapers cannot multiply the
/proc work. The data model, the exposition and pidone's own process_*,
python_* series are prometheus-client's (its ProcessCollector,
PlatformCollector and GCCollector); the process trees are read with psutil.
This module is imported only when metrics are on: both libraries cost
resident memory (bench/RESULTS.md lists each import).

Health (/healthz, /readyz) is in health.py.

Wiring, in the loop's thread:

    counters = PidoneCounters()          # the loop bumps it: zombies_reaped += 1, ...
    server = MetricsServer(addr, lambda: latest, lambda: beat, counters, wake=signals.wake_loop)
    each turn: beat = clock() after select() returns; latest = core.snapshot()
               after feeding events (a plain attribute: readers see one or the other)
    at exit:   server.close()

A scrape is Python work in another thread: it takes the GIL from the loop
for at most the interpreter's switch interval (5 ms) at a time, so the loop
may turn a few milliseconds later during a scrape, never blocks.

Metrics (label `process` = the process name):

    pidone_process_up                      1 while it has a pid (running, ready, stopping)
    pidone_process_ready                   1 when ready
    pidone_process_state{state}            one-hot over every state
    pidone_process_restarts_total{reason}  crash, manual, dependency (from 0)
    pidone_process_exits_total{status}     by shell status: code, or 128+N for signal N
    pidone_process_oom_kills_total         its deaths by the kernel's OOM killer (from 0)
    pidone_process_last_exit_status        the status of its last exit
    pidone_process_start_time_seconds      unix time of the running instance's start
    pidone_process_last_exit_time_seconds  unix time of its last exit
    pidone_process_cpu_seconds_total       user+system CPU of its process tree
    pidone_process_resident_memory_bytes   RSS summed over its process tree
    pidone_process_open_fds                open fds summed over its process tree
    pidone_process_processes               processes in its tree (main pid included)
    pidone_zombies_reaped_total, pidone_signals_received_total{signal},
    pidone_signals_forwarded_total{signal},
    pidone_shutting_down, pidone_build_info{version}
    pidone_legion_lord{legion}             1 while this pidone holds the legion's lease
    pidone_legion_lease_changes_total{legion,change}  acquired, lost, released (from 0)
    pidone_scrape_errors_total, pidone_last_scrape_error, pidone_scrape_duration_seconds
    process_*, python_info, python_gc_*    pidone itself: prometheus-client's collectors

The tree of a process is its main pid and every descendant, found afresh at
each scrape (TreeSampler: the kernel's child lists, psutil's numbers). Its
CPU includes the CPU of descendants it has already waited for (psutil's
children_user/children_system), so the counter does not drop when a worker
exits; it resets when the process restarts. RSS is summed per process, so
pages shared between a master and its forked workers count once per
process (PSS would need smaps: far too slow at scrape time).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import psutil
from prometheus_client import (
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    make_wsgi_app,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from pidone import __version__
from pidone.core.counters import PidoneCounters
from pidone.core.snapshot import Snapshot
from pidone.core.states import HAS_PID, RESTART_REASONS, ProcessState
from pidone.observe.health import (
    HEALTH_WAIT,
    HealthAnswer,
    HealthCheck,
    check_ready,
    check_required,
)
from pidone.observe.http import HttpServer, Later, Request, Response
from pidone.signames import signal_name
from pidone.system import proc, process


def counter(name: str, help: str, labels: tuple[str, ...] = ()) -> CounterMetricFamily:
    """A counter family; `name` without _total (its samples are NAME_total)."""
    return CounterMetricFamily(name, help, labels=labels)


def gauge(name: str, help: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help, labels=labels)


# --- process trees, by psutil at scrape time ----------------------------------------------


@dataclass(frozen=True, slots=True)
class TreeUsage:
    processes: int
    cpu_seconds: float  # user + system, waited-for children's included
    resident_bytes: int  # summed per process
    open_fds: int


Sampler = Callable[[Collection[int]], dict[int, TreeUsage]]


class TreeSampler:
    """Callable: {root pid: TreeUsage of its tree} for the roots that still
    exist. Descendants come from the kernel's child lists (proc.children_of:
    the work is proportional to the trees, not to every process on the
    host); without them (a kernel without CONFIG_PROC_CHILDREN), from one
    pass over every process's parent per scrape (psutil's children() makes
    that pass once per tree: seconds for 200 trees). The numbers of each
    process are psutil's. Not thread-safe: the collector serializes scrapes."""

    def __init__(self, *, use_kernel_children: bool | None = None) -> None:
        if use_kernel_children is None:
            use_kernel_children = os.path.exists(f"/proc/self/task/{os.getpid()}/children")
        self._kernel_children = use_kernel_children

    def __call__(self, roots: Collection[int]) -> dict[int, TreeUsage]:
        children = proc.children_of if self._kernel_children else _parent_scan()
        usage: dict[int, TreeUsage] = {}
        for root in roots:
            count, cpu, rss, fds = 0, 0.0, 0, 0
            for pid in _tree(root, children):
                try:
                    process = psutil.Process(pid)
                    with process.oneshot():
                        times = process.cpu_times()
                        resident = process.memory_info().rss
                        try:
                            open_fds = process.num_fds()
                        except (psutil.AccessDenied, psutil.ZombieProcess):
                            open_fds = 0  # a zombie has none; another user's: not ours to see
                except psutil.NoSuchProcess:
                    continue  # exited since we listed it
                count += 1
                cpu += times.user + times.system + times.children_user + times.children_system
                rss += resident
                fds += open_fds
            if count:
                usage[root] = TreeUsage(count, cpu, rss, fds)
        return usage


def _tree(root: int, children: Callable[[int], list[int]]) -> list[int]:
    """root and its descendants, breadth first."""
    tree = [root]
    seen = {root}
    for pid in tree:  # grows while we walk it
        for child in children(pid):
            if child not in seen:
                seen.add(child)
                tree.append(child)
    return tree


def _parent_scan() -> Callable[[int], list[int]]:
    """Children of every process, from one pass over their parents."""
    children: dict[int, list[int]] = {}
    for pid in psutil.pids():
        try:
            parent = psutil.Process(pid).ppid()
        except psutil.Error:
            continue  # gone meanwhile
        if parent != pid:
            children.setdefault(parent, []).append(pid)
    return lambda pid: children.get(pid, [])


# --- the collector -----------------------------------------------------------------------


class PidoneCollector:
    """pidone's own metrics, built from the latest snapshot at scrape time
    (a prometheus-client collector). collect() never raises: a failing part
    is logged, counted and left out."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot | None],
        counters: PidoneCounters,
        *,
        sample: Sampler | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        version: str = __version__,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._counters = counters
        self._sample = sample or TreeSampler()
        self._monotonic = monotonic
        self._wall = wall
        self._version = version
        self._log = log or process.log_to_stderr
        self._lock = threading.Lock()
        self.errors = 0  # parts of scrapes that failed, since start
        self._failed = False  # in the scrape under way

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            started = time.perf_counter()
            self._failed = False
            out = self._part("pidone counters", lambda: self._pidone_metrics(self._counters))
            snap: Snapshot | None = None
            try:
                snap = self._snapshot()
            except Exception:
                self._report("reading the snapshot")
            if snap is not None:
                taken = snap
                out += self._part("process states", lambda: self._state_metrics(taken))
                out += self._part("process trees", lambda: self._tree_metrics(taken))
            out += self._scrape_metrics(time.perf_counter() - started)
        return iter(out)

    def describe(self) -> Iterator[Metric]:
        """The families collect() yields, for the registry (`?name[]=` filters
        by them): built from nothing live (no counters, snapshot or process)."""
        empty = Snapshot((), shutting_down=False)
        yield from [
            *self._pidone_metrics(PidoneCounters()),
            *self._state_metrics(empty),
            *self._tree_metrics(empty),
            *self._scrape_metrics(0.0),
        ]

    def _scrape_metrics(self, took: float) -> list[Metric]:
        errors = counter(
            "pidone_scrape_errors", "Parts of a scrape that failed (logged on stderr)."
        )
        errors.add_metric((), self.errors)
        last = gauge(
            "pidone_last_scrape_error", "1 if a part of this scrape failed and is missing."
        )
        last.add_metric((), 1 if self._failed else 0)
        duration = gauge("pidone_scrape_duration_seconds", "Time collecting pidone's own metrics.")
        duration.add_metric((), took)
        return [errors, last, duration]

    def _part(self, what: str, build: Callable[[], list[Metric]]) -> list[Metric]:
        """The metrics `build` makes, or none (logged and counted) if it fails."""
        try:
            return build()
        except Exception:
            self._report(what)
            return []

    def _report(self, what: str) -> None:
        self.errors += 1
        self._failed = True
        text = traceback.format_exc().rstrip().replace("\n", "\n  ")
        with contextlib.suppress(Exception):
            self._log(f"metrics: collecting {what} failed (still serving):\n  {text}")

    def _pidone_metrics(self, c: PidoneCounters) -> list[Metric]:
        reaped = counter("pidone_zombies_reaped", "Children reaped by pidone.")
        reaped.add_metric((), c.zombies_reaped)
        received = counter("pidone_signals_received", "Signals pidone received.", ("signal",))
        for signum, n in sorted(c.signals_received.copy().items()):
            received.add_metric((signal_name(signum),), n)
        forwarded = counter(
            "pidone_signals_forwarded", "Signals pidone sent on to processes.", ("signal",)
        )
        for signum, n in sorted(c.signals_forwarded.copy().items()):
            forwarded.add_metric((signal_name(signum),), n)
        info = gauge("pidone_build_info", "pidone's version.", ("version",))
        info.add_metric((self._version,), 1)
        return [reaped, received, forwarded, info]

    def _state_metrics(self, snap: Snapshot) -> list[Metric]:
        to_wall = self._wall() - self._monotonic()  # monotonic -> unix time
        label = ("process",)
        up = gauge("pidone_process_up", "1 while the process has a pid.", label)
        ready = gauge("pidone_process_ready", "1 when ready.", label)
        state = gauge("pidone_process_state", "The process state (one-hot).", ("process", "state"))
        restarts = counter(
            "pidone_process_restarts",
            "Restarts by reason (crash, manual, dependency).",
            ("process", "reason"),
        )
        exits = counter(
            "pidone_process_exits",
            "Exits by shell status (the exit code, or 128+N when killed by signal N).",
            ("process", "status"),
        )
        oom_kills = counter(
            "pidone_process_oom_kills",
            "Deaths by the kernel's OOM killer (its memory cgroup's oom_kill counter rose).",
            label,
        )
        last_status = gauge(
            "pidone_process_last_exit_status", "Shell status of the last exit.", label
        )
        start_time = gauge(
            "pidone_process_start_time_seconds", "Unix time the running instance started.", label
        )
        exit_time = gauge(
            "pidone_process_last_exit_time_seconds", "Unix time of the last exit.", label
        )
        for p in snap.processes:
            running = p.state in HAS_PID
            up.add_metric((p.name,), 1 if running else 0)
            ready.add_metric((p.name,), 1 if p.ready else 0)
            for s in ProcessState:
                state.add_metric((p.name, s.value), 1 if s is p.state else 0)
            for reason in sorted({*RESTART_REASONS, *p.restarts_by_reason}):
                restarts.add_metric((p.name, reason), p.restarts_by_reason.get(reason, 0))
            for status, n in sorted(p.exits_by_status.items()):
                exits.add_metric((p.name, str(status)), n)
            oom_kills.add_metric((p.name,), p.oom_kills)
            if running and p.started_at is not None:
                start_time.add_metric((p.name,), p.started_at + to_wall)
            if p.last_exit is not None:
                last_status.add_metric((p.name,), p.last_exit.status)
                exit_time.add_metric((p.name,), p.last_exit.at + to_wall)
        shutting = gauge("pidone_shutting_down", "1 once pidone is shutting down.")
        shutting.add_metric((), 1 if snap.shutting_down else 0)
        metrics = [
            up,
            ready,
            state,
            restarts,
            exits,
            oom_kills,
            last_status,
            start_time,
            exit_time,
            shutting,
        ]
        if snap.legions:
            metrics += _legion_metrics(snap)
        return metrics

    def _tree_metrics(self, snap: Snapshot) -> list[Metric]:
        roots = {p.name: p.pid for p in snap.processes if p.pid is not None and p.state in HAS_PID}
        usage = self._sample(set(roots.values())) if roots else {}
        label = ("process",)
        cpu = counter(
            "pidone_process_cpu_seconds",
            "User and system CPU of the process and all its descendants.",
            label,
        )
        rss = gauge(
            "pidone_process_resident_memory_bytes",
            "Resident memory of the process and all its descendants, summed.",
            label,
        )
        fds = gauge(
            "pidone_process_open_fds", "Open fds of the process and its descendants.", label
        )
        count = gauge(
            "pidone_process_processes", "Processes in its tree (the main process included).", label
        )
        for name, pid in roots.items():
            u = usage.get(pid)
            if u is None:
                continue  # exited since the snapshot
            cpu.add_metric((name,), u.cpu_seconds)
            rss.add_metric((name,), u.resident_bytes)
            fds.add_metric((name,), u.open_fds)
            count.add_metric((name,), u.processes)
        return [cpu, rss, fds, count]


def _legion_metrics(snap: Snapshot) -> list[Metric]:
    lord = gauge("pidone_legion_lord", "1 while this pidone holds the legion's lease.", ("legion",))
    changes = counter(
        "pidone_legion_lease_changes",
        "Lease changes of this pidone: acquired, lost, released.",
        ("legion", "change"),
    )
    for legion in snap.legions:
        lord.add_metric((legion.name,), 1 if legion.lord else 0)
        for change, n in legion.changes.items():
            changes.add_metric((legion.name, change), n)
    return [lord, changes]


def registry_of(collector: PidoneCollector) -> CollectorRegistry:
    """pidone's metrics and, for pidone itself, prometheus-client's own
    process, platform and GC collectors (not the library's global REGISTRY:
    what it holds is up to whatever else imports the library)."""
    # auto_describe: the library's collectors, which have no describe(), are
    # collected once here to learn their names (for `?name[]=`).
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


# --- the server ------------------------------------------------------------------------------


class MetricsServer:
    """/metrics, /healthz and /readyz on ADDRESS, from threads of its own.

    `snapshot()` returns the latest published Snapshot (or None before the
    first); `heartbeat()` the time.monotonic() the loop stamped after its
    last return from select(); `wake()` makes the loop turn (signals.wake_loop);
    without it /healthz fails once the loop has slept longer than FRESH.
    `log(message)` gets one message (no newline; default: stderr): the
    server's only way to log, from any of its threads. Binding errors raise
    OSError here, in the caller's thread.
    """

    def __init__(
        self,
        address: str,
        snapshot: Callable[[], Snapshot | None],
        heartbeat: Callable[[], float],
        counters: PidoneCounters,
        *,
        wake: Callable[[], None] | None = None,
        health_wait: float = HEALTH_WAIT,
        sample: Sampler | None = None,
        log: Callable[[str], None] | None = None,
        listener: socket.socket | None = None,  # bound already: ctl reexec's
    ) -> None:
        self.snapshot = snapshot
        self.heartbeat = heartbeat
        self.wake = wake
        self.health_wait = health_wait
        self.log = log or process.log_to_stderr
        self.collector = PidoneCollector(snapshot, counters, sample=sample, log=self.log)
        self.registry = registry_of(self.collector)
        self._app = make_wsgi_app(self.registry)
        self._http = HttpServer(
            address,
            self.answer,
            pooled=self.scrape,
            pooled_paths=frozenset({"/metrics"}),
            log=self.log,
            server_name=f"pidone/{__version__}",
            listener=listener,
        )
        self.port = self._http.port
        self._thread = self._http.thread  # the serving thread

    def answer(self, request: Request) -> Response | Later:
        """/healthz, /readyz and the rest, in the server's thread: never
        queued behind a scrape."""
        if request.path == "/healthz":
            healthy, why = check_required(self.snapshot())
            if not healthy:
                return Response.text(503, why)
            check = HealthCheck(self.heartbeat, self.wake, wait=self.health_wait)
            answer = HealthAnswer(check)
            return answer.poll() or answer
        if request.path == "/readyz":
            ready, why = check_ready(self.snapshot())
            return Response.text(200 if ready else 503, why)
        if request.path == "/":
            return Response.text(200, "pidone: /metrics /healthz /readyz")
        return Response.text(404, "not found: /metrics /healthz /readyz")

    def scrape(self, request: Request) -> Response:
        """/metrics, in a worker: prometheus-client's WSGI app, which picks
        the format from Accept and gzips when Accept-Encoding allows."""
        environ = {
            "REQUEST_METHOD": "GET",  # a HEAD gets the same head, without the body
            "PATH_INFO": request.path,
            "QUERY_STRING": request.query,
            "SERVER_PROTOCOL": "HTTP/1.0",
            "wsgi.url_scheme": "http",
        }
        for header in ("accept", "accept-encoding"):
            if header in request.headers:
                environ["HTTP_" + header.upper().replace("-", "_")] = request.headers[header]
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
            started[:] = [status, headers]

        body = b"".join(_chunks(self._app(environ, start_response)))
        status, headers = started
        content_type = "text/plain; charset=utf-8"
        extra = []
        for name, value in headers:
            if name.lower() == "content-type":
                content_type = value
            elif name.lower() != "content-length":
                extra.append((name, value))
        return Response(int(status.split(" ", 1)[0]), body, content_type, tuple(extra))

    def keep_listener(self) -> int:
        """See HttpServer.keep_listener."""
        return self._http.keep_listener()

    def close(self, linger: float = 0.0) -> None:
        """See HttpServer.close."""
        self._http.close(linger)


def _chunks(output: Iterable[bytes]) -> Iterator[bytes]:
    try:
        yield from output
    finally:
        close = getattr(output, "close", None)
        if close is not None:
            close()
