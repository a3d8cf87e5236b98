"""Programs the benchmark runs under each init.

They use the standard library only and run on Debian's python3 rather than
the venv: they must not depend on pidone's install, and start fast. The
shell script (up.sh) is for where even that start-up would be in the way.
"""

from __future__ import annotations

import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = "/usr/bin/python3"
SHELL = "/bin/sh"
SLEEP = shutil.which("sleep") or "/usr/bin/sleep"

# A child that does nothing for longer than any measurement, and dies at once
# on SIGTERM (sleep keeps the default dispositions).
SLEEPER = (SLEEP, "1000")


def program(name: str, *args: str) -> list[str]:
    """argv that runs children/<name>.py with `args`."""
    return [PYTHON, str(HERE / f"{name}.py"), *args]


def script(name: str, *args: str) -> list[str]:
    """argv that runs children/<name>.sh with `args`."""
    return [SHELL, str(HERE / f"{name}.sh"), *args]
