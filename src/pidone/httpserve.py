"""A small HTTP/1.0 server for GET endpoints, served off the loop's thread.

Written here rather than on http.server: that module and what it imports
(email, http.client, mimetypes, ssl) cost about 6 MiB of resident memory in
PID 1, for four read-only endpoints. This one reads a request head (at most
MAX_HEAD bytes), answers it and closes the connection: no keep-alive, so an
idle scraper holds no thread.

One daemon thread accepts (it sleeps in select() until a client comes: no
polling tick); each connection is served in a daemon thread of its own, with
CLIENT_TIMEOUT seconds per socket operation, and at most MAX_CLIENTS at once
(more are closed at accept): a slow or stuck client costs one idle thread,
never the loop. Threads are born with every signal blocked, so the kernel
never hands one of pidone's signals to them.
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
import time
import traceback
from collections.abc import Callable
from functools import partial
from urllib.parse import urlsplit

from pidone import system

CLIENT_TIMEOUT = 10.0  # seconds per socket operation of one HTTP client
MAX_CLIENTS = 32  # connections served at once; more are closed at accept
MAX_HEAD = 8192  # bytes of request line and headers; more is a 431

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Request:
    __slots__ = ("headers", "method", "path")

    def __init__(self, method: str, path: str, headers: dict[str, str]) -> None:
        self.method = method
        self.path = path
        self.headers = headers  # names lower-cased


class Response:
    __slots__ = ("body", "content_type", "status")

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type

    @classmethod
    def text(cls, status: int, text: str) -> Response:
        return cls(status, (text + "\n").encode(), "text/plain; charset=utf-8")


Handler = Callable[[Request], Response]


class BadRequest(Exception):
    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


def parse_head(head: bytes) -> Request:
    """The request line and headers of `head` (without the blank line)."""
    try:
        text = head.decode("latin-1")
        lines = text.split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise BadRequest(400, "malformed request line") from None
    if not version.startswith("HTTP/1."):
        raise BadRequest(400, f"unsupported protocol {version!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, f"malformed header line {line!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return Request(method, urlsplit(target).path, headers)


def format_head(response: Response, server: str) -> bytes:
    reason = REASONS.get(response.status, "Unknown")
    return (
        f"HTTP/1.0 {response.status} {reason}\r\n"
        f"Server: {server}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT' (host may be '[::1]', or empty for every IPv4 address)."""
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f'metrics address must be "HOST:PORT", like "127.0.0.1:9100": {text!r}')
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", int(port)


class HttpServer:
    """Serve `handler` on ADDRESS ("HOST:PORT") until close(). Binding errors
    raise OSError here, in the caller's thread; errors later are given to
    `log` (one message, no newline) and never stop the server."""

    def __init__(
        self,
        address: str,
        handler: Handler,
        *,
        log: Callable[[str], None],
        server_name: str = "pidone",
        client_timeout: float = CLIENT_TIMEOUT,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.handler = handler
        self.log = log
        self.server_name = server_name
        self.client_timeout = client_timeout
        self.max_clients = max_clients
        host, port = parse_address(address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((host, port))
            self._listener.listen(64)
            self._listener.setblocking(False)  # accept never blocks: see _serve
        except BaseException:
            self._listener.close()
            raise
        self.port: int = self._listener.getsockname()[1]
        self._active = 0
        self._active_lock = threading.Lock()
        self._stop_read, self._stop_write = os.pipe2(os.O_CLOEXEC)
        self.thread = system.start_thread(self._serve, "pidone-http")

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._stop_read, selectors.EVENT_READ)
            while True:
                try:
                    events = selector.select()
                    if any(key.fd == self._stop_read for key, _ in events):
                        return
                    self._accept()
                except Exception:
                    self.log(f"http: {_last_error()}")
                    time.sleep(0.1)  # EMFILE and friends: do not spin

    def _accept(self) -> None:
        for _ in range(self.max_clients):
            try:
                conn, _peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            with self._active_lock:
                full = self._active >= self.max_clients
                if not full:
                    self._active += 1
            if full:
                conn.close()
                continue
            try:
                system.start_thread(partial(self._client, conn), "pidone-http-client")
            except BaseException:
                self._done()
                conn.close()
                raise

    def _done(self) -> None:
        with self._active_lock:
            self._active -= 1

    def _client(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(self.client_timeout)
                self._answer(conn)
        except OSError:
            pass  # the client went away or timed out: nothing to tell it
        except Exception:
            self.log(f"http: error serving a client: {_last_error()}")
        finally:
            self._done()

    def _answer(self, conn: socket.socket) -> None:
        try:
            request = parse_head(_read_head(conn))
            if request.method not in ("GET", "HEAD"):
                response = Response.text(405, f"method {request.method} not allowed: use GET")
            else:
                response = self._handle(request)
        except BadRequest as exc:
            conn.sendall(format_head(r := Response.text(exc.status, str(exc)), self.server_name))
            conn.sendall(r.body)
            _drain(conn)
            return
        head = format_head(response, self.server_name)
        conn.sendall(head if request.method == "HEAD" else head + response.body)

    def _handle(self, request: Request) -> Response:
        try:
            return self.handler(request)
        except Exception as exc:
            self.log(f"http: {request.path} failed: {_last_error()}")
            return Response.text(500, f"internal error: {exc}")

    def close(self) -> None:
        try:
            os.write(self._stop_write, b"x")
        except OSError:
            pass
        self.thread.join(timeout=5.0)
        self._listener.close()
        os.close(self._stop_read)
        os.close(self._stop_write)


def _read_head(conn: socket.socket) -> bytes:
    data = b""
    while True:
        end = data.find(b"\r\n\r\n")
        if 0 <= end <= MAX_HEAD:
            return data[:end]
        if len(data) > MAX_HEAD:
            raise BadRequest(431, f"request head longer than {MAX_HEAD} bytes")
        try:
            chunk = conn.recv(4096)
        except TimeoutError:
            raise BadRequest(408, "request head not received in time") from None
        if not chunk:
            raise BadRequest(400, "connection closed before the end of the request head")
        data += chunk


def _drain(conn: socket.socket) -> None:
    """After an error reply to a request not read to its end: closing with
    unread bytes would reset the connection, and the client might lose the
    reply. Read (a bounded amount, for a bounded time) until it closes."""
    conn.shutdown(socket.SHUT_WR)
    conn.settimeout(1.0)
    for _ in range(64):
        if not conn.recv(65536):
            return


def _last_error() -> str:
    return traceback.format_exc().strip().splitlines()[-1]
