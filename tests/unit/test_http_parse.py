"""The request heads and reply heads of pidone's small HTTP server."""

from __future__ import annotations

import pytest

from pidone.observe.http import BadRequest, Response, format_head, parse_head


def test_a_request_head_with_headers() -> None:
    r = parse_head(
        b"GET /metrics?name[]=x HTTP/1.1\r\nHost: pod:9100\r\n"
        b"Accept: application/openmetrics-text\r\naccept: text/plain;q=0.5\r\nX-Empty:"
    )
    assert (r.method, r.path, r.query) == ("GET", "/metrics", "name[]=x")
    assert r.headers == {
        "host": "pod:9100",
        "accept": "application/openmetrics-text, text/plain;q=0.5",  # repeated: joined
        "x-empty": "",
    }


def test_an_absolute_target_keeps_its_path_only() -> None:
    assert parse_head(b"GET http://10.0.0.1:9100/healthz HTTP/1.0").path == "/healthz"


@pytest.mark.parametrize(
    ("head", "why"),
    [
        (b"GET /metrics", "malformed request line"),
        (b"GET  /metrics HTTP/1.1", "malformed request line"),
        (b"GET /metrics SPDY/3", "unsupported protocol"),
        (b"GET / HTTP/1.1\r\nno colon here", "malformed header line"),
        (b"GET / HTTP/1.1\r\n Host: folded", "malformed header line"),
    ],
)
def test_malformed_heads_are_400(head: bytes, why: str) -> None:
    with pytest.raises(BadRequest, match=why) as caught:
        parse_head(head)
    assert caught.value.status == 400


def test_the_reply_head_closes_the_connection_and_forbids_caching() -> None:
    head = format_head(Response.text(503, "not ready: web"), "pidone/1.2").decode()
    assert head == (
        "HTTP/1.0 503 Service Unavailable\r\n"
        "Server: pidone/1.2\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 15\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )


def test_a_busy_reply_says_when_to_retry() -> None:
    busy = Response.text(503, "busy", (("Retry-After", "1"),))
    head = format_head(busy, "pidone/1.2").decode()
    assert "\r\nContent-Length: 5\r\nRetry-After: 1\r\nCache-Control: no-store\r\n" in head
