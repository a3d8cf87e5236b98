"""Liveness attempts and watchdog pings through the real Prober, against real
loopback sockets and processes (the harness of test_probes.py)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pidone.config.specs import ReadyCheck
from tests.integration import test_probes as probes
from tests.integration.test_probes import (
    FakeClock,
    Harness,
    exec_check,
    free_port,
    http_check,
    open_fds,
    tcp,
    tcp_listener,
)

sockdir = probes.sockdir  # the fixture, shared
Result = tuple[str, int, str | None]


class Recorder:
    def __init__(self) -> None:
        self.alive: list[Result] = []
        self.pings: list[tuple[str, int]] = []

    def on_alive(self, name: str, pid: int, error: str | None) -> None:
        self.alive.append((name, pid, error))

    def on_watchdog(self, name: str, pid: int) -> None:
        self.pings.append((name, pid))


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def h(sockdir: Path, rec: Recorder) -> Iterator[Harness]:
    harness = Harness(str(sockdir / "notify"), on_alive=rec.on_alive, on_watchdog=rec.on_watchdog)
    yield harness
    harness.close()


def errors(rec: Recorder) -> list[str | None]:
    return [error for _, _, error in rec.alive]


def test_liveness_passes_then_fails_once_per_interval(h: Harness, rec: Recorder) -> None:
    port = free_port()
    listener = tcp_listener(port)
    h.prober.start_alive("web", tcp("127.0.0.1", port), 7, 0.0, 0.2, 0.1)
    assert h.run_until(lambda: len(rec.alive) >= 2, timeout=3)
    assert rec.alive[:2] == [("web", 7, None), ("web", 7, None)]
    listener.close()
    assert h.run_until(lambda: len(rec.alive) >= 4, timeout=3)
    assert rec.alive[-1][2] is not None and "Connection refused" in rec.alive[-1][2]


def test_the_first_attempt_waits_for_alive_delay_then_one_per_interval(sockdir: Path) -> None:
    clock = FakeClock()
    rec = Recorder()
    h = Harness(str(sockdir / "n"), clock=clock, on_alive=rec.on_alive)
    start = clock.now
    h.prober.start_alive("web", ReadyCheck("file", "/", path="/"), 1, 5.0, 10.0, 1.0)
    assert h.prober.next_deadline() == start + 5.0
    h.prober.run_due(start + 4.99)
    assert rec.alive == []
    clock.now = start + 5.0
    h.prober.run_due(clock.now)
    assert rec.alive == [("web", 1, None)]
    # Idle between attempts: nothing open, the next attempt the only deadline.
    assert h.prober.next_deadline() == start + 15.0
    assert len(h.selector.get_map()) == 0
    h.prober.cancel("web")
    assert h.prober.next_deadline() is None
    h.close()


def test_liveness_against_a_server_that_accepts_and_never_answers_ends_at_its_timeout(
    h: Harness, rec: Recorder
) -> None:
    before = open_fds()
    with tcp_listener(free_port()) as stuck:  # the kernel completes connects; nobody reads
        port = stuck.getsockname()[1]
        began = time.monotonic()
        h.prober.start_alive("web", http_check(f"http://127.0.0.1:{port}/"), 1, 0.0, 2.0, 0.3)
        assert h.run_until(lambda: len(rec.alive) == 1, timeout=3)
        took = time.monotonic() - began
        assert errors(rec) == ["no answer within 0.3 s"]
        assert 0.3 <= took < 1.5
        assert len(h.selector.get_map()) == 0  # its socket closed
        h.prober.cancel("web")
    assert open_fds() <= before


class Hostile:
    """A loopback server that sends `chunk` every `pause` seconds to each
    client, forever, without ever a newline; counts what it got out."""

    def __init__(self, chunk: bytes, pause: float) -> None:
        self.listener = tcp_listener(free_port())
        self.port = self.listener.getsockname()[1]
        self.chunk, self.pause = chunk, pause
        self.sent = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(4096)
                try:
                    while not self.stopping.is_set():
                        self.sent += conn.send(self.chunk)
                        if self.pause:
                            time.sleep(self.pause)
                except OSError:
                    pass  # the prober closed it

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()


def test_liveness_against_a_trickling_answer_ends_at_its_timeout(h: Harness, rec: Recorder) -> None:
    server = Hostile(b"H", 0.02)  # 50 bytes a second, never a status line
    try:
        began = time.monotonic()
        url = f"http://127.0.0.1:{server.port}/"
        h.prober.start_alive("web", http_check(url), 1, 0.0, 2.0, 0.4)
        assert h.run_until(lambda: len(rec.alive) == 1, timeout=3)
        assert errors(rec) == ["no answer within 0.4 s"]
        assert time.monotonic() - began < 1.5
        assert server.sent > 5  # it did trickle
    finally:
        server.close()


def test_liveness_against_a_huge_answer_reads_at_most_8_kib(h: Harness, rec: Recorder) -> None:
    server = Hostile(b"x" * 65536, 0.0)  # as fast as it goes, no newline
    try:
        url = f"http://127.0.0.1:{server.port}/"
        h.prober.start_alive("web", http_check(url), 1, 0.0, 5.0, 2.0)
        assert h.run_until(lambda: len(rec.alive) == 1, timeout=3)
        assert errors(rec) == [f"GET {url}: no HTTP status line"]
        time.sleep(0.2)
        # Closed after 8 KiB and a read: the server got out what the socket
        # buffers hold, not the endless stream.
        assert server.sent < 16 * 1024 * 1024
    finally:
        server.close()


def test_liveness_exec_that_hangs_is_killed_at_alive_timeout(h: Harness, rec: Recorder) -> None:
    h.prober.start_alive("web", exec_check("sleep 100"), 1, 0.0, 5.0, 0.3)
    assert h.run_until(lambda: len(rec.alive) == 1, timeout=3)
    assert errors(rec) == ["no answer within 0.3 s"]
    assert h.run_until(lambda: len(h.exits) == 1, timeout=3)  # killed and reaped
    (status, ours) = next(iter(h.exits.values()))
    assert ours and os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9


def test_readiness_and_liveness_of_one_process_are_independent(h: Harness, rec: Recorder) -> None:
    port = free_port()
    with tcp_listener(port):
        h.prober.start("web", tcp("127.0.0.1", port), 1)
        h.prober.start_alive("web", tcp("127.0.0.1", port), 1, 0.0, 0.1, 0.1)
        assert h.run_until(lambda: h.ready == ["web"] and len(rec.alive) >= 2, timeout=3)
        h.prober.start("web", tcp("127.0.0.1", port), 2)  # a new readiness check only
        n = len(rec.alive)
        assert h.run_until(lambda: len(rec.alive) > n, timeout=3)  # liveness goes on
        h.prober.cancel("web")
        assert h.prober.next_deadline() is None


def ping_socket(path: str, count: int) -> int:
    """Send up to `count` WATCHDOG=1 datagrams from this process; how many went."""
    sent = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        for _ in range(count):
            try:
                s.sendto(b"WATCHDOG=1", path)
            except BlockingIOError:
                break
            sent += 1
    return sent


def test_a_watchdog_ping_from_the_main_process_is_reported(h: Harness, rec: Recorder) -> None:
    path = h.prober.notify_socket("web")
    h.prober.start("web", ReadyCheck("settle", seconds=1.0), os.getpid())
    assert ping_socket(path, 1) == 1
    assert h.run_until(lambda: rec.pings == [("web", os.getpid())], timeout=2)


def test_a_watchdog_ping_from_an_unrelated_pid_is_ignored(h: Harness, rec: Recorder) -> None:
    path = h.prober.notify_socket("web")
    h.prober.start("web", ReadyCheck("settle", seconds=1.0), os.getpid() + 100_000)
    assert ping_socket(path, 1) == 1
    h.run_for(0.2)
    assert rec.pings == []


def test_pings_queued_together_are_one_report(h: Harness, rec: Recorder) -> None:
    path = h.prober.notify_socket("web")
    h.prober.start("web", ReadyCheck("settle", seconds=1.0), os.getpid())
    sent = ping_socket(path, 64)  # as many as the kernel queues (max_dgram_qlen)
    assert sent >= 2
    for key, mask in h.selector.select(1):
        key.data(mask)
    assert rec.pings == [("web", os.getpid())]


def test_a_flood_of_watchdog_pings_does_not_starve_the_loop(h: Harness, rec: Recorder) -> None:
    path = h.prober.notify_socket("web")
    h.prober.start("web", ReadyCheck("settle", seconds=1.0), os.getpid())
    total = 2_000
    done = threading.Event()

    def flood() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.settimeout(10)
            for _ in range(total):
                s.sendto(b"WATCHDOG=1", path)  # blocks while the queue is full
        done.set()

    flooder = threading.Thread(target=flood)
    flooder.start()
    port = free_port()
    try:
        h.run_for(0.2)
        with tcp_listener(port):  # another process's check, during the flood
            h.prober.start("redis", tcp("127.0.0.1", port), pid=2)
            assert h.run_until(lambda: h.ready == ["redis"], timeout=2)
        assert h.run_until(done.is_set, timeout=30)  # every datagram drained
    finally:
        flooder.join(30)
    h.run_for(0.1)
    assert 1 <= len(rec.pings) <= total
    assert set(rec.pings) == {("web", os.getpid())}
