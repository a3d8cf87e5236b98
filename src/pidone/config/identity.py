"""Who a process runs as: `user`, `group`, `groups` and friends resolved
against /etc/passwd and /etc/group into numbers, before anything starts.

Read-only: it looks names up, it changes nothing (system.privileges.identity_preparer does
that, in the child). Unknown names are configuration errors, reported by
`pidone check` and by `pidone run` before anything starts, through
config.load's `checks` hook.
"""

from __future__ import annotations

import grp
import os
import pwd
import resource
from collections.abc import Iterable
from dataclasses import dataclass

from pidone.config.specs import CAPABILITIES, Config, ProcessSpec
from pidone.config.values import as_float, id_number


@dataclass(frozen=True)
class Identity:
    """What the child switches to before exec; None: keep pidone's."""

    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] | None = None
    user_name: str | None = None
    home: str | None = None
    umask: int | None = None
    rlimits: tuple[tuple[int, int, int], ...] = ()  # (resource, soft, hard)
    keep_caps: tuple[int, ...] = ()
    harden: bool = False  # no_new_privs + emptied capability sets (non-root)

    def environment(self) -> dict[str, str]:
        """HOME, USER and LOGNAME of the user we switch to, as login(1) and
        Docker's USER set them (root's HOME would be wrong and unreadable)."""
        if self.user_name is None:
            return {}
        env = {"USER": self.user_name, "LOGNAME": self.user_name}
        if self.home:
            env["HOME"] = self.home
        return env


def user_id(name: str) -> tuple[int, int | None, str | None, str | None]:
    """(uid, primary gid, name, home) for a user name or number; KeyError if a
    name is unknown. A number need not exist in /etc/passwd (arbitrary uids
    are common in containers); then gid, name and home are None."""
    uid = id_number(name)
    if uid is not None:
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            return uid, None, None, None
        return uid, entry.pw_gid, entry.pw_name, entry.pw_dir
    entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir


def group_id(name: str) -> int:
    """gid for a group name or number; KeyError if a name is unknown."""
    gid = id_number(name)
    return gid if gid is not None else grp.getgrnam(name).gr_gid


def resolve(spec: ProcessSpec) -> Identity:
    """The identity a process runs as; KeyError naming what is unknown."""
    uid = gid = None
    user_name = home = None
    groups: tuple[int, ...] | None = None
    if spec.user is not None:
        try:
            uid, gid, user_name, home = user_id(spec.user)
        except KeyError:
            raise KeyError(f"user {spec.user!r}") from None
    if spec.group is not None:
        try:
            gid = group_id(spec.group)
        except KeyError:
            raise KeyError(f"group {spec.group!r}") from None
    if uid is not None and gid is None:
        gid = uid  # an unnamed uid with no group given: its own number, as Docker does
    if spec.groups is not None:
        try:
            groups = tuple(group_id(g) for g in spec.groups)
        except KeyError as exc:
            raise KeyError(f"group {exc.args[0]!r} in groups") from None
    elif uid is not None:
        # Never keep root's supplementary groups by accident: the user's own
        # from /etc/group, or none at all for a uid without a name.
        assert gid is not None
        groups = tuple(os.getgrouplist(user_name, gid)) if user_name else ()
    if os.geteuid() != 0:  # what names pidone's own user and groups changes nothing
        uid, gid, groups = _as_pidone(uid, gid, groups, explicit=spec.groups is not None)
    harden = uid is not None and uid != 0
    return Identity(
        uid=uid,
        gid=gid,
        groups=groups,
        user_name=user_name,
        home=home,
        umask=spec.umask,
        rlimits=tuple((r.resource, r.soft, r.hard) for r in spec.rlimits),
        keep_caps=tuple(CAPABILITIES[c] for c in spec.capabilities),
        harden=harden,
    )


def _as_pidone(
    uid: int | None, gid: int | None, groups: tuple[int, ...] | None, *, explicit: bool
) -> tuple[int | None, int | None, tuple[int, ...] | None]:
    """Without root, a `user`, `group` or `groups` that is pidone's own is
    kept as it is (None): the child need not, and could not, call setgroups
    or setresuid. Anything else check() refuses (_needs_root)."""
    if uid == os.geteuid():
        uid = None
        if not explicit:
            groups = None  # the same user: its groups as pidone has them
    if gid is not None and gid in os.getresgid():
        gid = None
    if groups is not None and set(groups) == set(os.getgroups()):
        groups = None
    return uid, gid, groups


NEEDS_ROOT = "run pidone as root, or remove the key"


def _needs_root(config: Config) -> Iterable[tuple[str, str, str]]:
    """(table, key, problem) for each setting only root can honour, when
    pidone is not root: another user, a group that is not pidone's own,
    capabilities. Names that do not resolve are _unknown's to report."""
    euid = os.geteuid()
    me = f"pidone runs as uid {euid}, not root"
    own_groups = {*os.getresgid(), *os.getgroups()}

    def other_user(name: str | None) -> bool:
        try:
            return name is not None and user_id(name)[0] != euid
        except KeyError:
            return False

    def other_group(name: str | None, allowed: Iterable[int]) -> bool:
        try:
            return name is not None and group_id(name) not in allowed
        except KeyError:
            return False

    group = config.settings.control_group
    if other_group(group, own_groups):
        yield "pidone", "control_group", f"{me} and not in group {group!r}; {NEEDS_ROOT}"
    for name, spec in config.processes.items():
        table = f"process.{name}"
        if other_user(spec.user):
            yield table, "user", f"{me}: it cannot run a process as {spec.user!r}; {NEEDS_ROOT}"
        if other_group(spec.group, os.getresgid()):
            yield table, "group", f"{me}: it cannot switch to group {spec.group!r}; {NEEDS_ROOT}"
        if spec.groups is not None:
            try:
                wanted = {group_id(g) for g in spec.groups}
            except KeyError:
                wanted = set(os.getgroups())
            if wanted != set(os.getgroups()):
                yield (
                    table,
                    "groups",
                    f"{me}: it cannot set groups other than its own; {NEEDS_ROOT}",
                )
        if spec.capabilities:
            yield table, "capabilities", f"{me}: it has no capabilities to give; {NEEDS_ROOT}"
    for name, sock in config.sockets.items():
        table = f"socket.{name}"
        if other_user(sock.owner):
            yield table, "owner", f"{me}: it cannot give a socket to {sock.owner!r}; {NEEDS_ROOT}"
        if other_group(sock.group, own_groups):
            yield table, "group", f"{me} and not in group {sock.group!r}; {NEEDS_ROOT}"


def _unknown(kind: str, value: str | None) -> str | None:
    """The problem with a user or group name that does not exist, else None.
    Numbers are taken as they are (they need no entry in /etc/passwd)."""
    if value is None or id_number(value) is not None:
        return None
    try:
        (user_id if kind == "user" else group_id)(value)
    except KeyError:
        return f"no {kind} {value!r} on this system; create it or use a number"
    return None


def _too_many_groups(groups: tuple[str, ...] | None) -> str | None:
    """setgroups(2) refuses more than NGROUPS_MAX groups."""
    most = os.sysconf("SC_NGROUPS_MAX")
    if groups is not None and len(groups) > most:
        return f"{len(groups)} groups, more than the {most} a process can have; list fewer"
    return None


def _rlimit_problems(spec: ProcessSpec) -> Iterable[str]:
    """What setrlimit(2) would refuse in the child (which sets them as pidone,
    before any user switch): a hard limit above pidone's own without
    CAP_SYS_RESOURCE, or nofile above the kernel's nr_open."""
    from pidone.system import privileges, proc

    privileged = privileges.has_effective_capability(privileges.CAP_SYS_RESOURCE)
    for limit in spec.rlimits:
        hard = as_float(limit.hard)
        if limit.resource == resource.RLIMIT_NOFILE and hard > (ceiling := proc.nr_open()):
            yield (
                f"{limit.name} {_limit_text(limit.hard)} is above the kernel's maximum "
                f"{ceiling} (/proc/sys/fs/nr_open); use at most {ceiling}"
            )
            continue
        own = resource.getrlimit(limit.resource)[1]
        if not privileged and hard > as_float(own):
            yield (
                f"{limit.name} {_limit_text(limit.hard)} is above pidone's own hard limit "
                f"{_limit_text(own)}, which only CAP_SYS_RESOURCE may raise; "
                f"use at most {_limit_text(own)}"
            )


# What execve(2) takes: each string at most MAX_ARG_STRLEN (32 pages), and
# all of them with their pointers within ARG_MAX; past either, E2BIG.
MAX_ARG_STRLEN = 32 * 4096
_EXEC_MARGIN = 4096  # for what pidone adds (HOME, NOTIFY_SOCKET, LISTEN_FDS, ...)


def _exec_problem(spec: ProcessSpec) -> str | None:
    """Would exec refuse this command line and environment (E2BIG)?"""
    strings = [arg.encode(errors="surrogateescape") for arg in spec.command.argv]
    strings += [f"{k}={v}".encode(errors="surrogateescape") for k, v in spec.env.items()]
    longest = max((len(s) for s in strings), default=0)
    if longest >= MAX_ARG_STRLEN:
        return (
            f"an argument or environment variable of {longest} bytes, more than the "
            f"{MAX_ARG_STRLEN} bytes exec takes (E2BIG); shorten it"
        )
    total = sum(len(s) + 1 + 8 for s in strings) + _EXEC_MARGIN  # NUL and pointer each
    most = os.sysconf("SC_ARG_MAX")
    if total > most:
        return (
            f"its command line and environment take {total} bytes, more than the {most} "
            "exec takes (ARG_MAX, E2BIG); shorten them, or use clear_env"
        )
    return None


def _limit_text(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)


def check(config: Config) -> Iterable[str]:
    """config.load's OS check: users, groups and directories exist, and what
    the child's setgroups and setrlimit would refuse is refused here."""
    where = config.sources.problem
    if (problem := _unknown("group", config.settings.control_group)) is not None:
        yield where("pidone", "control_group", problem)
    for name, spec in config.processes.items():
        table = f"process.{name}"
        names = [("user", "user", spec.user), ("group", "group", spec.group)]
        if (problem := _too_many_groups(spec.groups)) is not None:
            yield where(table, "groups", problem)
        else:
            names += [("groups", "group", g) for g in spec.groups or ()]
        for key, kind, value in names:
            if (problem := _unknown(kind, value)) is not None:
                yield where(table, key, problem)
        for problem in _rlimit_problems(spec):
            yield where(table, "rlimits", problem)
        if (problem := _exec_problem(spec)) is not None:
            yield where(table, None, problem)
        if spec.directory is not None and not os.path.isdir(spec.directory):
            yield where(
                table, "directory", f"{spec.directory!r} is not a directory; create it first"
            )
    for name, sock in config.sockets.items():
        for key, kind, value in (("owner", "user", sock.owner), ("group", "group", sock.group)):
            if (problem := _unknown(kind, value)) is not None:
                yield where(f"socket.{name}", key, problem)
    if os.geteuid() != 0:
        for table, key, refused in _needs_root(config):
            yield where(table, key, refused)
