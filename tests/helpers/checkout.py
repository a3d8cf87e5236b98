"""The checkout, reachable by the users the tests run programs as.

The tests run programs as pidone-app, app, celery, redis, www-data and nobody,
and those programs need the checkout: its interpreter (.venv), pidone's
sources, tests/helpers, examples/webapp. CI clones into folders other users
may not traverse (a 0700 temporary directory, /root). As root, the session
then opens the way in a mount namespace of its own: each folder on the path
to the checkout that others cannot traverse is covered by a tmpfs that they
can traverse (its mode plus o+x) holding a bind mount of each of its entries.
Every path stays the same and nothing changes outside the session (its mounts
are private); only an entry made in a covered folder itself during the
session lives on that tmpfs and goes with it. A probe run as nobody then says
whether every file the tests' users need can be reached; if one cannot,
`require_other_users` fails those tests at once, naming the folder and the
fix, instead of letting each wait out its timeout.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.helpers.running import HELPERS, PYTHON, missing_privilege

REPO = HELPERS.parents[1]
OUTSIDER = "nobody"
# What programs running as other users read or execute (each path's folders too).
NEEDED = (
    Path(PYTHON),
    REPO / "src" / "pidone" / "__init__.py",
    HELPERS / "whoami.py",
    REPO / "examples" / "webapp" / "app.py",
)

_CLONE_NEWNS = 0x00020000  # linux/sched.h
_MS_BIND, _MS_REC, _MS_PRIVATE = 0x1000, 0x4000, 0x40000  # linux/mount.h
_MNT_DETACH = 2

# Run by the base interpreter (outside any checkout) as OUTSIDER: for each
# path, the first folder it cannot traverse, or the path if it cannot read it.
_PROBE = """
import os, sys
for path in sys.argv[1:]:
    parts = path.split("/")
    folders = ["/".join(parts[:i]) for i in range(2, len(parts))]
    blocked = [d for d in folders if not os.access(d, os.X_OK)][:1]
    if blocked or not os.access(path, os.R_OK):
        print(path, (blocked or [path])[0], sep="\\t")
"""

_state: dict[str, str] = {}


def untraversable(path: Path) -> list[Path]:
    """The folders from / down to `path` (itself included) that users other
    than their owner and group cannot traverse, outermost first."""
    chain = [*reversed(path.parents), path]
    return [d for d in chain if not os.stat(d).st_mode & stat.S_IXOTH]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str) -> None:
    def b(text: str | None) -> bytes | None:
        return None if text is None else os.fsencode(text)

    _check(_libc().mount(b(source), b(target), b(fstype), flags, b(data)), f"mount {target}")


def private_mount_namespace() -> None:
    """This process (and what it starts from now on) in a mount namespace of
    its own whose mounts do not propagate to the host's. Single-threaded only."""
    _check(_libc().unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE, "")


def cover(folder: Path) -> None:
    """Make `folder` traversable by everyone, in this mount namespace only:
    a tmpfs over it, owned and moded as it is plus o+x, with each of its
    entries bound back (or, for a symlink, copied)."""
    st = os.stat(folder)
    stage = tempfile.mkdtemp(prefix="pidone-cover-", dir="/tmp")
    try:
        _mount(str(folder), stage, None, _MS_BIND | _MS_REC, "")
        mode = stat.S_IMODE(st.st_mode) | stat.S_IXGRP | stat.S_IXOTH
        options = f"mode={mode:o},uid={st.st_uid},gid={st.st_gid},size=16m"
        _mount("pidone-tests-cover", str(folder), "tmpfs", 0, options)
        try:
            for entry in os.scandir(stage):
                _bind_back(entry, folder / entry.name)
        except OSError:
            _libc().umount2(os.fsencode(folder), _MNT_DETACH)  # the folder as it was
            raise
    finally:
        _libc().umount2(os.fsencode(stage), _MNT_DETACH)
        os.rmdir(stage)


def _bind_back(entry: os.DirEntry[str], target: Path) -> None:
    if entry.is_symlink():
        os.symlink(os.readlink(entry.path), target)
        st = entry.stat(follow_symlinks=False)
        os.lchown(target, st.st_uid, st.st_gid)
        return
    if entry.is_dir():
        target.mkdir()
    else:
        target.touch()  # a mount point for a file (or socket, fifo)
    _mount(entry.path, str(target), None, _MS_BIND | _MS_REC, "")


def unreachable(paths: tuple[Path, ...] = NEEDED, user: str = OUTSIDER) -> list[tuple[str, str]]:
    """(path, the folder or file in the way) for each path `user` cannot read."""
    entry = pwd.getpwnam(user)
    base = os.path.realpath(sys.executable)  # Debian's python3, not a venv's symlink
    probe = subprocess.run(
        [base, "-I", "-c", _PROBE, *map(str, paths)],
        user=entry.pw_uid,
        group=entry.pw_gid,
        extra_groups=[],
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [
        (path, blocked) for path, blocked in (ln.split("\t") for ln in probe.stdout.splitlines())
    ]


def explain(blocked: list[tuple[str, str]], repo: Path, why_not_opened: str = "") -> str:
    """What is wrong and how to fix it, for the first path in the way."""
    path, where = blocked[0]
    st = os.stat(where)
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    inside = Path(where).is_relative_to(repo) and Path(where) != repo
    fix = (
        f"`chmod -R o+rX {repo}` (the clone was made with a umask such as 077)"
        if inside
        else f"`chmod o+x {where}`, or clone into a folder every user can traverse"
    )
    opened = (
        f" The session could not open the way itself: {why_not_opened}." if why_not_opened else ""
    )
    return (
        f"user {OUTSIDER} cannot reach {path}: {where} (mode {stat.S_IMODE(st.st_mode):04o},"
        f" owner {owner}) is not {'readable' if where == path else 'traversable'} by other users."
        f" The tests run programs as other users (pidone-app, app, celery, redis, www-data,"
        f" nobody) that need the checkout {repo}: its .venv, src, tests/helpers and"
        f" examples/webapp.{opened} Fix: {fix}."
    )


def open_for_other_users(repo: Path = REPO) -> str:
    """At the start of a session, as root: make the checkout reachable by
    the tests' users if it is not (see the module's doc), then probe. Returns
    a line for the report's header; a problem left is kept for
    `require_other_users`."""
    repo = repo.resolve()
    folders = untraversable(repo)
    covered: list[Path] = []
    why_not = ""
    if folders and unreachable():
        try:
            private_mount_namespace()
            for folder in folders:
                cover(folder)
                covered.append(folder)
            os.chdir(os.getcwd())  # our cwd, through the new mounts
        except OSError as exc:
            why_not = str(exc)
    blocked = unreachable()
    if blocked:
        _state["problem"] = explain(blocked, repo, why_not)
        return f"checkout: NOT reachable by other users: {_state['problem']}"
    if covered:
        names = ", ".join(map(str, covered))
        where = "in this session's mount namespace"
        return f"checkout: reachable by other users {where} ({names} covered)"
    return "checkout: reachable by other users"


def require_other_users() -> None:
    """For tests that run programs as other users: if those cannot reach the
    checkout, fail at once (skip outside CI) with what is wrong and the fix."""
    problem = _state.get("problem")
    if problem:
        missing_privilege(problem)
