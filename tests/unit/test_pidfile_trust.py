"""proc.read_pidfile and the first rules of proc.unfollowable, on real
files and this test's own process tree (as PID 1 they are proved in
tests/pid1/test_pidfile_attacks.py)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from pidone.system import proc, signals


def test_a_regular_pidfile_is_read(tmp_path: Path) -> None:
    (tmp_path / "p").write_bytes(b" 1234\n")
    assert proc.read_pidfile(str(tmp_path / "p")) == (1234, "")


def test_a_missing_or_empty_pidfile_is_not_there_yet(tmp_path: Path) -> None:
    assert proc.read_pidfile(str(tmp_path / "none")) == (None, "")
    (tmp_path / "empty").write_bytes(b"\n")
    assert proc.read_pidfile(str(tmp_path / "empty")) == (None, "")


def test_pidfile_as_fifo_symlink_long_or_superscript_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")  # no writer: a blocking open() would never return
    (tmp_path / "zero").symlink_to("/dev/zero")
    (tmp_path / "long").write_bytes(b"1" * 65)
    (tmp_path / "sup").write_bytes("¹⁵".encode())
    (tmp_path / "neg").write_bytes(b"-1")
    assert proc.read_pidfile(str(tmp_path / "fifo")) == (None, "is not a regular file")
    assert proc.read_pidfile(str(tmp_path / "zero"))[1].startswith("is a symlink")
    assert proc.read_pidfile(str(tmp_path / "long")) == (None, "is longer than 64 bytes")
    assert proc.read_pidfile(str(tmp_path / "sup"))[1].endswith("not a pid")
    assert proc.read_pidfile(str(tmp_path / "neg"))[1].endswith("not a pid")


def test_pid_1_pidone_out_of_range_and_taken_pids_are_never_followed() -> None:
    with subprocess.Popen(["sleep", "30"]) as child:
        try:
            launcher = proc.Launcher(child.pid, os.geteuid(), "sleep", os.defpath, None)
            assert proc.unfollowable(child.pid, launcher) is None  # its own pid
            assert proc.unfollowable(1, launcher) == "pid 1 is the init of the PID namespace"
            assert proc.unfollowable(os.getpid(), launcher) == f"pid {os.getpid()} is pidone itself"
            assert "out of range" in (proc.unfollowable(2**31, launcher) or "")
            assert "out of range" in (proc.unfollowable(0, launcher) or "")
            taken = proc.unfollowable(child.pid, launcher, {child.pid})
            assert taken == f"pid {child.pid} belongs to another supervised process"
        finally:
            child.kill()


def test_signals_never_reach_pid_1_pidone_or_everyone() -> None:
    for pid in (-1, 0, 1, os.getpid()):
        assert signals.send_signal(pid, 0) is False
        assert signals.send_signal(pid, 0, group=True) is False


def test_sigkill_to_the_group_of_a_process_leading_none_still_kills_it() -> None:
    with subprocess.Popen(["sleep", "30"]) as child:  # in our group: it leads none
        assert os.getpgid(child.pid) != child.pid
        assert signals.send_signal(child.pid, signal.SIGKILL, group=True) is True
        assert child.wait(timeout=10) == -signal.SIGKILL
