"""Run pidone and record its resident memory at every module it imports.

    .venv/bin/python bench/pidbench/rss_trace.py OUT PIDONE-ARGS...

An audit hook sees each `import` event (a module that is not loaded yet)
and appends `PID MODULE RSS_KIB CALLER` to OUT, RSS read from
/proc/self/statm at that moment, CALLER the innermost function of pidone's
on the stack (`pidone.runtime.loop.run`, or `-`); the first line is
`PID <start> RSS_KIB -`, the interpreter before pidone. PID tells pidone's
own lines from those of a child it forked that imports something before it
execs.
What a module costs is the growth until the next import begins: its own
code and what its body builds, not what it imports. profile.py pairs this
with PYTHONPROFILEIMPORTTIME's tree (who imported whom) to put every
module's cost on the import of pidone's that pulled it in.
"""

from __future__ import annotations

import os
import sys
from types import FrameType

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _rss_kib() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * PAGE_KIB


def _caller() -> str:
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if isinstance(module, str) and module.startswith("pidone"):
            return f"{module}.{frame.f_code.co_name}"
        frame = frame.f_back
    return "-"


def main() -> int:
    out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "import":
            line = f"{os.getpid()} {args[0]} {_rss_kib()} {_caller()}\n"
            os.write(out, line.encode())

    os.write(out, f"{os.getpid()} <start> {_rss_kib()} -\n".encode())
    sys.addaudithook(hook)
    sys.argv = ["pidone", *sys.argv[2:]]
    from pidone.cli import main as pidone_main

    return pidone_main()


if __name__ == "__main__":
    sys.exit(main())
