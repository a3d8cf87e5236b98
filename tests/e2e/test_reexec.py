"""`pidone ctl reexec` on the real stack, through nginx under continuous
requests: pidone installed (not editable) into a venv of its own, the
webapp run by it; a newer pidone (a copy of this tree with a higher
version) installed into that venv, then `ctl reexec`: redis, uwsgi and
celery keep their pids, /metrics says the new version, no request fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pidone import __version__
from tests.e2e.conftest import running_webapp
from tests.e2e.test_control import ctl, restarts, samples
from tests.e2e.webapp import INSTALL, PROGRAMS, REPO

# Its own venv: the shared /opt/pidone-webapp-venv keeps this tree's pidone.
VENV = Path("/opt/pidone-reexec-venv")
NEWER = f"{__version__}.post19"


def pip_install(tree: Path) -> None:
    """pidone from `tree` into VENV, as a release is installed (not editable)."""
    done = subprocess.run(
        [str(VENV / "bin" / "pip"), "install", "-q", "--no-deps", "--force-reinstall", str(tree)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr


def copy_of_the_tree(into: Path, version: str) -> Path:
    """This checkout's pidone (pyproject, README, src) with `version`."""
    tree = into / "pidone-src"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tree / name)
    shutil.copytree(REPO / "src", tree / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    for path, pattern in (
        (tree / "pyproject.toml", r'^version = "[^"]+"$'),
        (tree / "src" / "pidone" / "__init__.py", r'^__version__ = "[^"]+"$'),
    ):
        text = path.read_text()
        new, count = re.subn(
            pattern, lambda m: re.sub('"[^"]+"', f'"{version}"', m[0]), text, count=1, flags=re.M
        )
        assert count == 1, path
        path.write_text(new)
    return tree


@pytest.fixture
def own_venv(installed: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """VENV made by the example's install.sh (its stamps keep it fast), with
    this tree's pidone installed anew (the last run left the newer one)."""
    (VENV / ".pidone").unlink(missing_ok=True)
    done = subprocess.run(
        [str(INSTALL)],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "WEBAPP_VENV": str(VENV)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    monkeypatch.setenv("WEBAPP_VENV", str(VENV))  # run.py's, and `run.py exec`'s
    yield
    (VENV / ".pidone").unlink(missing_ok=True)  # the newer one is in it now


def test_ctl_reexec_into_a_newer_pidone_keeps_every_pid_and_fails_no_request(
    own_venv: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_webapp() as webapp:
        pids = {name: webapp.main_pid(name) for name in PROGRAMS}
        before = samples(webapp)
        assert before["pidone_build_info", (("version", __version__),)] == 1
        pip_install(copy_of_the_tree(tmp_path, NEWER))
        with webapp.load(threads=8, seconds=60, max_requests=60_000) as load:
            load.wait_ok(1000)
            mark = webapp.mark()
            result = ctl(webapp, "reexec", "--timeout", "60")
            assert result.returncode == 0, result.stderr
            assert result.stdout.splitlines() == [
                f"re-executing: pid 1, version {__version__}",
                f"re-executed: pidone {NEWER}",
            ]
            during = load.ok()
            load.wait_ok(1000)  # served on, after the exec
        report = load.stop()

        assert report["failed"] == {}, report
        assert report["ok"] >= 2000, report
        assert {name: webapp.main_pid(name) for name in PROGRAMS} == pids
        webapp.wait_for(
            "pidone", rf"^re-executed from version {re.escape(__version__)} \(pid 1\)$", after=mark
        )
        after = samples(webapp)
        assert after["pidone_build_info", (("version", NEWER),)] == 1
        assert ("pidone_build_info", (("version", __version__),)) not in after
        for name in PROGRAMS:
            assert restarts(after, name, "crash") == restarts(before, name, "crash")
        for name in ("pidone", "web", "worker", "redis"):
            assert webapp.find(name, r"FATAL|unclean|exited with|started: pid", mark) is None
        assert webapp.roundtrip(0.1)["slept"] == 0.1

    with capsys.disabled():
        failed = sum(report["failed"].values())
        print(
            f"\n  ctl reexec {__version__} -> {NEWER} under load through nginx: {report['ok']}"
            f" requests ok, {failed} failed, {report['rate']:.0f}/s over"
            f" {report['seconds']:.1f} s; {during} ok when the new pidone answered"
        )
