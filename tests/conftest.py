"""The session, as root, first makes sure the tests' other users can reach the
checkout (tests/helpers/checkout.py): in a clone other users cannot traverse,
it opens the way in a mount namespace of its own, or else says at once what
is in the way and how to fix it. It runs before any thread exists (unshare
of a mount namespace needs a single-threaded process)."""

from __future__ import annotations

import os

import pytest

from tests.helpers import checkout

_header: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    if os.geteuid() == 0 and not _header:
        _header.append(checkout.open_for_other_users())


def pytest_report_header(config: pytest.Config) -> list[str]:
    return _header
