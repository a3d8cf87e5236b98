"""A checkout in a folder other users cannot traverse (a 0700 temporary
directory, as CI makes): a copy of the suite, run there by a pytest session
of its own, still runs programs as other users (pidone as PID 1 and as a
subreaper, the child as pidone-app reading its helper from the copy); and
where the session may not open the way (no CAP_SYS_ADMIN, or a clone made
with umask 077), the tests that need other users fail at once, naming the
folder and the fix, instead of each waiting out its timeout."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import checkout
from tests.helpers.running import PYTHON, require_root

REPO = checkout.REPO
# One test that runs pidone's child as pidone-app, with its helper from the copy.
AS_OTHER_USER = "tests/pid1/test_privileges.py::test_user_group_groups_umask_rlimits_directory"


def copy_suite(into: Path) -> Path:
    """tests/ and what the probe looks for, copied to `into`/pidone (0755)."""
    copy = into / "pidone"
    copy.mkdir()
    copy.chmod(0o755)
    shutil.copytree(REPO / "tests", copy / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "src/pidone/__init__.py", "examples/webapp/app.py"):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, copy / name)
    return copy


@pytest.fixture
def folder() -> Iterator[Path]:
    require_root()
    made = Path(tempfile.mkdtemp(prefix="pidone-private-", dir="/tmp"))
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


@pytest.fixture
def private_copy(folder: Path) -> Path:
    """The suite in a 0700 folder."""
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    (folder / "secret").write_text("root's only\n")
    return copy_suite(folder)


def pytest_in(copy: Path, *prefix: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """AS_OTHER_USER, by a pytest session of its own in `copy`, under CI=true."""
    env = {**os.environ, "CI": "true"}
    env.pop("PYTEST_ADDOPTS", None)
    started = time.monotonic()
    done = subprocess.run(
        [*prefix, PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "-rA", AS_OTHER_USER],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    return done, time.monotonic() - started


def test_a_clone_in_a_0700_folder_still_runs_its_programs_as_other_users(
    private_copy: Path,
) -> None:
    folder = private_copy.parent
    helper = private_copy / "tests" / "helpers" / "whoami.py"
    # from here, nobody cannot reach the copy: the 0700 folder is in the way
    assert checkout.unreachable((helper,)) == [(str(helper), str(folder))]

    done, _ = pytest_in(private_copy)

    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "2 passed" in output, output
    assert (
        f"checkout: reachable by other users in this session's mount namespace ({folder} covered)"
        in output
    ), output
    # nothing changed outside that session: the folder is 0700, its file is there
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert (folder / "secret").read_text() == "root's only\n"
    assert checkout.unreachable((helper,)) == [(str(helper), str(folder))]


def test_a_clone_other_users_cannot_reach_fails_at_once_naming_the_folder_and_the_fix(
    private_copy: Path,
) -> None:
    folder = private_copy.parent
    # root without CAP_SYS_ADMIN (a container's root, say): no mount namespace
    no_mounts = ["setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin", "--"]

    done, took = pytest_in(private_copy, *no_mounts)

    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "2 errors" in output, output
    assert "checkout: NOT reachable by other users" in output, output
    assert f"user nobody cannot reach {private_copy}/" in output, output
    assert f": {folder} (mode 0700, owner root) is not traversable by other users" in output
    assert "unshare(CLONE_NEWNS): Operation not permitted" in output, output
    assert f"Fix: `chmod o+x {folder}`, or clone into a folder every user can traverse" in output
    # at once: less than the two 10 s waits for a report it replaces
    assert took < 15, f"{took:.1f} s"


def test_a_clone_made_with_umask_077_fails_at_once_naming_the_chmod(folder: Path) -> None:
    folder.chmod(0o755)
    old = os.umask(0o077)
    try:
        copy = copy_suite(folder)  # its folders 0700, its files 0600
    finally:
        os.umask(old)

    done, took = pytest_in(copy)

    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "2 errors" in output, output
    assert f": {copy / 'src'} (mode 0700, owner root) is not traversable" in output, output
    assert f"Fix: `chmod -R o+rX {copy}` (the clone was made with a umask such as 077)" in output
    assert took < 15, f"{took:.1f} s"
