"""The one HOST:PORT rule (hostport.host_port), as `[pidone] metrics`, the
`--metrics` of both modes, `ready = "tcp:..."` and the HTTP server read it."""

from __future__ import annotations

import pytest

from pidone import cli, commands
from pidone.config.values import BadValue, address, ready
from pidone.errors import UsageError
from pidone.hostport import host_port

ACCEPTED = [
    ("0.0.0.0:9100", ("0.0.0.0", 9100)),
    ("localhost:80", ("localhost", 80)),
    ("[::1]:9100", ("::1", 9100)),
    ("::1:9100", ("::1", 9100)),
    ("127.0.0.1:65535", ("127.0.0.1", 65535)),
]
# "host:\u00b9\u2075": superscript digits pass str.isdigit(), then int() raised
REFUSED = ["9100", "host:", ":9100", "[]:80", "host:http", "host:70000", "host:0", "", "host:-1",
           "host:\u00b9\u2075", "host:" + "9" * 30]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_every_reader_accepts_the_same_addresses(text: str, expected: tuple[str, int]) -> None:
    assert host_port(text) == expected
    assert address(text) == text
    check = ready(f"tcp:{text}", {})
    assert (check.host, check.port) == expected
    assert cli.parse_single(["--metrics", text, "x"], {}).metrics == text  # type: ignore[union-attr]
    assert commands.parse_args(["run", "--metrics", text]).metrics == text  # type: ignore[union-attr]


@pytest.mark.parametrize("text", REFUSED)
def test_every_reader_refuses_the_same_addresses(text: str) -> None:
    with pytest.raises(ValueError, match=r'^must be "HOST:PORT"'):
        host_port(text)
    with pytest.raises(BadValue, match=r'^must be "HOST:PORT"'):
        address(text)
    with pytest.raises(BadValue, match='"tcp:HOST:PORT"'):
        ready(f"tcp:{text}", {})
    with pytest.raises(UsageError, match="HOST:PORT"):
        cli.parse_single(["--metrics", text or "''", "x"], {})
    with pytest.raises(UsageError, match="HOST:PORT"):
        commands.parse_args(["run", "--metrics", text or "''"])


def test_port_zero_only_for_a_listener_that_asks_the_kernel() -> None:
    assert host_port("127.0.0.1:0", port_zero=True) == ("127.0.0.1", 0)
