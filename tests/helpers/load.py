"""A steady load of HTTP requests over a unix socket, from threads, each
request on a new connection; counts successes and each kind of failure."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter

RESET_BEFORE_ANSWER = "reset before any byte of the answer"


class UnixLoad:
    """`retry_reset`: a request whose connection is reset before any byte of
    the answer is made once more, on a new connection, as nginx does with
    the webapp example's nginx.conf (uwsgi's reload race, see the README);
    such requests are counted in `retried`, and only a second failure in
    `results`."""

    def __init__(
        self, path: str, *, threads: int = 2, timeout: float = 10.0, retry_reset: bool = False
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.retry_reset = retry_reset
        self.retried = 0
        self.results: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def one(self) -> str:
        outcome = self._request()
        if outcome == RESET_BEFORE_ANSWER and self.retry_reset:
            with self._lock:
                self.retried += 1
            outcome = self._request()
        return outcome

    def _request(self) -> str:
        data = b""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(self.timeout)
                s.connect(self.path)
                s.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
                while chunk := s.recv(65536):
                    data += chunk
        except ConnectionRefusedError:
            return "refused"
        except FileNotFoundError:
            return "no socket file"
        except TimeoutError:
            return "timeout"
        except ConnectionResetError:
            return RESET_BEFORE_ANSWER if not data else "reset during the answer"
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
