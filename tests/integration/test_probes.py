"""Readiness probes against real sockets, files and processes, on loopback only.

The probes run in a small select loop like pidone's: every fd carries a
callback taking the event mask, and the loop sleeps until the prober's next
deadline. exec: children are reaped through a pidfd, as the real loop reaps
and reports them.
"""

from __future__ import annotations

import errno
import gc
import http.server
import os
import selectors
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from pidone.config.command import parse
from pidone.config.specs import ReadyCheck
from pidone.errors import SpawnError
from pidone.runtime.probes import ATTEMPT_TIMEOUT, EXEC_TIMEOUT, Prober
from pidone.system import spawn
from tests.helpers.running import require_root, wait_for

# --- the loop ----------------------------------------------------------------------------


class Harness:
    """A Prober in a select loop that reaps the exec: children it spawns."""

    def __init__(
        self,
        notify_dir: str,
        clock: Callable[[], float] = time.monotonic,
        attempt_timeout: float = ATTEMPT_TIMEOUT,
        exec_timeout: float = EXEC_TIMEOUT,
        on_ready: Callable[[str], None] | None = None,
        on_alive: Callable[[str, int, str | None], None] | None = None,
        on_watchdog: Callable[[str, int], None] | None = None,
    ) -> None:
        self.selector = selectors.DefaultSelector()
        self.ready: list[str] = []
        self.spawned: list[int] = []
        self.exits: dict[int, tuple[int, bool]] = {}  # pid -> (wait status, child_exited's answer)
        self.prober = Prober(
            self.selector,
            on_ready or self.ready.append,
            spawn=self.spawn,
            clock=clock,
            notify_dir=notify_dir,
            attempt_timeout=attempt_timeout,
            exec_timeout=exec_timeout,
            on_alive=on_alive,
            on_watchdog=on_watchdog,
        )

    def spawn(self, name: str, argv: Sequence[str]) -> int:
        pid = spawn.spawn(argv)
        self.spawned.append(pid)
        pidfd = os.pidfd_open(pid)

        def reap(mask: int) -> None:
            self.selector.unregister(pidfd)
            os.close(pidfd)
            _, status = os.waitpid(pid, 0)
            self.exits[pid] = (status, self.prober.child_exited(pid, status))

        self.selector.register(pidfd, selectors.EVENT_READ, reap)
        return pid

    def step(self, limit: float) -> None:
        """One loop iteration: sleep until the prober's deadline, an fd or `limit`."""
        deadline = self.prober.next_deadline()
        wake = limit if deadline is None else min(deadline, limit)
        for key, mask in self.selector.select(max(0.0, wake - time.monotonic())):
            key.data(mask)
        self.prober.run_due(time.monotonic())

    def run_until(self, done: Callable[[], bool], timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while not done():
            if time.monotonic() >= end:
                return False
            self.step(end)
        return True

    def run_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.step(end)

    def attempts(self, name: str) -> int:
        progress = self.prober.progress(name)
        return 0 if progress is None else progress.attempts

    def error(self, name: str) -> str:
        progress = self.prober.progress(name)
        assert progress is not None, f"no active check for {name}"
        return progress.last_error or ""

    def close(self) -> None:
        self.prober.close()
        # Reap what the prober killed, so no zombie outlives the test.
        self.run_until(lambda: all(pid in self.exits for pid in self.spawned), timeout=5)
        self.selector.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short directory (sun_path holds 107 bytes) that other users may enter."""
    path = Path(tempfile.mkdtemp(prefix="probes-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


@pytest.fixture
def harness(sockdir: Path) -> Iterator[Harness]:
    h = Harness(str(sockdir / "notify"))
    yield h
    h.close()


def open_fds() -> set[int]:
    gc.collect()  # sockets of earlier tests, closed when collected, are not ours
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def free_port(host: str = "127.0.0.1", family: socket.AddressFamily = socket.AF_INET) -> int:
    with socket.socket(family) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def tcp_listener(
    port: int, host: str = "127.0.0.1", family: socket.AddressFamily = socket.AF_INET
) -> socket.socket:
    s = socket.socket(family)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(16)
    return s


def tcp(host: str, port: int) -> ReadyCheck:
    return ReadyCheck("tcp", f"{host}:{port}", host=host, port=port)


def http_check(url: str) -> ReadyCheck:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return ReadyCheck("http", url, host=parts.hostname, port=parts.port, url=url)


def exec_check(text: str) -> ReadyCheck:
    return ReadyCheck("exec", text, command=parse(text))


def assert_not_ready_after_attempts(h: Harness, name: str, attempts: int = 4) -> None:
    assert h.run_until(lambda: h.attempts(name) >= attempts)
    assert h.ready == []


# --- retry schedule ------------------------------------------------------------------------


def test_first_attempt_at_once_then_intervals_grow_from_10_ms_to_250_ms(tmp_path: Path) -> None:
    clock = FakeClock()
    h = Harness(str(tmp_path / "n"), clock=clock)
    target = tmp_path / "flag"
    start = clock.now
    h.prober.start("web", ReadyCheck("file", str(target), path=str(target)), pid=1234)
    assert h.ready == []  # never from inside start(): the caller is not re-entered
    assert h.prober.next_deadline() == start

    gaps = []
    for _ in range(8):
        due = h.prober.next_deadline()
        assert due is not None
        h.prober.run_due(due - 0.001)  # not due yet: nothing happens
        before = h.attempts("web")
        clock.now = due
        h.prober.run_due(due)
        assert h.attempts("web") == before + 1
        next_due = h.prober.next_deadline()
        assert next_due is not None
        gaps.append(round(next_due - due, 6))
    assert gaps == [0.01, 0.02, 0.04, 0.08, 0.16, 0.25, 0.25, 0.25]
    assert "does not exist" in h.error("web")

    target.touch()
    clock.now = h.prober.next_deadline() or 0.0
    h.prober.run_due(clock.now)
    assert h.ready == ["web"]
    assert h.prober.next_deadline() is None  # idle: the loop may sleep forever
    assert h.prober.progress("web") is None
    h.close()


def test_on_ready_once_per_start_and_again_after_a_restart(
    harness: Harness, tmp_path: Path
) -> None:
    target = tmp_path / "flag"
    target.touch()
    check = ReadyCheck("file", str(target), path=str(target))
    harness.prober.start("web", check, pid=100)
    assert harness.run_until(lambda: harness.ready == ["web"])
    harness.run_for(0.1)
    assert harness.ready == ["web"]
    harness.prober.start("web", check, pid=101)  # the next instance
    assert harness.run_until(lambda: len(harness.ready) == 2)
    assert harness.ready == ["web", "web"]
    assert harness.prober.next_deadline() is None


def test_on_ready_may_start_and_cancel_checks(sockdir: Path, tmp_path: Path) -> None:
    """The supervisor reacts to readiness by starting what depends on it
    (and may stop others) from inside on_ready."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.touch()
    second.touch()
    ready: list[str] = []

    def on_ready(name: str) -> None:
        ready.append(name)
        if name == "redis":
            h.prober.cancel("worker")
            h.prober.start("web", ReadyCheck("file", path=str(second)), pid=3)

    h = Harness(str(sockdir / "n"), on_ready=on_ready)
    h.prober.start("redis", ReadyCheck("file", path=str(first)), pid=1)
    h.prober.start("worker", ReadyCheck("file", path=str(first)), pid=2)  # due in the same pass
    assert h.run_until(lambda: ready == ["redis", "web"])
    h.run_for(0.05)
    assert ready == ["redis", "web"]
    assert h.prober.next_deadline() is None
    h.close()


# --- file: -------------------------------------------------------------------------------


def test_file_ready_once_it_exists(harness: Harness, tmp_path: Path) -> None:
    target = tmp_path / "run" / "app.pid"
    harness.prober.start("app", ReadyCheck("file", str(target), path=str(target)), pid=1)
    assert_not_ready_after_attempts(harness, "app")
    assert harness.error("app") == f"{target}: does not exist"
    target.parent.mkdir()
    target.write_text("42\n")
    assert harness.run_until(lambda: harness.ready == ["app"], timeout=1)


# --- unix: -------------------------------------------------------------------------------


def test_unix_not_ready_without_file_nor_with_a_stale_one_then_ready(
    harness: Harness, sockdir: Path
) -> None:
    path = str(sockdir / "uwsgi.sock")
    harness.prober.start("web", ReadyCheck("unix", path, path=path), pid=1)
    assert_not_ready_after_attempts(harness, "web")
    assert harness.error("web") == f"connect {path}: No such file or directory"

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)  # bound, not listening: what a crashed server leaves behind
    assert_not_ready_after_attempts(harness, "web", harness.attempts("web") + 3)
    assert harness.error("web") == f"connect {path}: Connection refused"

    server.listen(8)
    assert harness.run_until(lambda: harness.ready == ["web"], timeout=1)
    server.setblocking(False)
    server.accept()[0].close()  # the probe really connected
    server.close()


def test_unix_full_backlog_counts_as_listening(harness: Harness, sockdir: Path) -> None:
    path = str(sockdir / "busy.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(0)
    clients = []
    for _ in range(16):  # fill the backlog: the server never accepts
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.setblocking(False)
        clients.append(client)
        if client.connect_ex(path) == errno.EAGAIN:
            break
    else:
        pytest.fail("the backlog never filled up")
    harness.prober.start("web", ReadyCheck("unix", path, path=path), pid=1)
    assert harness.run_until(lambda: harness.ready == ["web"], timeout=1)
    for client in clients:
        client.close()
    server.close()


def test_unix_abstract_name(harness: Harness) -> None:
    name = f"pidone-probe-test-{os.getpid()}"
    harness.prober.start("web", ReadyCheck("unix", "@" + name, path="@" + name), pid=1)
    assert_not_ready_after_attempts(harness, "web", 2)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind("\0" + name)
        server.listen(1)
        assert harness.run_until(lambda: harness.ready == ["web"], timeout=1)


# --- tcp: --------------------------------------------------------------------------------


def test_tcp_ipv4_not_ready_until_a_listener_appears(harness: Harness) -> None:
    port = free_port()
    harness.prober.start("redis", tcp("127.0.0.1", port), pid=1)
    assert_not_ready_after_attempts(harness, "redis")
    assert harness.error("redis") == f"connect 127.0.0.1:{port}: Connection refused"
    with tcp_listener(port) as server:
        # the retry interval's cap (250 ms) is test_first_attempt_at_once_..., on a fake clock
        assert harness.run_until(lambda: harness.ready == ["redis"], timeout=1)
        server.setblocking(False)
        server.accept()[0].close()


def test_tcp_ipv6_loopback(harness: Harness) -> None:
    try:
        port = free_port("::1", socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    harness.prober.start("redis", tcp("::1", port), pid=1)
    assert_not_ready_after_attempts(harness, "redis", 3)
    assert harness.error("redis") == f"connect [::1]:{port}: Connection refused"
    with tcp_listener(port, "::1", socket.AF_INET6):
        assert harness.run_until(lambda: harness.ready == ["redis"], timeout=1)


def test_tcp_localhost_is_resolved_from_etc_hosts(harness: Harness) -> None:
    port = free_port()
    harness.prober.start("redis", tcp("localhost", port), pid=1)
    assert_not_ready_after_attempts(harness, "redis", 3)
    assert "Connection refused" in harness.error("redis")
    with tcp_listener(port):
        assert harness.run_until(lambda: harness.ready == ["redis"], timeout=1)


# --- http: -------------------------------------------------------------------------------


class Server(http.server.ThreadingHTTPServer):
    """Answers GETs with the statuses in `replies` in turn (the last repeats)."""

    daemon_threads = True

    def __init__(self, port: int, replies: list[int], tls: ssl.SSLContext | None = None) -> None:
        self.replies = replies
        self.requests: list[tuple[str, dict[str, str]]] = []
        super().__init__(("127.0.0.1", port), Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(5)


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:
        replies = self.server.replies
        status = replies.pop(0) if len(replies) > 1 else replies[0]
        self.server.requests.append((self.path, dict(self.headers.items())))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_http_not_ready_while_nothing_listens_then_200(harness: Harness) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/health?deep=1"
    harness.prober.start("web", http_check(url), pid=1)
    assert_not_ready_after_attempts(harness, "web")
    assert harness.error("web") == f"connect 127.0.0.1:{port}: Connection refused"
    server = Server(port, [200])
    try:
        assert harness.run_until(lambda: harness.ready == ["web"], timeout=2)
        path, headers = server.requests[0]
        assert path == "/health?deep=1"
        assert headers["Host"] == f"127.0.0.1:{port}"
        assert headers["Connection"] == "close"
        assert len(server.requests) == 1
    finally:
        server.stop()


def test_http_503_is_not_ready_then_200_is(harness: Harness) -> None:
    port = free_port()
    server = Server(port, [503, 503, 200])
    try:
        harness.prober.start("web", http_check(f"http://localhost:{port}/"), pid=1)
        assert harness.run_until(lambda: harness.ready == ["web"], timeout=2)
        assert len(server.requests) == 3  # two 503s did not count, the 200 did
        assert server.requests[0][1]["Host"] == f"localhost:{port}"
        harness.run_for(0.1)
        assert len(server.requests) == 3  # the check stopped
    finally:
        server.stop()


def test_http_redirect_counts_and_404_does_not(harness: Harness) -> None:
    port = free_port()
    server = Server(port, [404, 404, 404, 302])
    try:
        harness.prober.start("web", http_check(f"http://127.0.0.1:{port}"), pid=1)
        assert harness.run_until(lambda: harness.ready == ["web"], timeout=2)
        assert len(server.requests) == 4
        assert server.requests[0][0] == "/"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tls_server_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A self-signed certificate for a name that is not 127.0.0.1."""
    directory = tmp_path_factory.mktemp("tls")
    key, cert = directory / "key.pem", directory / "cert.pem"
    try:
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=app.invalid"),
                *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
                *("-keyout", str(key), "-out", str(cert)),
            ],
            check=True,
            capture_output=True,
        )
    except FileNotFoundError:
        pytest.skip("no openssl command")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def test_https_self_signed_503_then_200(
    harness: Harness, tls_server_context: ssl.SSLContext
) -> None:
    port = free_port()
    url = f"https://127.0.0.1:{port}/ready"
    harness.prober.start("web", http_check(url), pid=1)
    assert_not_ready_after_attempts(harness, "web", 3)
    server = Server(port, [503, 200], tls_server_context)
    try:
        assert harness.run_until(lambda: harness.ready == ["web"], timeout=3)
        assert [path for path, _ in server.requests] == ["/ready", "/ready"]
    finally:
        server.stop()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_server_that_never_answers_does_not_stall_the_loop(harness: Harness, scheme: str) -> None:
    port = free_port()
    stuck = tcp_listener(port)  # the kernel completes connects; nobody ever reads
    harness.prober.start("web", http_check(f"{scheme}://127.0.0.1:{port}/"), pid=1)

    # Meanwhile the loop serves another fd, fed every 10 ms by a thread...
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    gaps: list[float] = []
    last = [time.monotonic()]

    def on_ping(mask: int) -> None:
        ours.recv(4096)
        now = time.monotonic()
        gaps.append(now - last[0])
        last[0] = now

    harness.selector.register(ours, selectors.EVENT_READ, on_ping)
    stop = threading.Event()

    def ping() -> None:
        while not stop.wait(0.01):
            theirs.send(b".")

    pinger = threading.Thread(target=ping)
    pinger.start()
    # ... and another check becomes ready while this one hangs.
    other_port = free_port()
    harness.prober.start("redis", tcp("127.0.0.1", other_port), pid=2)
    try:
        harness.run_for(0.3)
        assert harness.ready == []
        assert harness.attempts("web") == 1  # still the first, in flight
        with tcp_listener(other_port):
            assert harness.run_until(lambda: harness.ready == ["redis"], timeout=1)
        assert harness.run_until(lambda: harness.attempts("web") >= 2, timeout=2)
        assert harness.error("web") == "no answer within 1 s"
        assert harness.ready == ["redis"]
        assert len(gaps) > 50
        assert max(gaps) < 0.2, "the loop stalled"
    finally:
        stop.set()
        pinger.join()
        harness.selector.unregister(ours)
        ours.close()
        theirs.close()
        stuck.close()


def test_an_http_attempt_ends_exactly_at_its_timeout(sockdir: Path) -> None:
    clock = FakeClock()
    h = Harness(str(sockdir / "n"), clock=clock)
    with tcp_listener(free_port()) as stuck:
        port = stuck.getsockname()[1]
        start = clock.now
        h.prober.start("web", http_check(f"http://127.0.0.1:{port}/"), pid=1)
        h.prober.run_due(start)  # connect; the request goes out when writable
        for key, mask in h.selector.select(1):
            key.data(mask)
        assert len(h.selector.get_map()) == 1  # now waiting to read the answer
        assert h.prober.next_deadline() == start + 1.0

        h.prober.run_due(start + 0.999)
        assert h.attempts("web") == 1
        assert h.prober.progress("web") is not None
        assert h.error("web") == ""
        assert len(h.selector.get_map()) == 1

        clock.now = start + 1.0
        h.prober.run_due(clock.now)
        assert h.error("web") == "no answer within 1 s"
        assert len(h.selector.get_map()) == 0  # the socket is closed and unregistered
        assert h.prober.next_deadline() == pytest.approx(start + 1.01)
        assert h.ready == []
    h.close()


# --- exec: -------------------------------------------------------------------------------


def test_exec_fails_twice_then_succeeds(harness: Harness, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    script = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; [ $n -ge 3 ]"
    )
    harness.prober.start("db", exec_check(f"/bin/sh -c '{script}'"), pid=1)
    assert harness.run_until(lambda: harness.ready == ["db"], timeout=5)
    assert counter.read_text() == "3\n"
    assert len(harness.spawned) == 3
    harness.run_until(lambda: len(harness.exits) == 3, timeout=2)
    codes = [os.waitstatus_to_exitcode(harness.exits[pid][0]) for pid in harness.spawned]
    assert codes == [1, 1, 0]
    assert all(ours for _, ours in harness.exits.values())  # child_exited claimed each
    assert harness.prober.child_exited(999_999_999, 0) is False  # not ours
    harness.run_for(0.1)
    assert len(harness.spawned) == 3  # no more runs once ready
    assert harness.prober.next_deadline() is None


def test_exec_failure_is_reported_with_its_status(harness: Harness) -> None:
    harness.prober.start("db", exec_check("/bin/sh -c 'exit 7'"), pid=1)
    assert_not_ready_after_attempts(harness, "db", 2)
    harness.run_until(lambda: "status" in harness.error("db"), timeout=2)
    assert harness.error("db") == "exited with status 7"


def test_exec_that_hangs_is_killed_at_its_timeout(sockdir: Path) -> None:
    h = Harness(str(sockdir / "n"), exec_timeout=0.3)
    try:
        h.prober.start("db", exec_check("sleep 30"), pid=1)
        assert h.run_until(lambda: len(h.spawned) == 2, timeout=3)
        first = h.spawned[0]
        assert h.run_until(lambda: first in h.exits, timeout=1)
        status, ours = h.exits[first]
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        assert ours  # still claimed by the prober after it gave up on it
        assert h.error("db") == "no answer within 0.3 s"
        assert h.ready == []
    finally:
        h.close()


def test_exec_that_cannot_start_is_retried(sockdir: Path) -> None:
    calls: list[Sequence[str]] = []

    def spawn(name: str, argv: Sequence[str]) -> int:
        calls.append(argv)
        raise SpawnError("exec nope: No such file or directory", errno.ENOENT, 127)

    selector = selectors.DefaultSelector()
    ready: list[str] = []
    prober = Prober(selector, ready.append, spawn=spawn, notify_dir=str(sockdir / "n"))
    prober.start("db", exec_check("nope --ping"), pid=1)
    # retried at its own pace (10, 20, 40 ms...): waited for, not given 0.2 s
    end = time.monotonic() + 10
    while len(calls) < 3:
        assert time.monotonic() < end, f"only {len(calls)} tries in 10 s"
        time.sleep(max(0.0, (prober.next_deadline() or end) - time.monotonic()))
        prober.run_due(time.monotonic())
    assert calls[0] == ("nope", "--ping")
    progress = prober.progress("db")
    assert progress is not None
    assert progress.last_error == "could not start: exec nope: No such file or directory"
    assert ready == []
    prober.close()


# --- cancel ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "unix", "tcp", "http", "exec", "notify"])
def test_cancel_stops_everything(harness: Harness, sockdir: Path, kind: str) -> None:
    notify_path = harness.prober.notify_socket("web")
    target = str(sockdir / "target")
    stuck = tcp_listener(free_port())
    port = stuck.getsockname()[1]
    checks = {
        "file": ReadyCheck("file", target, path=target),
        "unix": ReadyCheck("unix", target, path=target),
        "tcp": tcp("127.0.0.1", free_port()),
        "http": http_check(f"http://127.0.0.1:{port}/"),  # an attempt stays in flight
        "exec": exec_check("sleep 30"),
        "notify": ReadyCheck("notify"),
    }
    sender = None
    if kind == "notify":
        sender = Notifier(notify_path)
        pid = sender.pid
    else:
        pid = 1
    baseline = open_fds()
    harness.prober.start("web", checks[kind], pid)
    harness.run_for(0.1)
    assert harness.ready == []
    if kind == "exec":
        assert len(harness.spawned) == 1 and harness.spawned[0] not in harness.exits
    if kind == "http":
        assert len(harness.selector.get_map()) == 2  # the notify socket and the attempt

    harness.prober.cancel("web")
    assert harness.prober.next_deadline() is None
    assert harness.prober.progress("web") is None
    if kind == "exec":
        child = harness.spawned[0]
        assert harness.run_until(lambda: child in harness.exits, timeout=2)
        status, ours = harness.exits[child]
        assert os.WTERMSIG(status) == signal.SIGKILL
        assert ours
    left = [key.fileobj for key in harness.selector.get_map().values()]
    assert len(left) == 1 and isinstance(left[0], socket.socket)
    assert left[0].getsockname() == notify_path  # only the notify socket, kept for restarts
    assert open_fds() - baseline == set()  # nothing leaked

    # What would have made it ready now happens: nothing follows.
    Path(target).touch()
    if sender is not None:
        assert sender.send("READY=1") == "sent"
    harness.run_for(0.2)
    assert harness.ready == []
    assert harness.prober.next_deadline() is None
    assert harness.spawned[1:] == []
    stuck.close()
    if sender is not None:
        sender.close()


def test_cancel_kills_the_whole_pipeline_of_an_exec_check(harness: Harness) -> None:
    harness.prober.start("db", exec_check("sleep 31 | sleep 32"), pid=1)
    assert harness.run_until(lambda: len(harness.spawned) == 1)
    shell = harness.spawned[0]
    wait_for(lambda: len(_children(shell)) == 2, timeout=2, what="both sleeps")
    members = _children(shell)
    harness.prober.cancel("db")
    assert harness.run_until(lambda: shell in harness.exits, timeout=2)
    for pid in members:  # reparented to init and reaped there, or gone: not running
        assert _state(pid) in (None, "Z")


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _state(pid: int) -> str | None:
    deadline = time.monotonic() + 2
    while True:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return None
        state = text.rpartition(")")[2].split()[0]
        if state == "Z" or time.monotonic() > deadline:
            return state
        time.sleep(0.01)


# --- notify ------------------------------------------------------------------------------

NOTIFIER = r"""
import errno, os, socket, sys
if sys.argv[1] == "grandchild":  # the sender is a descendant of the main pid
    child = os.fork()
    if child:
        os.waitpid(child, 0)
        sys.exit(0)
print(os.getpid(), flush=True)
for line in sys.stdin:
    message = line.rstrip("\n").replace("|", "\n").encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto(message, os.environ["NOTIFY_SOCKET"])
        print("sent", flush=True)
    except OSError as exc:
        print(errno.errorcode[exc.errno], flush=True)
    finally:
        s.close()
"""


class Notifier:
    """A process speaking sd_notify the way uwsgi does, one datagram per send()."""

    def __init__(
        self,
        notify_socket: str,
        mode: str = "self",
        user: int | None = None,
        python: str = sys.executable,
    ) -> None:
        self.proc = subprocess.Popen(
            [python, "-c", NOTIFIER, mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={"NOTIFY_SOCKET": notify_socket, "PATH": os.environ.get("PATH", "")},
            text=True,
            cwd="/",
            user=user,
            group=user,
            extra_groups=[] if user is not None else None,
        )
        self.pid = self.proc.pid  # the main pid
        self.sender = int(self.readline())

    def readline(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def send(self, message: str) -> str:
        """Send; once it says "sent", the datagram sits in our socket buffer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(message + "\n")
        self.proc.stdin.flush()
        return self.readline()

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(5)
        self.proc.stdout.close()


@pytest.fixture
def notifiers() -> Iterator[list[Notifier]]:
    made: list[Notifier] = []
    yield made
    for notifier in made:
        notifier.close()


def test_notify_ready_from_the_main_process(harness: Harness, notifiers: list[Notifier]) -> None:
    path = harness.prober.notify_socket("web")
    assert harness.prober.notify_socket("web") == path  # made once, kept
    web = Notifier(path)
    notifiers.append(web)
    assert web.sender == web.pid
    harness.prober.start("web", ReadyCheck("notify"), web.pid)
    assert harness.prober.next_deadline() is None  # nothing to poll: it will tell us

    assert web.send("STATUS=loading app") == "sent"
    assert harness.run_until(lambda: harness.prober.status("web") == "loading app", timeout=1)
    assert harness.ready == []

    assert web.send("STATUS=serving|READY=1|WATCHDOG=1") == "sent"
    assert harness.run_until(lambda: harness.ready == ["web"], timeout=1)
    assert harness.prober.status("web") == "serving"

    # uwsgi says READY=1 again after each reload: once per start() is enough.
    assert web.send("READY=1|STATUS=reloaded") == "sent"
    assert harness.run_until(lambda: harness.prober.status("web") == "reloaded", timeout=1)
    assert harness.ready == ["web"]
    assert harness.prober.next_deadline() is None


def test_notify_from_a_descendant_counts(harness: Harness, notifiers: list[Notifier]) -> None:
    path = harness.prober.notify_socket("web")
    web = Notifier(path, mode="grandchild")
    notifiers.append(web)
    assert web.sender != web.pid
    harness.prober.start("web", ReadyCheck("notify"), web.pid)
    assert web.send("READY=1") == "sent"
    assert harness.run_until(lambda: harness.ready == ["web"], timeout=1)


def test_notify_from_an_unrelated_pid_is_ignored(
    harness: Harness, notifiers: list[Notifier]
) -> None:
    path = harness.prober.notify_socket("web")
    web = Notifier(path)
    stranger = Notifier(path)  # same user, same socket, not below web's main pid
    notifiers += [web, stranger]
    harness.prober.start("web", ReadyCheck("notify"), web.pid)

    assert stranger.send("READY=1|STATUS=forged") == "sent"
    assert harness.run_until(lambda: "ignored" in harness.error("web"), timeout=1)
    assert harness.error("web") == (
        f"ignored a notification from pid {stranger.pid}: not {web.pid} or below it"
    )
    harness.run_for(0.1)
    assert harness.ready == []
    assert harness.prober.status("web") is None

    assert web.send("READY=1") == "sent"
    assert harness.run_until(lambda: harness.ready == ["web"], timeout=1)


def test_notify_socket_is_kept_across_restarts_and_heeds_only_the_new_instance(
    harness: Harness, notifiers: list[Notifier]
) -> None:
    path = harness.prober.notify_socket("web")
    old = Notifier(path)
    notifiers.append(old)
    harness.prober.start("web", ReadyCheck("notify"), old.pid)
    assert old.send("STATUS=old") == "sent"
    assert harness.run_until(lambda: harness.prober.status("web") == "old", timeout=1)
    harness.prober.cancel("web")  # it "exited"; say a leftover of it lives on

    assert harness.prober.notify_socket("web") == path
    new = Notifier(path)
    notifiers.append(new)
    harness.prober.start("web", ReadyCheck("notify"), new.pid)
    assert harness.prober.status("web") is None  # the old instance's status is stale
    assert old.send("READY=1|STATUS=old again") == "sent"
    harness.run_for(0.1)
    assert harness.ready == []
    assert harness.prober.status("web") is None
    assert new.send("READY=1|STATUS=new") == "sent"
    assert harness.run_until(lambda: harness.ready == ["web"], timeout=1)
    assert harness.prober.status("web") == "new"


def test_notify_passed_fds_are_closed(harness: Harness) -> None:
    path = harness.prober.notify_socket("web")
    harness.prober.start("web", ReadyCheck("notify"), os.getpid())  # we are the "process"
    baseline = open_fds()
    r, w = os.pipe()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendmsg(
            [b"FDSTORE=1\nSTATUS=stored"],
            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _fds(r, w))],
            0,
            path,
        )
    os.close(r)
    os.close(w)
    assert harness.run_until(lambda: harness.prober.status("web") == "stored", timeout=1)
    assert open_fds() - baseline == set()  # nothing leaked


def _fds(*fds: int) -> bytes:
    import array

    return array.array("i", fds).tobytes()


def test_notify_socket_belongs_to_the_process_user_only(
    harness: Harness, notifiers: list[Notifier], sockdir: Path
) -> None:
    require_root()
    nobody = 65534
    path = harness.prober.notify_socket("web", uid=nobody, gid=nobody)
    info = os.stat(path)
    assert stat.S_ISSOCK(info.st_mode)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (nobody, nobody, 0o600)
    assert stat.S_IMODE(os.stat(sockdir / "notify").st_mode) == 0o711

    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    web = Notifier(path, user=nobody, python=python)
    other = Notifier(path, user=nobody - 1, python=python)
    notifiers += [web, other]
    harness.prober.start("web", ReadyCheck("notify"), web.pid)
    assert other.send("READY=1") == "EACCES"
    harness.run_for(0.1)
    assert harness.ready == []
    assert web.send("READY=1") == "sent"
    assert harness.run_until(lambda: harness.ready == ["web"], timeout=1)


def test_notify_needs_its_socket_first(harness: Harness) -> None:
    with pytest.raises(ValueError, match="notify_socket"):
        harness.prober.start("web", ReadyCheck("notify"), 1)


def test_close_removes_the_notify_sockets(harness: Harness) -> None:
    path = harness.prober.notify_socket("web")
    assert os.path.exists(path)
    harness.prober.close()
    assert not os.path.exists(path)
    assert len(harness.selector.get_map()) == 0


def test_close_removes_its_notify_directory_once_empty(harness: Harness, sockdir: Path) -> None:
    harness.prober.notify_socket("web")
    harness.prober.close()
    assert not (sockdir / "notify").exists()  # one per control socket: none piles up


def test_a_live_notify_socket_of_another_pidone_is_not_taken_over(
    harness: Harness, sockdir: Path
) -> None:
    # Another pidone's web.sock, bound and read, where this one's would go.
    (sockdir / "notify").mkdir()
    theirs = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    theirs.bind(str(sockdir / "notify" / "web.sock"))
    try:
        before = os.stat(sockdir / "notify" / "web.sock").st_ino
        with pytest.raises(OSError) as refused:
            harness.prober.notify_socket("web")
        assert refused.value.errno == errno.EADDRINUSE
        assert "is live (another pidone's?): not taken over" in str(refused.value)
        assert os.stat(sockdir / "notify" / "web.sock").st_ino == before  # not unlinked
        assert len(harness.selector.get_map()) == 0
    finally:
        theirs.close()
    # Once it is gone (a stale file left), the socket is made.
    assert harness.prober.notify_socket("web") == str(sockdir / "notify" / "web.sock")
    assert len(harness.selector.get_map()) == 1


def test_a_removed_notify_socket_is_made_again(harness: Harness, notifiers: list[Notifier]) -> None:
    path = harness.prober.notify_socket("web")
    os.unlink(path)
    assert harness.prober.notify_socket("web") == path
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert len(harness.selector.get_map()) == 1
    web = Notifier(path)
    notifiers.append(web)
    harness.prober.start("web", ReadyCheck("notify"), web.pid)
    assert web.send("READY=1") == "sent"
    assert harness.run_until(lambda: harness.ready == ["web"], timeout=1)


def test_settle_is_left_to_the_supervisor_but_its_status_is_kept(
    harness: Harness, notifiers: list[Notifier]
) -> None:
    path = harness.prober.notify_socket("worker")
    worker = Notifier(path)
    notifiers.append(worker)
    harness.prober.start("worker", ReadyCheck("settle", seconds=1.0), worker.pid)
    assert harness.prober.next_deadline() is None
    assert harness.prober.progress("worker") is None
    assert worker.send("STATUS=3 tasks|READY=1") == "sent"
    assert harness.run_until(lambda: harness.prober.status("worker") == "3 tasks", timeout=1)
    assert harness.ready == []  # readiness is the settle time's, not READY=1's
    with pytest.raises(ValueError, match="unknown readiness check"):
        harness.prober.start("worker", ReadyCheck("bogus"), worker.pid)  # type: ignore[arg-type]
    assert harness.prober.status("worker") == "3 tasks"  # a refused start() changed nothing
