"""Run pidone for real, as PID 1 of a fresh PID namespace or as a subreaper.

`Init` starts it, finds its pid on our side of the namespace, reads its
output line by line with timeouts, and tears it down by pid. Killing PID 1
of a namespace ends everything in it, so teardown is one kill.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PIDONE = str(Path(sys.executable).parent / "pidone")
PYTHON = sys.executable
HELPERS = Path(__file__).parent
MODES = ("pid1", "subreaper")


def missing_privilege(reason: str) -> None:
    """A test that cannot run here: under CI=true a failure, else a skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def require_root() -> None:
    if os.geteuid() != 0:
        missing_privilege("this test needs root (CI runs as root)")


def helper(name: str) -> list[str]:
    return [PYTHON, str(HELPERS / name)]


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def descendants(pid: int) -> list[int]:
    """All live descendants of pid, children first."""
    found: list[int] = []
    queue = [pid]
    while queue:
        kids = children_of(queue.pop())
        found.extend(kids)
        queue.extend(kids)
    return found


def proc_state(pid: int) -> str:
    """Its state letter (R, S, Z, ...); "" once it is gone: a pid listed a
    moment ago may have been reaped since (an orphan storm's are)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""
    return stat[stat.rindex(")") + 2 :].split()[0]


def wait_for(predicate: object, timeout: float = 10.0, what: str = "condition") -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class Init:
    """pidone running CMD; `pid` is pidone's pid as seen from the test."""

    def __init__(
        self,
        mode: str,
        args: list[str],
        *,
        stdin: int | None = subprocess.DEVNULL,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        prefix: list[str] | None = None,
    ) -> None:
        if mode == "pid1":
            require_root()
            argv = ["unshare", "--pid", "--fork", "--mount-proc", PIDONE, *args]
        else:
            argv = [PIDONE, *args]
        self.mode = mode
        self.proc = subprocess.Popen(
            [*(prefix or []), *argv],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self._buffer = b""
        self.pid = self._find_pidone()

    def _find_pidone(self) -> int:
        if self.mode != "pid1":
            return self.proc.pid
        found: list[int] = []

        def unshare_forked() -> bool:
            found[:] = children_of(self.proc.pid)
            return bool(found) or self.proc.poll() is not None

        wait_for(unshare_forked, what="unshare to fork pidone")
        return found[0] if found else -1

    @property
    def pid_inside(self) -> int:
        """pidone's pid as its children see it."""
        return 1 if self.mode == "pid1" else self.pid

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def readline(self, timeout: float = 10.0) -> str:
        """Next line of the child's stdout (pidone passes stdout through)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise AssertionError(f"no output line within {timeout}s")
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError(f"stdout closed; partial line {self._buffer!r}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def wait(self, timeout: float = 20.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"pidone did not exit within {timeout}s") from None

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode()

    def kill(self) -> None:
        """SIGKILL pidone; as a subreaper its descendants would survive it,
        so they go first (as PID 1 the kernel ends the namespace for us)."""
        if self.proc.poll() is None:
            doomed = descendants(self.pid) if self.mode != "pid1" else []
            for pid in [*doomed, self.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> Init:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
