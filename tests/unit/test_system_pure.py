"""The pure helpers of system.py: which signals are forwarded, exit statuses,
whether a child can be started with posix_spawn."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from pidone.config.identity import Identity
from pidone.system.posix_spawn import fits as posix_spawn_fits
from pidone.system.privileges import identity_preparer
from pidone.system.reap import exit_status
from pidone.system.signals import forwardable_signals
from pidone.system.spawn import encode_for_exec


def test_forwarded_signals_are_1_to_31_minus_the_exceptions_plus_realtime() -> None:
    never = {
        signal.SIGCHLD,
        signal.SIGKILL,
        signal.SIGSTOP,
        signal.SIGTTIN,
        signal.SIGTTOU,
        signal.SIGSEGV,
        signal.SIGBUS,
        signal.SIGILL,
        signal.SIGFPE,
        signal.SIGABRT,
        signal.SIGTRAP,
        signal.SIGSYS,
    }
    expected = {s for s in range(1, 32) if s not in never}
    expected |= set(range(signal.SIGRTMIN, signal.SIGRTMAX + 1))
    got = forwardable_signals()
    assert len(got) == len(set(got))
    assert set(got) == expected
    assert {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTSTP} <= set(got)
    assert {signal.SIGCONT, signal.SIGWINCH, signal.SIGPIPE, signal.SIGUSR1} <= set(got)


@pytest.mark.parametrize(
    ("wait_status", "expected"),
    [(0, 0), (7 << 8, 7), (255 << 8, 255), (signal.SIGTERM, 143), (signal.SIGKILL, 137)],
)
def test_exit_status_follows_the_shell_convention(wait_status: int, expected: int) -> None:
    assert exit_status(wait_status) == expected


# --- posix_spawn or fork --------------------------------------------------------


def _prepare() -> None:
    pass


def fits(**overrides: object) -> bool:
    kwargs: dict[str, Any] = {
        "prepare": None,
        "foreground_tty": False,
        "listen_fds": (),
        "cwd": None,
        "can_chdir": True,
    }
    kwargs.update(overrides)
    return posix_spawn_fits(**kwargs)


def test_posix_spawn_when_the_child_has_nothing_to_do_before_exec() -> None:
    assert fits()
    assert fits(cwd="/srv/app")  # posix_spawn_file_actions_addchdir_np


@pytest.mark.parametrize(
    "overrides",
    [
        {"prepare": _prepare},  # user switch, rlimits, umask, the parent-death signal...
        {"foreground_tty": True},  # tcsetpgrp in the child
        {"listen_fds": [(5, "web")]},  # LISTEN_PID is the child's own pid
        {"cwd": "/srv/app", "can_chdir": False},  # a libc without addchdir_np
    ],
)
def test_fork_when_the_child_has_work_of_its_own(overrides: dict[str, object]) -> None:
    assert not fits(**overrides)


def test_a_child_keeping_pidones_identity_needs_no_preparer_as_pid1() -> None:
    # As PID 1 the parent-death signal is the kernel's job: nothing left to do.
    assert identity_preparer(Identity(), pdeathsig=False, changes=False) is None


@pytest.mark.parametrize(
    "ident",
    [
        Identity(uid=1000, gid=1000, groups=(), harden=True),
        Identity(gid=50),
        Identity(groups=(4,)),
        Identity(umask=0o027),
        Identity(rlimits=((7, 1024, 1024),)),
        Identity(keep_caps=(10,)),  # a root process bounded to its `capabilities`
    ],
)
def test_a_child_that_changes_its_identity_has_a_preparer(ident: Identity) -> None:
    assert callable(identity_preparer(ident, pdeathsig=False, changes=True))


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["prog", "a\0b"], None),
        (["prog"], {"A\0": "x"}),
        (["prog"], {"A": "x\0y"}),
        (["prog"], {"A=B": "x"}),
        (["prog"], {"": "x"}),
        ([""], None),
        ([], None),
    ],
)
def test_what_exec_would_refuse_goes_to_the_fork_path_to_be_refused_there(
    argv: list[str], env: dict[str, str] | None
) -> None:
    # so that the error is the fork path's, word for word
    assert encode_for_exec(argv, env) is None


def test_argv_and_env_are_encoded_as_exec_takes_them() -> None:
    assert encode_for_exec(["prog", "é"], {"A": "1"}) == ([b"prog", "é".encode()], [b"A=1"])
    assert encode_for_exec(["prog"], {b"B": b"\xff"}) == ([b"prog"], [b"B=\xff"])
    assert encode_for_exec(["prog"], None) == ([b"prog"], None)
