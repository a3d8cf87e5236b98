"""pidone ctl and /metrics on the real stack: a deploy restart and a reload
of uwsgi under load through nginx fail no request; /metrics counts exactly
one restart per kill -9 (and one per cycled dependent); a real Prometheus
server scrapes pidone and sees every process up."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.webapp import PROGRAMS, RUNNER, Webapp
from tests.helpers.prometheus import Prometheus

METRICS = "http://127.0.0.1:9100/metrics"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def ctl(webapp: Webapp, *args: str) -> subprocess.CompletedProcess[str]:
    """pidone ctl inside the app container, as an operator would run it."""
    argv = ["/usr/bin/python3", str(RUNNER), "--state", str(webapp.state), "exec",
            "pidone", "ctl", *args]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def fetch(webapp: Webapp, url: str) -> str:
    [answer] = webapp.client("get", url)
    assert answer["status"] == 200, answer
    body = answer["body"]
    assert isinstance(body, str)
    return body


def samples(webapp: Webapp) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(fetch(webapp, METRICS)):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def restarts(m: Samples, process: str, reason: str) -> float:
    return m["pidone_process_restarts_total", (("process", process), ("reason", reason))]


@pytest.mark.parametrize("command", ["restart", "reload"])
def test_ctl_restart_and_reload_web_under_load_fail_no_request(
    webapp: Webapp, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    master = webapp.main_pid("web")
    with webapp.load(threads=8, seconds=60, max_requests=60_000) as load:
        load.wait_ok(1000)
        result = ctl(webapp, command, "web")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "web: ready\n", result.stdout
        if command == "reload":
            webapp.wait_for("web", r"uwsgi socket 0 inherited UNIX address", timeout=30)
        load.wait_ok(1000)
    report = load.stop()
    new_master = webapp.main_pid("web")
    assert (new_master != master) == (command == "restart")
    assert report["failed"] == {}, report
    assert report["ok"] >= 2000, report
    with capsys.disabled():
        print(f"\n  pidone ctl {command} web under load through nginx: {report['ok']} ok,"
              f" {sum(report['failed'].values())} failed, {report['rate']:.0f}/s")  # fmt: skip


@pytest.mark.parametrize("killed", ["web", "worker", "redis"])
def test_metrics_count_exactly_one_restart_per_kill_9(webapp: Webapp, killed: str) -> None:
    before = samples(webapp)
    mark = webapp.mark()
    os.kill(webapp.main_pid(killed), signal.SIGKILL)
    cycled = ["web", "worker"] if killed == "redis" else []
    for name in [killed, *cycled]:
        webapp.wait_for(name, r"^ready$", after=mark, timeout=60)
    assert webapp.roundtrip(0.1)["slept"] == 0.1
    after = samples(webapp)
    for name in PROGRAMS:
        crash = restarts(after, name, "crash") - restarts(before, name, "crash")
        dependency = restarts(after, name, "dependency") - restarts(before, name, "dependency")
        assert crash == (1 if name == killed else 0), (name, crash)
        assert dependency == (1 if name in cycled else 0), (name, dependency)
        assert after["pidone_process_up", (("process", name),)] == 1
    exits = ("pidone_process_exits_total", (("process", killed), ("status", "137")))
    assert after[exits] - before.get(exits, 0) == 1


def test_a_real_prometheus_scrapes_pidone_and_sees_every_process_up(webapp: Webapp) -> None:
    netns = ["nsenter", f"--net=/proc/{webapp.runner}/ns/net", "--"]
    with Prometheus(
        webapp.state / "prometheus",
        target="127.0.0.1:9100",
        prefix=netns,
        fetch=lambda url: fetch(webapp, url),
    ) as prom:
        series: list[dict[str, Any]] = prom.wait_for_query("pidone_process_up == 1", count=3)
    assert sorted(s["metric"]["process"] for s in series) == sorted(PROGRAMS)
    assert {s["metric"]["job"] for s in series} == {"pidone"}
