"""The HTTP server of /metrics, /healthz and /readyz: small, bounded, off the loop's thread.

Why not the library's server: prometheus-client's start_http_server is
wsgiref with a thread per connection, no limit on their number and no
timeout, so clients that each send one byte every few seconds hold a
thread each for as long as they like. This server does the one thing
prometheus-client's does not: it stays up whatever the clients do. The
exposition, content negotiation and gzip are the library's (its WSGI app,
called by the pool below); only the connections are handled here.

    one thread ("pidone-http") sleeps in select() on the listener and on
      every connection (no tick: while nobody connects, no wakeup);
    each connection has ONE deadline: REQUEST_DEADLINE seconds from its
      accept to send the whole request head (at most MAX_HEAD bytes), then
      REPLY_DEADLINE seconds to take the reply; a byte now and then buys
      nothing. At most MAX_CONNECTIONS are open: one more closes the oldest
      still sending its head (the slowest), so new probes always get in;
    `direct` paths (/healthz, /readyz) are answered by that thread at
      once, never queued behind a scrape; an answer that must wait (for the
      loop to turn) is polled, without blocking the other connections;
    `pooled` paths (/metrics) go to WORKERS threads; at most MAX_SCRAPES
      are under way at once (queued, being collected or being sent): one
      more gets a 503 with Retry-After, never a reset;
    a handler that raises is a logged 500 and the server serves on.

Only the server thread touches sockets; the workers compute replies and
hand them back through a pipe. Every thread is born with every signal
blocked (process.start_thread). Memory is bounded: MAX_CONNECTIONS heads of
MAX_HEAD bytes, MAX_SCRAPES replies.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import time
import traceback
from collections import deque
from collections.abc import Callable
from queue import SimpleQueue
from urllib.parse import urlsplit

from pidone.hostport import host_port
from pidone.system import process, sockets

REQUEST_DEADLINE = 5.0  # seconds from accept to the end of the request head
REPLY_DEADLINE = 10.0  # seconds for the client to take its reply
LINGER = 1.0  # seconds to wait for the client's close after the reply
MAX_HEAD = 8192  # bytes of request line and headers; more is a 431
MAX_CONNECTIONS = 128  # open at once; one more closes the oldest still sending its head
ACCEPT_BATCH = 32  # connections accepted per turn, after those already open are served
WORKERS = 2  # threads answering pooled paths
MAX_SCRAPES = 8  # pooled requests under way at once (queued, computed, sent); more: 503
RETRY_AFTER = 1  # seconds, in the 503 of a pooled request beyond MAX_SCRAPES
POLL_FIRST, POLL_MAX = 0.001, 0.02  # seconds between polls of an answer that waits

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
    __slots__ = ("headers", "method", "path", "query")

    def __init__(self, method: str, path: str, headers: dict[str, str], query: str = "") -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers  # names lower-cased


class Response:
    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers  # more header lines: Content-Encoding, Retry-After

    @classmethod
    def text(cls, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
        return cls(status, (text + "\n").encode(), "text/plain; charset=utf-8", headers)


class Later:
    """An answer that is not known yet: the server calls poll() until it
    returns the Response (it must, by its own deadline)."""

    def poll(self) -> Response | None:
        raise NotImplementedError


Handler = Callable[[Request], Response]
DirectHandler = Callable[[Request], "Response | Later"]


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
    try:
        parts = urlsplit(target)
    except ValueError:
        raise BadRequest(400, "malformed request target") from None
    return Request(method, parts.path, headers, parts.query)


def format_head(response: Response, server: str) -> bytes:
    reason = REASONS.get(response.status, "Unknown")
    extra = "".join(f"{name}: {value}\r\n" for name, value in response.headers)
    return (
        f"HTTP/1.0 {response.status} {reason}\r\n"
        f"Server: {server}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        f"{extra}"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")


# Where a connection is: its head arriving, its answer being computed (or
# waited for), its reply going out, or its close awaited after the reply.
HEAD, WAITING, POOLED, SENDING, LINGERING = "head", "waiting", "pooled", "sending", "lingering"


class _Connection:
    __slots__ = (
        "accepted",
        "closed",
        "data",
        "deadline",
        "head_only",
        "later",
        "next_poll",
        "out",
        "pause",
        "pooled",
        "sock",
        "state",
    )

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.accepted = now
        self.deadline = now + REQUEST_DEADLINE
        self.state = HEAD
        self.head_only = False  # a HEAD request: the reply without its body
        self.data = bytearray()
        self.out = memoryview(b"")
        self.later: Later | None = None
        self.next_poll = 0.0
        self.pause = POLL_FIRST
        self.pooled = False  # holds one of the MAX_SCRAPES places
        self.closed = False


class HttpServer:
    """Serve ADDRESS ("HOST:PORT") until close(): `direct(request)` in the
    server's thread for paths not in `pooled_paths`, `pooled(request)` in a
    worker for those. Binding errors raise OSError here, in the caller's
    thread; errors later are given to `log` (one message, no newline) and
    never stop the server."""

    def __init__(
        self,
        address: str,
        direct: DirectHandler,
        *,
        log: Callable[[str], None],
        pooled: Handler | None = None,
        pooled_paths: frozenset[str] = frozenset(),
        server_name: str = "pidone",
        max_connections: int = MAX_CONNECTIONS,
        workers: int = WORKERS,
        max_scrapes: int = MAX_SCRAPES,
        listener: socket.socket | None = None,  # bound to address already: ctl reexec's
    ) -> None:
        self.direct = direct
        self.pooled = pooled
        self.pooled_paths = pooled_paths if pooled is not None else frozenset()
        self.log = log
        self.server_name = server_name
        self.max_connections = max_connections
        self.max_scrapes = max(max_scrapes, workers)
        host, port = host_port(address, port_zero=True)
        if listener is None:
            listener = sockets.tcp_listener(host, port, backlog=MAX_CONNECTIONS)
        self._listener = listener
        self.port: int = self._listener.getsockname()[1]
        self._connections: list[_Connection] = []  # in accept order
        self._scrapes = 0  # connections holding a pooled place
        self._jobs: SimpleQueue[tuple[_Connection, Request] | None] = SimpleQueue()
        self._done: deque[tuple[_Connection, Response]] = deque()
        self._stop_read, self._stop_write = os.pipe2(os.O_CLOEXEC)
        self._linger = 0.0
        self._done_read, self._done_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._stop_read, selectors.EVENT_READ, "stop")
        self._selector.register(self._done_read, selectors.EVENT_READ, "done")
        self.workers = [
            process.start_thread(self._work, "pidone-http-worker")
            for _ in range(workers if pooled is not None else 0)
        ]
        self.thread = process.start_thread(self._serve, "pidone-http")

    # -- the server thread --

    def _serve(self) -> None:
        quiet_until: float | None = None  # close(linger): no accept, the open ones served
        while True:
            try:
                timeout = self._timeout()
                if quiet_until is not None:
                    timeout = min(timeout or 0.05, 0.05)
                events = self._selector.select(timeout)
                accept = False
                for key, mask in events:
                    if key.data == "stop":
                        word = os.read(self._stop_read, 16)
                        if quiet_until is None and word == b"q":
                            self._selector.unregister(self._listener)
                            quiet_until = time.monotonic() + self._linger
                            continue
                        self._close_all()
                        return
                    if key.data == "accept":
                        accept = True
                    elif key.data == "done":
                        self._take_done()
                    else:
                        self._guarded(key.data, mask)
                now = time.monotonic()
                self._poll_waiting(now)
                self._expire(now)
                if accept and quiet_until is None:  # after those open: they are served first
                    self._accept(now)
                if quiet_until is not None and (
                    now >= quiet_until or all(c.state == LINGERING for c in self._connections)
                ):
                    self._close_all()
                    return
            except Exception:
                self.log(f"http: {_last_error()}")
                time.sleep(0.1)  # EMFILE and friends: do not spin

    def _timeout(self) -> float | None:
        if not self._connections:
            return None  # nobody connected: sleep until someone does
        soonest = min(c.next_poll if c.state == WAITING else c.deadline for c in self._connections)
        return max(0.0, soonest - time.monotonic())

    def _accept(self, now: float) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                raise
            if len(self._connections) >= self.max_connections and not self._evict():
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Connection(sock, now)
            self._connections.append(conn)
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _evict(self) -> bool:
        """Close the oldest connection still sending its head (or lingering)."""
        for conn in self._connections:
            if conn.state in (HEAD, LINGERING):
                self._close(conn)
                return True
        return False

    def _guarded(self, conn: _Connection, mask: int) -> None:
        try:
            if conn.state == HEAD:
                self._read_head(conn)
            elif conn.state == SENDING:
                self._send(conn)
            elif conn.state == LINGERING and not conn.sock.recv(65536):
                self._close(conn)
        except OSError:
            self._close(conn)  # the client went away: nothing to tell it
        except Exception:
            self.log(f"http: error serving a client: {_last_error()}")
            self._close(conn)

    def _read_head(self, conn: _Connection) -> None:
        chunk = conn.sock.recv(4096)
        if not chunk:
            self._close(conn)  # closed before the end of its head: nobody to answer
            return
        conn.data += chunk
        end = conn.data.find(b"\r\n\r\n")
        if 0 <= end <= MAX_HEAD:
            head = bytes(conn.data[:end])
            conn.data = bytearray()
            self._selector.unregister(conn.sock)
            self._dispatch(conn, head)
        elif len(conn.data) > MAX_HEAD:
            self._selector.unregister(conn.sock)
            self._reply(conn, Response.text(431, f"request head longer than {MAX_HEAD} bytes"))

    def _dispatch(self, conn: _Connection, head: bytes) -> None:
        try:
            request = parse_head(head)
        except BadRequest as exc:
            self._reply(conn, Response.text(exc.status, str(exc)))
            return
        conn.head_only = request.method == "HEAD"
        if request.method not in ("GET", "HEAD"):
            self._reply(conn, Response.text(405, f"method {request.method} not allowed: use GET"))
        elif request.path in self.pooled_paths:
            if self._scrapes >= self.max_scrapes:
                busy = f"busy: {self._scrapes} scrapes under way; retry in {RETRY_AFTER} s"
                self._reply(conn, Response.text(503, busy, (("Retry-After", str(RETRY_AFTER)),)))
                return
            self._scrapes += 1
            conn.pooled = True
            conn.state = POOLED
            conn.deadline = time.monotonic() + REPLY_DEADLINE
            self._jobs.put((conn, request))
        else:
            answer = self._call(self.direct, request)
            if isinstance(answer, Later):
                conn.state = WAITING
                conn.later = answer
                conn.next_poll = time.monotonic() + conn.pause
            else:
                self._reply(conn, answer)

    def _call(self, handler: DirectHandler, request: Request) -> Response | Later:
        try:
            return handler(request)
        except Exception as exc:
            self.log(f"http: {request.path} failed: {_last_error()}")
            return Response.text(500, f"internal error: {exc}")

    def _poll_waiting(self, now: float) -> None:
        for conn in [c for c in self._connections if c.state == WAITING and c.next_poll <= now]:
            assert conn.later is not None
            try:
                answer = conn.later.poll()
            except Exception as exc:
                self.log(f"http: an answer failed: {_last_error()}")
                answer = Response.text(500, f"internal error: {exc}")
            if answer is None:
                conn.pause = min(conn.pause * 2, POLL_MAX)
                conn.next_poll = now + conn.pause
            else:
                self._reply(conn, answer)

    def _take_done(self) -> None:
        with contextlib.suppress(OSError):
            os.read(self._done_read, 4096)
        while self._done:
            conn, response = self._done.popleft()
            if conn.closed:  # its deadline passed while a worker had it
                self._release(conn)
            else:
                self._reply(conn, response)

    def _reply(self, conn: _Connection, response: Response) -> None:
        try:
            head = format_head(response, self.server_name)
        except Exception as exc:  # a header a handler made that HTTP cannot carry
            self.log(f"http: a reply failed: {_last_error()}")
            response = Response.text(500, f"internal error: {exc}")
            head = format_head(response, self.server_name)
        conn.out = memoryview(head if conn.head_only else head + response.body)
        conn.state = SENDING
        conn.deadline = time.monotonic() + REPLY_DEADLINE
        try:
            self._send(conn, registered=False)
        except OSError:
            self._close(conn)

    def _send(self, conn: _Connection, *, registered: bool = True) -> None:
        sent = conn.sock.send(conn.out) if conn.out else 0
        conn.out = conn.out[sent:]
        if conn.out:
            if not registered:
                self._selector.register(conn.sock, selectors.EVENT_WRITE, conn)
            return
        # All sent. Closing with bytes unread (a body, a pipelined request)
        # would reset the connection and the client could lose the reply:
        # say we are done, and wait a little for the client to close.
        if registered:
            self._selector.unregister(conn.sock)
        self._release(conn)
        conn.sock.shutdown(socket.SHUT_WR)
        conn.state = LINGERING
        conn.deadline = min(conn.deadline, time.monotonic() + LINGER)
        self._selector.register(conn.sock, selectors.EVENT_READ, conn)

    def _expire(self, now: float) -> None:
        for conn in [c for c in self._connections if c.deadline <= now]:
            if conn.state == HEAD:
                self._selector.unregister(conn.sock)
                why = f"request head not received within {REQUEST_DEADLINE:g} s"
                self._reply(conn, Response.text(408, why))
            else:  # a reply not computed or not taken in time, a client that stays
                self._close(conn)

    def _release(self, conn: _Connection) -> None:
        if conn.pooled:
            conn.pooled = False
            self._scrapes -= 1

    def _close(self, conn: _Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        if conn.state != POOLED:  # else the worker's place is given back when it is done
            self._release(conn)
        if conn.state in (HEAD, SENDING, LINGERING):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
        conn.sock.close()
        conn.out = memoryview(b"")
        conn.data = bytearray()
        self._connections.remove(conn)

    def _close_all(self) -> None:
        for conn in list(self._connections):
            self._close(conn)

    # -- the workers --

    def _work(self) -> None:
        assert self.pooled is not None
        while (job := self._jobs.get()) is not None:
            conn, request = job
            try:
                response = self.pooled(request)
            except Exception as exc:
                self.log(f"http: {request.path} failed: {_last_error()}")
                response = Response.text(500, f"internal error: {exc}")
            self._done.append((conn, response))
            # full: the server thread has a wake-up pending anyway
            with contextlib.suppress(OSError):
                os.write(self._done_write, b"x")

    def keep_listener(self) -> int:
        """For ctl reexec, before close(): a copy of the listening fd, which
        keeps the socket (and what waits in its backlog) open after close()."""
        return os.dup(self._listener.fileno())

    def close(self, linger: float = 0.0) -> None:
        """Stop. `linger` > 0 (ctl reexec): accept no more (the listener's
        backlog waits for whoever takes it over) and serve the connections
        open for up to that many seconds first: none of them is reset."""
        self._linger = linger
        if linger > 0:
            with contextlib.suppress(OSError):
                os.write(self._stop_write, b"q")
            self.thread.join(timeout=5.0 + linger)
        for _ in self.workers:
            self._jobs.put(None)
        with contextlib.suppress(OSError):
            os.write(self._stop_write, b"x")
        self.thread.join(timeout=5.0)
        for worker in self.workers:
            worker.join(timeout=5.0)
        self._selector.close()
        self._listener.close()
        for fd in (self._stop_read, self._stop_write, self._done_read, self._done_write):
            os.close(fd)


def _last_error() -> str:
    return traceback.format_exc().strip().splitlines()[-1]
