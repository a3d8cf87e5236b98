"""The one HOST:PORT rule: `[pidone] metrics`, `--metrics` (both modes),
`ready = "tcp:HOST:PORT"`, and the HTTP server that listens on it. Pure, and
light enough for single-command mode (no re, no ipaddress)."""

from __future__ import annotations

from pidone.digits import ascii_int

FORM = '"HOST:PORT", like "127.0.0.1:9100"'


def port_number(text: str, *, low: int = 1) -> int | None:
    """A TCP port from `low` to 65535 (digits.ascii_int), else None."""
    number = ascii_int(text)
    return number if number is not None and low <= number <= 65535 else None


def host_port(text: str, *, port_zero: bool = False) -> tuple[str, int]:
    """(host, port) from "HOST:PORT": a host name, an IPv4 address or an
    [IPv6] one (brackets dropped), and a port from 1 to 65535 (0, the
    kernel's pick, only if `port_zero`: tests' listeners). An empty host is
    refused: say 0.0.0.0 to listen on every IPv4 address."""
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    number = port_number(port, low=0 if port_zero else 1)
    if not host or number is None:
        raise ValueError(f"must be {FORM}")
    return host, number
