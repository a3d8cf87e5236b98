"""Run pidone and record its resident memory at every module it imports.

    .venv/bin/python bench/pidbench/rss_trace.py OUT PIDONE-ARGS...

An audit hook sees each `import` event (a module that is not loaded yet)
and appends `MODULE RSS_KIB` to OUT, RSS read from /proc/self/statm at that
moment; the first line is `<start> RSS_KIB`, the interpreter before pidone.
What a module costs is the growth until the next import begins: its own
code and what its body builds, not what it imports. profile.py pairs this
with PYTHONPROFILEIMPORTTIME's tree (who imported whom) to put every
module's cost on the import of pidone's that pulled it in.
"""

from __future__ import annotations

import os
import sys

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _rss_kib() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * PAGE_KIB


def main() -> int:
    out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "import":
            os.write(out, f"{args[0]} {_rss_kib()}\n".encode())

    os.write(out, f"<start> {_rss_kib()}\n".encode())
    sys.addaudithook(hook)
    sys.argv = ["pidone", *sys.argv[2:]]
    from pidone.cli import main as pidone_main

    return pidone_main()


if __name__ == "__main__":
    sys.exit(main())
