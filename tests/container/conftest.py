"""The container tests need podman (from Debian) and the images
(tests/container/images.py). Both are made once, after collection and outside
any test's timeout: a first run takes a few minutes (two debootstraps, uwsgi
compiled), a rerun with nothing changed a few seconds. If they cannot be made,
each test fails with the reason (never skipped under CI=true)."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import pytest

from tests.container.images import Images, ensure_images
from tests.container.podman import install_podman
from tests.helpers.running import require_root

HERE = Path(__file__).resolve().parent
_made: dict[str, Images | str] = {}


def _make() -> None:
    try:
        install_podman()
        _made["images"] = ensure_images()
    except Exception:
        _made["error"] = traceback.format_exc()


def pytest_collection_finish(session: pytest.Session) -> None:
    wanted = any(Path(str(item.path)).resolve().is_relative_to(HERE) for item in session.items)
    if wanted and os.geteuid() == 0 and not _made:
        _make()
        made = _made.get("images")
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if isinstance(made, Images) and reporter is not None:
            took = ", ".join(f"{name} {s:.0f} s" for name, s in made.timings.items())
            reporter.write_line(f"container images ready ({took}; 0 s: cached)")


@pytest.fixture(scope="session")
def images() -> Images:
    require_root()
    if not _made:  # collected in some other way: make them now
        _make()
    made = _made.get("images")
    if not isinstance(made, Images):
        pytest.fail(f"the container images could not be made:\n{_made.get('error')}", pytrace=False)
    return made
