"""Floods at pidone's side parts, as PID 1 (and as a subreaper): HTTP
clients that make the metrics server log while the relay is busy, a stdout
nobody reads (a pipe, a datagram socket), control-group members hoarding
connections."""

from __future__ import annotations

import json
import os
import pwd
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from pidone.control.server import MAX_PER_UID
from tests.helpers.running import PIDONE, PYTHON, Init, helper, wait_for
from tests.helpers.stack import free_port
from tests.helpers.users import APP, EXTRA, ensure_users

# prometheus-client raises TypeError on this Accept header: the server's
# workers log "/metrics failed: TypeError" for each such scrape they take
# (those beyond the scrape limit get a 503 instead).
LOGGING_REQUEST = (
    b"GET /metrics HTTP/1.0\r\nAccept: application/openmetrics-text; version=x\r\n\r\n"
)


class Run:
    """`pidone run` with TOML, its stdout read and thrown away (a flood would
    fill the test's memory), its stderr kept."""

    def __init__(self, mode: str, tmp_path: Path, toml: str) -> None:
        (tmp_path / "pidone.toml").write_text(toml)
        self.control_socket = tmp_path / "control.sock"
        env = {**os.environ, "PIDONE_CONTROL_SOCKET": str(self.control_socket)}
        self.init = Init(mode, ["run", "-c", str(tmp_path / "pidone.toml")], env=env)
        self.out_bytes = 0
        self.err: list[bytes] = []
        self._threads = [
            threading.Thread(target=self._count, daemon=True),
            threading.Thread(target=self._keep, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _count(self) -> None:
        assert self.init.proc.stdout is not None
        fd = self.init.proc.stdout.fileno()
        while chunk := os.read(fd, 1 << 20):
            self.out_bytes += len(chunk)

    def _keep(self) -> None:
        assert self.init.proc.stderr is not None
        fd = self.init.proc.stderr.fileno()
        while chunk := os.read(fd, 65536):
            self.err.append(chunk)

    def stderr(self) -> str:
        return b"".join(list(self.err)).decode(errors="replace")

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.init.kill()


def healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def send_logging_requests(port: int, count: int) -> None:
    for _ in range(count):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(LOGGING_REQUEST)
                while s.recv(4096):
                    pass
        except OSError:
            pass  # more than MAX_CLIENTS at once: closed at accept, fine


def test_http_clients_making_the_server_log_during_an_output_flood_keep_healthz_up(
    mode: str, tmp_path: Path
) -> None:
    port = free_port()
    toml = f"""
[pidone]
metrics = "127.0.0.1:{port}"
[process.loud]
command = "yes loud"
"""
    with Run(mode, tmp_path, toml) as run:
        wait_for(lambda: run.out_bytes > 10_000_000, what="the flood")
        clients = [
            threading.Thread(target=send_logging_requests, args=(port, 100)) for _ in range(8)
        ]
        for client in clients:
            client.start()
        answers = []
        while any(c.is_alive() for c in clients):
            answers.append(healthz(port))
            time.sleep(0.05)
        for client in clients:
            client.join()
        answers.append(healthz(port))
        wait_for(lambda: "/metrics failed: TypeError" in run.stderr(), what="the logging")
        err = run.stderr()
    assert answers and set(answers) == {200}, answers
    assert "Traceback" not in err and "internal error" not in err, err[-2000:]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


RSS_BOUND_KIB = 40 * 1024  # pidone run is about 16 MiB; its queues hold a few MiB at most


def read_all(fd: int, into: list[bytes] | None) -> None:
    while chunk := os.read(fd, 1 << 20):
        if into is not None:
            into.append(chunk)


def test_crash_loop_into_a_stdout_nobody_reads_keeps_memory_bounded(
    mode: str, tmp_path: Path
) -> None:
    journal = tmp_path / "starts"
    toml = f"""
[pidone]
backoff_initial = 0.01
backoff_max = 0.02
fatal_after = 1000000
[process.crash]
command = "sh -c 'echo x >> {journal}; yes crashing | head -c 200000; exit 1'"
"""
    (tmp_path / "pidone.toml").write_text(toml)
    # stdout is a pipe the test never reads; stderr is read (it is small)
    env = {**os.environ, "PIDONE_CONTROL_SOCKET": str(tmp_path / "control.sock")}  # not the host's
    with Init(mode, ["run", "-c", str(tmp_path / "pidone.toml")], env=env) as init:
        assert init.proc.stderr is not None and init.proc.stdout is not None
        err: list[bytes] = []
        stderr_fd, stdout_fd = init.proc.stderr.fileno(), init.proc.stdout.fileno()
        threading.Thread(target=read_all, args=(stderr_fd, err), daemon=True).start()
        samples = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            samples.append(rss_kib(init.pid))
            time.sleep(0.2)
        starts_then = len(journal.read_text().splitlines())
        time.sleep(1.0)
        starts_now = len(journal.read_text().splitlines())
        # once someone reads it, the drop is said, with its count
        threading.Thread(target=read_all, args=(stdout_fd, None), daemon=True).start()
        wait_for(lambda: b"was not read: dropped" in b"".join(err), what="the drop reported")
    print(f"\n{mode}: RSS {samples[0]} -> max {max(samples)} KiB; {starts_now} starts")
    assert max(samples) < RSS_BOUND_KIB, samples
    # still restarting, and so reaping, while its output waits
    assert starts_now > starts_then > 0


DGRAM_LINES = 60_000  # about 4 MB: more than the socket, the relay's queue and the pipe hold
DGRAM_FLOOD = f"""
import sys
for i in range({DGRAM_LINES}):
    sys.stdout.write(f"line {{i:06d}} " + "x" * 50 + "\\n")
sys.stdout.flush()
open(sys.argv[1], "w").close()
"""


def test_a_datagram_stdout_read_late_holds_the_flood_back_then_loses_nothing(
    mode: str, tmp_path: Path
) -> None:
    # Its writer thread blocks, the relay pauses at HIGH_WATER; once the
    # reader comes, the thread wakes the loop (signals.wake_loop), which
    # resumes reading the pipes: without that wake the flood stalls forever.
    done, flood = tmp_path / "done", tmp_path / "flood.py"
    flood.write_text(DGRAM_FLOOD)
    toml = f'[process.flood]\ncommand = "{PYTHON} {flood} {done}"\nrestart = "never"\n'
    (tmp_path / "pidone.toml").write_text(toml)
    out_path = str(tmp_path / "out.sock")
    received = bytearray()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as reader:
        reader.bind(out_path)
        prefix = [*helper("dgram_stdout.py"), out_path]
        env = {**os.environ, "PIDONE_CONTROL_SOCKET": str(tmp_path / "control.sock")}
        run = ["run", "-c", str(tmp_path / "pidone.toml")]
        with Init(mode, run, prefix=prefix, env=env) as init:
            time.sleep(1.5)  # nobody reads
            assert not done.exists(), "the flood was not held back"
            reader.settimeout(0.5)
            deadline = time.monotonic() + 60
            while True:
                try:
                    received += reader.recv(1 << 20)
                except TimeoutError:
                    if init.proc.poll() is not None:
                        break
                assert time.monotonic() < deadline, "the flood stalled: the loop never resumed"
            status = init.wait()
    line = re.compile(rb"flood +\| line (\d{6}) x{50}")
    numbers = [int(m.group(1)) for m in map(line.fullmatch, received.split(b"\n")) if m]
    others = [text[:80] for text in received.split(b"\n") if not line.fullmatch(text)]
    # every line once, whole, in order (the rest: events, or a line cut in two)
    assert numbers == list(range(DGRAM_LINES)), others[:20]
    assert done.exists() and status == 0


# Run as the control-group member: opens N connections to the control
# socket and keeps them idle; prints how many got a reply at once (refused)
# and the first reply, then holds the rest until its stdin closes.
HOARDER = r"""
import json, select, socket, sys, time
path, count = sys.argv[1], int(sys.argv[2])
held, refused, first = [], 0, None
for _ in range(count):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)  # blocking: waits while the backlog is full
    held.append(s)
time.sleep(0.5)  # every reply there is comes at once
for s in held[:]:
    if select.select([s], [], [], 0)[0]:
        reply = s.recv(65536)
        refused += 1
        first = first or json.loads(reply)
        held.remove(s)
print(json.dumps({"held": len(held), "refused": refused, "first": first}), flush=True)
sys.stdin.read()
"""


def test_control_group_member_hoarding_connections_cannot_lock_root_out(
    mode: str, shared: Path
) -> None:
    ensure_users()
    sock = shared / "control.sock"
    toml = f"""
[pidone]
control_group = "{EXTRA}"
[process.a]
command = "sleep 1000"
"""
    (shared / "pidone.toml").write_text(toml)
    env = {**os.environ, "PIDONE_CONTROL_SOCKET": str(sock)}
    with Init(mode, ["run", "-c", str(shared / "pidone.toml")], env=env):
        wait_for(sock.exists, what="the control socket")
        entry = pwd.getpwnam(APP)
        hoarder = subprocess.Popen(
            [PYTHON, "-c", HOARDER, str(sock), "300"],
            user=entry.pw_uid,
            group=entry.pw_gid,
            extra_groups=os.getgrouplist(APP, entry.pw_gid),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert hoarder.stdout is not None
            hoard = json.loads(hoarder.stdout.readline())
            started = time.monotonic()
            status = subprocess.run(
                [PIDONE, "ctl", "--socket", str(sock), "status"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            took = time.monotonic() - started
        finally:
            hoarder.kill()
            hoarder.wait()
    print(f"\n{mode}: member held {hoard['held']}, refused {hoard['refused']};"
          f" root's status took {took:.3f} s")  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert "a" in status.stdout
    assert took < 2.0
    assert hoard["held"] == MAX_PER_UID
    assert hoard["refused"] == 300 - MAX_PER_UID
    assert hoard["first"] == {
        "ok": False,
        "error": f"too many connections from uid {entry.pw_uid} ({MAX_PER_UID} at most)",
    }
