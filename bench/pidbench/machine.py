"""Where and with what the benchmark ran: for the header of RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from collections.abc import Sequence

from pidbench.children import PYTHON as CHILD_PYTHON
from pidbench.inits import REPO, Init


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.machine()


def _run(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def describe_machine() -> list[tuple[str, str]]:
    cpus = len(os.sched_getaffinity(0))
    return [
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("machine", f"{cpus} CPUs ({_cpu_model()}), {platform.machine()}"),
        ("kernel", platform.release()),
        ("python (pidone's venv)", platform.python_version()),
        (
            "python (child programs)",
            _run([CHILD_PYTHON, "-c", "import platform; print(platform.python_version())"]),
        ),
    ]


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def describe_tools(inits: Sequence[Init]) -> list[tuple[str, str]]:
    tools = []
    seen: set[str] = set()
    for init in inits:
        if init.executable in seen:
            continue  # pidone's variants: the same program
        seen.add(init.executable)
        version = init.version()
        if init.is_pidone:
            commit = _run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
            dirty = _run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"])
            version += f" (commit {commit}{', src/ modified' if dirty != 'unknown' else ''})"
        tools.append(("pidone" if init.is_pidone else init.name, version))
    tools.append(("unshare", _run(["unshare", "--version"])))
    return tools
