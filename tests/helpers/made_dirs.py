"""Run a command where some directories exist that do not on this machine.

    unshare --mount --propagation private python made_dirs.py SPEC.json

SPEC: {"dirs": [...], "files": {name: text}, "argv": [...]}. In the mount
namespace of its own, each directory's nearest existing ancestor gets an
overlay of itself with a scratch upper layer (what it holds stays visible,
the checkout too when it lies there, as in a clone under /tmp; the host's
file systems stay as they were), the directories are made there, the files
are written into a fresh directory, and argv runs in it: `pidone check` of an
imported config that names /srv/www/... or /tmp/testproj sees them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# A tmpfs the session leaves alone (overlay's upper layer may not lie in
# what it covers); emptied at the end.
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None


def overlay(base: Path, scratch: Path) -> None:
    """`base` as it is, writable in this mount namespace only (what is made
    there goes to `scratch`)."""
    scratch = Path(tempfile.mkdtemp(dir=scratch))
    (scratch / "upper").mkdir()
    (scratch / "work").mkdir()
    layers = f"lowerdir={base},upperdir={scratch / 'upper'},workdir={scratch / 'work'}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", layers, str(base)], check=True)


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    covered: set[Path] = set()
    scratch = Path(tempfile.mkdtemp(prefix="made-dirs-", dir=SCRATCH))
    try:
        return run(spec, covered, scratch)
    finally:
        for base in covered:
            subprocess.run(["umount", "--lazy", str(base)], check=False)
        shutil.rmtree(scratch, ignore_errors=True)


def run(spec: dict[str, Any], covered: set[Path], scratch: Path) -> int:
    for name in spec["dirs"]:
        path = Path(name)
        if path.exists():
            continue
        top = path
        while not top.parent.exists():
            top = top.parent
        base = top.parent
        if base == Path("/"):
            sys.exit(f"made_dirs: would cover /, to make {name}")
        if base not in covered:
            overlay(base, scratch)
            covered.add(base)
    for name in spec["dirs"]:
        os.makedirs(name, exist_ok=True)
    work = tempfile.mkdtemp(dir=scratch)
    for name, text in spec["files"].items():
        Path(work, name).write_text(text)
    return subprocess.run(spec["argv"], cwd=work).returncode


if __name__ == "__main__":
    sys.exit(main())
