"""Identity: what a supervised child switches to before exec (user, groups,
capabilities, rlimits, no_new_privs), and pidone's own capabilities.
"""

from __future__ import annotations

import os

from pidone.system.signals import SIGKILL

# `typing` and `collections.abc` cost memory at run time; mypy still sees them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from pidone.config.identity import Identity


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


def identity_preparer(
    ident: Identity, *, pdeathsig: bool = True, changes: bool = True
) -> Callable[[], None] | None:
    """The function a child runs just before exec to become `ident`, and
    take SIGKILL as its parent-death signal; None when it has nothing to do:
    `changes` is False (no setting of its acts in the child: the caller asks
    ProcessSpec.runs_in_child, where that is declared) and `pdeathsig` is
    off. As PID 1 the parent-death signal is not needed (when PID 1 dies the
    kernel kills everything in its namespace), and without a preparer a
    child can be spawned without fork.

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
    if not pdeathsig and not changes:
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
        # pidone died before the signal was armed. (0: PID 1 of a namespace of
        # its own, pid_namespace, whose parent is outside it: no telling there.)
        if os.getppid() not in (parent, 0):
            os._exit(1)

    return prepare


CAP_SYS_ADMIN = 21  # unshare(CLONE_NEWPID), mount: pid_namespace
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
