"""Starting a child: posix_spawn (posix_spawn.py) when nothing needs a fork, else fork and exec
with the identity switch in the child; errors come back through a pipe. And
`sh -n` for pidone check (shell_syntax).
"""

from __future__ import annotations

import _signal
import errno
import os

from pidone.system.reap import exit_status
from pidone.system.signals import ALL_SIGNALS

# `typing` and `collections.abc` cost memory at run time; mypy still sees them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from pidone.errors import SpawnError


SHELL_SYNTAX_OUTPUT = 4096  # bytes of what sh says: its first line is the message


def shell_syntax(script: str, timeout: float) -> str | None:
    """What `/bin/sh -n -c SCRIPT` says when it cannot parse the script (-n
    parses and runs nothing), or None: it parsed, or sh could not judge
    within `timeout` seconds (then it is killed and reaped: no verdict)."""
    import select  # only config loads with a shell command pay for these
    import time

    read_end, write_end = os.pipe()
    try:
        pid = os.posix_spawn(
            "/bin/sh",
            ["/bin/sh", "-n", "-c", script],
            {"PATH": os.defpath, "LC_ALL": "C"},
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_DUP2, write_end, 2),
                (os.POSIX_SPAWN_CLOSE, read_end),
            ],
            setsigmask=(),
        )
    except OSError:
        os.close(read_end)
        return None
    finally:
        os.close(write_end)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        poller = select.poll()
        poller.register(read_end, select.POLLIN)
        while len(output) < SHELL_SYNTAX_OUTPUT:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                os.kill(pid, 9)  # no verdict in time: it is ours, unreaped, so still it
                os.waitpid(pid, 0)
                return None
            chunk = os.read(read_end, SHELL_SYNTAX_OUTPUT - len(output))
            if not chunk:
                break
            output += chunk
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)  # stderr closed: it has exited or is exiting
    if os.waitstatus_to_exitcode(status) == 0:
        return None
    line = output.decode(errors="replace").strip().partition("\n")[0]
    line = line.removeprefix("/bin/sh: ")
    number, colon, rest = line.partition(": ")  # dash's "1: Syntax error: ..."
    if colon and number.isdigit():
        line = rest
    return line or f"it exited with status {exit_status(status)}"


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | Mapping[bytes, bytes] | None = None,
    cwd: str | None = None,
    foreground_tty: bool = False,
    fds: Mapping[int, int] | None = None,
    prepare: Callable[[], None] | None = None,
    listen_fds: Sequence[tuple[int, str]] = (),
    fast: bool = False,
    new_group: bool = True,
    pid_namespace: bool = False,
) -> int:
    """Start `argv` as the leader of a new process group (or, `new_group`
    False, in ours: dumb-init's --single-child); return its pid.

    The child starts with default signal dispositions and an empty signal
    mask. `fds` maps child fd -> our fd (dup2'd). `prepare` runs in the child
    just before exec (identity switch, prctl, ...). `cwd` is entered in the
    child. Exec failures raise SpawnError here, with the exact reason.
    `listen_fds` [(fd, name), ...] are passed by systemd's socket-activation
    protocol: as fds 3, 4, ... with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID
    (the child's own pid, known only in the child) added to `env`.

    `fast`: for a caller that spawns again and again (the supervisor's
    restarts), posix_spawn(3) when it can do all of it (system/posix_spawn.py;
    PIDONE_POSIX_SPAWN=0 turns it off). Its child borrows our memory until it
    execs: no page tables copied, no Python run in a child faulting in copied pages.
    About 0.15 ms instead of 2 for pidone run's interpreter on an idle
    machine, and the fork path's cost grows with load. It loads ctypes
    (about 50 KiB more in pidone run), which single-command mode, spawning
    once, does without.

    `pid_namespace`: the child is PID 1 of a new PID namespace with its own
    /proc (system/namespaces.py); always forked, as posix_spawn cannot mount.
    """
    if fast and new_group and not pid_namespace:
        from pidone.system import posix_spawn  # the fast path: ctypes only for it

        spawner = posix_spawn.spawner()
        if spawner is not None and posix_spawn.fits(
            prepare=prepare,
            foreground_tty=foreground_tty,
            listen_fds=listen_fds,
            cwd=cwd,
            can_chdir=spawner.can_chdir,
        ):
            pid = spawner.spawn(argv, env, cwd, fds or {})
            if pid is not None:
                return pid
    return _fork_exec(
        argv, env, cwd, foreground_tty, fds, prepare, listen_fds, new_group, pid_namespace
    )


def spawn_error(err: int, reason: str) -> SpawnError:
    from pidone.errors import SpawnError

    return SpawnError(reason, err, 127 if err in (errno.ENOENT, errno.ENOTDIR) else 126)


def _fork_exec(
    argv: Sequence[str],
    env: Mapping[str, str] | Mapping[bytes, bytes] | None,
    cwd: str | None,
    foreground_tty: bool,
    fds: Mapping[int, int] | None,
    prepare: Callable[[], None] | None,
    listen_fds: Sequence[tuple[int, str]],
    new_group: bool = True,
    pid_namespace: bool = False,
) -> int:
    """spawn() by fork and exec. Exec failures come back over a close-on-exec
    pipe; the failed child is reaped by the caller's reaper."""
    reserved = _ignored_reserved_signals()
    own_namespace = -1
    if pid_namespace:
        from pidone.system import namespaces

        own_namespace = namespaces.enter_new_pid_namespace()
    try:
        err_read, err_write = os.pipe2(os.O_CLOEXEC)
    except BaseException:
        if pid_namespace:
            namespaces.leave_pid_namespace(own_namespace)
        raise
    # Block everything across fork: a signal meant for us must not run our
    # handlers in the child (the caught ones are blocked already; this is
    # for the rest, and for callers that never called catch_signals).
    saved_mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
    try:
        pid = os.fork()
    except BaseException:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, saved_mask)
        os.close(err_read)
        os.close(err_write)
        if pid_namespace:
            namespaces.leave_pid_namespace(own_namespace)
        raise
    if pid != 0 and pid_namespace:  # pidone's next forks: in its own namespace again
        try:
            namespaces.leave_pid_namespace(own_namespace)
        except OSError:
            os.kill(pid, 9)  # ours, unreaped: the caller's reaper collects it
            _signal.pthread_sigmask(_signal.SIG_SETMASK, saved_mask)
            os.close(err_read)
            os.close(err_write)
            raise
    if pid == 0:  # pragma: no cover - runs in the child, reported over err_write
        os.close(err_read)
        _exec_child(
            argv,
            env,
            cwd,
            foreground_tty,
            fds,
            prepare,
            listen_fds,
            reserved,
            err_write,
            new_group,
            pid_namespace,
        )
    _signal.pthread_sigmask(_signal.SIG_SETMASK, saved_mask)
    os.close(err_write)
    report = b""
    while chunk := _read_retrying(err_read):
        report += chunk
    os.close(err_read)
    if not report:
        return pid
    code, _, message = report.decode("utf-8", "replace").partition(":")
    raise spawn_error(int(code), message)


def encode_for_exec(
    argv: Sequence[str], env: Mapping[str, str] | Mapping[bytes, bytes] | None
) -> tuple[list[bytes], list[bytes] | None] | None:
    """argv and env as exec takes them, or None for what os.execvpe refuses
    (in the fork path that error is reported)."""
    try:
        args = [os.fsencode(a) for a in argv]
        entries = None
        if env is not None:
            entries = []
            for key, value in env.items():
                k, v = os.fsencode(key), os.fsencode(value)
                if not k or b"=" in k[1:] or b"\0" in k or b"\0" in v:
                    return None
                entries.append(k + b"=" + v)
    except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
        return None
    if not args or not args[0] or any(b"\0" in a for a in args):
        return None
    return args, entries


def chdir_problem(cwd: str) -> OSError | None:
    """Why the child could not enter `cwd` (posix_spawn's error does not say
    whether it was chdir or exec that failed), or None if it could."""
    import stat

    try:
        st = os.stat(cwd)
    except OSError as exc:
        return exc
    if not stat.S_ISDIR(st.st_mode):
        return OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    if not os.access(cwd, os.X_OK):
        return OSError(errno.EACCES, os.strerror(errno.EACCES))
    return None


_RESERVED: list[list[int]] = []  # computed once: see _ignored_reserved_signals


def _ignored_reserved_signals() -> list[int]:
    """Signals 32 and 33 belong to glibc, whose sigaction() refuses them, so
    an ignored disposition inherited for them would pass on to the child.
    Which of them were we started with ignored? (Usually none.)"""
    if not _RESERVED:
        try:
            with open("/proc/self/status", "rb") as f:
                line = next(ln for ln in f if ln.startswith(b"SigIgn:"))
            ignored = int(line.split()[1], 16)
        except (OSError, StopIteration, ValueError):
            ignored = 0
        _RESERVED.append([sig for sig in (32, 33) if ignored & (1 << (sig - 1))])
    return _RESERVED[0]


def _reset_reserved(signals: list[int]) -> None:  # pragma: no cover - runs in the child
    """Reset them with the raw rt_sigaction syscall. ctypes is imported here,
    in the child, so that pidone itself never carries it (about 2 MiB)."""
    import ctypes

    syscall_nr = {"x86_64": 13, "aarch64": 134}.get(os.uname().machine)
    if syscall_nr is None:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    default = ctypes.create_string_buffer(64)  # all zeros: SIG_DFL, in every arch's layout
    for sig in signals:
        libc.syscall(syscall_nr, sig, default, None, 8)


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
    listen_fds: Sequence[tuple[int, str]],
    reserved: list[int],
    err_write: int,
    new_group: bool = True,
    pid_namespace: bool = False,
) -> None:  # pragma: no cover - runs in the forked child
    step = "setup"
    try:
        _signal.set_wakeup_fd(-1)
        if new_group:
            step = "setpgid"
            os.setpgid(0, 0)
        if foreground_tty and new_group:
            step = "tcsetpgrp"
            try:  # noqa: SIM105 - in the forked child: no import, no context manager
                os.tcsetpgrp(0, os.getpid())
            except OSError:
                pass  # stdin is not our controlling terminal: nothing to hand over
        for signum in ALL_SIGNALS:
            try:  # noqa: SIM105 - in the forked child: no import, no context manager
                _signal.signal(signum, _signal.SIG_DFL)
            except (OSError, ValueError, RuntimeError):
                pass  # SIGKILL, SIGSTOP and glibc's reserved 32/33
        if reserved:
            _reset_reserved(reserved)
        if fds:
            step = "dup2"
            for target, source in fds.items():
                os.dup2(source, target, inheritable=True)
        if listen_fds:
            step = "passing sockets"
            import fcntl

            # our error pipe must not be overwritten by a socket's new fd
            err_write = fcntl.fcntl(err_write, fcntl.F_DUPFD_CLOEXEC, 3 + len(listen_fds))
            env = _pass_sockets(listen_fds, env)
        if pid_namespace:  # with pidone's privileges still: `prepare` may drop them
            step = "pid namespace"
            from pidone.system import namespaces

            namespaces.mount_own_proc()
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


def _pass_sockets(
    listen_fds: Sequence[tuple[int, str]], env: Mapping[str, str] | Mapping[bytes, bytes] | None
) -> dict[str, str]:  # pragma: no cover - runs in the forked child
    """dup2 the sockets to 3, 4, ... and say so in the environment."""
    import fcntl  # a C module, and only in children that get sockets

    # Move them above their targets first: a source may sit where another goes.
    above = 3 + len(listen_fds)
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, above) for fd, _ in listen_fds]
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i, inheritable=True)
        os.close(fd)
    new_env = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in (env if env is not None else os.environ).items()
    }
    new_env["LISTEN_FDS"] = str(len(listen_fds))
    new_env["LISTEN_PID"] = str(os.getpid())
    new_env["LISTEN_FDNAMES"] = ":".join(name for _, name in listen_fds)
    return new_env


def _report_and_exit(err_write: int, err: int, reason: str) -> None:  # pragma: no cover
    try:
        os.write(err_write, f"{err}:{reason}".encode())
    finally:
        os._exit(127 if err in (errno.ENOENT, errno.ENOTDIR) else 126)
