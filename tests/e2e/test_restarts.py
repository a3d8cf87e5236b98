"""kill -9 of each real program: pidone restarts it at once; when redis
dies, the web app and the worker (both `after` redis) are stopped first and
started again only once the new redis is ready; requests and tasks go
through again afterwards, and the killed program leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from tests.e2e.webapp import PROGRAMS, Webapp
from tests.helpers.running import children_of, wait_for


def lifecycle(webapp: Webapp, name: str, after: int) -> dict[str, int]:
    """Index of each of pidone's lines about `name` since `after` (first of each)."""
    events = {
        "exited": r"^exited with signal SIGKILL$",
        "restarting": r"^restarting in 0 s",
        "stopping": r"^stopping: SIGTERM to \d+$",
        "stopped": r"^stopped \(status 0\)$",
        "started": r"^started: pid \d+$",
        "ready": r"^ready$",
    }
    found = {event: webapp.find(name, pattern, after) for event, pattern in events.items()}
    return {event: index for event, index in found.items() if index is not None}


@pytest.mark.parametrize("killed", ["web", "worker", "redis"])
def test_kill_9_restarts_it_and_cycles_its_dependents_in_order(
    webapp: Webapp, killed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cycled = ["redis", "web", "worker"] if killed == "redis" else [killed]
    untouched = [name for name in PROGRAMS if name not in cycled]
    before = {name: webapp.main_pid(name) for name in PROGRAMS}
    old_children = {name: children_of(pid) for name, pid in before.items()}
    assert old_children["web"] and old_children["worker"]  # uwsgi workers, celery pool

    mark = webapp.mark()
    os.kill(before[killed], signal.SIGKILL)
    killed_at = time.monotonic()
    for name in cycled:
        webapp.wait_for(name, r"^ready$", after=mark, timeout=60)
    ready_at = max(webapp.line(webapp.find(n, r"^ready$", mark) or 0).at for n in cycled)

    # pidone's account, in order
    events = {name: lifecycle(webapp, name, mark) for name in PROGRAMS}
    crashed = events[killed]
    assert crashed["exited"] < crashed["restarting"] < crashed["started"] < crashed["ready"]
    restarting = webapp.line(crashed["restarting"]).text
    if killed == "redis":
        both = r"restarting in 0 s; stopping (web, worker|worker, web) first"
        assert re.fullmatch(both, restarting), restarting
        redis = events["redis"]
        for dependent in ("web", "worker"):
            cycle = events[dependent]
            # stopped gracefully, while redis was down; started once it was ready
            assert redis["exited"] < cycle["stopping"] < cycle["stopped"] < redis["started"]
            assert redis["ready"] < cycle["started"] < cycle["ready"], (dependent, events)
            assert "exited" not in cycle  # stopped by pidone, not crashed
    else:
        assert restarting == "restarting in 0 s", restarting
    for name in untouched:
        assert events[name] == {}, f"{name} was touched: {webapp.tail()}"
        assert webapp.main_pid(name) == before[name]

    # new processes for what was cycled; nothing left of the old ones
    for name in cycled:
        new = webapp.wait_main_pid(name)
        assert new != before[name]
        for pid in [before[name], *old_children[name]]:
            wait_for(lambda pid=pid: not os.path.exists(f"/proc/{pid}"), what=f"{pid} gone")
    for name in ("web", "worker"):
        wait_for(lambda n=name: len(children_of(webapp.main_pid(n))) == 2, what=f"{name}'s 2")

    # and the stack works again, end to end
    status, body = webapp.get("/")
    assert status == 200 and body.startswith("Hello from pidone-webapp!"), body
    result = webapp.roundtrip(0.2)
    assert result["slept"] == 0.2
    assert webapp.find("pidone", "FATAL|unclean|SIGKILL to group", mark) is None

    with capsys.disabled():
        again, took = ", ".join(cycled), ready_at - killed_at
        print(f"\n  kill -9 {PROGRAMS[killed]}: {again} ready again {took:.2f} s later")
