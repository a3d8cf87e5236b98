"""A real redis for legion tests: Debian's redis-server on a free loopback
port, no persistence, started and stopped by pid; and a fake one that
answers with what an attack test chooses."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers.running import missing_privilege, wait_for
from tests.helpers.stack import free_port

REDIS_SERVER = "/usr/bin/redis-server"


class RedisServer:
    def __init__(
        self, directory: Path, port: int | None = None, extra: tuple[str, ...] = ()
    ) -> None:
        if not Path(REDIS_SERVER).exists() or shutil.which("redis-server") is None:
            missing_privilege("redis-server is not installed (apt-get install redis-server)")
        self.dir = directory
        self.port = port or free_port()
        self.extra = extra  # more redis-server options: ("--unixsocket", PATH)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no"]  # fmt: skip
        argv += self.extra
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.ping, what=f"redis-server on port {self.port}")
        return self

    def ping(self) -> bool:
        try:
            return self.call("PING") == b"+PONG\r\n"
        except OSError:
            return False

    def call(self, *args: str) -> bytes:
        """One command, its raw reply (tests only: a short reply expected)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"".join([b"*%d\r\n" % len(args)] + [
                b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args
            ]))  # fmt: skip
            return s.recv(65536)

    def stop(self) -> float:
        """Stop it (SIGKILL: no last word); the monotonic time it was gone."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None
        return time.monotonic()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.stop()


class FakeRedis:
    """A loopback server whose every connection gets `answer(conn)`."""

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.answer = answer
        self.connections = 0
        self.closing = False
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _serve(self) -> None:
        while not self.closing:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(30)
                conn.recv(65536)
                self.answer(conn)
            except OSError:
                pass

    def __enter__(self) -> FakeRedis:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closing = True
        self.listener.close()
