"""A PID namespace of its own for one child (`pid_namespace = true`).

CPython 3.11 has no os.unshare/os.setns: both through libc (ctypes).

    saved = enter_new_pid_namespace()   # in pidone: what we fork next is PID 1 of a new one
    pid = os.fork()                     # the child: PID 1 there, pidone's own child here
    leave_pid_namespace(saved)          # in pidone: our next forks are ours again
    ... in the child: mount_own_proc()  # its own mount namespace, /proc of its namespace

unshare(CLONE_NEWPID) does not move the caller: it sets the namespace its
*next* children are born in (/proc/self/ns/pid_for_children). The first of
them is that namespace's init; setns() to our own /proc/self/ns/pid turns
it back, so every later fork (restarts, exec: checks) is in pidone's own
namespace. The child stays pidone's direct child: pidone reaps it and sees
its exit status, and signals it by its pid in pidone's namespace. When it
exits, the kernel SIGKILLs everything else in its namespace.

The kernel's rule for a namespace's init: a signal it has no handler for is
dropped (SIGKILL and SIGSTOP from an ancestor namespace excepted), so a
stop_signal the program does not catch ends in SIGKILL at stop_timeout.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REC = 0x4000
MS_PRIVATE = 0x40000

_LIBC: list[ctypes.CDLL] = []  # loaded on first use: only pid_namespace processes pay


def _libc() -> ctypes.CDLL:
    if not _LIBC:
        import ctypes

        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def enter_new_pid_namespace() -> int:
    """Have our next child be born as PID 1 of a new PID namespace. Returns
    an fd of our own namespace, for leave_pid_namespace (call it whatever
    happens). Needs CAP_SYS_ADMIN: OSError(EPERM) without it."""
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc().unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
    except BaseException:
        os.close(own)
        raise
    return own


def leave_pid_namespace(own: int) -> None:
    """Our children are born in our own namespace again (and `own` is closed).
    The setns of a namespace into itself, with the CAP_SYS_ADMIN unshare
    needed already: it has no reason to fail; if it does, that is raised."""
    try:
        _check(_libc().setns(own, CLONE_NEWPID), "setns(own PID namespace)")
    finally:
        os.close(own)


def mount_own_proc() -> None:  # pragma: no cover - runs in the forked child, tested as PID 1
    """In the child, PID 1 of its new namespace, before it drops privileges:
    a mount namespace of its own, every mount in it private (nothing it
    mounts propagates back to pidone's, as util-linux's unshare does by
    default), and a fresh proc on /proc, which shows its namespace only."""
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making / private")
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    _check(libc.mount(b"proc", b"/proc", b"proc", flags, None), "mounting /proc")
