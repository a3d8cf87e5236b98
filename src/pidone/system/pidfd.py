"""Adopting a pidfile daemon that outlived an earlier pidone (not PID 1).

A daemon reparented away from a pidone that was SIGKILLed is no child of
the next pidone: it cannot be waited for, and its pid may be reused once it
is gone. A pidfd (pidfd_open, Linux 5.3) names the process itself: it
becomes readable when the process exits (the loop's selector), and
pidfd_send_signal never reaches another process that got the same pid.
The exit status is the parent's to collect: a non-parent never learns it.
"""

from __future__ import annotations

import os
import signal

from pidone.system import proc
from pidone.system.signals import kill_group

# `typing` and `collections.abc` cost memory at run time; mypy still sees them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


def adopt(
    path: str, uid: int, exes: frozenset[tuple[int, int]], taken: Iterable[int]
) -> tuple[int, int] | str:
    """(pid, pidfd) of the live process the pidfile at `path` names, if it
    really is the daemon (proc.stranger: its real uid is `uid`, it runs one
    of `exes`); else why not ("" when there is no pid to look at: no file,
    empty, or its pid is gone).

    The identity is checked again once the pidfd is open, and the pidfd
    then shown to be alive: a pid reused between the read and pidfd_open
    names the newcomer, which must pass the check itself, or, if the
    process we opened died meanwhile, the pidfd says so."""
    pid, unreadable = proc.read_pidfile(path)
    if pid is None:
        return unreadable
    problem = proc.stranger(pid, uid, exes, taken)
    if problem is not None:
        return "" if problem.endswith(proc.NOT_RUNNING) else problem
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return ""
    except OSError as exc:
        return f"pidfd_open({pid}): {exc.strerror}"
    os.set_inheritable(fd, False)
    problem = verify(pid, fd, uid, exes, taken)
    if problem is not None:
        os.close(fd)
        return "" if problem.endswith(proc.NOT_RUNNING) else problem
    return pid, fd


def verify(
    pid: int, fd: int, uid: int, exes: frozenset[tuple[int, int]], taken: Iterable[int]
) -> str | None:
    """Is the process `fd` (opened for `pid`) the daemon? Its identity read
    through /proc/PID, then the pidfd shown alive: alive after the read, it
    held the pid all along, so what was read was its own."""
    problem = proc.stranger(pid, uid, exes, taken)
    if problem is None and not send(fd, 0):
        problem = f"pid {pid} {proc.NOT_RUNNING}"
    return problem


def send(fd: int, signum: int) -> bool:
    """pidfd_send_signal; False once the process is gone."""
    try:
        signal.pidfd_send_signal(fd, signum)
    except ProcessLookupError:
        return False
    return True


def send_signal(pid: int, fd: int, signum: int, *, group: bool = False) -> bool:
    """signals.send_signal for an adopted process: its group by killpg (a
    group's number is not reused while the group has a member), the
    process itself through its pidfd."""
    if not send(fd, 0):
        return False  # gone: its pid, a group's number too, may be another's now
    reached = False
    if group:
        reached = kill_group(pid, signum)
        try:
            if os.getpgid(pid) == pid:
                return True  # the killpg reached it
        except ProcessLookupError:
            return reached
    return send(fd, signum) or reached
