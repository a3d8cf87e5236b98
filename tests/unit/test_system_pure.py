"""The pure helpers of system.py: which signals are forwarded, exit statuses."""

from __future__ import annotations

import signal

import pytest

from pidone.system import exit_status, forwardable_signals


def test_forwarded_signals_are_1_to_31_minus_the_exceptions_plus_realtime() -> None:
    never = {
        signal.SIGCHLD,
        signal.SIGKILL,
        signal.SIGSTOP,
        signal.SIGTTIN,
        signal.SIGTTOU,
        signal.SIGSEGV,
        signal.SIGBUS,
        signal.SIGILL,
        signal.SIGFPE,
        signal.SIGABRT,
        signal.SIGTRAP,
        signal.SIGSYS,
    }
    expected = {s for s in range(1, 32) if s not in never}
    expected |= set(range(signal.SIGRTMIN, signal.SIGRTMAX + 1))
    got = forwardable_signals()
    assert len(got) == len(set(got))
    assert set(got) == expected
    assert {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTSTP} <= set(got)
    assert {signal.SIGCONT, signal.SIGWINCH, signal.SIGPIPE, signal.SIGUSR1} <= set(got)


@pytest.mark.parametrize(
    ("wait_status", "expected"),
    [(0, 0), (7 << 8, 7), (255 << 8, 255), (signal.SIGTERM, 143), (signal.SIGKILL, 137)],
)
def test_exit_status_follows_the_shell_convention(wait_status: int, expected: int) -> None:
    assert exit_status(wait_status) == expected
