"""spawn.spawn for real: the fast path (posix_spawn) starts a child exactly
as the fork path does: its own process group, no blocked or ignored signal,
only the fds it was given, and the same errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pidone.errors import SpawnError
from pidone.system import reap, spawn

PROBE = str(Path(__file__).parent.parent / "helpers" / "spawn_probe.py")


def probe(*args: str) -> dict[str, object]:
    # A process of its own, started with only fds 0-2 (close_fds), whose
    # signal state can be made dirty without touching pytest's.
    result = subprocess.run(
        [sys.executable, PROBE, *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_a_child_spawned_without_fork_starts_clean() -> None:
    got = probe()
    # the parent really was dirty: SIGHUP, SIGUSR1, 32 and SIGTTIN/TTOU
    # ignored, SIGUSR2 blocked
    ignored = int(str(got["parent_sigign"]), 16)
    assert ignored & (1 << 31) and ignored & (1 << 0) and ignored & (1 << 9)
    assert int(str(got["parent_sigblk"]), 16) & (1 << 11)
    assert got["SigIgn"] == "0000000000000000"
    assert got["SigBlk"] == "0000000000000000"
    assert got["pgid"] == got["pid"]  # leads a group of its own
    assert got["sid"] == got["our_sid"]  # in our session, as with fork
    assert got["fds"] == {"0": got["stdin"], "1": got["stdout"], "2": got["stdout"]}


def test_a_child_spawned_without_fork_starts_in_its_directory(tmp_path: Path) -> None:
    got = probe("--cwd", str(tmp_path))
    assert got["cwd"] == str(tmp_path)


def refuse_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on spawn.spawn must not fall back on fork."""

    def refuse(*args: object) -> int:
        raise AssertionError("took the fork path")

    monkeypatch.setattr(spawn, "_fork_exec", refuse)


@pytest.fixture
def no_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    refuse_fork(monkeypatch)


def spawn_error(argv: list[str], **kwargs: Any) -> SpawnError:
    with pytest.raises(SpawnError) as caught:
        pid = spawn.spawn(argv, **kwargs)
        os.waitpid(pid, 0)
    reap.reap_zombies()  # the fork path's failed child
    return caught.value


@pytest.mark.parametrize(
    ("argv", "kwargs", "message", "err", "code"),
    [
        (["no-such-program-x"], {}, "exec no-such-program-x: No such file or directory", 2, 127),
        (["/no/such/program"], {}, "exec /no/such/program: No such file or directory", 2, 127),
        (["/etc/passwd"], {}, "exec /etc/passwd: Permission denied", 13, 126),
        (["not-executable"], {"env": "PATH"}, "exec not-executable: Permission denied", 13, 126),
        (["true"], {"cwd": "/no/such"}, "chdir /no/such: No such file or directory", 2, 127),
        (["true"], {"cwd": "FILE"}, "chdir FILE: Not a directory", 20, 127),
    ],
)
def test_fast_and_fork_paths_fail_alike(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    kwargs: dict[str, str],
    message: str,
    err: int,
    code: int,
) -> None:
    script = tmp_path / "bin" / "not-executable"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")  # mode 0644
    (tmp_path / "file").write_text("")
    args: dict[str, Any] = dict(kwargs)
    if "env" in args:
        args["env"] = {"PATH": f"{script.parent}:/usr/bin:/bin"}
    if args.get("cwd") == "FILE":
        args["cwd"] = str(tmp_path / "file")
        message = message.replace("FILE", args["cwd"])
    forked = spawn_error(argv, **args)
    assert (str(forked), forked.errno, forked.exit_code) == (message, err, code)
    refuse_fork(monkeypatch)
    fast = spawn_error(argv, fast=True, **args)
    assert (str(fast), fast.errno, fast.exit_code) == (message, err, code)


def test_the_command_is_looked_up_in_the_childs_path(tmp_path: Path, no_fork: None) -> None:
    program = tmp_path / "only-here"
    program.write_text("#!/bin/sh\nexit 7\n")
    program.chmod(0o755)
    env = {"PATH": f"/no/such/dir:{tmp_path}"}  # not ours: the child's
    pid = spawn.spawn(["only-here"], env=env, fast=True)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7


SWITCHED_OFF = """
import os
from pidone.system import posix_spawn, reap, spawn
forks = []
fork_exec = spawn._fork_exec
spawn._fork_exec = lambda *a: forks.append(a) or fork_exec(*a)
pid = spawn.spawn(["true"], fast=True)
assert reap.exit_status(os.waitpid(pid, 0)[1]) == 0
print(posix_spawn.spawner() is None, len(forks))
"""


@pytest.mark.parametrize(("value", "expected"), [("0", "True 1"), ("1", "False 0")])
def test_pidone_posix_spawn_0_sends_every_child_through_fork(value: str, expected: str) -> None:
    env = {**os.environ, "PIDONE_POSIX_SPAWN": value}
    out = subprocess.run(
        [sys.executable, "-c", SWITCHED_OFF], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == expected.split()  # (no spawner, forks)
