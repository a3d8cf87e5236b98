"""What /proc says about other processes: children, descendants, start times,
executables, and THE trust rule for a pid from outside (a pidfile).
"""

from __future__ import annotations

import errno
import os

# `typing` and `collections.abc` cost memory at run time; mypy still sees them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


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


def parent_of(pid: int) -> int | None:
    """The parent pid of pid (/proc/PID/stat); None once it is gone."""
    stat = _parent_and_start(pid)
    return None if stat is None else stat[0]


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


def catches(pid: int, signum: int) -> bool | None:
    """Has pid a handler for signum (/proc/PID/status SigCgt)? None if unknown."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except (OSError, ValueError, IndexError):
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
    problem = _impossible(pid, taken)
    if problem is not None:
        return problem
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


def _impossible(pid: int, taken: Iterable[int]) -> str | None:
    """Why pid can never be a supervised process's, or None."""
    if pid == 1:
        return "pid 1 is the init of the PID namespace"
    if pid == os.getpid():
        return f"pid {pid} is pidone itself"
    highest = pid_max()
    if not 2 <= pid <= highest:
        return f"pid {pid} is out of range (2..{highest})"
    if pid in taken:
        return f"pid {pid} belongs to another supervised process"
    return None


def stranger(
    pid: int, uid: int, exes: frozenset[tuple[int, int]], taken: Iterable[int] = ()
) -> str | None:
    """THE rule for adopting a pid from a pidfile that an earlier pidone's
    daemon wrote (system/pidfd.adopt): None if pid is that daemon, else why
    not. Not one unfollowable() refuses outright (1, pidone, out of range,
    another process's), its real uid exactly `uid` (the configured user's:
    root's daemon too, not any process root could signal), and the file it
    runs one of `exes` (device and inode of the command's program), and it
    is no descendant of this pidone."""
    problem = _impossible(pid, taken)
    if problem is not None:
        return problem
    uids = _uids(pid)
    if uids is None:
        return f"pid {pid} {NOT_RUNNING}"
    if uids[0] != uid:
        return f"pid {pid} belongs to uid {uids[0]}, not to uid {uid}"
    if not exes:
        return "its command names no program pidone can check the pid against"
    exe = executable(pid)
    if exe is None:
        return f"pid {pid} runs no program pidone can see ({NOT_RUNNING}, or a zombie)"
    if exe not in exes:
        return f"pid {pid} runs another program than its command's"
    # What an earlier pidone left was reparented away from us before we
    # started; a descendant of ours is another process's (as PID 1: all are).
    if pid in descendants(os.getpid()):
        return f"pid {pid} is a descendant of this pidone, not a daemon left by an earlier one"
    return None


def _owned_by(pid: int, uid: int) -> str | None:
    if uid == 0:
        return None  # root may signal any process
    uids = _uids(pid)
    if uids is None:
        return f"pid {pid} {NOT_RUNNING}"
    if uid not in uids:
        return f"pid {pid} belongs to uid {uids[0]}, not to uid {uid}"
    return None


def nr_open() -> int:
    """The kernel's ceiling for RLIMIT_NOFILE (/proc/sys/fs/nr_open)."""
    try:
        with open("/proc/sys/fs/nr_open", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1024 * 1024  # the kernel's default
