"""The e2e tests need the webapp example installed (Debian's redis-server and
nginx, the users, /opt/pidone-webapp-venv). `make test` and `make test-e2e`
install it first; for a bare `pytest` the install runs once, after
collection and outside any test's timeout, and each test fails with its
output if it could not be done (never skipped under CI=true)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.webapp import INSTALL, WEBAPP_DIR, Webapp
from tests.helpers.checkout import require_other_users
from tests.helpers.running import require_root

HERE = Path(__file__).resolve().parent
_install: dict[str, str | int] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    wanted = any(Path(str(item.path)).resolve().is_relative_to(HERE) for item in session.items)
    if not wanted or os.geteuid() != 0 or _install:
        return
    try:
        done = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=1800)
        _install.update(status=done.returncode, output=done.stdout + done.stderr)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _install.update(status=-1, output=f"{INSTALL}: {exc}")


@pytest.fixture(scope="session")
def installed() -> None:
    require_root()
    require_other_users()
    if not _install:  # collected in some other way: install now
        done = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=1800)
        _install.update(status=done.returncode, output=done.stdout + done.stderr)
    if _install["status"] != 0:
        pytest.fail(
            f"the webapp example could not be installed ({INSTALL} exited with status "
            f"{_install['status']}):\n{_install['output']}",
            pytrace=False,
        )


@contextmanager
def running_webapp(settings: str = "") -> Iterator[Webapp]:
    """The whole stack, up and ready (a task went through it), in a state
    directory of its own that the app's users can reach. `settings`: lines
    added to the example's [pidone] table (in a copy of its pidone.toml)."""
    state = Path(tempfile.mkdtemp(prefix="pidone-e2e-", dir="/tmp"))
    state.chmod(0o755)
    config = None
    if settings:
        config = state / "pidone.toml"
        text = (WEBAPP_DIR / "pidone.toml").read_text()
        config.write_text(text.replace("[pidone]\n", f"[pidone]\n{settings}\n", 1))
        config.chmod(0o644)
    stack = Webapp(state, config)
    try:
        stack.wait_ready()
        yield stack
    finally:
        stack.kill()
        # pytest shows this only for a failed test
        print(f"--- what the stack said, request logs left out ---\n{stack.events(150)}")
        print(f"--- the stack's last lines ---\n{stack.tail(40)}")
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def webapp(installed: None) -> Iterator[Webapp]:
    with running_webapp() as stack:
        yield stack
