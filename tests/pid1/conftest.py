from __future__ import annotations

import pytest

from tests.helpers.running import MODES


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """Every behaviour holds both as PID 1 and as a subreaper (not PID 1)."""
    return str(request.param)
