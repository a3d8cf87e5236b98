"""Spawn a child through pidone's fast path (posix_spawn), from a process
whose signal state is as dirty as a launcher can make it, and print what the
child got, as JSON, read from its /proc entries once it has exec'd.

Before spawning, this process ignores SIGHUP, SIGUSR1 and glibc's signal 32
(with the raw syscall: sigaction() refuses it), blocks SIGUSR2, and catches
everything else as pidone does. The fork path is disabled: taking it fails.
The child is `sh -c 'echo ready; read line'`: its "ready" says that its exec
is over (posix_spawn returns before the kernel has closed the close-on-exec
fds), and it waits on its stdin while we look.

    spawn_probe.py [--cwd DIR]
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

from pidone.system import signals, spawn


def ignore_raw(signum: int) -> None:
    nr = {"x86_64": 13, "aarch64": 134}[os.uname().machine]
    act = ctypes.create_string_buffer(64)
    act[0] = 1  # type: ignore[call-overload]  # the handler: SIG_IGN (1)
    assert ctypes.CDLL(None).syscall(nr, signum, act, None, 8) == 0


def status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def fd_targets(pid: int) -> dict[str, str]:
    fds = sorted(os.listdir(f"/proc/{pid}/fd"), key=int)
    return {fd: os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds}


def main() -> None:
    cwd = sys.argv[2] if sys.argv[1:2] == ["--cwd"] else None
    signals.catch_signals([*signals.forwardable_signals(), signal.SIGCHLD])
    for signum in (signal.SIGHUP, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)
    ignore_raw(32)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    mine = status(os.getpid())
    assert int(mine["SigIgn"], 16) & (1 << 31), "signal 32 is not ignored: proves nothing"

    def no_fork(*args: object) -> int:
        raise AssertionError("took the fork path")

    spawn._fork_exec = no_fork  # type: ignore[assignment]
    in_read, in_write = os.pipe2(os.O_CLOEXEC)
    out_read, out_write = os.pipe2(os.O_CLOEXEC)
    argv = ["sh", "-c", "echo ready; read line"]
    fds = {0: in_read, 1: out_write, 2: out_write}
    pid = spawn.spawn(argv, env=dict(os.environ), cwd=cwd, fds=fds, fast=True)
    try:
        assert os.read(out_read, 100) == b"ready\n"
        child = status(pid)
        report = {
            "pid": pid,
            "parent_sigign": mine["SigIgn"],
            "parent_sigblk": mine["SigBlk"],
            "SigIgn": child["SigIgn"],
            "SigBlk": child["SigBlk"],
            "pgid": os.getpgid(pid),
            "sid": os.getsid(pid),
            "our_sid": os.getsid(0),
            "fds": fd_targets(pid),
            "stdin": os.readlink(f"/proc/self/fd/{in_read}"),
            "stdout": os.readlink(f"/proc/self/fd/{out_write}"),
            "cwd": os.readlink(f"/proc/{pid}/cwd"),
        }
    finally:
        os.close(in_write)  # `read` gets EOF: the child exits
        os.waitpid(pid, 0)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
