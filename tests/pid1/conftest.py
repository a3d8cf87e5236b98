from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.running import MODES
from tests.helpers.users import ensure_users, open_dir


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """Every behaviour holds both as PID 1 and as a subreaper (not PID 1)."""
    return str(request.param)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A scratch directory the test users can reach, with the users made."""
    ensure_users()
    with open_dir() as path:
        yield path
