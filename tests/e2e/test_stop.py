"""Stopping the stack: SIGTERM to pidone while a task runs (the worker's
warm shutdown lets it finish and store its result before anything after it
stops), and Ctrl-C to the runner (nginx stops gracefully first, then
pidone); everything exits 0 and nothing is left in the namespace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.webapp import Webapp, in_namespace, pinned_namespace
from tests.helpers.running import wait_for


def stored_result(redis_dir: Path, task: str, scratch: Path) -> dict[str, object]:
    """The task's result as redis saved it on its way out: a throwaway
    redis-server (no TCP port, a unix socket of our own) loads the snapshot."""
    sock = scratch / "check.sock"
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--dir", str(redis_dir), "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(sock.exists, what="the throwaway redis")
        got = subprocess.run(
            ["redis-cli", "-s", str(sock), "--raw", "GET", f"celery-task-meta-{task}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    finally:
        server.terminate()
        server.wait(30)
    assert got.stdout.strip(), f"no result for {task} in the saved snapshot"
    stored = json.loads(got.stdout)
    assert isinstance(stored, dict)
    return stored


def test_sigterm_lets_the_running_task_finish_and_store_its_result(
    webapp: Webapp, capsys: pytest.CaptureFixture[str]
) -> None:
    task = webapp.enqueue(5)
    running = webapp.wait_state(task, "STARTED")
    assert running["state"] == "STARTED"
    with pinned_namespace(webapp.pidone) as namespace:
        inside = in_namespace(namespace)
        assert len(inside) >= 8  # pidone, redis, uwsgi + 2, celery + 2 (+ helpers)
        mark = webapp.mark()
        os.kill(webapp.pidone, signal.SIGTERM)
        sent = time.monotonic()
        assert webapp.wait_exit(timeout=60) == 0  # the runner exits with pidone's status
        took = time.monotonic() - sent
        left = in_namespace(namespace)

    def at(name: str, pattern: str) -> int:
        index = webapp.find(name, pattern, mark)
        assert index is not None, f"no `{name} | {pattern}`:\n{webapp.tail(120)}"
        return index

    got_term = at("pidone", r"^received SIGTERM: stopping$")
    worker_term = at("worker", r"^stopping: SIGTERM to \d+$")  # the main pid, not the group
    warm = at("worker", r"Warm shutdown")
    finished = at("worker", rf"Task tasks.sleep_then_return\[{task}\] succeeded in 5\.\d+s")
    worker_stopped = at("worker", r"^stopped \(status 0\)$")
    redis_term = at("redis", r"^stopping: SIGTERM to \d+$")
    saved = at("redis", r"DB saved on disk")
    redis_stopped = at("redis", r"^stopped \(status 0\)$")
    exited = at("pidone", r"^exiting with status 0$")
    assert got_term < worker_term < warm < finished < worker_stopped
    assert worker_stopped < redis_term < saved < redis_stopped < exited  # redis outlives the worker
    assert at("web", r"^stopped \(status 0\)$") < redis_term
    assert at("runner", r"^pidone exited with status 0, nginx with 0$") > exited
    for name in ("pidone", "web", "worker", "redis"):
        assert webapp.find(name, r"stop timeout|SIGKILL|unclean|FATAL", mark) is None
    # the task had over 4 s to go: the worker waited for it
    term_at = webapp.line(worker_term).at
    finished_after = webapp.line(finished).at - term_at
    waited = webapp.line(worker_stopped).at - term_at
    assert finished_after > 3.0

    # the result is in redis's snapshot, written after the worker stored it
    stored = stored_result(webapp.state / "redis", task, webapp.state)
    assert stored["status"] == "SUCCESS", stored
    result = stored["result"]
    assert isinstance(result, dict) and result["slept"] == 5.0, stored

    # nothing is left in the namespace
    assert left == []

    with capsys.disabled():
        print(
            f"\n  SIGTERM with a 5 s task running: the task finished {finished_after:.2f} s later,"
            f" the worker exited after {waited:.2f} s, pidone (status 0) after {took:.2f} s"
        )


def test_ctrl_c_stops_nginx_gracefully_then_pidone(webapp: Webapp) -> None:
    with pinned_namespace(webapp.pidone) as app, pinned_namespace(webapp.nginx) as sidecar:
        mark = webapp.mark()
        os.kill(webapp.runner, signal.SIGINT)  # what Ctrl-C on `make demo` sends it
        assert webapp.wait_exit(timeout=60) == 0
        left = in_namespace(app) + in_namespace(sidecar)

    def at(name: str, pattern: str) -> int:
        index = webapp.find(name, pattern, mark)
        assert index is not None, f"no `{name} | {pattern}`:\n{webapp.tail(120)}"
        return index

    asked = at("runner", r"^SIGINT: stopping nginx \(SIGQUIT: graceful\), then pidone$")
    quit_ = at("nginx", r"\[notice\] 1#1: signal 3 \(SIGQUIT\) received, shutting down")
    graceful = at("nginx", r"gracefully shutting down")
    nginx_exit = at("nginx", r"\[notice\] 1#1: exit$")
    to_pidone = at("runner", r"^stopping pidone \(SIGINT\)$")
    got_int = at("pidone", r"^received SIGINT: stopping$")
    exited = at("pidone", r"^exiting with status 0$")
    done = at("runner", r"^pidone exited with status 0, nginx with 0$")
    assert asked < quit_ < graceful < nginx_exit < to_pidone < got_int < exited < done
    for name in ("web", "worker", "redis"):
        at(name, r"^stopped \(status 0\)$")
    for name in ("pidone", "web", "worker", "redis"):
        assert webapp.find(name, r"stop timeout|SIGKILL|unclean|FATAL", mark) is None
    assert left == []  # nothing left in either namespace
    assert not (webapp.state / "stack.json").exists()


def test_the_stack_does_not_outlive_its_runner(webapp: Webapp) -> None:
    """run.py killed outright (SIGKILL, no chance to stop anything): the
    parent-death signals it set up take both namespaces down with it."""
    with pinned_namespace(webapp.pidone) as app, pinned_namespace(webapp.nginx) as sidecar:
        os.kill(webapp.runner, signal.SIGKILL)
        assert webapp.wait_exit(timeout=30) == -signal.SIGKILL
        wait_for(lambda: in_namespace(app) + in_namespace(sidecar) == [], what="both emptied")
