"""`pidone ctl reexec`'s system calls: the handover's memfd, the preflight
of the new code, the fds kept across the exec, the exec itself.

The exec keeps the pid (PID 1 stays PID 1), the children, and every fd not
close-on-exec; the signal mask and pending signals survive it too, so a
SIGCHLD that comes meanwhile waits, blocked, for the new pidone's signalfd.
CLOCK_MONOTONIC goes on: the handed-over times stay valid.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Collection, Mapping, Sequence

from pidone.system import spawn

ENV = "PIDONE_REEXEC_FD"  # in pidone's own environment only: never a child's
MAX_HANDOVER = 16 * 1024 * 1024  # bytes of the handover read, at most
PREFLIGHT_TIMEOUT = 10.0  # seconds the new code's `pidone check` may take
PREFLIGHT_OUTPUT = 16 * 1024  # bytes of its output kept for the reply
_PREFLIGHT_FD = 3  # the handover's fd in the preflight


class HandoverError(Exception):
    """The handover cannot be read: why."""


def write_handover(data: bytes) -> int:
    """A close-on-exec memfd holding `data`, at offset 0 (made inheritable
    only for the exec, by keep_across_exec)."""
    fd = os.memfd_create("pidone-reexec", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_handover(fd: int, *, close: bool = True) -> bytes:
    """The handover in fd, at most MAX_HANDOVER bytes; HandoverError else."""
    try:
        chunks: list[bytes] = []
        size = 0
        offset = 0
        while True:
            chunk = os.pread(fd, 1024 * 1024, offset)
            if not chunk:
                break
            offset += len(chunk)
            size += len(chunk)
            if size > MAX_HANDOVER:
                raise HandoverError(f"larger than {MAX_HANDOVER // (1024 * 1024)} MiB")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise HandoverError(f"fd {fd}: {exc.strerror or exc}") from None
    finally:
        if close:
            try:  # noqa: SIM105 - one fd, one close
                os.close(fd)
            except OSError:
                pass


def handover_fd(environ: Mapping[str, str]) -> int | None:
    """The fd PIDONE_REEXEC_FD names, None without one; HandoverError if
    it names no fd a handover can be in (0-2, not a number, not open)."""
    text = environ.get(ENV)
    if text is None:
        return None
    if not text.isdigit() or not 3 <= int(text) < 1 << 20:
        raise HandoverError(f"{ENV}={text[:40]!r} is no fd number from 3")
    fd = int(text)
    try:
        os.fstat(fd)
    except OSError as exc:
        raise HandoverError(f"{ENV}={fd}: {exc.strerror}") from None
    return fd


def inherit_only(keep: Collection[int]) -> None:
    """Before the exec: the fds in `keep` inheritable, every other one but
    0, 1 and 2 close-on-exec (a child's pipe end, an epoll, anything a
    library opened: nothing leaks into the new pidone, nor through it into
    a child)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2:
            continue
        with contextlib.suppress(OSError):  # the listing's own fd, closed already
            os.set_inheritable(fd, fd in keep)
    for fd in keep:
        os.set_inheritable(fd, True)


def not_inherited(fds: Collection[int]) -> None:
    """After the exec (or a failed one): close-on-exec again, so that no
    child is given them."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.set_inheritable(fd, False)


def preflight(argv: Sequence[str], env: Mapping[bytes, bytes], fd: int, devnull: int) -> str | None:
    """Run `argv` (the new code's `pidone check ...`) with the handover as
    its fd 3 and PIDONE_REEXEC_FD=3: None if it exits 0 within
    PREFLIGHT_TIMEOUT, else why not, with the end of its output. Blocks
    the caller for that long at most (it is SIGKILLed then)."""
    env = {**env, ENV.encode(): str(_PREFLIGHT_FD).encode()}
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        pid = spawn.spawn(argv, env=env, fds={0: devnull, 1: write_end, 2: write_end, 3: fd})
    except Exception as exc:
        os.close(read_end)
        return f"cannot run {argv[0]}: {exc}"
    finally:
        os.close(write_end)
    output = bytearray()
    deadline = time.monotonic() + PREFLIGHT_TIMEOUT
    os.set_blocking(read_end, False)
    status: int | None = None
    try:
        while status is None:
            try:
                chunk = os.read(read_end, 65536)
                output += chunk
                del output[:-PREFLIGHT_OUTPUT]
            except BlockingIOError:
                chunk = b"?"
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(wait_status)
                break
            if time.monotonic() >= deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                return f"the new code's check took more than {PREFLIGHT_TIMEOUT:g} s"
            if chunk == b"?":
                time.sleep(0.01)
        with contextlib.suppress(BlockingIOError):
            output += os.read(read_end, PREFLIGHT_OUTPUT)
    finally:
        os.close(read_end)
    if status == 0:
        return None
    text = bytes(output[-PREFLIGHT_OUTPUT:]).decode("utf-8", "replace").strip()
    return f"the new code's `pidone check` exited with status {status}: {text}"


def execute(argv: Sequence[str], env: Mapping[bytes, bytes]) -> Exception:
    """Replace this process with `argv` (sys.executable first); returns
    only if the exec failed, with its error (OSError from the kernel,
    ValueError from os.execve for a NUL byte or a bad variable name)."""
    try:
        os.execve(sys.executable, list(argv), dict(env))
    except (OSError, ValueError) as exc:
        return exc
    raise AssertionError("unreachable")  # pragma: no cover


def sweep_leftovers(timeout: float) -> None:
    """A handover that cannot be used: every process left (they are ours,
    unknown now) SIGTERMed, SIGKILLed after `timeout`, all reaped."""
    import signal

    from pidone.system import reap, signals

    signals.signal_everyone_else(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    killed = False
    while reap.has_children():
        reap.reap_zombies()
        if time.monotonic() >= deadline:
            if killed:
                break
            signals.signal_everyone_else(signal.SIGKILL)
            killed, deadline = True, time.monotonic() + timeout
        time.sleep(0.02)
    reap.reap_zombies()


def close_inherited(named: Collection[int] = ()) -> None:
    """Close the fds `named` and every inheritable fd but 0, 1 and 2: what
    the old pidone handed over (pidone's own fds are close-on-exec)."""
    for fd in named:
        if fd > 2:
            with contextlib.suppress(OSError):
                os.close(fd)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        with contextlib.suppress(OSError):
            if fd > 2 and os.get_inheritable(fd):
                os.close(fd)
