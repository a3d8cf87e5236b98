"""The control protocol's pure parts: checking requests, status rows, signals."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from pidone import __version__
from pidone.control.protocol import (
    COMMANDS,
    parse_request,
    status_reply,
    status_rows,
)
from pidone.core.requests import Command as C
from pidone.core.snapshot import ExitInfo, ProcessStatus, Snapshot, not_ready
from pidone.core.states import ProcessState
from pidone.core.supervisor import Request
from pidone.signames import signal_name, signal_number

S = ProcessState
KNOWN = ("redis", "web", "worker")


def req(command: str, **args: Any) -> dict[str, Any]:
    return {"command": command, "args": args}


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (req("status"), Request(C.STATUS)),
        (req("shutdown"), Request(C.SHUTDOWN)),
        (req("start", names=["web"]), Request(C.START, ("web",))),
        (req("stop", names=["all"], timeout=30), Request(C.STOP, ("all",), timeout=30.0)),
        (req("restart", names=["web", "web", "worker"]), Request(C.RESTART, ("web", "worker"))),
        (req("reload", names=["all"]), Request(C.RELOAD, ("all",))),
        (req("signal", names=["worker"], signal=10), Request(C.SIGNAL, ("worker",), signum=10)),
        (req("wait-ready", timeout=2.5), Request(C.WAIT_READY, timeout=2.5)),
        (req("wait-ready"), Request(C.WAIT_READY)),
        (req("reread"), Request(C.REREAD)),
        (req("update"), Request(C.UPDATE)),
        (req("update", names=["all"], timeout=9), Request(C.UPDATE, timeout=9.0)),
        # a name of the configuration read again: the core checks it
        (req("update", names=["new", "web", "new"]), Request(C.UPDATE, ("new", "web"))),
    ],
)
def test_good_requests(request_: dict[str, Any], expected: Request) -> None:
    assert parse_request(request_, KNOWN) == expected


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        (req("launch"), "unknown command 'launch'; commands: status, start, stop,"),
        (req("start"), 'start: "names" must be a non-empty list of process names, or ["all"]'),
        (req("start", names=[]), 'start: "names" must be a non-empty list'),
        (req("update", names="web"), 'update: "names" must be a list of process names'),
        (req("update", names=[3]), 'update: "names" must be a list of process names'),
        (req("update", timeout=0), 'update: "timeout" must be more than 0 seconds'),
        (req("start", names="web"), 'start: "names" must be a non-empty list'),
        (req("start", names=[1]), 'start: "names" must be a non-empty list'),
        (req("stop", names=["all", "web"]), 'stop: "all" stands alone'),
        (req("restart", names=["web", "wbe", "db"]), "restart: no such process: wbe, db"),
        (req("signal", names=["web"]), 'signal: "signal" must be a signal number'),
        (req("signal", names=["web"], signal="TERM"), 'signal: "signal" must be a signal number'),
        (req("signal", names=["web"], signal=True), 'signal: "signal" must be a signal number'),
        (req("signal", names=["web"], signal=0), "signal: 0 is not a signal number; use 1 to"),
        (req("signal", names=["web"], signal=999), "signal: 999 is not a signal number"),
        (req("wait-ready", timeout=0), 'wait-ready: "timeout" must be more than 0 seconds'),
        # A control-group member (not root) must not crash PID 1 with an epoll overflow.
        (
            req("wait-ready", timeout=1e300),
            'wait-ready: "timeout" must be a number of seconds from 0 to 86400',
        ),
        (
            req("wait-ready", timeout=float("inf")),
            'wait-ready: "timeout" must be a number of seconds from 0 to 86400',
        ),
        (
            req("restart", names=["web"], timeout=86400.5),
            'restart: "timeout" must be a number of seconds from 0 to 86400',
        ),
        (
            req("start", names=["web"], timeout=-1),
            'start: "timeout" must be a number of seconds from 0 to 86400',
        ),
        (req("wait-ready", timeout="5"), 'wait-ready: "timeout" must be a number'),
        (req("restart", names=["web"], timeout=float("inf")), 'restart: "timeout" must be'),
    ],
)
def test_bad_requests(request_: dict[str, Any], error: str) -> None:
    result = parse_request(request_, KNOWN)
    assert isinstance(result, str)
    assert result.startswith(error)


def test_commands_become_supervisor_requests() -> None:
    command = parse_request(req("signal", names=["web"], signal=signal.SIGUSR2), KNOWN)
    assert command == Request(C.SIGNAL, ("web",), signal.SIGUSR2)
    # the wire names are the enum's values, in one place
    assert tuple(c.value for c in C) == COMMANDS
    assert all(C(wire).value == wire for wire in COMMANDS)


def status(name: str, state: ProcessState, **kw: Any) -> ProcessStatus:
    fields: dict[str, Any] = {
        "pid": None,
        "started_at": None,
        "restarts": 0,
        "restarts_by_reason": {},
        "exits_by_status": {},
        "last_exit": None,
        "has_ready_check": True,
    }
    fields.update(kw)
    return ProcessStatus(name=name, state=state, ready=state is S.READY, **fields)


def test_status_rows_from_a_snapshot() -> None:
    snap = Snapshot(
        (
            status("redis", S.READY, pid=10, started_at=40.0),
            status(
                "web",
                S.BACKOFF,
                started_at=80.0,  # its last run: not up now, so no uptime
                restarts=2,
                last_exit=ExitInfo(137, 9, 95.25, planned=False),
            ),
            status("worker", S.STOPPING, pid=12, started_at=99.9999, restarts=1),
        ),
        shutting_down=True,
    )
    assert status_reply(snap, 100.0) == {
        "ok": True,
        "version": __version__,
        "shutting_down": True,
        "processes": [
            {
                "name": "redis",
                "state": "ready",
                "ready": True,
                "pid": 10,
                "uptime": 60.0,
                "restarts": 0,
                "last_exit": None,
            },
            {
                "name": "web",
                "state": "backoff",
                "ready": False,
                "pid": None,
                "uptime": None,
                "restarts": 2,
                "last_exit": {
                    "status": 137,
                    "signal": 9,
                    "planned": False,
                    "oom": False,
                    "ago": 4.75,
                },
            },
            {
                "name": "worker",
                "state": "stopping",
                "ready": False,
                "pid": 12,
                "uptime": 0.0,
                "restarts": 1,
                "last_exit": None,
            },
        ],
    }
    assert status_rows(snap, 100.0) == status_reply(snap, 100.0)["processes"]


def test_not_ready_counts_completed_jobs_as_done() -> None:
    snap = Snapshot(
        (
            status("migrate", S.EXITED, last_exit=ExitInfo(0, 0, 1.0, False), completed=True),
            status("seed", S.EXITED, last_exit=ExitInfo(3, 0, 1.0, False)),
            status("web", S.RUNNING, pid=5),
            status("cron", S.STARTING, has_ready_check=False),
            status("redis", S.READY, pid=6),
        ),
        shutting_down=False,
    )
    assert not_ready(snap) == ["seed (exited)", "web (running)", "cron (starting)"]
    assert not_ready(snap, checked_only=True) == ["seed (exited)", "web (running)"]


@pytest.mark.parametrize(
    ("text", "signum"),
    [
        ("TERM", signal.SIGTERM),
        ("sigterm", signal.SIGTERM),
        ("SIGHUP", signal.SIGHUP),
        (" usr1 ", signal.SIGUSR1),
        ("15", 15),
        ("RTMIN", signal.SIGRTMIN),
        ("RTMIN+3", signal.SIGRTMIN + 3),
        ("SIGRTMAX-1", signal.SIGRTMAX - 1),
    ],
)
def test_parse_signal(text: str, signum: int) -> None:
    assert signal_number(text) == signum


@pytest.mark.parametrize(
    "text", ["", "NOPE", "0", "65", "RTMIN+99", "-9", "\u00b9\u2075", "RTMIN+\u00b9"]
)
def test_parse_signal_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"signal|outside"):
        signal_number(text)


@pytest.mark.parametrize(
    ("signum", "name"),
    [
        (signal.SIGTERM, "SIGTERM"),
        (signal.SIGKILL, "SIGKILL"),
        (signal.SIGRTMIN, "SIGRTMIN"),
        (signal.SIGRTMIN + 4, "SIGRTMIN+4"),
        (signal.SIGRTMAX, "SIGRTMAX"),
        (0, "0"),
    ],
)
def test_signal_names_round_trip(signum: int, name: str) -> None:
    assert signal_name(signum) == name
    if signum:
        assert signal_number(name) == signum
