"""Children that ended: reaping them, their exit status, becoming a subreaper."""

from __future__ import annotations

import os


def has_exited(pid: int) -> bool:
    """Has our child `pid` exited? It stays a zombie (its pid and process group
    number cannot be reused) until reap_zombies() collects it."""
    try:
        found = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return found is not None


def become_subreaper() -> None:
    """Adopt orphans of our descendants, as PID 1 does, when we are not PID 1."""
    import _prctl  # the C half of python-prctl; cheap to import

    _prctl.prctl(_prctl.PR_SET_CHILD_SUBREAPER, 1)


def decode_status(wait_status: int) -> tuple[int, int]:
    """(shell-style status, killing signal or 0) from a raw wait status: the
    exit code, or 128+N when killed by signal N. Pure: the core uses it too."""
    code = os.waitstatus_to_exitcode(wait_status)
    if code < 0:
        return 128 - code, -code
    return code, 0


def exit_status(wait_status: int) -> int:
    """Shell convention: the exit code, or 128+N when killed by signal N."""
    return decode_status(wait_status)[0]


def reap_zombies() -> list[tuple[int, int]]:
    """Collect every child that has exited: [(pid, wait status), ...]."""
    reaped = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        reaped.append((pid, status))
    return reaped


def has_children() -> bool:
    """Is any child left, running or zombie? (Looks without reaping.)"""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True
