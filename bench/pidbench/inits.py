"""The inits under test: how each one wraps a child command, and its version.

To add one (supervisord, circus, honcho, s6-svscan, runsvdir...), write a
`wrap` that returns its argv around the child command; inits that need a
config file write it into the per-launch `workdir` they are given.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
# The bare interpreter pidone runs on: the memory baseline.
VENV_PYTHON = VENV_BIN / "python"

Wrap = Callable[[Sequence[str], Path], list[str]]


@dataclass(frozen=True)
class Init:
    name: str
    executable: str
    wrap: Wrap  # (child command, workdir) -> argv that runs the init with it
    version_args: tuple[str, ...] = ("--version",)

    def argv(self, command: Sequence[str], workdir: Path) -> list[str]:
        return self.wrap(command, workdir)

    def available(self) -> bool:
        return os.access(self.executable, os.X_OK)

    def version(self) -> str:
        """First line the init prints for its version flag (some use stderr)."""
        try:
            done = subprocess.run(
                [self.executable, *self.version_args],
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


PIDONE_BIN = str(VENV_BIN / "pidone")
TINI_BIN = _system_binary("tini")
DUMB_INIT_BIN = _system_binary("dumb-init")

PIDONE = Init("pidone", PIDONE_BIN, lambda cmd, _: [PIDONE_BIN, "--", *cmd], ("-V",))
TINI = Init("tini", TINI_BIN, lambda cmd, _: [TINI_BIN, "--", *cmd])
DUMB_INIT = Init("dumb-init", DUMB_INIT_BIN, lambda cmd, _: [DUMB_INIT_BIN, *cmd])

# Ratios in the report are taken against this one.
REFERENCE = TINI.name
INITS: tuple[Init, ...] = (PIDONE, TINI, DUMB_INIT)
