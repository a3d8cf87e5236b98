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
    import threading
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any, NoReturn

    from pidone.config.identity import Identity
    from pidone.errors import SpawnError

NSIG: int = _signal.NSIG
SIGCHLD: int = _signal.SIGCHLD
SIGKILL: int = _signal.SIGKILL
SIGSTOP: int = _signal.SIGSTOP
SIGTERM: int = _signal.SIGTERM
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

_ALL_SIGNALS = range(1, NSIG)


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
    try:
        _signal.pthread_kill(_main_thread, SIGCHLD)
    except (OSError, ValueError):
        pass


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


def set_parent_death_signal(signum: int) -> None:
    """Have the kernel send us `signum` when our parent dies (PR_SET_PDEATHSIG).
    A parent gone before the call is treated as if it died right after it."""
    import _prctl

    parent = os.getppid()
    _prctl.prctl(_prctl.PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent:
        os.kill(os.getpid(), signum)


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


def exit_status(wait_status: int) -> int:
    """Shell convention: the exit code, or 128+N when killed by signal N."""
    code = os.waitstatus_to_exitcode(wait_status)
    return code if code >= 0 else 128 - code


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


def children_of(pid: int) -> list[int]:
    """Children of pid from the kernel's lists (CONFIG_PROC_CHILDREN): each
    thread lists the children it forked, so every thread's list is read."""
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found  # gone
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found.extend(int(child) for child in f.read().split())
        except OSError:
            pass  # the thread ended meanwhile
    return found


def descendants(pid: int) -> list[int]:
    """Live descendants of pid, from /proc's children lists (children first)."""
    found: list[int] = []
    queue = [pid]
    while queue:
        kids = children_of(queue.pop())
        found.extend(kids)
        queue.extend(kids)
    return found


def signal_everyone_else(signum: int) -> None:
    """Signal every process left in the container but us: as PID 1 that is
    kill(-1); as a subreaper only our own descendants, never the host's."""
    if is_pid1():
        try:
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


# --- pids from outside: a pidfile a supervised program writes --------------------

PIDFILE_MAX = 64  # bytes: a pid and some whitespace; anything longer is not a pidfile
PID_MAX_LIMIT = 4194304  # the kernel's ceiling for /proc/sys/kernel/pid_max
NOT_RUNNING = "is not running"  # how unfollowable() ends for a pid that is gone (stale)


def read_pidfile(path: str) -> tuple[int | None, str]:
    """(pid, "") from the pidfile at `path`; (None, "") while it is not there
    or still empty; (None, why) for a pidfile pidone refuses to read.

    It is opened without blocking (a FIFO would stall the loop in open())
    and without following a symlink at its last component (the program owns
    its directory: a link to /dev/zero or another user's file is refused),
    must be a regular file, and at most PIDFILE_MAX bytes of ASCII digits
    with surrounding whitespace are read."""
    import stat

    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None, ""
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "is a symlink; pidone follows no symlink as a pidfile"
        return None, f"cannot be opened: {exc.strerror}"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, "is not a regular file"
        data = os.read(fd, PIDFILE_MAX + 1)
    except OSError as exc:
        return None, f"cannot be read: {exc.strerror}"
    finally:
        os.close(fd)
    if len(data) > PIDFILE_MAX:
        return None, f"is longer than {PIDFILE_MAX} bytes"
    text = data.strip(b" \t\r\n")
    if not text:
        return None, ""
    if not all(0x30 <= c <= 0x39 for c in text):  # not str.isdigit: "¹⁵" is a digit there
        return None, f"holds {text[:20]!r}, not a pid"
    return int(text), ""


def pid_max() -> int:
    """The largest pid the kernel hands out."""
    try:
        with open("/proc/sys/kernel/pid_max", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return PID_MAX_LIMIT


def _parent_and_start(pid: int) -> tuple[int, int] | None:
    """(ppid, start time in clock ticks after boot) from /proc/PID/stat; None
    once the process is gone. The fields are counted after the last ")", as
    the command name in parentheses may hold spaces and parentheses itself."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read(4096).rpartition(b")")[2].split()
        return int(fields[1]), int(fields[19])  # stat(5): fields 4 and 22
    except (OSError, ValueError, IndexError):
        return None  # gone (or reaped between open and read)


def start_ticks(pid: int) -> int | None:
    """When pid started (clock ticks after boot): with the pid, it names one
    process for good, whatever pid reuse does. None once it is gone."""
    stat = _parent_and_start(pid)
    return None if stat is None else stat[1]


def executable(pid: int) -> tuple[int, int] | None:
    """(device, inode) of the file pid runs: the same program, whatever its
    path or argv[0] say. None if unknown (gone, or a kernel thread)."""
    try:
        st = os.stat(f"/proc/{pid}/exe")
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _uids(pid: int) -> tuple[int, int] | None:
    """(real, saved) uid of pid: the ones kill(2) compares a sender's with."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    real, _, saved, _ = (int(x) for x in line.split()[1:5])
                    return real, saved
    except (OSError, ValueError):
        pass
    return None


def program_file(name: str, search_path: str | None, cwd: str | None) -> tuple[int, int] | None:
    """(device, inode) of the program `name` names, searched in `search_path`
    as exec does: the launcher's executable when /proc can no longer tell
    (a launcher that exited at once is a zombie, whose exe link is gone)."""
    dirs = [""] if "/" in name else os.get_exec_path({"PATH": search_path or os.defpath})
    for directory in dirs:
        try:
            st = os.stat(os.path.join(cwd or "", directory, name))
        except OSError:
            continue
        return st.st_dev, st.st_ino
    return None


class Launcher:
    """What a pidfile process's launcher was, recorded when it was spawned
    (it is usually gone when the pidfile is read): its pid, its start time,
    its executables (see executable and program_file), and the uid its
    process runs as."""

    __slots__ = ("exes", "pid", "started", "uid")

    def __init__(
        self, pid: int, uid: int, program: str, search_path: str | None, cwd: str | None
    ) -> None:
        self.pid = pid
        self.started = start_ticks(pid)  # a zombie keeps it: it is ours to reap
        # What it runs now, and the program its command names: not the same
        # when it is /bin/sh about to exec that program (`exec prog $ARG`).
        named = program_file(program, search_path, cwd) if program else None
        self.exes = frozenset(exe for exe in (executable(pid), named) if exe is not None)
        self.uid = uid


def unfollowable(pid: int, launcher: Launcher, taken: Iterable[int] = ()) -> str | None:
    """THE trust rule for a pid from outside (a pidfile): None if pidone may
    follow and signal `pid` as the main process of `launcher`'s process,
    else why not.

    Never out of 2..pid_max, 1, pidone itself, or a pid another supervised
    process has (`taken`). Then either a live descendant of the launcher, or
    (a daemon that forked away and was reparented to pidone) pidone's own
    child that started no earlier than the launcher, runs the launcher's
    executable or is still in its process group, and that the process's
    user could signal itself (the uid kill(2) checks; any for root)."""
    if pid == 1:
        return "pid 1 is the init of the PID namespace"
    if pid == os.getpid():
        return f"pid {pid} is pidone itself"
    highest = pid_max()
    if not 2 <= pid <= highest:
        return f"pid {pid} is out of range (2..{highest})"
    if pid in taken:
        return f"pid {pid} belongs to another supervised process"
    alive = launcher.started is not None and start_ticks(launcher.pid) == launcher.started
    if alive and pid == launcher.pid:
        return None  # the program wrote its own pid and stayed in the foreground
    if alive and pid in descendants(launcher.pid):
        return _owned_by(pid, launcher.uid)
    stat = _parent_and_start(pid)
    if stat is None:
        return f"pid {pid} {NOT_RUNNING}"
    ppid, started = stat
    if ppid != os.getpid():
        return f"pid {pid} is neither a descendant of pid {launcher.pid} nor pidone's child"
    if launcher.started is None or started < launcher.started:
        return f"pid {pid} started before pid {launcher.pid}, its launcher"
    try:
        in_group = os.getpgid(pid) == launcher.pid
    except ProcessLookupError:
        return f"pid {pid} {NOT_RUNNING}"
    if not in_group and executable(pid) not in launcher.exes:
        return f"pid {pid} runs another program than pid {launcher.pid}, its launcher"
    return _owned_by(pid, launcher.uid)


def _owned_by(pid: int, uid: int) -> str | None:
    if uid == 0:
        return None  # root may signal any process
    uids = _uids(pid)
    if uids is None:
        return f"pid {pid} {NOT_RUNNING}"
    if uid not in uids:
        return f"pid {pid} belongs to uid {uids[0]}, not to uid {uid}"
    return None


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
    restarts), posix_spawn(3) when it can do all of it (see
    posix_spawn_fits). Its child borrows our memory until it execs: no
    page tables copied, no Python run in a child faulting in copied pages.
    About 0.15 ms instead of 2 for pidone run's interpreter on an idle
    machine, and the fork path's cost grows with load. It loads ctypes
    (about 50 KiB more in pidone run), which single-command mode, spawning
    once, does without.
    """
    spawner = _posix_spawner() if fast else None
    if (
        spawner is not None
        and new_group
        and posix_spawn_fits(
            prepare=prepare,
            foreground_tty=foreground_tty,
            listen_fds=listen_fds,
            cwd=cwd,
            can_chdir=spawner.can_chdir,
        )
    ):
        pid = spawner.spawn(argv, env, cwd, fds or {})
        if pid is not None:
            return pid
    return _fork_exec(argv, env, cwd, foreground_tty, fds, prepare, listen_fds, new_group)


def posix_spawn_fits(
    *,
    prepare: Callable[[], None] | None,
    foreground_tty: bool,
    listen_fds: Sequence[tuple[int, str]],
    cwd: str | None,
    can_chdir: bool,
) -> bool:
    """Can posix_spawn(3) start this child exactly as fork and exec would?

    It can make the process group, reset every signal disposition (glibc's
    32 and 33 included), empty the signal mask, dup2 the fds and enter
    `cwd` (with posix_spawn_file_actions_addchdir_np, glibc 2.29, musl
    1.1.24: `can_chdir`). Anything else runs in the child between fork and
    exec: `prepare` (user switch, rlimits, capabilities, umask, the
    parent-death signal), the terminal handed over (tcsetpgrp), and
    socket activation (LISTEN_PID is the child's own pid).
    """
    if prepare is not None or foreground_tty or listen_fds:
        return False
    return cwd is None or can_chdir


def _spawn_error(err: int, reason: str) -> SpawnError:
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
) -> int:
    """spawn() by fork and exec. Exec failures come back over a close-on-exec
    pipe; the failed child is reaped by the caller's reaper."""
    reserved = _ignored_reserved_signals()
    err_read, err_write = os.pipe2(os.O_CLOEXEC)
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
        raise
    if pid == 0:  # pragma: no cover - runs in the child, reported over err_write
        os.close(err_read)
        _exec_child(
            argv, env, cwd, foreground_tty, fds, prepare, listen_fds, reserved, err_write, new_group
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
    raise _spawn_error(int(code), message)


# POSIX_SPAWN_* flags: the same numbers in glibc and musl on Linux.
_SETPGROUP, _SETSIGDEF, _SETSIGMASK = 0x02, 0x04, 0x08
_SPAWNER: list[_PosixSpawn | None] = []  # made on first use: see _posix_spawner


def _posix_spawner() -> _PosixSpawn | None:
    """The one _PosixSpawn, or None where libc has no posix_spawn."""
    if not _SPAWNER:
        try:
            _SPAWNER.append(_PosixSpawn())
        except (ImportError, OSError, AttributeError):
            _SPAWNER.append(None)
    return _SPAWNER[0]


class _PosixSpawn:
    """posix_spawn(3) from libc, through ctypes rather than os.posix_spawn:
    glibc's (and musl's) child sets its own signals 32 and 33 to SIG_IGN,
    which exec passes on, unless they are in the set given to
    posix_spawnattr_setsigdefault, and os.posix_spawn builds that set with
    sigaddset(), which refuses them. Here the set is written bit by bit.

    The attributes never change, so they are made once: a new process
    group, an empty signal mask, and SIG_DFL for every signal.
    """

    def __init__(self) -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        self._ctypes = ctypes
        self._libc = libc
        c_int, c_void_p, c_char_p = ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
        self._spawn = libc.posix_spawn
        # pid, path, file actions, attributes, argv, envp
        pid_p = ctypes.POINTER(c_int)
        self._spawn.argtypes = [pid_p, c_char_p, c_void_p, c_void_p, c_void_p, c_void_p]
        self._spawn.restype = c_int
        for name, args in [
            ("posix_spawnattr_init", [c_void_p]),
            ("posix_spawnattr_setflags", [c_void_p, ctypes.c_short]),
            ("posix_spawnattr_setpgroup", [c_void_p, c_int]),
            ("posix_spawnattr_setsigmask", [c_void_p, c_void_p]),
            ("posix_spawnattr_setsigdefault", [c_void_p, c_void_p]),
            ("posix_spawn_file_actions_init", [c_void_p]),
            ("posix_spawn_file_actions_destroy", [c_void_p]),
            ("posix_spawn_file_actions_adddup2", [c_void_p, c_int, c_int]),
        ]:
            getattr(libc, name).argtypes = args
            getattr(libc, name).restype = c_int
        try:
            self._addchdir = libc.posix_spawn_file_actions_addchdir_np
        except AttributeError:
            self.can_chdir = False
        else:
            self._addchdir.argtypes = [c_void_p, c_char_p]
            self._addchdir.restype = c_int
            self.can_chdir = True
        # sigset_t: 1024 bits in unsigned longs, signal n at bit n - 1.
        word = 8 * ctypes.sizeof(ctypes.c_ulong)
        sigset = ctypes.c_ulong * (1024 // word)
        self._empty, self._default = sigset(), sigset()
        for signum in _ALL_SIGNALS:
            if signum not in (SIGKILL, _signal.SIGSTOP):
                self._default[(signum - 1) // word] |= 1 << ((signum - 1) % word)
        self._attr = ctypes.create_string_buffer(1024)  # posix_spawnattr_t: 336 in glibc
        for err in (
            libc.posix_spawnattr_init(self._attr),
            libc.posix_spawnattr_setpgroup(self._attr, 0),
            libc.posix_spawnattr_setsigmask(self._attr, self._empty),
            libc.posix_spawnattr_setsigdefault(self._attr, self._default),
            libc.posix_spawnattr_setflags(self._attr, _SETPGROUP | _SETSIGDEF | _SETSIGMASK),
        ):
            if err:
                raise OSError(err, os.strerror(err))

    def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | Mapping[bytes, bytes] | None,
        cwd: str | None,
        fds: Mapping[int, int],
    ) -> int | None:
        """The pid; SpawnError as _fork_exec reports it; None for arguments
        the fork path must refuse itself (a NUL byte, a bad variable name),
        so that the error stays word for word the same."""
        ctypes, libc = self._ctypes, self._libc
        encoded = _encode_for_exec(argv, env)
        if encoded is None:
            return None
        args, entries = encoded
        c_argv = (ctypes.c_char_p * (len(args) + 1))(*args, None)
        if entries is None:  # the C environ, exactly what execvp() would pass
            c_envp = ctypes.c_void_p.in_dll(libc, "environ").value
        else:
            c_envp = (ctypes.c_char_p * (len(entries) + 1))(*entries, None)
        actions = ctypes.create_string_buffer(512)  # posix_spawn_file_actions_t: 80 in glibc
        if err := libc.posix_spawn_file_actions_init(actions):
            raise OSError(err, os.strerror(err))
        try:
            for target, source in fds.items():
                if err := libc.posix_spawn_file_actions_adddup2(actions, source, target):
                    raise _spawn_error(err, f"dup2: {os.strerror(err)}")
            if cwd is not None and (err := self._addchdir(actions, os.fsencode(cwd))):
                raise _spawn_error(err, f"chdir {cwd}: {os.strerror(err)}")
            return self._search(argv[0], args[0], env, cwd, fds, actions, c_argv, c_envp)
        finally:
            libc.posix_spawn_file_actions_destroy(actions)

    def _search(
        self,
        name: str,
        file: bytes,
        env: Mapping[str, str] | Mapping[bytes, bytes] | None,
        cwd: str | None,
        fds: Mapping[int, int],
        actions: object,
        c_argv: object,
        c_envp: object,
    ) -> int:
        """os.execvpe's search of `env`'s PATH (not ours), with its errors:
        the first that is not ENOENT or ENOTDIR, else the last. A path that
        is not there is skipped without a child made for it."""
        if os.path.dirname(file):
            candidates = [file]
        else:
            path_list = os.get_exec_path(env)  # type: ignore[arg-type]  # bytes keys work
            candidates = [os.path.join(os.fsencode(d), file) for d in path_list]
        pid = self._ctypes.c_int()
        first = last = 0
        for path in candidates:
            if cwd is None or os.path.isabs(path):
                try:
                    os.stat(path)
                except (FileNotFoundError, NotADirectoryError) as exc:
                    last = exc.errno or errno.ENOENT
                    continue
                except OSError:
                    pass  # let exec tell
            err = self._spawn(self._ctypes.byref(pid), path, actions, self._attr, c_argv, c_envp)
            if not err:
                return pid.value
            last = err
            if err not in (errno.ENOENT, errno.ENOTDIR) and not first:
                first = err
        err = first or last or errno.ENOENT
        # Which step failed, named as the fork path names it: dup2, chdir, exec.
        for source in fds.values():
            try:
                os.fstat(source)
            except OSError as exc:
                raise _spawn_error(exc.errno or err, f"dup2: {exc.strerror}") from None
        if cwd is not None and (problem := _chdir_problem(cwd)) is not None:
            raise _spawn_error(problem.errno or err, f"chdir {cwd}: {problem.strerror}")
        raise _spawn_error(err, f"exec {name}: {os.strerror(err)}")


def _encode_for_exec(
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


def _chdir_problem(cwd: str) -> OSError | None:
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
) -> None:  # pragma: no cover - runs in the forked child
    step = "setup"
    try:
        _signal.set_wakeup_fd(-1)
        if new_group:
            step = "setpgid"
            os.setpgid(0, 0)
        if foreground_tty and new_group:
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


# --- the socket directory shared with nginx ----------------------------------------


class UnsafePath(Exception):
    """A socket path pidone will not work on (a symlink, not a directory, ...)."""


def secure_directory(path: str) -> int:
    """Open (creating as needed) directory `path` without following any
    symlink on the way and return an fd for it. Parents it has to create get
    root and 0755. Raises UnsafePath."""
    if not path.startswith("/"):
        raise UnsafePath(f"{path}: not an absolute path")
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open("/", flags)
    walked = ""
    try:
        for part in [p for p in path.split("/") if p]:
            walked += "/" + part
            if part == "..":
                raise UnsafePath(f"{path}: '..' in the path")
            try:
                child = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass  # made by someone else meanwhile: opened below, safely
                child = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafePath(
                        f"{walked} is a symlink or not a directory; pidone follows no "
                        "symlink in a socket path: make it a real directory"
                    ) from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def claim_directory(fd: int) -> None:
    """Make the directory ours for a moment, so that we may remove and create
    sockets in it, and set its mode, with CAP_CHOWN alone (no DAC_OVERRIDE,
    FOWNER or FSETID: a container should not need them)."""
    st = os.fstat(fd)
    me = (os.geteuid(), os.getegid())
    if (st.st_uid, st.st_gid) != me:
        os.fchown(fd, *me)


def settle_directory(fd: int, *, uid: int, gid: int, mode: int) -> None:
    """Give a claimed directory its mode, then its owner and group. In that
    order: chmod by the owner keeps the setgid bit without CAP_FSETID, and a
    directory keeps it through chown. The result is checked, not assumed."""
    import stat

    os.fchmod(fd, mode)
    os.fchown(fd, uid, gid)
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (uid, gid, mode):
        raise UnsafePath(
            f"the socket directory came out {st.st_uid}:{st.st_gid} "
            f"{stat.S_IMODE(st.st_mode):04o}, not {uid}:{gid} {mode:04o}"
        )


def remove_stale_socket(dir_fd: int, name: str) -> bool:
    """Remove a socket file left by an earlier run; refuse to touch anything
    that is not a socket. True if one was removed."""
    import stat

    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(st.st_mode):
        raise UnsafePath(f"{name}: exists and is not a socket; pidone will not remove it")
    os.unlink(name, dir_fd=dir_fd)
    return True


def bind_unix_socket(path: str, dir_fd: int, *, uid: int, gid: int, mode: int) -> int:
    """Bind and listen on the unix stream socket `path`, whose directory is
    open as `dir_fd` (made safe by secure_directory), born with `mode` (the
    umask is set around bind, so it never has another) and chowned without
    following links. Returns the fd.

    It binds the absolute path, because programs that take the socket by
    socket activation (uwsgi, gunicorn) match it by the name getsockname()
    gives. A directory swapped for a symlink between secure_directory() and
    here would put the socket elsewhere: the chown through `dir_fd` then
    finds nothing, and we refuse to go on.
    """
    import socket
    import stat

    name = os.path.basename(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 & ~mode)
    try:
        sock.bind(path)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISSOCK(st.st_mode):
            raise FileNotFoundError(name)
        os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        sock.close()
        raise UnsafePath(
            f"{path}: the socket did not appear in the directory pidone made safe"
        ) from None
    sock.listen(socket.SOMAXCONN)
    return sock.detach()


def fix_socket(dir_fd: int, name: str, *, uid: int, gid: int, mode: int) -> bool:
    """Give an existing socket file owner, group and mode. False if it is not
    there yet. Works on an O_PATH fd of the file itself, so a symlink swapped
    in by the directory's owner cannot redirect the chmod."""
    import stat

    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISSOCK(st.st_mode):
            raise UnsafePath(f"{name}: is not a socket; pidone will not change it")
        os.chown(f"/proc/self/fd/{fd}", uid, gid)
        os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)
    return True


# --- identity: what a supervised child switches to before exec --------------------

PR_CAP_AMBIENT = 47  # python-prctl has no ambient capabilities: see _ambient_raiser
PR_CAP_AMBIENT_RAISE = 2


def _cap_last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


def _ambient_raiser() -> Callable[[int], None]:
    """prctl(PR_CAP_AMBIENT_RAISE) through libc: python-prctl does not wrap
    it, and a few lines of ctypes beat another dependency. Loaded in the
    parent, only when some process keeps capabilities."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def raise_ambient(cap: int) -> None:  # pragma: no cover - runs in the child
        if libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"PR_CAP_AMBIENT_RAISE {cap}: {os.strerror(err)}")

    return raise_ambient


def identity_preparer(ident: Identity, *, pdeathsig: bool = True) -> Callable[[], None] | None:
    """The function a child runs just before exec to become `ident`, and
    take SIGKILL as its parent-death signal; None when it has nothing to do:
    `ident` changes nothing and `pdeathsig` is off. As PID 1 the parent-death
    signal is not needed (when PID 1 dies the kernel kills everything in its
    namespace), and without a preparer a child can be spawned without fork.

    Everything that needs importing is imported here, in the parent, so the
    child only makes syscalls. Order matters: rlimits and the bounding set
    while still root (raising a hard limit and PR_CAPBSET_DROP need it),
    then groups, gid, uid (keeping capabilities across setuid only if some
    are kept), then the capability sets, no_new_privs, and the parent-death
    signal last, because a credential change clears it.

    `capabilities` on a process that stays root bound it too: with the
    bounding set and the inheritable set cut to the list, root's exec grants
    exactly the list (permitted = inheritable | bounding for uid 0).
    """
    if not pdeathsig and not changes_identity(ident):
        return None
    import resource

    import _prctl  # the C half: PR_SET_PDEATHSIG, PR_CAPBSET_DROP

    keep = sorted(set(ident.keep_caps))
    bound = ident.harden or bool(keep)  # a root process with `capabilities` is bounded too
    # The Python half (capability sets) costs 0.3 MiB of PID 1: only when used.
    prctl: Any = __import__("prctl") if bound else None

    last_cap = _cap_last_cap()
    raise_ambient = _ambient_raiser() if keep and ident.harden else None
    parent = os.getpid()

    def prepare() -> None:  # pragma: no cover - runs in the child, tested through /proc
        for res, soft, hard in ident.rlimits:
            resource.setrlimit(res, (soft, hard))
        if ident.umask is not None:
            os.umask(ident.umask)
        if bound:
            try:
                for cap in range(last_cap + 1):
                    if cap not in keep:
                        _prctl.prctl(_prctl.PR_CAPBSET_DROP, cap)
            except OSError as exc:
                raise OSError(
                    exc.errno,
                    "dropping capabilities from the bounding set needs CAP_SETPCAP: "
                    f"{exc.strerror} (give pidone CAP_SETPCAP, or run the process as root)",
                ) from None
            if keep and ident.harden:
                assert prctl is not None
                prctl.set_keepcaps(True)
        if ident.groups is not None:
            os.setgroups(list(ident.groups))
        if ident.gid is not None:
            os.setresgid(ident.gid, ident.gid, ident.gid)
        if ident.uid is not None:
            os.setresuid(ident.uid, ident.uid, ident.uid)
        if ident.harden:
            assert prctl is not None
            for flag in (prctl.cap_effective, prctl.cap_permitted, prctl.cap_inheritable):
                flag.limit(*keep)
            if keep:
                prctl.set_caps(
                    (keep, prctl.CAP_INHERITABLE, True), (keep, prctl.CAP_EFFECTIVE, True)
                )
                assert raise_ambient is not None
                for cap in keep:
                    raise_ambient(cap)
            prctl.set_no_new_privs(1)
        elif bound:  # stays root: its sets limited to the list (exec then grants exactly it)
            assert prctl is not None
            for flag in (prctl.cap_effective, prctl.cap_permitted, prctl.cap_inheritable):
                flag.limit(*keep)
        _prctl.prctl(_prctl.PR_SET_PDEATHSIG, SIGKILL)
        if os.getppid() != parent:  # pidone died before the signal was armed
            os._exit(1)

    return prepare


def changes_identity(ident: Identity) -> bool:
    """Does a child have to change anything of its own to become `ident`?
    (Then it takes the fork path: posix_spawn cannot run the preparer.)"""
    return (
        ident.uid is not None
        or ident.gid is not None
        or ident.groups is not None
        or ident.umask is not None
        or bool(ident.rlimits)
        or bool(ident.keep_caps)
        or ident.harden
    )


CAP_SYS_RESOURCE = 24


def has_effective_capability(cap: int) -> bool:
    """Is `cap` in pidone's effective set (/proc/self/status CapEff)?"""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> cap & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def nr_open() -> int:
    """The kernel's ceiling for RLIMIT_NOFILE (/proc/sys/fs/nr_open)."""
    try:
        with open("/proc/sys/fs/nr_open", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1024 * 1024  # the kernel's default


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
    try:
        os.write(2, text.encode("utf-8", "replace"))
    except OSError:
        pass


def is_pid1() -> bool:
    return os.getpid() == 1


def exit_now(code: int) -> NoReturn:
    """Flush and exit without waiting for anything else."""
    sys.stdout.flush()
    os._exit(code)
