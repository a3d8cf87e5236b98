"""posix_spawn(3) through ctypes: the fast path of spawn.spawn for a child
that has nothing to do between fork and exec. Loaded only by a caller that
asks for it (`pidone run`'s restarts); single-command mode, spawning once,
forks. PIDONE_POSIX_SPAWN=0 turns it off.

Which process settings need the fork path is declared beside them, in
config/specs.py (each ProcessSpec field's `spawn` metadata); here, `fits`
says what posix_spawn itself can do.
"""

from __future__ import annotations

import _signal
import contextlib
import errno
import os

from pidone.system.signals import ALL_SIGNALS, SIGKILL
from pidone.system.spawn import chdir_problem, encode_for_exec, spawn_error

# `typing` and `collections.abc` cost memory at run time; mypy still sees them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

SWITCH = "PIDONE_POSIX_SPAWN"


def fits(
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


# POSIX_SPAWN_* flags: the same numbers in glibc and musl on Linux.
_SETPGROUP, _SETSIGDEF, _SETSIGMASK = 0x02, 0x04, 0x08
_SPAWNER: list[PosixSpawn | None] = []  # made on first use: see spawner


def enabled(environ: Mapping[str, str]) -> bool:
    """The switch: PIDONE_POSIX_SPAWN=0 sends every child through fork and
    exec (a libc whose posix_spawn misbehaves, or a bisection)."""
    return environ.get(SWITCH, "1") != "0"


def spawner() -> PosixSpawn | None:
    """The one PosixSpawn, or None: switched off, or libc has no posix_spawn."""
    if not _SPAWNER:
        made = None
        if enabled(os.environ):
            with contextlib.suppress(ImportError, OSError, AttributeError):
                made = PosixSpawn()
        _SPAWNER.append(made)
    return _SPAWNER[0]


class PosixSpawn:
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
        for signum in ALL_SIGNALS:
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
        encoded = encode_for_exec(argv, env)
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
                    raise spawn_error(err, f"dup2: {os.strerror(err)}")
            if cwd is not None and (err := self._addchdir(actions, os.fsencode(cwd))):
                raise spawn_error(err, f"chdir {cwd}: {os.strerror(err)}")
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
                raise spawn_error(exc.errno or err, f"dup2: {exc.strerror}") from None
        if cwd is not None and (problem := chdir_problem(cwd)) is not None:
            raise spawn_error(problem.errno or err, f"chdir {cwd}: {problem.strerror}")
        raise spawn_error(err, f"exec {name}: {os.strerror(err)}")
