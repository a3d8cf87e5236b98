"""One init as PID 1 of a fresh PID namespace, seen from the host.

    unshare --pid --fork --kill-child --mount-proc INIT... CHILD...

`pid` is the init's host pid: the child of the unshare process. SIGKILL to
it ends the whole namespace, which is how every launch is cleaned up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import prctl

from pidbench import procfs
from pidbench.errors import BenchError
from pidbench.inits import Init
from pidbench.waiting import wait_for

# --kill-child: should unshare die, its child (the init, PID 1) gets SIGKILL,
# which takes the whole namespace down with it.
UNSHARE = ("unshare", "--pid", "--fork", "--kill-child", "--mount-proc")


def die_with_parent() -> None:
    """preexec_fn: if the benchmark itself is killed, what it started dies
    too (unshare, and through --kill-child the namespace), instead of lingering."""
    prctl.set_pdeathsig(signal.SIGKILL)


class Namespace:
    def __init__(self, init: Init, command: Sequence[str], workdir: Path) -> None:
        self.init = init
        self.command = list(command)
        self.rundir = Path(tempfile.mkdtemp(prefix=f"{init.name}-", dir=workdir))
        self.log_path = self.rundir / "output.log"
        self.unshare: subprocess.Popen[bytes] | None = None
        self.pid = 0

    def __enter__(self) -> Namespace:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        argv = [*UNSHARE, *self.init.argv(self.command, self.rundir)]
        with open(self.log_path, "wb") as log:
            self.unshare = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        unshare_exe = procfs.exe(self.unshare.pid)

        def init_has_exec_d() -> int | None:
            self._check_running()
            for pid in procfs.children(self.require_unshare().pid):
                exe = procfs.exe(pid)
                if exe is not None and exe != unshare_exe:
                    return pid
            return None

        self.pid = wait_for(init_has_exec_d, 10, f"{self.init.name} to start")

    def running_child(self, executable: str, timeout: float = 10) -> int:
        """Host pid of the init's child once it runs `executable`."""
        target = os.path.realpath(executable)

        def probe() -> int | None:
            self._check_running()
            for pid in procfs.children(self.pid):
                if procfs.exe(pid) == target:
                    return pid
            return None

        return wait_for(probe, timeout, f"{self.init.name} to run {executable}")

    def wait_exit(self, timeout: float) -> int:
        """The init's exit status (unshare passes it on)."""
        try:
            return self.require_unshare().wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{self.init.name} did not exit within {timeout:g} s") from exc

    def stop(self) -> None:
        if self.unshare is None:
            return
        # Only the pid we found, and only while it is still unshare's child:
        # after unshare has reaped it the number may belong to someone else.
        if self.pid and procfs.is_child_of(self.pid, self.unshare.pid):
            os.kill(self.pid, signal.SIGKILL)
        try:
            self.unshare.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.unshare.kill()  # --kill-child then takes the namespace down
            self.unshare.wait(timeout=10)

    def output(self, limit: int = 2000) -> str:
        """The tail of what the init and its child wrote, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-limit:].strip()

    def require_unshare(self) -> subprocess.Popen[bytes]:
        if self.unshare is None:
            raise BenchError(f"{self.init.name} was not started")
        return self.unshare

    def _check_running(self) -> None:
        status = self.require_unshare().poll()
        if status is not None:
            raise BenchError(f"{self.init.name} exited early ({status}): {self.output()!r}")
