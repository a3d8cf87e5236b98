"""Run a command where some directories exist that do not on this machine.

    unshare --mount --propagation private python made_dirs.py SPEC.json

SPEC: {"dirs": [...], "files": {name: text}, "argv": [...]}. In the mount
namespace of its own, each directory's nearest existing ancestor gets a
tmpfs (the host's file systems stay as they were), the directories are made
there, the files are written into a fresh directory, and argv runs in it:
`pidone check` of an imported config that names /srv/www/... sees them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    covered: set[Path] = set()
    for name in spec["dirs"]:
        path = Path(name)
        if path.exists():
            continue
        top = path
        while not top.parent.exists():
            top = top.parent
        base = top.parent
        if base == Path("/") or Path(sys.executable).is_relative_to(base):
            sys.exit(f"made_dirs: would cover {base}, which the test needs")
        if base not in covered:
            subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(base)], check=True)
            covered.add(base)
    for name in spec["dirs"]:
        os.makedirs(name, exist_ok=True)
    work = tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None)
    for name, text in spec["files"].items():
        Path(work, name).write_text(text)
    return subprocess.run(spec["argv"], cwd=work).returncode


if __name__ == "__main__":
    sys.exit(main())
