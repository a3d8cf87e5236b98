"""Prometheus metrics and health endpoints, served off the loop's thread.

    server = MetricsServer("0.0.0.0:9100", snapshot=..., heartbeat=..., counters=...,
                           wake=waker.wake)
    GET /metrics   Prometheus text format (or OpenMetrics if the Accept header asks)
    GET /healthz   200 "ok": the event loop turns; 503 otherwise
    GET /readyz    200 "ready": every process with a `ready` check is ready and
                   pidone is not shutting down; 503 with the reason otherwise

The loop thread never serves anything: it publishes immutable Snapshots,
bumps PidoneCounters and stamps a heartbeat; an HttpServer (httpserve.py)
in its own daemon threads reads them. Everything is collected at scrape time
(no polling while idle), and scrapes are serialized, so a burst of scrapers
cannot multiply the /proc work. The exposition (exposition.py), the
process-tree numbers (proctree.py) and the HTTP server are pidone's own, not
prometheus-client's, psutil's and http.server's: together those cost PID 1
about 9 MiB of resident memory (bench/RESULTS.md, issue 8).

Health. The loop sleeps until something happens, so "it turned recently"
alone would fail an idle, healthy pidone. /healthz therefore asks: did the
loop turn within the last FRESH seconds? If not, it wakes the loop (a byte
on a Waker pipe the loop selects on) and waits up to `health_wait` for the
heartbeat to move past the moment of the wake-up. A loop stuck in a callback
or a blocking call fails; an idle one answers within microseconds. The wait
(0.8 s) stays under Kubernetes' default 1 s probe timeout.

Wiring, in the loop's thread:

    counters = PidoneCounters()          # the loop bumps it: zombies_reaped += 1, ...
    waker = Waker(selector)              # its fd carries its own callback, like any other
    server = MetricsServer(addr, lambda: latest, lambda: beat, counters, wake=waker.wake)
    each turn: beat = clock() after select() returns; latest = core.snapshot()
               after feeding events (a plain attribute: readers see one or the other)
    at exit:   server.close(), then waker.close()

A scrape is Python work in another thread: it takes the GIL from the loop
for at most the interpreter's switch interval (5 ms) at a time, so the loop
may turn a few milliseconds later during a scrape, never blocks.

Metrics (label `process` = the process name):

    pidone_process_up                      1 while it has a pid (running, ready, stopping)
    pidone_process_ready                   1 when ready
    pidone_process_state{state}            one-hot over every state
    pidone_process_restarts_total{reason}  crash, manual, dependency (from 0)
    pidone_process_exits_total{status}     by shell status: code, or 128+N for signal N
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
    pidone_scrape_errors_total, pidone_last_scrape_error, pidone_scrape_duration_seconds
    process_*, python_info, python_gc_*    pidone itself, under the names
                                           prometheus-client's collectors use

The tree of a process is its main pid and every descendant, found afresh at
each scrape (TreeSampler). Its CPU includes the CPU of descendants it has
already waited for (the kernel's cutime/cstime), so the counter does not
drop when a worker exits; it resets when the process restarts. RSS is
summed per process, so pages shared between a master and its forked workers
count once per process (PSS would need smaps: far too slow at scrape time).
"""

from __future__ import annotations

import gc
import os
import resource
import selectors
import sys
import threading
import time
import traceback
from collections.abc import Callable

from pidone import __version__
from pidone.control import not_ready, signal_name
from pidone.counters import PidoneCounters as PidoneCounters  # re-exported for callers
from pidone.exposition import Family, render
from pidone.httpserve import HttpServer, Request, Response
from pidone.httpserve import parse_address as parse_address  # re-exported for callers
from pidone.proctree import Sampler, TreeSampler, count_fds, read_stat, start_time
from pidone.proctree import TreeUsage as TreeUsage  # re-exported for callers
from pidone.proctree import sample_trees as sample_trees  # re-exported for callers
from pidone.states import HAS_PID, ProcessState
from pidone.supervisor import Snapshot

RESTART_REASONS = ("crash", "manual", "dependency")  # supervisor's; shown from 0
FRESH = 1.0  # a loop that turned this recently is healthy without a wake-up
HEALTH_WAIT = 0.8  # seconds /healthz waits for the loop to turn after a wake-up


def counter(name: str, help: str, labels: tuple[str, ...] = ()) -> Family:
    return Family(name, "counter", help, labels)


def gauge(name: str, help: str, labels: tuple[str, ...] = ()) -> Family:
    return Family(name, "gauge", help, labels)


# --- the collector -----------------------------------------------------------------------


class PidoneCollector:
    """pidone's own metrics, built from the latest snapshot at scrape time.
    collect() never raises: a failing part is logged, counted and left out."""

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
        self_metrics: bool = False,
    ) -> None:
        self._snapshot = snapshot
        self._counters = counters
        self._sample = sample or TreeSampler()
        self._monotonic = monotonic
        self._wall = wall
        self._version = version
        self._log = log or _log_to_stderr
        self._self_metrics = self_metrics
        self._lock = threading.Lock()
        self.errors = 0  # parts of scrapes that failed, since start
        self._failed = False  # in the scrape under way

    def collect(self) -> list[Family]:
        with self._lock:
            started = time.perf_counter()
            self._failed = False
            out = self._part("pidone counters", self._pidone_metrics)
            snap: Snapshot | None = None
            try:
                snap = self._snapshot()
            except Exception:
                self._report("reading the snapshot")
            if snap is not None:
                taken = snap
                out += self._part("process states", lambda: self._state_metrics(taken))
                out += self._part("process trees", lambda: self._tree_metrics(taken))
            if self._self_metrics:
                out += self._part("pidone's own process", self_process_metrics)
                out += self._part("the interpreter", interpreter_metrics)
            errors = counter(
                "pidone_scrape_errors", "Parts of a scrape that failed (logged on stderr)."
            )
            errors.add((), self.errors)
            last = gauge(
                "pidone_last_scrape_error", "1 if a part of this scrape failed and is missing."
            )
            last.add((), 1 if self._failed else 0)
            took = gauge("pidone_scrape_duration_seconds", "Time collecting pidone's own metrics.")
            took.add((), time.perf_counter() - started)
            out += [errors, last, took]
        return out

    def _part(self, what: str, build: Callable[[], list[Family]]) -> list[Family]:
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
        try:
            self._log(f"metrics: collecting {what} failed (still serving):\n  {text}")
        except Exception:
            pass

    def _pidone_metrics(self) -> list[Family]:
        c = self._counters
        reaped = counter("pidone_zombies_reaped", "Children reaped by pidone.")
        reaped.add((), c.zombies_reaped)
        received = counter("pidone_signals_received", "Signals pidone received.", ("signal",))
        for signum, n in sorted(c.signals_received.copy().items()):
            received.add((signal_name(signum),), n)
        forwarded = counter(
            "pidone_signals_forwarded", "Signals pidone sent on to processes.", ("signal",)
        )
        for signum, n in sorted(c.signals_forwarded.copy().items()):
            forwarded.add((signal_name(signum),), n)
        info = gauge("pidone_build_info", "pidone's version.", ("version",))
        info.add((self._version,), 1)
        return [reaped, received, forwarded, info]

    def _state_metrics(self, snap: Snapshot) -> list[Family]:
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
            up.add((p.name,), 1 if running else 0)
            ready.add((p.name,), 1 if p.ready else 0)
            for s in ProcessState:
                state.add((p.name, s.value), 1 if s is p.state else 0)
            for reason in sorted({*RESTART_REASONS, *p.restarts_by_reason}):
                restarts.add((p.name, reason), p.restarts_by_reason.get(reason, 0))
            for status, n in sorted(p.exits_by_status.items()):
                exits.add((p.name, str(status)), n)
            if running and p.started_at is not None:
                start_time.add((p.name,), p.started_at + to_wall)
            if p.last_exit is not None:
                last_status.add((p.name,), p.last_exit.status)
                exit_time.add((p.name,), p.last_exit.at + to_wall)
        shutting = gauge("pidone_shutting_down", "1 once pidone is shutting down.")
        shutting.add((), 1 if snap.shutting_down else 0)
        return [up, ready, state, restarts, exits, last_status, start_time, exit_time, shutting]

    def _tree_metrics(self, snap: Snapshot) -> list[Family]:
        roots = {p.name: p.pid for p in snap.processes if p.pid is not None and p.state in HAS_PID}
        usage = self._sample(set(roots.values()))
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
            cpu.add((name,), u.cpu_seconds)
            rss.add((name,), u.resident_bytes)
            fds.add((name,), u.open_fds)
            count.add((name,), u.processes)
        return [cpu, rss, fds, count]


# --- pidone's own process, under the names prometheus-client gives them ----------------


def self_process_metrics() -> list[Family]:
    stat = read_stat("self")
    if stat is None:
        raise OSError("/proc/self/stat unreadable")
    cpu = counter("process_cpu_seconds", "Total user and system CPU time spent in seconds.")
    cpu.add((), stat.cpu_seconds)
    vms = gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.")
    vms.add((), stat.vsize)
    rss = gauge("process_resident_memory_bytes", "Resident memory size in bytes.")
    rss.add((), stat.resident_bytes)
    start = gauge(
        "process_start_time_seconds", "Start time of the process since unix epoch in seconds."
    )
    start.add((), start_time(stat))
    fds = gauge("process_open_fds", "Number of open file descriptors.")
    fds.add((), count_fds("self"))
    max_fds = gauge("process_max_fds", "Maximum number of open file descriptors.")
    max_fds.add((), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    return [cpu, vms, rss, start, fds, max_fds]


def interpreter_metrics() -> list[Family]:
    info = gauge(
        "python_info",
        "Python platform information",
        ("implementation", "major", "minor", "patchlevel", "version"),
    )
    major, minor, patch = (str(n) for n in sys.version_info[:3])
    implementation = {"cpython": "CPython", "pypy": "PyPy"}.get(
        sys.implementation.name, sys.implementation.name
    )
    info.add((implementation, major, minor, patch, f"{major}.{minor}.{patch}"), 1)
    generation = ("generation",)
    collected = counter("python_gc_objects_collected", "Objects collected during gc", generation)
    uncollectable = counter(
        "python_gc_objects_uncollectable", "Uncollectable objects found during GC", generation
    )
    collections = counter(
        "python_gc_collections", "Number of times this generation was collected", generation
    )
    for gen, stats in enumerate(gc.get_stats()):
        collected.add((str(gen),), stats["collected"])
        uncollectable.add((str(gen),), stats["uncollectable"])
        collections.add((str(gen),), stats["collections"])
    return [info, collected, uncollectable, collections]


# --- health --------------------------------------------------------------------------------


class Waker:
    """A pipe in the loop's selector, so that another thread can make the
    loop turn (for /healthz). wake() is thread-safe; close it after the
    MetricsServer that calls it."""

    def __init__(self, selector: selectors.BaseSelector) -> None:
        self._selector = selector
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        selector.register(self._read, selectors.EVENT_READ, self._drain)

    def wake(self) -> None:
        try:
            os.write(self._write, b"\0")
        except OSError:
            pass  # full: a wake-up is pending anyway

    def _drain(self, mask: int) -> None:
        try:
            os.read(self._read, 4096)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self._selector.unregister(self._read)
        except (KeyError, ValueError):
            pass
        os.close(self._read)
        os.close(self._write)


def check_health(
    heartbeat: Callable[[], float],
    wake: Callable[[], None] | None,
    *,
    fresh: float = FRESH,
    wait: float = HEALTH_WAIT,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[bool, str]:
    """(healthy, why) for /healthz; see the module docstring."""
    asked = clock()
    last = heartbeat()
    if asked - last <= fresh:
        return True, "ok"
    if wake is None:
        return False, f"the event loop last turned {asked - last:.1f} s ago"
    wake()
    deadline = asked + wait
    pause = 0.001
    while True:
        if heartbeat() >= asked:
            return True, "ok"
        now = clock()
        if now >= deadline:
            return False, (
                f"the event loop did not turn within {wait:g} s of a wake-up"
                f" (last turn {now - last:.1f} s ago)"
            )
        time.sleep(min(pause, deadline - now))
        pause = min(pause * 2, 0.02)


def check_ready(snap: Snapshot | None) -> tuple[bool, str]:
    """(ready, why) for /readyz."""
    if snap is None:
        return False, "starting"
    if snap.shutting_down:
        return False, "shutting down"
    waiting = not_ready(snap, checked_only=True)
    if waiting:
        return False, "not ready: " + ", ".join(waiting)
    return True, "ready"


# --- the server ------------------------------------------------------------------------------


class MetricsServer:
    """/metrics, /healthz and /readyz on ADDRESS, from daemon threads.

    `snapshot()` returns the latest published Snapshot (or None before the
    first); `heartbeat()` the time.monotonic() the loop stamped after its
    last return from select(); `wake()` makes the loop turn (Waker.wake);
    without it /healthz fails once the loop has slept longer than FRESH.
    `log(message)` gets one message (no newline; default: stderr). Binding
    errors raise OSError here, in the caller's thread.
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
    ) -> None:
        self.snapshot = snapshot
        self.heartbeat = heartbeat
        self.wake = wake
        self.health_wait = health_wait
        self.log = log or _log_to_stderr
        self.collector = PidoneCollector(
            snapshot, counters, sample=sample, log=self.log, self_metrics=True
        )
        self._http = HttpServer(
            address, self.answer, log=self.log, server_name=f"pidone/{__version__}"
        )
        self.port = self._http.port
        self._thread = self._http.thread  # the accepting thread

    def answer(self, request: Request) -> Response:
        if request.path == "/metrics":
            body, content_type = render(self.collector.collect(), request.headers.get("accept", ""))
            return Response(200, body, content_type)
        if request.path == "/healthz":
            healthy, why = check_health(self.heartbeat, self.wake, wait=self.health_wait)
            return Response.text(200 if healthy else 503, why)
        if request.path == "/readyz":
            ready, why = check_ready(self.snapshot())
            return Response.text(200 if ready else 503, why)
        if request.path == "/":
            return Response.text(200, "pidone: /metrics /healthz /readyz")
        return Response.text(404, "not found: /metrics /healthz /readyz")

    def close(self) -> None:
        self._http.close()


def _log_to_stderr(message: str) -> None:
    try:
        os.write(2, f"pidone: {message}\n".encode("utf-8", "replace"))
    except OSError:
        pass
