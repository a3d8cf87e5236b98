"""pidone's HTTP server over real sockets on 127.0.0.1: what it answers to
odd requests, a failing handler, and more clients than it serves at once."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from pidone.httpserve import MAX_HEAD, HttpServer, Request, Response


class Recorder:
    def __init__(self) -> None:
        self.logged: list[str] = []
        self.release = threading.Event()

    def handle(self, request: Request) -> Response:
        if request.path == "/boom":
            raise RuntimeError("the handler broke")
        if request.path == "/slow":
            self.release.wait(10)
        return Response.text(200, f"{request.method} {request.path}")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server(recorder: Recorder) -> Iterator[HttpServer]:
    s = HttpServer("127.0.0.1:0", recorder.handle, log=recorder.logged.append, max_clients=4)
    yield s
    recorder.release.set()
    s.close()


def exchange(port: int, raw: bytes) -> bytes:
    """The whole reply; b"" when the server closed without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(raw)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:  # closed at accept, the request unread
            return b""
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


def test_other_methods_are_405(server: HttpServer) -> None:
    reply = exchange(server.port, b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
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
    assert exchange(server.port, b"GET /x HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 200 ")


def test_clients_beyond_the_limit_are_closed_then_served_once_others_leave(
    server: HttpServer, recorder: Recorder
) -> None:
    busy = []
    for _ in range(4):  # max_clients=4, each held in the handler
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(b"GET /slow HTTP/1.0\r\n\r\n")
        busy.append(s)
    try:
        # the fifth: closed at accept, without a reply (retry while the
        # server has not yet counted all four)
        for _ in range(100):
            reply = exchange(server.port, b"GET /x HTTP/1.0\r\n\r\n")
            if reply == b"":
                break
        assert reply == b""
    finally:
        recorder.release.set()
        for s in busy:
            assert s.recv(65536).startswith(b"HTTP/1.0 200 ")
            s.close()
    for _ in range(100):  # the four threads finish and give their places back
        reply = exchange(server.port, b"GET /x HTTP/1.0\r\n\r\n")
        if reply:
            break
    assert reply.startswith(b"HTTP/1.0 200 ")


def test_binding_a_taken_port_raises_in_the_caller(server: HttpServer) -> None:
    with pytest.raises(OSError):
        HttpServer(f"127.0.0.1:{server.port}", lambda r: Response.text(200, ""), log=print)
