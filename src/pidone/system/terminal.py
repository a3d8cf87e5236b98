"""Job control on the terminal: handing it to the child's group and back,
stopping with the child as a job does (a shell's fg and bg).
"""

from __future__ import annotations

import _signal
import os

from pidone.system.process import is_pid1
from pidone.system.signals import SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU


def stop_self() -> bool:
    """Stop as a job does, until SIGCONT (a shell's `fg` or `bg`); False if not.

    Any stop signal makes the kernel discard a pending SIGCONT, so none is sent
    while one waits to be forwarded (the job was continued already), nor as a
    namespace's PID 1, which the kernel never stops from inside."""
    if is_pid1() or SIGCONT in _signal.sigpending():
        return False
    os.kill(os.getpid(), SIGSTOP)
    return True


def in_foreground() -> bool:
    """Is stdin a terminal whose foreground process group is ours? Only then is
    it ours to hand to the child: a job a shell started with `&`, or moved on
    with `bg`, must not take the terminal from the shell."""
    try:
        return os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def give_terminal_back(pgid: int) -> bool:
    """After SIGCONT: when a shell's `fg` made our group the terminal's
    foreground again, pass the terminal on to the child's group `pgid`, as at
    its start. (SIGTTOU is blocked: tcsetpgrp works from any group, so the
    check comes first.)"""
    if not in_foreground():
        return False
    try:
        os.tcsetpgrp(0, pgid)
    except OSError:
        return False
    return True


def stopped_by_terminal(pid: int) -> bool:
    """Has our child `pid` stopped on the terminal's job-control signal (Ctrl-Z,
    or a read from the background) while its group had the terminal? Each stop
    is reported once (waitid takes the report); a stop by plain SIGSTOP or by a
    kill from elsewhere is not the terminal's, and never counts."""
    try:
        info = os.waitid(os.P_PID, pid, os.WSTOPPED | os.WNOHANG)
    except ChildProcessError:
        return False
    if info is None or info.si_code != os.CLD_STOPPED:
        return False
    if info.si_status not in (SIGTSTP, SIGTTIN, SIGTTOU):
        return False
    try:
        return os.tcgetpgrp(0) == pid
    except OSError:
        return False
