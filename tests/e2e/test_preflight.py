"""`make demo` from a clone in a folder the app's users cannot traverse: the
runner refuses at once, naming the folder and the fix, before it starts
anything (else uwsgi, celery and redis could not read their files and would
crash until FATAL)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.e2e.webapp import WEBAPP_DIR


def test_the_demo_from_a_0700_folder_refuses_at_once_naming_the_folder_and_the_fix(
    installed: None,
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="pidone-private-", dir="/tmp"))  # mode 0700
    try:
        example = folder / "pidone" / "examples" / "webapp"
        shutil.copytree(WEBAPP_DIR, example, ignore=shutil.ignore_patterns("__pycache__"))
        state = folder / "state"
        started = time.monotonic()
        done = subprocess.run(
            ["/usr/bin/python3", str(example / "run.py"), "--state", str(state), "--netns"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        took = time.monotonic() - started
        assert done.returncode == 1, done
        assert done.stderr == (
            f"runner | {folder} (mode 0700) is not traversable by other users: the app's users"
            f" (redis, app, celery) cannot read {example}. Fix: `chmod o+x {folder}`, or clone"
            " into a folder every user can traverse\n"
        ), done.stderr
        assert not state.exists()  # nothing started, nothing made
        assert took < 10, f"{took:.1f} s"  # at once, not the 90 s wait for a stack
    finally:
        shutil.rmtree(folder, ignore_errors=True)
