"""`pidone ctl`: argument parsing, the requests it builds, and its output."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from pidone.control import client as ctl
from pidone.control.protocol import DEFAULT_SOCKET

# --- parsing -> requests ----------------------------------------------------------------


def request(*argv: str) -> dict[str, Any]:
    return ctl.build_request(ctl.parse_args(list(argv)))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["status"], {"command": "status", "args": {}}),
        (["status", "--json"], {"command": "status", "args": {}}),
        (["start", "web"], {"command": "start", "args": {"names": ["web"]}}),
        (["stop", "all"], {"command": "stop", "args": {"names": ["all"]}}),
        (
            ["restart", "--timeout", "90", "web", "worker", "web"],
            {"command": "restart", "args": {"names": ["web", "worker"], "timeout": 90.0}},
        ),
        (["reload", "web"], {"command": "reload", "args": {"names": ["web"]}}),
        (
            ["signal", "USR1", "worker"],
            {"command": "signal", "args": {"names": ["worker"], "signal": signal.SIGUSR1}},
        ),
        (
            ["signal", "sighup", "all"],
            {"command": "signal", "args": {"names": ["all"], "signal": signal.SIGHUP}},
        ),
        (
            ["signal", "9", "web"],
            {"command": "signal", "args": {"names": ["web"], "signal": 9}},
        ),
        (
            ["signal", "RTMIN+2", "web"],
            {"command": "signal", "args": {"names": ["web"], "signal": signal.SIGRTMIN + 2}},
        ),
        (["shutdown"], {"command": "shutdown", "args": {}}),
        (["wait-ready"], {"command": "wait-ready", "args": {"timeout": 300.0}}),
        (["wait-ready", "--timeout", "2.5"], {"command": "wait-ready", "args": {"timeout": 2.5}}),
        (["reexec", "--timeout", "5"], {"command": "reexec", "args": {}}),  # the client's wait
    ],
)
def test_requests(argv: list[str], expected: dict[str, Any]) -> None:
    assert request(*argv) == expected


@pytest.mark.parametrize(
    ("argv", "seconds"),
    [
        (["status"], ctl.SHORT_TIMEOUT),
        (["reload", "all"], ctl.SHORT_TIMEOUT),
        (["shutdown"], ctl.SHORT_TIMEOUT),
        (["restart", "web"], ctl.LONG_TIMEOUT),
        (["stop", "web"], ctl.LONG_TIMEOUT),
        (["restart", "--timeout", "60", "web"], 60 + ctl.GRACE),
        (["wait-ready", "--timeout", "10"], 10 + ctl.GRACE),
        (["wait-ready"], ctl.WAIT_READY_TIMEOUT + ctl.GRACE),
        (["reexec"], ctl.REEXEC_TIMEOUT + ctl.GRACE),
    ],
)
def test_the_client_waits_long_for_slow_commands(argv: list[str], seconds: float) -> None:
    assert ctl.reply_timeout(ctl.parse_args(argv)) == seconds


def test_socket_from_option_environment_or_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIDONE_CONTROL_SOCKET", raising=False)
    assert ctl.parse_args(["status"]).socket == DEFAULT_SOCKET == "/run/pidone/control.sock"
    monkeypatch.setenv("PIDONE_CONTROL_SOCKET", "/tmp/x.sock")
    assert ctl.parse_args(["status"]).socket == "/tmp/x.sock"
    assert ctl.parse_args(["--socket", "/a/b.sock", "status"]).socket == "/a/b.sock"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: COMMAND"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["start"], "the following arguments are required: NAME"),
        (["restart", "all", "web"], "'all' stands alone"),
        (["signal", "NOPE", "web"], "'NOPE' is not a signal name; use a name like SIGTERM"),
        (["signal", "99", "web"], "'99' is not a signal number"),
        (["signal", "TERM"], "the following arguments are required: NAME"),
        (["wait-ready", "--timeout", "soon"], "not a number of seconds: 'soon'"),
        (["wait-ready", "--timeout", "0"], "must be more than 0 seconds"),
        (["stop", "--timeout", "-1", "web"], "must be a number of seconds from 0 to 86400"),
        # the client's own socket timeout overflowed on it (OverflowError)
        (["wait-ready", "--timeout", "1e300"], "must be a number of seconds from 0 to 86400"),
        (["status", "--yaml"], "unrecognized arguments: --yaml"),
    ],
)
def test_usage_errors_exit_2_with_the_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pidone ctl: ")
    assert message in err
    assert "usage: pidone ctl" in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("status", "restart", "wait-ready", "shutdown", "signal", "reread", "update"):
        assert command in out


def test_no_server_is_a_failure_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nothing.sock"
    assert ctl.main(["--socket", str(path), "status"]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"pidone ctl: cannot connect to {path}: No such file or directory"
        " (is `pidone run` running, with this control_socket?)\n"
    )


# --- output ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.4, "0s"),
        (59.9, "59s"),
        (60, "1m 00s"),
        (3599, "59m 59s"),
        (3600, "1h 00m"),
        (7 * 3600 + 5 * 60 + 9, "7h 05m"),
        (86400 * 3 + 3600 * 4 + 5, "3d 04h"),
    ],
)
def test_durations(seconds: float | None, text: str) -> None:
    assert ctl.format_duration(seconds) == text


@pytest.mark.parametrize(
    ("last", "text"),
    [
        (None, "-"),
        ({"status": 1, "signal": 0, "planned": False, "ago": 4.2}, "exit 1, 4s ago"),
        ({"status": 137, "signal": 9, "planned": False, "ago": 75}, "SIGKILL, 1m 15s ago"),
        ({"status": 143, "signal": 15, "planned": True, "ago": 3}, "SIGTERM (stopped), 3s ago"),
        ({"status": 0, "signal": 0, "planned": True, "ago": None}, "exit 0 (stopped)"),
        (
            {"status": 137, "signal": 9, "planned": False, "oom": True, "ago": 2},
            "killed by the OOM killer (SIGKILL), 2s ago",
        ),
    ],
)
def test_last_exit(last: dict[str, Any] | None, text: str) -> None:
    assert ctl.format_last_exit(last) == text


STATUS = {
    "ok": True,
    "shutting_down": False,
    "processes": [
        {
            "name": "redis",
            "state": "ready",
            "ready": True,
            "pid": 12,
            "uptime": 7384.2,
            "restarts": 0,
            "last_exit": None,
        },
        {
            "name": "web",
            "state": "backoff",
            "ready": False,
            "pid": None,
            "uptime": None,
            "restarts": 3,
            "last_exit": {"status": 1, "signal": 0, "planned": False, "ago": 4.0},
        },
        {
            "name": "celery-worker",
            "state": "stopping",
            "ready": False,
            "pid": 31337,
            "uptime": 62.0,
            "restarts": 12,
            "last_exit": {"status": 137, "signal": 9, "planned": True, "ago": 3600.0},
        },
    ],
}


def test_status_table_is_aligned_like_supervisorctl() -> None:
    assert ctl.format_status(STATUS) == (
        "NAME           STATE     READY  PID    UPTIME  RESTARTS  LAST EXIT\n"
        "redis          READY     yes    12     2h 03m  0         -\n"
        "web            BACKOFF   no     -      -       3         exit 1, 4s ago\n"
        "celery-worker  STOPPING  no     31337  1m 02s  12        SIGKILL (stopped), 1h 00m ago\n"
    )


def test_status_table_says_when_shutting_down() -> None:
    text = ctl.format_status({"ok": True, "shutting_down": True, "processes": []})
    assert text == "NAME  STATE  READY  PID  UPTIME  RESTARTS  LAST EXIT\npidone is shutting down\n"


def test_report_of_results() -> None:
    reply = {
        "ok": False,
        "error": "1 of 2 processes failed",
        "results": [
            {"name": "redis", "ok": True, "state": "ready"},
            {"name": "web", "ok": False, "state": "running", "error": "not ready within 60 s"},
        ],
    }
    assert ctl.report(reply) == (
        "redis: ready\n",
        "web: not ready within 60 s\n1 of 2 processes failed\n",
    )
    assert ctl.report(
        {"ok": True, "results": [{"name": "web", "ok": True, "state": "stopped"}]}
    ) == (
        "web: stopped\n",
        "",
    )
    assert ctl.report({"ok": False, "error": "no such process: wbe"}) == (
        "",
        "no such process: wbe\n",
    )
    assert ctl.report(
        {"ok": False, "error": "not ready after 5 s", "not_ready": ["web (starting)"]}
    ) == ("", "not ready after 5 s\nnot ready: web (starting)\n")
    assert ctl.report({"ok": True}) == ("", "")


def test_status_json_prints_the_servers_data(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sent: list[tuple[str, dict[str, Any], float]] = []

    def fake_send(path: str, req: dict[str, Any], timeout: float) -> dict[str, Any]:
        sent.append((path, req, timeout))
        return STATUS

    monkeypatch.setattr(ctl, "send", fake_send)
    assert ctl.main(["--socket", "/s", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == STATUS
    assert sent == [("/s", {"command": "status", "args": {}}, ctl.SHORT_TIMEOUT)]


def test_refusal_exits_1_with_the_reason_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(path: str, req: dict[str, Any], timeout: float) -> dict[str, Any]:
        return {"ok": False, "error": "permission denied: uid 1000 is not root"}

    monkeypatch.setattr(ctl, "send", refuse)
    assert ctl.main(["restart", "web"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "pidone ctl: permission denied: uid 1000 is not root\n"
