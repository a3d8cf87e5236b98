"""pidone's own sd_notify sender (system/sdnotify.py): which addresses and
watchdog values it takes, and the STATUS= rate bound, against a real
datagram socket and a fake clock."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pidone.system import sdnotify
from pidone.system.sdnotify import STATUS_INTERVAL, Notifier


@pytest.mark.parametrize(
    ("value", "ok"),
    [("/run/systemd/notify", True), ("@abstract", True), ("notify.sock", False),
     ("vsock:2:1234", False), ("/" + "x" * 107, False), ("/" + "x" * 106, True)],
)  # fmt: skip
def test_notify_socket_is_a_path_or_an_abstract_name(value: str, ok: bool) -> None:
    assert (sdnotify.address_problem(value) is None) is ok


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [("200000", None, 200000), ("20000", None, 20000), ("19999", None, None),
     ("0", None, None), ("86400000000", None, 86400000000), ("86400000001", None, None),
     ("1e6", None, None), ("", None, None), ("٣٠٠٠٠٠", None, None),
     ("200000", "42", 200000), ("200000", "43", None)],
)  # fmt: skip
def test_watchdog_usec_in_range_and_for_pidone_only(
    usec: str, pid: str | None, expected: int | None
) -> None:
    environ = {"WATCHDOG_USEC": usec, **({"WATCHDOG_PID": pid} if pid else {})}
    value, why = sdnotify.watchdog_usec(environ, 42)
    assert value == expected
    assert (why is None) is (expected is not None)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.setblocking(False)
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    got = []
    while True:
        try:
            got.append(sock.recv(4096).decode())
        except BlockingIOError:
            return got


def test_status_lines_are_rate_bounded_and_ready_goes_at_once(receiver: socket.socket) -> None:
    clock = Clock()
    logged: list[str] = []
    notifier = Notifier(receiver.getsockname(), watchdog=None, log=logged.append, clock=clock)
    notifier.status("0 of 2 ready")
    notifier.status("1 of 2 ready")  # too soon: kept, the latest wins
    notifier.status("1 of 2 ready, waiting for web")
    assert received(receiver) == ["STATUS=0 of 2 ready\n"]
    assert notifier.next_deadline() == 100.0 + STATUS_INTERVAL
    clock.now += STATUS_INTERVAL
    notifier.run_due(clock.now)
    assert received(receiver) == ["STATUS=1 of 2 ready, waiting for web\n"]
    assert notifier.next_deadline() is None  # nothing pending: the loop may sleep
    notifier.status("2 of 2 ready", ready=True)  # within the interval, and still at once
    assert received(receiver) == ["READY=1\nSTATUS=2 of 2 ready\n"]
    assert logged == []
    notifier.close()


def test_watchdog_pings_at_half_the_period(receiver: socket.socket) -> None:
    clock = Clock()
    notifier = Notifier(receiver.getsockname(), watchdog=200_000, log=print, clock=clock)
    assert notifier.next_deadline() == 100.0
    notifier.run_due(clock.now)
    assert notifier.next_deadline() == pytest.approx(100.1)
    clock.now = 100.05
    notifier.run_due(clock.now)  # not due yet
    clock.now = 100.1
    notifier.run_due(clock.now)
    assert received(receiver) == ["WATCHDOG=1\n", "WATCHDOG=1\n"]
    notifier.close()


def test_a_socket_that_is_gone_is_logged_once_until_a_send_works(tmp_path: Path) -> None:
    logged: list[str] = []
    path = str(tmp_path / "gone.sock")
    notifier = Notifier(path, watchdog=None, log=logged.append, clock=Clock())
    assert notifier.send("STATUS=a\n") is False
    assert notifier.send("STATUS=b\n") is False
    assert len(logged) == 1 and "No such file or directory" in logged[0]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    assert notifier.send("STATUS=c\n") is True
    os.unlink(path)
    sock.close()
    assert notifier.send("STATUS=d\n") is False
    assert len(logged) == 2  # failing again after it worked: said again
    notifier.close()


def test_the_managers_variables_are_left_out_of_a_childs_environment() -> None:
    env = {b"NOTIFY_SOCKET": b"/x", b"WATCHDOG_USEC": b"1", b"WATCHDOG_PID": b"2", b"HOME": b"/"}
    assert sdnotify.without_manager_variables(env) == {b"HOME": b"/"}
