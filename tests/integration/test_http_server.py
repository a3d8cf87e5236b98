"""pidone's HTTP server over real sockets on 127.0.0.1: what it answers to
odd requests, failing handlers, slow clients, and more clients than it
serves at once."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from pidone.observe import http as httpserve
from pidone.observe.http import MAX_HEAD, HttpServer, Later, Request, Response


class Recorder:
    def __init__(self) -> None:
        self.logged: list[str] = []
        self.release = threading.Event()
        self.pooled = 0

    def direct(self, request: Request) -> Response | Later:
        if request.path == "/boom":
            raise RuntimeError("the handler broke")
        if request.path == "/later":
            return Eventually(self.release)
        if request.path == "/snowman":  # a header value latin-1 cannot carry
            return Response.text(200, "x", (("X-Snow", "\u2603"),))
        return Response.text(200, f"{request.method} {request.path}")

    def scrape(self, request: Request) -> Response:
        self.pooled += 1
        if request.query == "boom":
            raise RuntimeError("the scrape broke")
        self.release.wait(10)
        return Response.text(200, f"pooled {request.path}")


class Eventually(Later):
    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def poll(self) -> Response | None:
        return Response.text(200, "at last") if self.event.is_set() else None


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server(recorder: Recorder) -> Iterator[HttpServer]:
    s = HttpServer(
        "127.0.0.1:0",
        recorder.direct,
        pooled=recorder.scrape,
        pooled_paths=frozenset({"/metrics"}),
        log=recorder.logged.append,
        max_connections=8,
        workers=2,
        max_scrapes=3,
    )
    yield s
    recorder.release.set()
    s.close()


def exchange(port: int, raw: bytes) -> bytes:
    """The whole reply; b"" when the server closed without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        return read_all(s)


def read_all(s: socket.socket) -> bytes:
    chunks = []
    while chunk := s.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_get_answers_and_closes(server: HttpServer) -> None:
    reply = exchange(server.port, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"Content-Length: 7\r\n" in reply
    assert reply.endswith(b"\r\n\r\nGET /x\n")


def test_head_gets_the_head_only(server: HttpServer) -> None:
    reply = exchange(server.port, b"HEAD /x HTTP/1.1\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"Content-Length: 8\r\n" in reply  # of the body a GET would get
    assert reply.endswith(b"\r\n\r\n")


def test_other_methods_are_405_and_the_unread_body_does_not_reset_the_reply(
    server: HttpServer,
) -> None:
    body = b"x" * 100_000
    raw = b"POST /x HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    reply = exchange(server.port, raw)
    assert reply.startswith(b"HTTP/1.0 405 Method Not Allowed\r\n")
    assert b"use GET" in reply


def test_garbage_is_400_and_an_endless_head_is_431(server: HttpServer) -> None:
    assert exchange(server.port, b"hello\r\n\r\n").startswith(b"HTTP/1.0 400 ")
    endless = b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"a" * (MAX_HEAD + 10) + b"\r\n\r\n"
    assert exchange(server.port, endless).startswith(b"HTTP/1.0 431 ")


def test_a_failing_handler_is_a_logged_500_and_the_server_serves_on(
    server: HttpServer, recorder: Recorder
) -> None:
    reply = exchange(server.port, b"GET /boom HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 500 ")
    assert len(recorder.logged) == 1
    assert "/boom" in recorder.logged[0] and "the handler broke" in recorder.logged[0]
    reply = exchange(server.port, b"GET /metrics?boom HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 500 ") and b"the scrape broke" in reply
    assert len(recorder.logged) == 2 and "the scrape broke" in recorder.logged[1]
    assert exchange(server.port, b"GET /x HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 200 ")


def test_a_reply_head_http_cannot_carry_is_a_logged_500(
    server: HttpServer, recorder: Recorder
) -> None:
    reply = exchange(server.port, b"GET /snowman HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 500 ")
    assert len(recorder.logged) == 1 and "a reply failed" in recorder.logged[0]
    assert exchange(server.port, b"GET /x HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 200 ")


def test_an_answer_that_waits_does_not_hold_up_the_others(
    server: HttpServer, recorder: Recorder
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as waiting:
        waiting.sendall(b"GET /later HTTP/1.0\r\n\r\n")
        started = time.monotonic()
        assert exchange(server.port, b"GET /x HTTP/1.0\r\n\r\n").endswith(b"GET /x\n")
        assert time.monotonic() - started < 1.0
        recorder.release.set()
        assert read_all(waiting).endswith(b"\r\n\r\nat last\n")


def test_scrapes_beyond_the_limit_get_503_with_retry_after_then_are_served(
    server: HttpServer, recorder: Recorder
) -> None:
    busy = []
    for _ in range(3):  # max_scrapes=3: two in the workers, one queued
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        busy.append(s)
    try:
        for _ in range(100):  # until the server has read all three
            reply = exchange(server.port, b"GET /metrics HTTP/1.0\r\n\r\n")
            if reply.startswith(b"HTTP/1.0 503 "):
                break
        assert reply.startswith(b"HTTP/1.0 503 Service Unavailable\r\n")
        assert b"\r\nRetry-After: 1\r\n" in reply and b"busy: 3 scrapes under way" in reply
        started = time.monotonic()  # /x is not queued behind them
        assert exchange(server.port, b"GET /x HTTP/1.0\r\n\r\n").endswith(b"GET /x\n")
        assert time.monotonic() - started < 1.0
    finally:
        recorder.release.set()
        replies = [read_all(s) for s in busy]
        for s in busy:
            s.close()
    assert [r.endswith(b"pooled /metrics\n") for r in replies] == [True] * 3
    assert exchange(server.port, b"GET /metrics HTTP/1.0\r\n\r\n").endswith(b"pooled /metrics\n")


def test_a_connection_beyond_the_limit_closes_the_oldest_slow_one(server: HttpServer) -> None:
    slow = []
    for _ in range(8):  # max_connections=8, each sending half a head
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(b"GET /x HTTP/1.1\r\n")
        slow.append(s)
        time.sleep(0.01)  # accepted in this order
    try:
        reply = exchange(server.port, b"GET /x HTTP/1.0\r\n\r\n")
        assert reply.endswith(b"GET /x\n")
        try:
            oldest = slow[0].recv(100)
        except ConnectionResetError:
            oldest = b""
        assert oldest == b""  # closed to make room
        slow[1].sendall(b"\r\n")  # the others are still served
        assert read_all(slow[1]).endswith(b"GET /x\n")
    finally:
        for s in slow:
            s.close()


def test_a_client_trickling_its_head_is_cut_off_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch, recorder: Recorder
) -> None:
    monkeypatch.setattr(httpserve, "REQUEST_DEADLINE", 1.0)
    server = HttpServer("127.0.0.1:0", recorder.direct, log=recorder.logged.append)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            started = time.monotonic()
            got = b""
            for byte in b"GET /x HTTP/1.1\r\nX-Slow: " + b"a" * 100:
                try:
                    s.sendall(bytes([byte]))
                except OSError:
                    break
                s.settimeout(0.2)  # a byte every 0.2 s: never idle long
                try:
                    got = s.recv(65536)
                except TimeoutError:
                    continue
                break
            took = time.monotonic() - started
        assert got.startswith(b"HTTP/1.0 408 Request Timeout\r\n")
        assert 0.9 < took < 2.0  # one deadline, not one per byte
    finally:
        server.close()


def test_binding_a_taken_port_raises_in_the_caller(server: HttpServer) -> None:
    with pytest.raises(OSError):
        HttpServer(f"127.0.0.1:{server.port}", lambda r: Response.text(200, ""), log=print)
