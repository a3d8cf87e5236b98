"""The inits under test: how each one runs a Workload, and its version.

Two kinds. A single-command init (pidone, tini, dumb-init) runs one command:
a workload of several services goes through the launcher shell (see
workload.py). A supervisor (pidone run, supervisord, circus, honcho,
s6-svscan, runsvdir) runs each service as a program of its own, from the
configuration configs.py writes into the launch's rundir.

Variants (pidone run with metrics, with JSON logs) are subjects of the
measurements that ask for them by name, and of no other.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

from pidbench import configs
from pidbench.configs import PEERS_BIN, REPO, VENV_BIN
from pidbench.workload import Workload

__all__ = ["INITS", "PEERS_BIN", "REPO", "VENV_BIN", "VENV_PYTHON", "Init"]

# The bare interpreter pidone runs on: the memory baseline.
VENV_PYTHON = VENV_BIN / "python"

Kind = Literal["single", "supervisor"]
Render = Callable[[Workload, Path], list[str]]


@dataclass(frozen=True)
class Init:
    name: str
    kind: Kind
    executable: str
    render: Render  # (workload, rundir) -> argv; writes its config into rundir
    version_argv: tuple[str, ...] = ()  # default: [executable, "--version"]
    variant: bool = False  # only in the measurements that name it
    install_hint: str = "run `make bench`, which installs it"

    @property
    def is_pidone(self) -> bool:
        return self.name.startswith("pidone")

    @property
    def supervises(self) -> bool:
        return self.kind == "supervisor"

    def argv(self, workload: Workload, rundir: Path) -> list[str]:
        return self.render(workload, rundir)

    def available(self) -> bool:
        return os.access(self.executable, os.X_OK)

    def version(self) -> str:
        """First line the init prints for its version (some use stderr)."""
        argv = list(self.version_argv) or [self.executable, "--version"]
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"unknown ({exc})"
        lines = (done.stdout + done.stderr).strip().splitlines()
        return lines[0] if lines else "unknown"


def _system_binary(name: str) -> str:
    return shutil.which(name) or f"/usr/bin/{name}"


def _single(prefix: Sequence[str]) -> Render:
    def render(workload: Workload, rundir: Path) -> list[str]:
        return [*prefix, *workload.launcher()]

    return render


def _debian_version(package: str) -> tuple[str, ...]:
    return ("dpkg-query", "-W", f"-f={package} ${{Version}} (Debian package)\n", package)


PIDONE_BIN = configs.PIDONE_BIN
TINI_BIN = _system_binary("tini")
DUMB_INIT_BIN = _system_binary("dumb-init")

PIDONE = Init("pidone", "single", PIDONE_BIN, _single([PIDONE_BIN, "--"]), (PIDONE_BIN, "-V"))
PIDONE_RUN = Init("pidone run", "supervisor", PIDONE_BIN, configs.pidone_run, (PIDONE_BIN, "-V"))


def _pidone_run_variant(name: str, *, log_format: str = "text", metrics: bool = False) -> Init:
    """`pidone run` with other settings, measured only where a measurement names it."""
    run = partial(configs.pidone_run, log_format=log_format, metrics=metrics)
    return Init(name, "supervisor", PIDONE_BIN, run, (PIDONE_BIN, "-V"), variant=True)


PIDONE_RUN_METRICS = _pidone_run_variant("pidone run +metrics", metrics=True)
PIDONE_RUN_JSON = _pidone_run_variant("pidone run json", log_format="json")
PIDONE_RUN_RAW = _pidone_run_variant("pidone run raw", log_format="raw")
TINI = Init("tini", "single", TINI_BIN, _single([TINI_BIN, "--"]))
DUMB_INIT = Init("dumb-init", "single", DUMB_INIT_BIN, _single([DUMB_INIT_BIN]))
SUPERVISORD = Init("supervisord", "supervisor", configs.SUPERVISORD_BIN, configs.supervisord)
CIRCUS = Init("circus", "supervisor", configs.CIRCUSD_BIN, configs.circusd)
HONCHO = Init("honcho", "supervisor", configs.HONCHO_BIN, configs.honcho)
S6 = Init(
    "s6-svscan",
    "supervisor",
    configs.S6_SVSCAN_BIN,
    configs.s6_svscan,
    _debian_version("s6"),
)
RUNIT = Init(
    "runsvdir",
    "supervisor",
    configs.RUNSVDIR_BIN,
    configs.runsvdir,
    _debian_version("runit"),
)

# Report order: pidone's subjects first, then the peers.
INITS: tuple[Init, ...] = (
    PIDONE,
    PIDONE_RUN,
    PIDONE_RUN_METRICS,
    PIDONE_RUN_JSON,
    PIDONE_RUN_RAW,
    TINI,
    DUMB_INIT,
    SUPERVISORD,
    CIRCUS,
    HONCHO,
    S6,
    RUNIT,
)
