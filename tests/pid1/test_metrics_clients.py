"""HTTP clients that try to take /healthz down, against a real `pidone run`
with metrics, PID 1 of its own namespace: slow clients holding connections,
a hundred scrapes at once, a request that breaks the library. The probes
must answer within 1 s every time (the kubelet's default probe timeout)."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import threading
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.running import wait_for
from tests.helpers.stack import Stack, free_port

PROBE_TIMEOUT = 1.0  # seconds: Kubernetes' default timeoutSeconds


def sleepers(port: int, count: int) -> str:
    processes = "".join(f'[process.s{i}]\ncommand = "sleep 3600"\n' for i in range(count))
    return f'[pidone]\nmetrics = "127.0.0.1:{port}"\nsettle_time = 0.1\n{processes}'


def request(
    port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def probe(port: int, path: str) -> float | None:
    """Seconds until a 200 from `path`, or None (refused, timed out, not 200)."""
    started = time.monotonic()
    try:
        status, _, _ = request(port, path, timeout=PROBE_TIMEOUT)
    except OSError:
        return None
    took = time.monotonic() - started
    return took if status == 200 and took < PROBE_TIMEOUT else None


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def started(stack: Stack, port: int, count: int) -> None:
    def all_up() -> bool:
        try:
            status, _, body = request(port, "/metrics", timeout=2)
        except OSError:
            return False
        up = [
            s.value
            for f in text_string_to_metric_families(body.decode())
            if f.name == "pidone_process_up"
            for s in f.samples
        ]
        return status == 200 and up == [1.0] * count

    wait_for(all_up, what=f"{count} processes up behind the metrics server", timeout=30)


class Trickle:
    """`count` clients, each holding a connection open and sending one byte
    of a request head that never ends every `every` seconds; one that the
    server cuts off connects again at once, as an attacker would."""

    def __init__(self, port: int, count: int, every: float) -> None:
        self.port = port
        self.every = every
        self.cut = 0  # connections the server ended (its deadline)
        self.replies: list[bytes] = []  # what those got before the close
        self.stop = threading.Event()
        self.sockets = [self._connect() for _ in range(count)]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        s.setblocking(False)
        return s

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            for i, s in enumerate(self.sockets):
                try:
                    got = s.recv(65536)
                except BlockingIOError:
                    got = None  # nothing from the server: still held
                except OSError:
                    got = b""
                if got is not None:
                    self.cut += 1
                    self.replies.append(got)
                    s.close()
                    self.sockets[i] = self._connect()
                    continue
                with contextlib.suppress(OSError):  # seen as closed at the next round
                    s.send(b"a")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        for s in self.sockets:
            s.close()


def test_64_clients_trickling_a_byte_every_2_s_do_not_take_healthz_down(shared: Path) -> None:
    port = free_port()
    with Stack("pid1", shared) as stack:
        stack.start(sleepers(port, 3))
        started(stack, port, 3)
        before = rss_mib(stack.init.pid)
        trickle = Trickle(port, 64, every=2.0)
        try:
            time.sleep(1.0)  # all 64 held by the server
            answered = {"/healthz": 0, "/readyz": 0}
            slowest = 0.0
            rounds = 20  # 20 of each over about 12 s: past the 5 s deadline, twice
            for _ in range(rounds):
                for path in answered:
                    took = probe(port, path)
                    if took is not None:
                        answered[path] += 1
                        slowest = max(slowest, took)
                time.sleep(0.5)
        finally:
            trickle.close()
        after = rss_mib(stack.init.pid)
        print(f"64 trickling clients: {answered} of {rounds} each, slowest {slowest * 1000:.0f} ms,"
              f" {trickle.cut} cut off; RSS {before:.1f} -> {after:.1f} MiB")  # fmt: skip
        assert after - before < 2.0  # 64 connections and their heads: bounded, small
        assert answered == {"/healthz": rounds, "/readyz": rounds}
        assert slowest < PROBE_TIMEOUT
        # The deadline is one per connection, not per byte: every one of the
        # 64 was cut off after 5 s of trickling (and again after reconnecting).
        assert trickle.cut >= 64
        timed_out = [r for r in trickle.replies if r.startswith(b"HTTP/1.0 408 ")]
        assert len(timed_out) >= 64
        assert os.path.exists(f"/proc/{stack.init.pid}")
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0


def test_100_scrapes_at_once_get_200_or_503_none_reset_and_healthz_answers(
    shared: Path,
) -> None:
    port = free_port()
    with Stack("pid1", shared) as stack:
        stack.start(sleepers(port, 50))
        started(stack, port, 50)
        before = rss_mib(stack.init.pid)
        results: list[object] = []
        retry_after: list[str | None] = []
        go = threading.Barrier(101)

        def scrape() -> None:
            go.wait()
            try:
                status, headers, _ = request(port, "/metrics", {"Accept-Encoding": "gzip"})
            except OSError as exc:  # a reset, a refusal, a timeout
                results.append(exc)
                return
            results.append(status)
            if status == 503:
                retry_after.append(headers.get("retry-after"))

        scrapers = [threading.Thread(target=scrape, daemon=True) for _ in range(100)]
        for t in scrapers:
            t.start()
        go.wait()
        probes = []
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # while the scrapes run
            probes.append(probe(port, "/healthz"))
        for t in scrapers:
            t.join(timeout=30)
        served = results.count(200)
        busy = results.count(503)
        after = rss_mib(stack.init.pid)
        print(f"100 scrapes at once: {served} x 200, {busy} x 503, "
              f"{len(results) - served - busy} other; /healthz {len(probes)} probes, "
              f"slowest {max((p or 9) for p in probes) * 1000:.0f} ms;"
              f" RSS {before:.1f} -> {after:.1f} MiB")  # fmt: skip
        assert after - before < 8.0  # at most 8 replies under way, whatever the clients
        assert len(results) == 100
        assert served + busy == 100, [r for r in results if r not in (200, 503)]
        assert served >= 8  # at least the 8 places of the pool
        assert retry_after == ["1"] * busy
        assert len(probes) >= 2 and None not in probes
        assert request(port, "/metrics")[0] == 200  # and the pool is free again
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0


def test_an_accept_header_that_breaks_the_library_is_a_logged_500_and_pidone_serves_on(
    shared: Path,
) -> None:
    port = free_port()
    with Stack("pid1", shared) as stack:
        stack.start(sleepers(port, 1))
        started(stack, port, 1)
        # prometheus-client compares the version as a tuple of ints and
        # strings: "x" raises TypeError inside the library's WSGI app.
        bad = {"Accept": "application/openmetrics-text; version=x"}
        for _ in range(3):
            status, _, body = request(port, "/metrics", bad)
            assert status == 500 and body.startswith(b"internal error: ")
        wait_for(lambda: stack.stderr_so_far().count("/metrics failed: TypeError") == 3,
                 what="three logged failures")  # fmt: skip
        assert request(port, "/metrics")[0] == 200
        assert probe(port, "/healthz") is not None
        assert probe(port, "/readyz") is not None
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0


def test_the_server_threads_are_few_and_block_every_signal(shared: Path) -> None:
    port = free_port()
    with Stack("pid1", shared) as stack:
        stack.start(sleepers(port, 1))
        started(stack, port, 1)
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        try:
            time.sleep(0.5)
            pid = stack.init.pid
            threads = []
            for tid in os.listdir(f"/proc/{pid}/task"):
                status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
                fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
                threads.append((int(tid), int(fields["SigBlk"], 16)))
        finally:
            for s in held:
                s.close()
        # 20 connections held, and still the loop, the server and its 2 workers only
        assert len(threads) == 4, threads
        # All but SIGKILL and SIGSTOP (which cannot be blocked) and glibc's 32, 33
        unblockable = {signal.SIGKILL, signal.SIGSTOP, 32, 33}
        every = sum(1 << (n - 1) for n in range(1, 65) if n not in unblockable)
        # (the loop's own thread blocks the signals it reads from its signalfd)
        side = [mask for tid, mask in threads if tid != pid]
        assert len(side) == 3 and all(mask == every for mask in side), [hex(m) for m in side]
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
