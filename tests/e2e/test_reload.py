"""SIGHUP to pidone under a steady load through nginx: uwsgi gets its
reload_signal (SIGHUP: a graceful reload that imports the app anew, in the
same master process, on the same pre-bound socket) and not one request
fails; the celery worker restarts itself in place and takes tasks again."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from tests.e2e.webapp import Webapp
from tests.helpers.running import children_of, wait_for


def test_sighup_reloads_uwsgi_under_load_without_a_failed_request(
    webapp: Webapp, capsys: pytest.CaptureFixture[str]
) -> None:
    master = webapp.main_pid("web")
    old_workers = set(children_of(master))
    celery = webapp.main_pid("worker")
    redis = webapp.main_pid("redis")
    _, body = webapp.get("/")
    loaded = re.search(r"app loaded ([\d.]+)", body)
    assert loaded, body

    with webapp.load(threads=8, seconds=60, max_requests=60_000) as load:
        load.wait_ok(1000)
        mark = webapp.mark()
        os.kill(webapp.pidone, signal.SIGHUP)
        sent = time.monotonic()
        webapp.wait_for("web", r"^reload: SIGHUP$", after=mark)
        webapp.wait_for("web", r"binary reloading uWSGI", after=mark)
        # the re-executed master finds the socket again (uwsgi.ini: socket = ...)
        webapp.wait_for("web", r"uwsgi socket 0 inherited UNIX address /run/pidone-", after=mark)

        def new_workers_up() -> bool:
            workers = set(children_of(master))
            return len(workers) == 2 and not workers & old_workers

        wait_for(new_workers_up, timeout=30, what="two new uwsgi workers")
        reloaded = time.monotonic() - sent
        during = load.ok()
        load.wait_ok(1000)  # served by the new workers
    report = load.stop()

    # not one request failed, and a steady few hundred a second went through
    assert report["failed"] == {}, report
    assert report["ok"] >= 2000, report
    assert report["rate"] >= 100, report
    # a reload in place: the same master, new workers, the app imported anew
    assert webapp.main_pid("web") == master
    assert webapp.find("web", r"^(exited|stopped|stopping)", mark) is None
    _, body = webapp.get("/")
    reloaded_at = re.search(r"app loaded ([\d.]+)", body)
    assert reloaded_at and float(reloaded_at[1]) > float(loaded[1]), body
    # redis ignores SIGHUP; celery restarts itself in place (warm, same pid)
    assert webapp.find("redis", r"^reload: SIGHUP$", mark) is not None
    assert webapp.main_pid("redis") == redis
    webapp.wait_for("worker", r"Restarting celery worker", after=mark)
    webapp.wait_for("worker", r"worker@\S+ ready\.", after=mark)
    assert webapp.main_pid("worker") == celery
    assert webapp.roundtrip(0.1)["slept"] == 0.1
    for name in ("pidone", "web", "worker", "redis"):
        assert webapp.find(name, r"FATAL|unclean|exited with", mark) is None

    with capsys.disabled():
        failed = sum(report["failed"].values())
        print(
            f"\n  SIGHUP under load through nginx: {report['ok']} requests ok, {failed} failed,"
            f" {report['rate']:.0f}/s over {report['seconds']:.1f} s; uwsgi reloaded in"
            f" {reloaded:.2f} s (new workers serving), {during} ok by then"
        )
