"""Signals: which ones an init forwards, catching them (signalfd, or a blocked
mask and sigtimedwait), waking the loop, and sending them to a pid or a group
(never pid 1, pidone, or a pid <= 0).
"""

from __future__ import annotations

import _signal
import os

from pidone.system.proc import descendants
from pidone.system.process import is_pid1

# `typing` and `collections.abc` cost memory at run time; mypy still sees them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


NSIG: int = _signal.NSIG
SIGCHLD: int = _signal.SIGCHLD
SIGKILL: int = _signal.SIGKILL
SIGSTOP: int = _signal.SIGSTOP
SIGTERM: int = _signal.SIGTERM
SIGINT: int = _signal.SIGINT
SIGCONT: int = _signal.SIGCONT
SIGTSTP: int = _signal.SIGTSTP
SIGTTIN: int = _signal.SIGTTIN
SIGTTOU: int = _signal.SIGTTOU

# The signals a fault in a process's own code raises. Sent with kill() they are
# plain messages (single-command mode forwards them); raised by a real fault the
# kernel delivers them even when blocked, resetting the handler: the process dies.
FAULT_SIGNALS = frozenset(
    getattr(_signal, name)
    for name in ["SIGFPE", "SIGILL", "SIGSEGV", "SIGBUS", "SIGABRT", "SIGTRAP", "SIGSYS"]
)

# Signals an init must not forward: the ones it cannot catch, job-control
# signals for its own tty, and faults that concern its own address space.
_NOT_FORWARDED = frozenset([SIGCHLD, SIGKILL, SIGSTOP, SIGTTIN, SIGTTOU, *FAULT_SIGNALS])

ALL_SIGNALS = range(1, NSIG)


def forwardable_signals() -> list[int]:
    """Every signal an init should catch and pass on: 1..31 minus the
    exceptions above, plus the real-time signals glibc leaves to programs."""
    standard = [s for s in range(1, 32) if s not in _NOT_FORWARDED]
    realtime = list(range(_signal.SIGRTMIN, _signal.SIGRTMAX + 1))
    return standard + realtime


def _ignore_signal(signum: int, frame: object) -> None:
    """A real handler (not SIG_IGN), for a signal that is ever unblocked: the
    kernel drops signals to PID 1 that have no handler."""


# What catch_signals() blocked, and the thread that takes them.
_caught: frozenset[int] = frozenset()
_main_thread = 0
SI_TKILL = -6  # si_code of a signal sent to one thread (wake_loop)
_SIGINFO = 128  # sizeof(struct signalfd_siginfo)


def catch_signals(signals: Iterable[int]) -> None:
    """Catch `signals` by blocking them: each waits in the kernel until
    taken, with wait_signal() or from a signal_fd().

    Nothing is lost or starved on our side. The kernel keeps one pending
    instance of each standard signal (SIGCHLD included: an exit is never
    missed) and queues every real-time one, up to RLIMIT_SIGPENDING. It
    hands standard signals out first, so a child's exit comes before any
    flood of real-time signals; and since no handler runs per delivery, a
    flood cannot keep pidone from running. (A handler that CPython runs
    later writes one byte per delivery to a pipe, drops it when the pipe
    is full, and a flood kept the main thread in handlers until it ended.)
    spawn() gives children an empty mask and default dispositions; side
    threads block everything (start_thread). SIGTTIN/SIGTTOU are ignored
    unless caught (blocked counts as ignored for the terminal too), so a
    background init never stops on its own output.
    """
    global _caught, _main_thread
    import _thread

    wanted = frozenset(signals)
    for signum in wanted:
        _signal.signal(signum, _ignore_signal)
    for signum in (SIGTTIN, SIGTTOU):
        if signum not in wanted:
            _signal.signal(signum, _signal.SIG_IGN)
    _signal.pthread_sigmask(_signal.SIG_BLOCK, wanted)
    _caught = wanted
    _main_thread = _thread.get_ident()


def wait_signal() -> tuple[int, int, int]:
    """Block until a caught signal is pending and take it: (signo, si_code, si_pid)."""
    info = _signal.sigwaitinfo(_caught)
    return info.si_signo, info.si_code, info.si_pid


def monotonic() -> float:
    import time

    return time.monotonic()


def wait_signal_until(deadline: float) -> tuple[int, int, int] | None:
    """wait_signal(), but None once time.monotonic() reaches `deadline`."""
    left = max(0.0, deadline - monotonic())
    info = _signal.sigtimedwait(_caught, left)  # type: ignore[attr-defined]
    return None if info is None else (info.si_signo, info.si_code, info.si_pid)


def signal_fd() -> int:
    """A non-blocking fd yielding the caught signals (signalfd(2)), for a
    loop that sleeps in select(). Raises OSError (or ImportError: ctypes)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    word = 8 * ctypes.sizeof(ctypes.c_ulong)
    mask = (ctypes.c_ulong * (1024 // word))()  # sigset_t: signal n at bit n - 1
    for signum in _caught:
        mask[(signum - 1) // word] |= 1 << ((signum - 1) % word)
    libc.signalfd.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    fd: int = libc.signalfd(-1, mask, os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"signalfd: {os.strerror(err)}")
    return fd


def read_signals(fd: int, limit: int = 256) -> list[tuple[int, int, int]]:
    """Take up to `limit` pending signals from a signal_fd():
    [(signo, si_code, si_pid), ...]; BlockingIOError if none."""
    import struct

    data = os.read(fd, _SIGINFO * limit)
    return [(signo, code, pid) for signo, _, code, pid in struct.iter_unpack("=IiiI112x", data)]


def is_wake(code: int, pid: int) -> bool:
    """Is this SIGCHLD wake_loop()'s, not a child's?"""
    return code == SI_TKILL and pid == os.getpid()


def wake_loop() -> None:
    """Make the main thread's wait for signals return, from any thread: a
    SIGCHLD to that thread alone, which only makes it reap (a real SIGCHLD
    pending already makes it merge: it reaps either way). Never raises."""
    if not _main_thread:
        return  # catch_signals() not called: nobody waits (and 0 is no thread)
    try:  # noqa: SIM105 - contextlib would load into single mode
        _signal.pthread_kill(_main_thread, SIGCHLD)
    except (OSError, ValueError):
        pass


def signal_everyone_else(signum: int) -> None:
    """Signal every process left in the container but us: as PID 1 that is
    kill(-1); as a subreaper only our own descendants, never the host's."""
    if is_pid1():
        try:  # noqa: SIM105 - contextlib would load into single mode
            os.kill(-1, signum)
        except ProcessLookupError:
            pass
        return
    for pid in descendants(os.getpid()):
        send_signal(pid, signum)


def send_signal(pid: int, signum: int, *, group: bool = False) -> bool:
    """Signal a process (or its process group); False if it is already gone.

    `group`: the group led by pid, and the process itself when it leads no
    group (a daemon that left its launcher's group; killpg would say ESRCH)
    or another one. Never pid 1, pidone or a pid <= 0 (which kill() takes
    for "everyone" or "my group"): refused, False."""
    if pid <= 1 or pid == os.getpid():
        return False
    reached = False
    if group:
        reached = kill_group(pid, signum)
        try:
            if os.getpgid(pid) == pid:
                return True  # the killpg reached it
        except ProcessLookupError:
            return reached
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return reached
    return True


def kill_group(pgid: int, signum: int) -> bool:
    """Signal process group `pgid` only, never a process by that pid (its
    leader may be reaped and the number reused); False if the group is
    empty. Never pidone's own group or a pgid <= 1."""
    if pgid <= 1 or pgid in (os.getpid(), os.getpgid(0)):
        return False
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True
