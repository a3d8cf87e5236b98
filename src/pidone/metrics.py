"""Prometheus metrics and health endpoints, served off the loop's thread.

    server = MetricsServer("0.0.0.0:9100", snapshot=..., heartbeat=..., counters=...,
                           wake=waker.wake)
    GET /metrics   prometheus-client exposition (text, or OpenMetrics if asked)
    GET /healthz   200 "ok": the event loop turns; 503 otherwise
    GET /readyz    200 "ready": every process with a `ready` check is ready and
                   pidone is not shutting down; 503 with the reason otherwise

The loop thread never serves anything: it publishes immutable Snapshots,
bumps PidoneCounters and stamps a heartbeat; a ThreadingHTTPServer in its
own daemon thread reads them. Everything is collected at scrape time (no
polling while idle), and scrapes are serialized, so a burst of scrapers
cannot multiply the /proc work. Each connection gets CLIENT_TIMEOUT seconds
per socket operation and at most MAX_CLIENTS run at once (more are closed at
accept), so slow or stuck clients cost a few idle threads, never the loop.

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
    pidone_signals_forwarded_total{signal}, pidone_config_reloads_total,
    pidone_shutting_down, pidone_build_info{version}
    pidone_scrape_errors_total, pidone_last_scrape_error, pidone_scrape_duration_seconds
    process_*, python_info, python_gc_*    pidone itself (prometheus-client's collectors)

The tree of a process is its main pid and every descendant, found afresh at
each scrape (TreeSampler). Its CPU includes the CPU of descendants it has
already waited for (the kernel's cutime/cstime), so the counter does not
drop when a worker exits; it resets when the process restarts. RSS is
summed per process, so pages shared between a master and its forked workers
count once per process (PSS would need smaps: far too slow at scrape time).
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import socketserver
import threading
import time
import traceback
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import psutil  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from pidone import __version__
from pidone.control import not_ready, signal_name
from pidone.counters import PidoneCounters as PidoneCounters  # re-exported for callers
from pidone.states import HAS_PID, ProcessState
from pidone.supervisor import Snapshot

RESTART_REASONS = ("crash", "manual", "dependency")  # supervisor's; shown from 0
CLIENT_TIMEOUT = 10.0  # seconds per socket operation of one HTTP client
MAX_CLIENTS = 32  # connections served at once; more are closed at accept
FRESH = 1.0  # a loop that turned this recently is healthy without a wake-up
HEALTH_WAIT = 0.8  # seconds /healthz waits for the loop to turn after a wake-up


# --- process trees -----------------------------------------------------------------------


@dataclass(frozen=True)
class TreeUsage:
    processes: int
    cpu_seconds: float
    resident_bytes: int
    open_fds: int


Sampler = Callable[[Collection[int]], dict[int, TreeUsage]]


class TreeSampler:
    """Usage of process trees (a pid and all its descendants), from /proc.

    Descendants come from the kernel's own child lists
    (/proc/PID/task/TID/children): the work is proportional to the trees,
    not to every process on the host. Without that file (a kernel built
    without CONFIG_PROC_CHILDREN) one psutil pass over /proc maps parents.
    Each process's numbers come from psutil; its Process objects are kept
    between scrapes (creating one costs a read of /proc/PID/stat). Not
    thread-safe: the collector serializes scrapes.
    """

    def __init__(self, *, kernel_children: bool | None = None) -> None:
        if kernel_children is None:
            kernel_children = os.path.exists(f"/proc/self/task/{os.getpid()}/children")
        self._kernel_children = kernel_children
        self._procs: dict[int, Any] = {}  # pid -> psutil.Process

    def __call__(self, roots: Collection[int]) -> dict[int, TreeUsage]:
        """Usage of each root's tree; roots that no longer exist are left out."""
        if not roots:
            self._procs.clear()
            return {}
        children = self._children if self._kernel_children else self._parent_map()
        usage: dict[int, TreeUsage] = {}
        procs: dict[int, Any] = {}
        for root in roots:
            tree = [root]
            seen = {root}
            for pid in tree:  # grows while we walk it: breadth first
                for child in children(pid):
                    if child not in seen:
                        seen.add(child)
                        tree.append(child)
            count, cpu, rss, fds = 0, 0.0, 0, 0
            for pid in tree:
                measured = self._measure(pid)
                if measured is None:
                    continue  # exited since we listed it
                procs[pid], proc_cpu, proc_rss, proc_fds = measured
                count += 1
                cpu += proc_cpu
                rss += proc_rss
                fds += proc_fds
            if count:
                usage[root] = TreeUsage(count, cpu, rss, fds)
        self._procs = procs  # forget the processes that left
        return usage

    def _measure(self, pid: int) -> tuple[Any, float, int, int] | None:
        """(psutil.Process, cpu seconds, rss, fds) of one process; None if gone."""
        cached = self._procs.get(pid)
        try:
            return self._read(cached or psutil.Process(pid))
        except psutil.NoSuchProcess:
            if cached is None:
                return None
        try:  # a cached object whose pid was reused: once more, fresh
            return self._read(psutil.Process(pid))
        except psutil.NoSuchProcess:
            return None

    @staticmethod
    def _read(proc: Any) -> tuple[Any, float, int, int]:
        try:
            with proc.oneshot():
                t = proc.cpu_times()
                cpu: float = t.user + t.system + t.children_user + t.children_system
                rss: int = proc.memory_info().rss
        except psutil.AccessDenied:
            cpu, rss = 0.0, 0  # not ours to look at (pidone not root)
        try:
            fds: int = proc.num_fds()
        except psutil.Error:
            fds = 0  # a zombie, or not ours to look at
        return proc, cpu, rss, fds

    @staticmethod
    def _children(pid: int) -> list[int]:
        found: list[int] = []
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return found  # gone
        for tid in tids:  # each thread lists the children it forked
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                    found.extend(int(child) for child in f.read().split())
            except OSError:
                pass  # the thread ended meanwhile
        return found

    @staticmethod
    def _parent_map() -> Callable[[int], list[int]]:
        children: dict[int, list[int]] = {}
        for proc in psutil.process_iter(["ppid"]):
            ppid = proc.info.get("ppid")
            if isinstance(ppid, int) and ppid != proc.pid:
                children.setdefault(ppid, []).append(proc.pid)
        return lambda pid: children.get(pid, [])


def sample_trees(roots: Collection[int]) -> dict[int, TreeUsage]:
    """One-off TreeSampler call (tests, tools); the collector keeps its own."""
    return TreeSampler()(roots)


# --- the collector -----------------------------------------------------------------------


class PidoneCollector(Collector):
    """pidone's own metrics, built from the latest snapshot at scrape time.
    Never raises: a failing part is logged, counted and left out."""

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
        self._log = log or _log_to_stderr
        self._lock = threading.Lock()
        self.errors = 0  # parts of scrapes that failed, since start
        self._failed = False  # in the scrape under way

    def describe(self) -> Iterable[Metric]:
        return ()  # registering must not trigger a collection

    def collect(self) -> Iterator[Metric]:
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
            errors = CounterMetricFamily(
                "pidone_scrape_errors", "Parts of a scrape that failed (logged on stderr)."
            )
            errors.add_metric([], self.errors)
            last = GaugeMetricFamily(
                "pidone_last_scrape_error", "1 if a part of this scrape failed and is missing."
            )
            last.add_metric([], 1 if self._failed else 0)
            took = GaugeMetricFamily(
                "pidone_scrape_duration_seconds", "Time collecting pidone's own metrics."
            )
            took.add_metric([], time.perf_counter() - started)
            out += [errors, last, took]
        return iter(out)

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
        try:
            self._log(f"metrics: collecting {what} failed (still serving):\n  {text}")
        except Exception:
            pass

    def _pidone_metrics(self) -> list[Metric]:
        c = self._counters
        reaped = CounterMetricFamily("pidone_zombies_reaped", "Children reaped by pidone.")
        reaped.add_metric([], c.zombies_reaped)
        received = CounterMetricFamily(
            "pidone_signals_received", "Signals pidone received.", labels=["signal"]
        )
        for signum, n in sorted(c.signals_received.copy().items()):
            received.add_metric([signal_name(signum)], n)
        forwarded = CounterMetricFamily(
            "pidone_signals_forwarded",
            "Signals pidone sent on to processes.",
            labels=["signal"],
        )
        for signum, n in sorted(c.signals_forwarded.copy().items()):
            forwarded.add_metric([signal_name(signum)], n)
        reloads = CounterMetricFamily("pidone_config_reloads", "Configuration reloads.")
        reloads.add_metric([], c.config_reloads)
        info = GaugeMetricFamily("pidone_build_info", "pidone's version.", labels=["version"])
        info.add_metric([self._version], 1)
        return [reaped, received, forwarded, reloads, info]

    def _state_metrics(self, snap: Snapshot) -> list[Metric]:
        to_wall = self._wall() - self._monotonic()  # monotonic -> unix time
        label = ["process"]
        up = GaugeMetricFamily("pidone_process_up", "1 while the process has a pid.", labels=label)
        ready = GaugeMetricFamily("pidone_process_ready", "1 when ready.", labels=label)
        state = GaugeMetricFamily(
            "pidone_process_state", "The process state (one-hot).", labels=["process", "state"]
        )
        restarts = CounterMetricFamily(
            "pidone_process_restarts",
            "Restarts by reason (crash, manual, dependency).",
            labels=["process", "reason"],
        )
        exits = CounterMetricFamily(
            "pidone_process_exits",
            "Exits by shell status (the exit code, or 128+N when killed by signal N).",
            labels=["process", "status"],
        )
        last_status = GaugeMetricFamily(
            "pidone_process_last_exit_status", "Shell status of the last exit.", labels=label
        )
        start_time = GaugeMetricFamily(
            "pidone_process_start_time_seconds",
            "Unix time the running instance started.",
            labels=label,
        )
        exit_time = GaugeMetricFamily(
            "pidone_process_last_exit_time_seconds", "Unix time of the last exit.", labels=label
        )
        for p in snap.processes:
            running = p.state in HAS_PID
            up.add_metric([p.name], 1 if running else 0)
            ready.add_metric([p.name], 1 if p.ready else 0)
            for s in ProcessState:
                state.add_metric([p.name, s.value], 1 if s is p.state else 0)
            for reason in sorted({*RESTART_REASONS, *p.restarts_by_reason}):
                restarts.add_metric([p.name, reason], p.restarts_by_reason.get(reason, 0))
            for status, n in sorted(p.exits_by_status.items()):
                exits.add_metric([p.name, str(status)], n)
            if running and p.started_at is not None:
                start_time.add_metric([p.name], p.started_at + to_wall)
            if p.last_exit is not None:
                last_status.add_metric([p.name], p.last_exit.status)
                exit_time.add_metric([p.name], p.last_exit.at + to_wall)
        shutting = GaugeMetricFamily("pidone_shutting_down", "1 once pidone is shutting down.")
        shutting.add_metric([], 1 if snap.shutting_down else 0)
        return [up, ready, state, restarts, exits, last_status, start_time, exit_time, shutting]

    def _tree_metrics(self, snap: Snapshot) -> list[Metric]:
        roots = {p.name: p.pid for p in snap.processes if p.pid is not None and p.state in HAS_PID}
        usage = self._sample(set(roots.values()))
        label = ["process"]
        cpu = CounterMetricFamily(
            "pidone_process_cpu_seconds",
            "User and system CPU of the process and all its descendants.",
            labels=label,
        )
        rss = GaugeMetricFamily(
            "pidone_process_resident_memory_bytes",
            "Resident memory of the process and all its descendants, summed.",
            labels=label,
        )
        fds = GaugeMetricFamily(
            "pidone_process_open_fds", "Open fds of the process and its descendants.", labels=label
        )
        count = GaugeMetricFamily(
            "pidone_process_processes",
            "Processes in its tree (the main process included).",
            labels=label,
        )
        for name, pid in roots.items():
            u = usage.get(pid)
            if u is None:
                continue  # exited since the snapshot
            cpu.add_metric([name], u.cpu_seconds)
            rss.add_metric([name], u.resident_bytes)
            fds.add_metric([name], u.open_fds)
            count.add_metric([name], u.processes)
        return [cpu, rss, fds, count]


def build_registry(collector: PidoneCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


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


# --- the HTTP server -----------------------------------------------------------------------


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT' (host may be '[::1]', or empty for every IPv4 address)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f'metrics address must be "HOST:PORT", like "127.0.0.1:9100": {text!r}')
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", int(port)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive threads
    timeout = CLIENT_TIMEOUT  # per socket operation: a stuck client frees its thread
    server_version = f"pidone/{__version__}"

    def do_GET(self) -> None:
        owner = self.server.owner
        path = urlsplit(self.path).path
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            try:
                body = encoder(owner.registry)
            except Exception as exc:
                owner.log(f"metrics: exposition failed: {exc!r}")
                self._text(500, f"exposition failed: {exc}")
                return
            self._send(200, body, content_type)
        elif path == "/healthz":
            healthy, why = check_health(owner.heartbeat, owner.wake, wait=owner.health_wait)
            self._text(200 if healthy else 503, why)
        elif path == "/readyz":
            ready, why = check_ready(owner.snapshot())
            self._text(200 if ready else 503, why)
        elif path == "/":
            self._text(200, "pidone: /metrics /healthz /readyz")
        else:
            self._text(404, "not found: /metrics /healthz /readyz")

    def _text(self, code: int, text: str) -> None:
        self._send(code, (text + "\n").encode(), "text/plain; charset=utf-8")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # pidone's output belongs to its processes; no access log


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], owner: MetricsServer) -> None:
        self.owner = owner
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._active = 0
        self._active_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call getfqdn(): a DNS lookup, at startup, in PID 1.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._active_lock:
            if self._active >= MAX_CLIENTS:
                self.shutdown_request(request)
                return
            self._active += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._done()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done()

    def _done(self) -> None:
        with self._active_lock:
            self._active -= 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.owner.log(f"metrics: error serving {client_address}: {_last_error()}")


class MetricsServer:
    """/metrics, /healthz and /readyz on ADDRESS, from a daemon thread.

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
        self.collector = PidoneCollector(snapshot, counters, sample=sample, log=self.log)
        self.registry = build_registry(self.collector)
        self._server = _Server(parse_address(address), self)
        self._server.socket.setblocking(False)  # accept never blocks: see _serve
        self.port: int = self._server.server_address[1]
        self._stop_read, self._stop_write = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._serve, name="pidone-metrics", daemon=True)
        # The thread (and the handler threads it starts) must never take a
        # signal meant for pidone: the kernel hands a process signal to any
        # thread that does not block it. Block them all around its birth.
        saved = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            self._thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, saved)

    def _serve(self) -> None:
        # Our own accept loop instead of serve_forever(), whose 0.5 s poll
        # would wake pidone twice a second forever.
        server = self._server
        with selectors.DefaultSelector() as selector:
            selector.register(server.socket, selectors.EVENT_READ)
            selector.register(self._stop_read, selectors.EVENT_READ)
            while True:
                try:
                    events = selector.select()
                    if any(key.fd == self._stop_read for key, _ in events):
                        return
                    self._accept()
                except Exception:
                    self.log(f"metrics: {_last_error()}")
                    time.sleep(0.1)  # EMFILE and friends: do not spin

    def _accept(self) -> None:
        server = self._server
        for _ in range(MAX_CLIENTS):
            try:
                request, client_address = server.get_request()
            except (BlockingIOError, InterruptedError):
                return
            try:
                server.process_request(request, client_address)
            except Exception:
                server.handle_error(request, client_address)
                server.shutdown_request(request)

    def close(self) -> None:
        try:
            os.write(self._stop_write, b"x")
        except OSError:
            pass
        self._thread.join(timeout=5.0)
        self._server.server_close()
        os.close(self._stop_read)
        os.close(self._stop_write)


def _last_error() -> str:
    return traceback.format_exc().strip().splitlines()[-1]


def _log_to_stderr(message: str) -> None:
    try:
        os.write(2, f"pidone: {message}\n".encode("utf-8", "replace"))
    except OSError:
        pass
