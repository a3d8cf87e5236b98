"""`pidone ctl update` on the real stack, under a steady load through nginx:
a second celery worker added, changed (restarted with its new command) and
removed, while uwsgi (web), the first worker and redis are untouched: the
same pids, not one failed request. The configuration changed is a copy of
the example's pidone.toml, in the stack's state directory."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import running_webapp
from tests.e2e.test_control import ctl, samples
from tests.e2e.webapp import Webapp, cmdline
from tests.helpers.running import children_of

# the example's worker (its Procfile line), as a second celery node
CELERY2 = (
    "celery -A tasks worker --loglevel=INFO --concurrency={n} --without-gossip --without-mingle"
    " --hostname=worker2@%h"
)
WORKER2 = (
    "\n[process.worker2]\n"
    f'command = "{CELERY2}"\n'
    'user = "celery"\numask = "0027"\nafter = ["redis"]\n'
    "ready = 'log:@\\S+ ready\\.$'\n"
    'stop_signal = "SIGTERM"\nstop_timeout = 75\n'
)


def worker2(webapp: Webapp) -> list[int]:
    return [p for p in children_of(webapp.pidone) if "worker2@" in cmdline(p)]


def test_update_adds_changes_and_removes_a_worker_while_web_serves_every_request(
    installed: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # a copy of the example's pidone.toml (a [pidone] line that is the default)
    with running_webapp("shutdown_delay = 0") as webapp:
        config = webapp.state / "pidone.toml"
        original = config.read_text()
        untouched = {name: webapp.main_pid(name) for name in ("web", "worker", "redis")}
        with webapp.load(threads=8, seconds=120, max_requests=200_000) as load:
            load.wait_ok(500)

            config.write_text(original + WORKER2.format(n=1))
            reread = ctl(webapp, "reread")
            assert reread.returncode == 0, reread.stderr
            assert reread.stdout == "added: worker2\nunchanged: redis, web, worker\n"
            added = ctl(webapp, "update")
            assert added.returncode == 0, added.stderr
            assert added.stdout == "added: worker2\nunchanged: redis, web, worker\nworker2: ready\n"
            (first,) = worker2(webapp)
            assert "--concurrency=1" in cmdline(first)
            load.wait_ok(500)

            config.write_text(original + WORKER2.format(n=2))
            changed = ctl(webapp, "update")
            assert changed.returncode == 0, changed.stderr
            assert changed.stdout == (
                "changed: worker2: command (restarted)\nunchanged: redis, web, worker\n"
                "worker2: ready\n"
            )
            (second,) = worker2(webapp)
            assert second != first and "--concurrency=2" in cmdline(second)
            assert webapp.roundtrip(0.1)["slept"] == 0.1  # a task goes through a worker
            load.wait_ok(500)

            config.write_text(original)
            removed = ctl(webapp, "update")
            assert removed.returncode == 0, removed.stderr
            assert (
                removed.stdout
                == "removed: worker2\nunchanged: redis, web, worker\nworker2: stopped\n"
            )
            assert worker2(webapp) == []
            nothing = ctl(webapp, "update")
            assert (nothing.returncode, nothing.stdout) == (
                0,
                "unchanged: redis, web, worker\nnothing to do\n",
            )
            load.wait_ok(500)
        report = load.stop()

        assert report["failed"] == {}, report
        assert {name: webapp.main_pid(name) for name in untouched} == untouched
        processes = {dict(labels).get("process") for _, labels in samples(webapp)}
        assert "worker2" not in processes and "web" in processes
        for name in ("web", "worker", "redis"):
            assert webapp.find(name, r"^(stopping|stopped|exited|reload)") is None
    with capsys.disabled():
        print(
            f"\n  ctl update (worker2 added, changed, removed) under load through nginx:"
            f" {report['ok']} requests ok, 0 failed, {report['rate']:.0f}/s;"
            " web, worker and redis kept their pids"
        )
