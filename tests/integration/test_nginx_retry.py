"""The webapp example's nginx.conf, run by real nginx: a request whose
upstream connection is reset before any byte of the answer (what uwsgi's
reload race does, see the README) is passed once more and answered; a POST
is never passed twice. nginx listens on a unix socket here, so nothing
touches the network."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.running import wait_for
from tests.helpers.users import open_dir

CONF = Path(__file__).parent.parent.parent / "examples" / "webapp" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
EXAMPLE_SOCKET = "/run/pidone-webapp/uwsgi.sock"


class ResettingUpstream:
    """A uwsgi-protocol server that resets its first `resets` connections
    (closes them with the request unread, which is a reset on a unix socket)
    and answers the others with 200."""

    def __init__(self, path: Path, resets: int) -> None:
        self.resets = resets
        self.accepted = 0
        self.requests: list[bytes] = []
        self._sock = socket.socket(socket.AF_UNIX)
        self._sock.bind(str(path))
        path.chmod(0o666)  # nginx's workers run as another user
        self._sock.listen(16)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            with conn:
                self.accepted += 1
                conn.settimeout(5)
                if self.accepted <= self.resets:
                    conn.recv(1, socket.MSG_PEEK)  # the request has arrived...
                    continue  # ...and is closed unread: a reset
                head = _read_exactly(conn, 4)
                size = int.from_bytes(head[1:3], "little")
                self.requests.append(_read_exactly(conn, size))
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nanswered\n")

    def close(self) -> None:
        self._sock.close()


def _read_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        assert chunk, "the connection closed early"
        data += chunk
    return data


@pytest.fixture
def where() -> Iterator[Path]:
    with open_dir() as path:  # nginx's workers run as another user
        yield path


def start_nginx(where: Path) -> subprocess.Popen[bytes]:
    """The example's nginx.conf, with its paths moved into `where` and its
    listener on a unix socket; everything else as written."""
    text = CONF.read_text()
    assert text.count(EXAMPLE_SOCKET) == 2, "the upstream block lists the socket twice"
    text = text.replace(EXAMPLE_SOCKET, str(where / "uwsgi.sock"))
    text = text.replace("/tmp/nginx/", f"{where}/")
    text, listens = re.subn(r"listen 127\.0\.0\.1:8080;", f"listen unix:{where}/front.sock;", text)
    assert listens == 1
    (where / "nginx.conf").write_text(text)
    for scratch in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (where / scratch).mkdir()
    proc = subprocess.Popen([NGINX, "-c", str(where / "nginx.conf")], stderr=subprocess.PIPE)
    # Its socket file is there from nginx's bind(), before its listen(): a
    # connect in between is refused. Waited for is a connect that goes in.
    wait_for(lambda: _listening(where / "front.sock"), timeout=10, what="nginx to listen")
    return proc


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return False
    return True


def ask(where: Path, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(where / "front.sock"))
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def stop(proc: subprocess.Popen[bytes]) -> str:
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    return err.decode(errors="replace")


def test_a_get_reset_by_uwsgis_reload_race_is_answered_on_the_second_try(where: Path) -> None:
    upstream = ResettingUpstream(where / "uwsgi.sock", resets=1)
    nginx = start_nginx(where)
    try:
        answer = ask(where, b"GET /page HTTP/1.0\r\nHost: test\r\n\r\n")
    finally:
        log = stop(nginx)
        upstream.close()
    assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.1 200 OK", (answer, log)
    assert answer.endswith(b"answered\n")
    assert upstream.accepted == 2  # reset once, then passed again
    assert len(upstream.requests) == 1 and b"/page" in upstream.requests[0]
    assert "Connection reset by peer" in log  # nginx says what happened


def test_a_post_reset_by_uwsgis_reload_race_is_not_passed_twice(where: Path) -> None:
    upstream = ResettingUpstream(where / "uwsgi.sock", resets=1)
    nginx = start_nginx(where)
    try:
        answer = ask(where, b"POST /pay HTTP/1.0\r\nHost: test\r\nContent-Length: 2\r\n\r\nhi")
        # and the socket is still in service afterwards (max_fails=0)
        after = ask(where, b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
    finally:
        stop(nginx)
        upstream.close()
    assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.1 502 Bad Gateway", answer
    assert upstream.accepted == 2  # the POST once, then the GET
    assert after.split(b"\r\n", 1)[0] == b"HTTP/1.1 200 OK", after
