"""pidone's own process: its parent-death signal, threads that take no
signal, stderr, pid 1, exit.
"""

from __future__ import annotations

import _signal
import os
import sys

# `typing` and `collections.abc` cost memory at run time; mypy still sees them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable
    from typing import NoReturn


def set_parent_death_signal(signum: int) -> None:
    """Have the kernel send us `signum` when our parent dies (PR_SET_PDEATHSIG).
    A parent gone before the call is treated as if it died right after it."""
    import _prctl

    parent = os.getppid()
    _prctl.prctl(_prctl.PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent:
        os.kill(os.getpid(), signum)


def start_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """A daemon thread that never takes a signal meant for pidone: the kernel
    hands a process-directed signal to any thread that does not block it.
    (threading is imported here: single-command mode never loads it.)"""
    import threading

    thread = threading.Thread(target=target, name=name, daemon=True)
    saved = _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
    try:
        thread.start()
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, saved)
    return thread


def write_stderr(text: str) -> None:
    """Unbuffered write to fd 2 that never raises (the init must go on)."""
    try:  # noqa: SIM105 - contextlib would load into single mode (tests/unit/test_lean_imports.py)
        os.write(2, text.encode("utf-8", "replace"))
    except OSError:
        pass


def log_to_stderr(message: str) -> None:
    """One "pidone: message" line on fd 2 (write_stderr: never raises)."""
    write_stderr(f"pidone: {message}\n")


def is_pid1() -> bool:
    return os.getpid() == 1


def exit_now(code: int) -> NoReturn:
    """Flush and exit without waiting for anything else."""
    sys.stdout.flush()
    os._exit(code)


def own_stdin(devnull: int) -> tuple[int, str]:
    """A close-on-exec copy of pidone's fd 0 for the processes with `stdin =
    true` (each gets it as its fd 0; they share one open file, so several
    readers split what comes), and a line to log: why they get `devnull`
    instead (no fd 0), or that it is pidone's controlling terminal, which a
    supervised process cannot read (it runs in a process group of its own,
    in the background of that terminal: a read stops it with SIGTTIN, or
    fails with EIO)."""
    try:
        fd = os.dup(0)
    except OSError as exc:
        return devnull, f"stdin = true: pidone has no stdin ({exc.strerror}): /dev/null instead"
    try:
        os.tcgetpgrp(fd)  # only the controlling terminal has one for us
    except OSError:
        return fd, ""  # not a terminal, or another one: any group may read it
    else:
        return fd, (
            "stdin = true: pidone's stdin is a terminal, and a supervised process reads it"
            " from the background (its own process group): a read stops it (SIGTTIN);"
            " give pidone a pipe or a file (docker run -i, without -t)"
        )
