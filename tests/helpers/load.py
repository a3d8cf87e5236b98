"""A steady load of HTTP requests over a unix socket, from threads, each
request on a new connection; counts successes and each kind of failure."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter


class UnixLoad:
    def __init__(self, path: str, *, threads: int = 2, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self.results: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def one(self) -> str:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(self.timeout)
                s.connect(self.path)
                s.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        except ConnectionRefusedError:
            return "refused"
        except FileNotFoundError:
            return "no socket file"
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            return f"error: {exc.strerror or exc}"
        if data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n", 1)[0]:
            return "ok"
        return f"bad response: {data[:40]!r}"

    def _run(self) -> None:
        while not self._stop.is_set():
            outcome = self.one()
            with self._lock:
                self.results[outcome] += 1

    def __enter__(self) -> UnixLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout + 5)

    def ok(self) -> int:
        with self._lock:
            return self.results["ok"]

    def wait_for_ok(self, n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        start = self.ok()
        while self.ok() - start < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {n} successful requests: {self.results}")
            time.sleep(0.01)
