"""The drain: `[pidone] shutdown_delay` in front of the real stack, nginx in
front of it, under load. SIGTERM to pidone: /readyz is 503 at once and for
the whole delay, every request sent meanwhile is answered, and only then
does the stop begin, in the order it always has."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import running_webapp
from tests.e2e.webapp import Webapp

DELAY = 4.0
READYZ = "http://127.0.0.1:9100/readyz"


def readyz(webapp: Webapp) -> tuple[int | None, str]:
    [answer] = webapp.client("get", READYZ)
    return answer["status"], answer.get("body") or answer.get("error", "")


@pytest.fixture
def draining_webapp(installed: None) -> Iterator[Webapp]:
    with running_webapp(f"shutdown_delay = {DELAY:g}") as stack:
        yield stack


def test_sigterm_under_load_drains_readyz_503_zero_failures_then_stops(
    draining_webapp: Webapp, capsys: pytest.CaptureFixture[str]
) -> None:
    webapp = draining_webapp
    assert readyz(webapp) == (200, "ready\n")
    with webapp.load(threads=4, seconds=60) as load:
        load.wait_ok(200)
        mark = webapp.mark()
        before = dict(load.latest)
        os.kill(webapp.pidone, signal.SIGTERM)
        sent = time.monotonic()
        draining = webapp.wait_for("pidone", r"^received SIGTERM: draining", after=mark, timeout=5)
        looks = []  # /readyz through the delay: 503 from the first look to the last
        while time.monotonic() - sent < DELAY - 1.0:
            looks.append(readyz(webapp))
        during = dict(load.latest)  # the load's report, just before the delay ends
        stopping = webapp.wait_for("pidone", r"^drained: stopping$", after=mark, timeout=DELAY + 5)
        assert webapp.wait_exit(timeout=90) == 0
    final = load.final
    assert looks and all(r == (503, "draining: shutting down soon\n") for r in looks), looks
    # every request of the delay was answered by the app, through nginx
    assert during["failed"] == before["failed"] == {}, (before, during)
    assert during["ok"] - before["ok"] >= 100, (before, during)
    # the stop began after the delay, not before, then as always
    waited = webapp.line(stopping).at - webapp.line(draining).at
    assert DELAY - 0.5 <= waited <= DELAY + 2.0
    first_stop = min(
        i
        for name in ("web", "worker", "redis")
        for i in webapp.find_all(name, r"^stopping: SIG", after=mark)
    )
    assert first_stop > stopping
    for name in ("web", "worker", "redis"):
        assert webapp.find(name, r"^stopped \(status 0\)$", after=stopping) is not None
        assert webapp.find(name, r"stop timeout|SIGKILL|unclean|FATAL", mark) is None
    assert webapp.find("pidone", r"^exiting with status 0$", after=stopping) is not None
    with capsys.disabled():
        print(
            f"\n  drain: /readyz 503 in {len(looks)} of {len(looks)} looks,"
            f" {during['ok'] - before['ok']} requests ok and 0 failed during the"
            f" {DELAY:g} s delay; the stop began {waited:.2f} s after SIGTERM;"
            f" load in all: {final}"
        )
