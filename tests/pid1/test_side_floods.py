"""Floods at pidone's side parts, as PID 1 (and as a subreaper): HTTP
clients that make the metrics server log while the relay is busy, a stdout
nobody reads, control-group members hoarding connections."""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.helpers.running import Init, wait_for
from tests.helpers.stack import free_port

# urlsplit() raises on this target: the HTTP server logs "error serving a
# client" for each such request.
LOGGING_REQUEST = b"GET http://[ HTTP/1.0\r\n\r\n"


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
        wait_for(lambda: "error serving a client" in run.stderr(), what="the logging")
        err = run.stderr()
    assert answers and set(answers) == {200}, answers
    assert "Traceback" not in err and "internal error" not in err, err[-2000:]
