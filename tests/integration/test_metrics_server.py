"""The metrics server over real HTTP on 127.0.0.1, with real process trees."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pidone.core.counters import PidoneCounters
from pidone.core.snapshot import ProcessStatus, Snapshot
from pidone.core.states import ProcessState
from pidone.observe.metrics import MetricsServer, TreeSampler
from tests.helpers.running import wait_for

MiB = 1024 * 1024


def status(
    name: str,
    state: ProcessState = ProcessState.READY,
    pid: int | None = None,
    has_ready_check: bool = True,
) -> ProcessStatus:
    return ProcessStatus(
        name=name,
        state=state,
        ready=state is ProcessState.READY,
        pid=pid,
        started_at=time.monotonic() if pid else None,
        restarts=0,
        restarts_by_reason={},
        exits_by_status={},
        last_exit=None,
        has_ready_check=has_ready_check,
    )


class Published:
    """What the loop publishes: the latest snapshot and its heartbeat."""

    def __init__(self, snap: Snapshot | None = None) -> None:
        self.snap = snap
        self.beat = time.monotonic()

    def snapshot(self) -> Snapshot | None:
        return self.snap

    def heartbeat(self) -> float:
        return self.beat


@pytest.fixture
def published() -> Published:
    return Published(Snapshot((), False))


@pytest.fixture
def server(published: Published) -> Iterator[MetricsServer]:
    s = MetricsServer("127.0.0.1:0", published.snapshot, published.heartbeat, PidoneCounters())
    yield s
    s.close()


def get(
    port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, reply.getheader("Content-Type") or "", reply.read().decode()
    finally:
        conn.close()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, _, body = get(port, "/metrics")
    assert code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


# --- /metrics ----------------------------------------------------------------------------


def test_metrics_parse_and_carry_pidone_and_process_series(
    server: MetricsServer, published: Published
) -> None:
    # Scraped once the interpreter is up, not while exec is still mapping it.
    code = "import time; print('up', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"up\n"
        published.snap = Snapshot((status("web", pid=child.pid),), False)
        m = scrape(server.port)
    finally:
        child.kill()
        child.wait()
    web = (("process", "web"),)
    assert m["pidone_process_up", web] == 1.0
    assert m["pidone_process_processes", web] == 1.0
    assert m["pidone_process_resident_memory_bytes", web] > 1 * MiB
    assert m["pidone_process_open_fds", web] >= 3
    assert m["pidone_process_cpu_seconds_total", web] >= 0.0
    assert m["pidone_last_scrape_error", ()] == 0.0
    # pidone's own process_* and python_* series: prometheus-client's collectors
    assert m["process_resident_memory_bytes", ()] > 1 * MiB
    assert m["process_open_fds", ()] > 0
    assert ("process_cpu_seconds_total", ()) in m
    assert any(name == "python_info" for name, _ in m)


def test_openmetrics_on_request(server: MetricsServer) -> None:
    code, ctype, body = get(
        server.port, "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert code == 200
    assert ctype.startswith("application/openmetrics-text")
    assert body.endswith("# EOF\n")


def test_gzip_head_and_name_filter_are_the_librarys(server: MetricsServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(
            "GET", "/metrics?name[]=pidone_build_info", headers={"Accept-Encoding": "gzip"}
        )
        reply = conn.getresponse()
        body = gzip.decompress(reply.read()).decode()
    finally:
        conn.close()
    assert reply.getheader("Content-Encoding") == "gzip"
    assert [f.name for f in text_string_to_metric_families(body)] == ["pidone_build_info"]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("HEAD", "/metrics?name[]=pidone_build_info")
        head = conn.getresponse()
        assert head.read() == b""
    finally:
        conn.close()
    assert head.status == 200
    assert head.getheader("Content-Length") == str(len(body))


WORKER_TREE = """
import os, sys, time
r, w = os.pipe()
if os.fork() == 0:                       # the worker: 50 MiB, every page touched
    hog = bytearray(50 * 1024 * 1024)
    for i in range(0, len(hog), 4096):
        hog[i] = 1
    os.write(w, b"x")
    time.sleep(600)
    os._exit(0)
os.read(r, 1)
print("ready", flush=True)
time.sleep(600)
"""


def test_memory_of_a_forked_worker_counts_for_its_process(
    server: MetricsServer, published: Published
) -> None:
    master = subprocess.Popen(
        [sys.executable, "-c", WORKER_TREE], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert master.stdout is not None
        assert master.stdout.readline() == b"ready\n"
        published.snap = Snapshot((status("celery", pid=master.pid),), False)
        m = scrape(server.port)
        celery = (("process", "celery"),)
        assert m["pidone_process_processes", celery] == 2.0
        assert m["pidone_process_resident_memory_bytes", celery] > 50 * MiB
        assert m["pidone_process_open_fds", celery] >= 6  # stdio and the pipe, twice
        # Both ways of finding descendants agree: the kernel's child lists,
        # and psutil's children() (kernels without them).
        for kernel_children in (True, False):
            tree = TreeSampler(use_kernel_children=kernel_children)([master.pid])[master.pid]
            assert tree.processes == 2
            assert tree.resident_bytes > 50 * MiB
        assert TreeSampler()([master.pid, 999_999_999]).keys() == {master.pid}
    finally:
        os.killpg(master.pid, 9)
        master.wait()


def test_scrapes_are_collected_at_scrape_time_and_the_thread_sleeps_between(
    server: MetricsServer,
) -> None:
    def switches() -> int:
        """Of the server's thread and its workers."""
        total = 0
        for thread in [server._thread, *server._http.workers]:
            text = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
            total += int(text.split("voluntary_ctxt_switches:")[1].split()[0])
        return total

    def idle_for(seconds: float) -> bool:
        before = switches()
        time.sleep(seconds)
        return switches() == before

    scrape(server.port)
    # the server sees the client's close and closes its end, however long
    # that takes here; a poll of its own would still show in the longer look
    wait_for(lambda: idle_for(0.2), what="the server's threads to go idle")
    assert idle_for(1.5)  # serve_forever() would have polled three times by now


# --- /healthz ------------------------------------------------------------------------------


class Waker:
    """The stand-in loop's wake-up: a pipe in its selector (pidone's loop is
    woken by system.wake_loop, a signal its signalfd reads)."""

    def __init__(self, selector: selectors.BaseSelector) -> None:
        self._selector = selector
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        selector.register(self._read, selectors.EVENT_READ, self._drain)

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
            os.write(self._write, b"\0")

    def _drain(self, mask: int) -> None:
        with contextlib.suppress(OSError):
            os.read(self._read, 4096)

    def close(self) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._read)
        os.close(self._read)
        os.close(self._write)


class LoopThread:
    """A stand-in for pidone's loop: sleeps in select() with no timeout,
    stamps the heartbeat after each turn; `stall()` makes a callback block."""

    def __init__(self, published: Published) -> None:
        self.published = published
        self.selector = selectors.DefaultSelector()
        self.waker = Waker(self.selector)
        self.release = threading.Event()
        self.release.set()
        self.turns = 0
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            for key, mask in self.selector.select():
                key.data(mask)
            self.release.wait()
            self.turns += 1
            self.published.beat = time.monotonic()

    def close(self) -> None:
        self._stop = True
        self.release.set()
        self.waker.wake()
        self.thread.join(timeout=5)
        self.waker.close()


def health_server(published: Published, wake: Callable[[], None] | None) -> MetricsServer:
    return MetricsServer(
        "127.0.0.1:0", published.snapshot, published.heartbeat, PidoneCounters(), wake=wake
    )


def test_healthz_wakes_an_idle_loop(published: Published) -> None:
    loop = LoopThread(published)
    server = health_server(published, loop.waker.wake)
    try:
        published.beat = time.monotonic() - 3600  # asleep for an hour, and healthy
        turns = loop.turns
        started = time.monotonic()
        assert get(server.port, "/healthz")[::2] == (200, "ok\n")
        assert time.monotonic() - started < 0.5
        assert loop.turns == turns + 1  # exactly one wake-up
        assert get(server.port, "/healthz")[::2] == (200, "ok\n")  # fresh: no wake-up needed
        assert loop.turns == turns + 1
    finally:
        server.close()
        loop.close()


def test_healthz_fails_when_the_loop_is_stuck(published: Published) -> None:
    loop = LoopThread(published)
    server = health_server(published, loop.waker.wake)
    try:
        loop.release.clear()  # the next turn blocks, as a loop stuck in a callback would
        loop.waker.wake()
        time.sleep(0.05)
        published.beat = time.monotonic() - 30
        started = time.monotonic()
        code, _, body = get(server.port, "/healthz")
        assert code == 503
        assert body.startswith("the event loop did not turn within 0.8 s of a wake-up")
        assert 0.7 < time.monotonic() - started < 2.0
        loop.release.set()
        assert get(server.port, "/healthz")[0] == 200
    finally:
        server.close()
        loop.close()


def test_healthz_without_a_waker_goes_by_the_heartbeat(published: Published) -> None:
    server = health_server(published, None)
    try:
        published.beat = time.monotonic()
        assert get(server.port, "/healthz")[::2] == (200, "ok\n")
        published.beat = time.monotonic() - 20
        code, _, body = get(server.port, "/healthz")
        assert code == 503 and body.startswith("the event loop last turned 20.")
    finally:
        server.close()


# --- /readyz -------------------------------------------------------------------------------


def test_readyz(server: MetricsServer, published: Published) -> None:
    published.snap = Snapshot(
        (status("redis", pid=1), status("cron", ProcessState.RUNNING, 2, has_ready_check=False)),
        False,
    )
    assert get(server.port, "/readyz")[::2] == (200, "ready\n")
    published.snap = Snapshot(
        (
            status("redis", pid=1),
            status("web", ProcessState.STARTING),
            status("w", ProcessState.BACKOFF),
        ),
        False,
    )
    assert get(server.port, "/readyz")[::2] == (503, "not ready: web (starting), w (backoff)\n")
    published.snap = Snapshot((status("redis", pid=1),), True)
    assert get(server.port, "/readyz")[::2] == (503, "shutting down\n")
    published.snap = None
    assert get(server.port, "/readyz")[::2] == (503, "starting\n")


def test_unknown_paths_are_404(server: MetricsServer) -> None:
    assert get(server.port, "/metricz")[0] == 404


# --- stuck clients ---------------------------------------------------------------------------


def test_stuck_clients_do_not_block_a_scrape(server: MetricsServer) -> None:
    stuck = []
    for partial in [b"", b"GET /metrics HTTP/1.1\r\nHost: x\r\n", b"GE"]:
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(partial)
        stuck.append(s)
    try:
        for path in ["/metrics", "/healthz", "/readyz"]:
            started = time.monotonic()
            assert get(server.port, path, timeout=5)[0] in (200, 503)
            assert time.monotonic() - started < 1.0
    finally:
        for s in stuck:
            s.close()


def test_a_client_that_never_reads_the_reply_does_not_block_others(
    server: MetricsServer, published: Published
) -> None:
    published.snap = Snapshot(tuple(status(f"p{i}") for i in range(300)), False)
    slow = socket.create_connection(("127.0.0.1", server.port))
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        slow.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")  # a reply of ~300 KiB, never read
        time.sleep(0.2)  # its handler is now blocked writing
        started = time.monotonic()
        assert get(server.port, "/metrics", timeout=5)[0] == 200
        assert time.monotonic() - started < 2.0
    finally:
        slow.close()


def test_close_frees_the_port_and_stops_the_thread(published: Published) -> None:
    s = MetricsServer("127.0.0.1:0", published.snapshot, published.heartbeat, PidoneCounters())
    port = s.port
    assert get(port, "/healthz")[0] == 200
    s.close()
    assert not s._thread.is_alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
