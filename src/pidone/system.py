"""The one module that touches the OS: fork/exec, signals, reaping.

It imports only C modules (`_signal` instead of `signal`, which pulls in enum)
so that single-command mode stays about as small as a bare interpreter.
Every function is a verb and an object, like tini's `reap_zombies`.
"""

from __future__ import annotations

import _signal
import errno
import os
import sys

# `typing` and `collections.abc` cost memory at run time; mypy still sees them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

NSIG: int = _signal.NSIG
SIGCHLD: int = _signal.SIGCHLD
SIGKILL: int = _signal.SIGKILL
SIGTERM: int = _signal.SIGTERM
SIGTTIN: int = _signal.SIGTTIN
SIGTTOU: int = _signal.SIGTTOU

# Signals an init must not forward: the ones it cannot catch, job-control
# signals for its own tty, and faults that concern its own address space.
_NOT_FORWARDED = frozenset(
    getattr(_signal, name)
    for name in [
        "SIGCHLD",
        "SIGKILL",
        "SIGSTOP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGFPE",
        "SIGILL",
        "SIGSEGV",
        "SIGBUS",
        "SIGABRT",
        "SIGTRAP",
        "SIGSYS",
    ]
)

_ALL_SIGNALS = range(1, NSIG)


def forwardable_signals() -> list[int]:
    """Every signal an init should catch and pass on: 1..31 minus the
    exceptions above, plus the real-time signals glibc leaves to programs."""
    standard = [s for s in range(1, 32) if s not in _NOT_FORWARDED]
    realtime = list(range(_signal.SIGRTMIN, _signal.SIGRTMAX + 1))
    return standard + realtime


def _ignore_signal(signum: int, frame: object) -> None:
    """A real handler (not SIG_IGN): the kernel drops signals to PID 1 that
    have no handler. The work happens on the wakeup fd, not here."""


def install_signal_wakeup(signals: Iterable[int]) -> int:
    """Catch `signals`, and return a blocking fd that yields one byte (the
    signal number) per delivery. Nothing is blocked, so children inherit an
    empty mask; SIGTTIN/SIGTTOU are ignored so a background init never stops."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    os.set_blocking(read_fd, True)
    _signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    wanted = list(signals)
    for signum in wanted:
        _signal.signal(signum, _ignore_signal)
    for signum in (SIGTTIN, SIGTTOU):
        _signal.signal(signum, _signal.SIG_IGN)
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, wanted)
    return read_fd


def original_environ() -> dict[bytes, bytes] | None:
    """The environment we were started with, as the kernel recorded it.

    CPython changes its own environment at start-up (PEP 538 sets
    LC_CTYPE=C.UTF-8 under the C locale); a child must get what we got, not
    that. /proc/self/environ is the untouched original. None if unreadable.
    """
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    env = {}
    for entry in raw.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep and key:
            env[key] = value
    return env


def become_subreaper() -> None:
    """Adopt orphans of our descendants, as PID 1 does, when we are not PID 1."""
    import _prctl  # the C half of python-prctl; cheap to import

    _prctl.prctl(_prctl.PR_SET_CHILD_SUBREAPER, 1)


def exit_status(wait_status: int) -> int:
    """Shell convention: the exit code, or 128+N when killed by signal N."""
    code = os.waitstatus_to_exitcode(wait_status)
    return code if code >= 0 else 128 - code


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


def send_signal(pid: int, signum: int, *, group: bool = False) -> bool:
    """Signal a process (or its process group); False if it is already gone."""
    try:
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | Mapping[bytes, bytes] | None = None,
    cwd: str | None = None,
    foreground_tty: bool = False,
    fds: Mapping[int, int] | None = None,
    prepare: Callable[[], None] | None = None,
) -> int:
    """Fork and exec `argv` as the leader of a new process group.

    The child starts with default signal dispositions and an empty signal
    mask. `fds` maps child fd -> our fd (dup2'd). `prepare` runs in the child
    just before exec (identity switch, prctl, ...). Exec failures come back
    over a close-on-exec pipe and raise SpawnError here, so the caller knows
    the exact reason; the failed child is reaped by the caller's reaper.
    """
    from pidone.errors import SpawnError

    err_read, err_write = os.pipe2(os.O_CLOEXEC)
    # Block everything across fork: a signal meant for us must not run our
    # handlers in the child (they would write to our wakeup fd).
    saved_mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
    try:
        pid = os.fork()
    except BaseException:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, saved_mask)
        os.close(err_read)
        os.close(err_write)
        raise
    if pid == 0:  # pragma: no cover - runs in the child, reported over err_write
        os.close(err_read)
        _exec_child(argv, env, cwd, foreground_tty, fds, prepare, err_write)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, saved_mask)
    os.close(err_write)
    report = b""
    while chunk := _read_retrying(err_read):
        report += chunk
    os.close(err_read)
    if not report:
        return pid
    code, _, message = report.decode("utf-8", "replace").partition(":")
    err = int(code)
    exit_code = 127 if err in (errno.ENOENT, errno.ENOTDIR) else 126
    raise SpawnError(message, err, exit_code)


def _read_retrying(fd: int) -> bytes:
    while True:
        try:
            return os.read(fd, 4096)
        except InterruptedError:  # pragma: no cover - PEP 475 retries already
            continue


def _exec_child(
    argv: Sequence[str],
    env: Mapping[str, str] | Mapping[bytes, bytes] | None,
    cwd: str | None,
    foreground_tty: bool,
    fds: Mapping[int, int] | None,
    prepare: Callable[[], None] | None,
    err_write: int,
) -> None:  # pragma: no cover - runs in the forked child
    step = "setup"
    try:
        _signal.set_wakeup_fd(-1)
        step = "setpgid"
        os.setpgid(0, 0)
        if foreground_tty:
            step = "tcsetpgrp"
            try:
                os.tcsetpgrp(0, os.getpid())
            except OSError:
                pass  # stdin is not our controlling terminal: nothing to hand over
        for signum in _ALL_SIGNALS:
            try:
                _signal.signal(signum, _signal.SIG_DFL)
            except (OSError, ValueError, RuntimeError):
                pass  # SIGKILL, SIGSTOP and glibc's reserved 32/33
        if fds:
            step = "dup2"
            for target, source in fds.items():
                os.dup2(source, target, inheritable=True)
        if cwd is not None:
            step = f"chdir {cwd}"
            os.chdir(cwd)
        if prepare is not None:
            step = "prepare"
            prepare()
        _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
        step = f"exec {argv[0]}"
        if env is None:
            os.execvp(argv[0], list(argv))
        else:
            os.execvpe(argv[0], list(argv), env)
    except OSError as exc:
        reason = f"{step}: {exc.strerror or exc}"
        _report_and_exit(err_write, exc.errno or errno.EINVAL, reason)
    except BaseException as exc:
        _report_and_exit(err_write, errno.EINVAL, f"{step}: {exc}")


def _report_and_exit(err_write: int, err: int, reason: str) -> None:  # pragma: no cover
    try:
        os.write(err_write, f"{err}:{reason}".encode())
    finally:
        os._exit(127 if err in (errno.ENOENT, errno.ENOTDIR) else 126)


def write_stderr(text: str) -> None:
    """Unbuffered write to fd 2 that never raises (the init must go on)."""
    try:
        os.write(2, text.encode("utf-8", "replace"))
    except OSError:
        pass


def is_pid1() -> bool:
    return os.getpid() == 1


def stdin_is_tty() -> bool:
    try:
        return os.isatty(0)
    except OSError:
        return False


def exit_now(code: int) -> None:
    """Flush and exit without waiting for anything else."""
    sys.stdout.flush()
    os._exit(code)
