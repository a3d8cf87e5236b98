"""One init as PID 1 of a fresh PID namespace, seen from the host.

    unshare --pid --fork --kill-child --mount-proc INIT... [CHILD...]

`pid` is the init's host pid: the child of the unshare process. SIGKILL to
it ends the whole namespace, which is how every launch is cleaned up. The
init runs in its own rundir (where its configuration is), with its stdout
and stderr in a log file there, or in a pipe the caller reads.

Processes in the namespace are either the workload (the bench's child
programs and `sleep`) or the init's supervision tree: the init and its
helpers (runsv, s6-supervise, honcho's per-process workers and shells...).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import prctl

from pidbench import procfs
from pidbench.children import HERE as CHILDREN_DIR
from pidbench.children import SLEEP
from pidbench.errors import BenchError
from pidbench.inits import Init
from pidbench.waiting import wait_for
from pidbench.workload import Workload

# --kill-child: should unshare die, its child (the init, PID 1) gets SIGKILL,
# which takes the whole namespace down with it.
UNSHARE = ("unshare", "--pid", "--fork", "--kill-child", "--mount-proc")


# Set by the profiler: called with each namespace once its init runs; what it
# returns is called when the namespace is being stopped, before the SIGKILL.
Observer = Callable[["Namespace"], Callable[[], None]]
observer: Observer | None = None


def die_with_parent() -> None:
    """preexec_fn: if the benchmark itself is killed, what it started dies
    too (unshare, and through --kill-child the namespace), instead of lingering."""
    prctl.set_pdeathsig(signal.SIGKILL)


class Namespace:
    def __init__(
        self,
        init: Init,
        workload: Workload | Sequence[str],
        workdir: Path,
        output: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.init = init
        self.workload = workload if isinstance(workload, Workload) else Workload.single(workload)
        prefix = init.name.replace(" ", "-").replace("+", "")
        self.rundir = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=workdir))
        self.log_path = self.rundir / "output.log"
        self.output_fd = output  # an fd for the init's stdout and stderr, else log_path
        self.env = env  # the init's environment (default: ours)
        self._observed: Callable[[], None] | None = None
        self.unshare: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.started_ns = 0  # time.monotonic_ns() just before unshare was started

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
        argv = [*UNSHARE, *self.init.argv(self.workload, self.rundir)]
        with open(self.log_path, "wb") as log:
            self.started_ns = time.monotonic_ns()
            self.unshare = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log if self.output_fd is None else self.output_fd,
                stderr=subprocess.STDOUT,
                cwd=self.rundir,
                env=self.env,
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
        if observer is not None:
            self._observed = observer(self)

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

    def processes(self) -> list[int]:
        """Every process in the namespace but the init, zombies included."""
        return procfs.descendants(self.pid)

    def supervision_tree(self) -> list[int]:
        """The init and its helpers: every live process in the namespace but the workload."""
        tree = [self.pid]
        for pid in self.processes():
            argv = procfs.cmdline(pid)
            if argv and not is_workload(argv):
                tree.append(pid)
        return tree

    def workload_pids(self, executable: str | None = None) -> list[int]:
        """Live processes of the workload (those running `executable`, if given)."""
        target = None if executable is None else os.path.realpath(executable)
        found = []
        for pid in self.processes():
            argv = procfs.cmdline(pid)
            if argv and is_workload(argv) and (target is None or procfs.exe(pid) == target):
                found.append(pid)
        return found

    def wait_workload(self, executable: str, count: int, timeout: float = 10) -> list[int]:
        """Host pids of `count` workload processes running `executable`."""

        def probe() -> list[int] | None:
            self._check_running()
            pids = self.workload_pids(executable)
            return pids if len(pids) >= count else None

        return wait_for(probe, timeout, f"{self.init.name} to run {count} x {executable}")

    def pidfd(self) -> int:
        """A pidfd of the init: readable once it has exited. The caller closes it."""
        return os.pidfd_open(self.pid)

    def exited(self) -> bool:
        return self.require_unshare().poll() is not None

    def wait_exit(self, timeout: float) -> int:
        """The init's exit status (unshare passes it on)."""
        try:
            return self.require_unshare().wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{self.init.name} did not exit within {timeout:g} s") from exc

    def stop(self) -> None:
        if self.unshare is None:
            return
        if self._observed is not None:
            done, self._observed = self._observed, None
            done()
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

    def check_running(self) -> None:
        self._check_running()

    def _check_running(self) -> None:
        status = self.require_unshare().poll()
        if status is not None:
            raise BenchError(f"{self.init.name} exited early ({status}): {self.output()!r}")


def is_workload(argv: Sequence[str]) -> bool:
    """A bench program (children/*, by path) or `sleep`; not a shell around one
    (`sh -c '...'`, which is how honcho runs every command)."""
    if os.path.basename(argv[0]) == os.path.basename(SLEEP):
        return True
    return len(argv) > 1 and argv[1].startswith(f"{CHILDREN_DIR}/")
