"""Liveness (`alive`) and the per-process watchdog: their config keys and
the core's decisions, against a fake clock (no fork, no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pidone.config import load as config
from pidone.config.specs import Config, ReadyCheck
from pidone.core.requests import Command as C
from pidone.core.states import RESTART_REASONS
from pidone.core.states import ProcessState as S
from pidone.core.supervisor import (
    Alive,
    Boot,
    CancelProbe,
    Request,
    SignalReceived,
    StartLiveness,
    StartProbe,
    WatchdogPing,
)
from pidone.errors import ConfigError
from tests.unit.test_supervisor import TERM, Sim, killed, kills, logs, sim_for, spawns


def load(tmp_path: Path, body: str) -> Config:
    (tmp_path / "pidone.toml").write_text(f'[process.web]\ncommand = "serve"\n{body}\n')
    return config.load(None, tmp_path / "pidone.toml", None, environ={})


def problems(tmp_path: Path, body: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, body)
    return caught.value.problems


# --- config ----------------------------------------------------------------------------


def test_alive_takes_every_repeatable_ready_check_with_its_defaults(tmp_path: Path) -> None:
    spec = load(tmp_path, 'alive = "http://127.0.0.1:8000/health"').processes["web"]
    assert spec.alive == ReadyCheck(
        "http",
        "http://127.0.0.1:8000/health",
        host="127.0.0.1",
        port=8000,
        url="http://127.0.0.1:8000/health",
    )
    assert (spec.alive_interval, spec.alive_timeout, spec.alive_failures) == (10.0, 1.0, 3)
    assert spec.alive_delay == 0.0
    for text, kind in [("tcp:127.0.0.1:1", "tcp"), ("unix:/run/x.sock", "unix"),
                       ("file:/tmp/ok", "file"), ("exec:true", "exec")]:  # fmt: skip
        found = load(tmp_path, f'alive = "{text}"').processes["web"].alive
        assert found is not None and found.kind == kind


def test_alive_keys_are_read(tmp_path: Path) -> None:
    body = (
        'alive = "tcp:127.0.0.1:1"\nalive_interval = 2.5\nalive_timeout = 0.5\n'
        "alive_failures = 1\nalive_delay = 30"
    )
    spec = load(tmp_path, body).processes["web"]
    assert (spec.alive_interval, spec.alive_timeout, spec.alive_failures, spec.alive_delay) == (
        2.5,
        0.5,
        1,
        30.0,
    )


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        (
            'alive = "notify"',
            3,
            'alive = "notify": "notify" cannot tell that a process still answers',
        ),
        (
            'alive = "settle:2"',
            3,
            'alive = "settle:2": "settle" cannot tell that a process still answers',
        ),
        ('alive = "bogus:x"', 3, 'alive = "bogus:x": not a readiness check'),
        ("alive = 5", 3, "alive = 5: must be a string"),
        (
            'alive = "tcp:127.0.0.1:1"\nalive_interval = 0',
            4,
            "alive_interval = 0: must be more than 0 seconds",
        ),
        (
            'alive = "tcp:127.0.0.1:1"\nalive_interval = 1e9',
            4,
            "must be a number of seconds from 0 to 86400",
        ),
        (
            'alive = "tcp:127.0.0.1:1"\nalive_timeout = -1',
            4,
            "alive_timeout = -1: must be a number of seconds",
        ),
        (
            'alive = "tcp:127.0.0.1:1"\nalive_failures = 0',
            4,
            "alive_failures = 0: must be a whole number of at least 1",
        ),
        (
            'alive = "tcp:127.0.0.1:1"\nalive_delay = "soon"',
            4,
            'alive_delay = "soon": must be a number of seconds',
        ),
        (
            'alive = "tcp:127.0.0.1:1"\nalive_interval = 2\nalive_timeout = 3',
            5,
            "alive_timeout = 3: alive_timeout (3 s) is longer than alive_interval (2 s)",
        ),
        (
            'alive = "tcp:127.0.0.1:1"\nalive_interval = 0.5',
            4,
            "alive_interval = 0.5: alive_timeout (1 s) is longer than alive_interval (0.5 s)",
        ),
        ("alive_failures = 2", 3, "alive_failures = 2: does nothing without alive"),
        ("alive_delay = 2", 3, "alive_delay = 2: does nothing without alive"),
        ("watchdog = 0", 3, "watchdog = 0: must be more than 0 seconds"),
        ('watchdog = "5"', 3, 'watchdog = "5": must be a number of seconds'),
        (
            'watchdog = 5\npidfile = "/run/x.pid"',
            3,
            "watchdog = 5: a pidfile daemon is not below the process pidone started",
        ),
    ],
)
def test_bad_alive_and_watchdog_keys_are_refused_with_file_line_and_fix(
    tmp_path: Path, body: str, line: int, message: str
) -> None:
    found = problems(tmp_path, body)
    assert len(found) == 1, found
    assert found[0].startswith(f"{tmp_path / 'pidone.toml'}:{line}: "), found
    assert message in found[0]


def test_watchdog_is_read_and_gives_a_notify_socket_without_ready_notify(tmp_path: Path) -> None:
    spec = load(tmp_path, "watchdog = 2.5").processes["web"]
    assert spec.watchdog == 2.5
    assert spec.ready.kind == "settle" and spec.notifies()
    assert not load(tmp_path, "").processes["web"].notifies()


def test_the_new_restart_reasons_are_listed() -> None:
    assert {"liveness", "watchdog"} <= set(RESTART_REASONS)


# --- the core: liveness ----------------------------------------------------------------


ALIVE = """
[process.web]
command = "w"
ready = "tcp:127.0.0.1:1"
alive = "http://127.0.0.1:1/health"
alive_failures = 3
[process.worker]
command = "k"
after = ["web"]
"""


def alive_sim(tmp_path: Path, toml: str = ALIVE) -> tuple[Sim, int]:
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    pid = sim.pid("web")
    out = sim.ready("web")
    assert StartLiveness("web", pid) in out
    sim.at(5)  # worker settles
    assert sim.state("worker") is S.READY
    return sim, pid


def test_liveness_starts_once_ready_and_not_before(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, ALIVE)
    out = sim.do(Boot())
    assert not [a for a in out if isinstance(a, StartLiveness)]
    pid = sim.pid("web")
    assert [a for a in sim.ready("web") if isinstance(a, StartLiveness)] == [
        StartLiveness("web", pid)
    ]


def test_three_failures_in_a_row_restart_with_reason_liveness(tmp_path: Path) -> None:
    sim, pid = alive_sim(tmp_path)
    out = sim.do(Alive("web", pid, "no answer within 1 s"))
    assert logs(out) == ["web: liveness check failed (1 of 3): no answer within 1 s"]
    assert kills(out) == []
    sim.do(Alive("web", pid, "no answer within 1 s"))
    out = sim.do(Alive("web", pid, "GET x: HTTP 500"))
    assert "web: liveness check failed 3 times in a row (GET x: HTTP 500): restarting" in logs(out)
    assert kills(out) == [("worker", TERM, False)]  # dependents first, as ctl restart
    out = sim.exit("worker", killed(TERM))
    assert kills(out) == [("web", TERM, False)]
    assert CancelProbe("web") in out
    assert spawns(sim.exit("web", killed(TERM))) == ["web"]
    assert sim.pid("web") != pid
    assert sim.core.procs["web"].restarts_by_reason == {"liveness": 1}
    assert sim.core.snapshot().processes[0].restarts_by_reason == {"liveness": 1}


def test_a_pass_resets_the_count(tmp_path: Path) -> None:
    sim, pid = alive_sim(tmp_path)
    for _ in range(10):
        sim.do(Alive("web", pid, "refused"))
        sim.do(Alive("web", pid, "refused"))
        assert sim.do(Alive("web", pid)) == []
    assert sim.state("web") is S.READY
    assert sim.core.procs["web"].restarts_by_reason == {}


def test_a_late_liveness_answer_for_an_old_instance_is_ignored(tmp_path: Path) -> None:
    sim, pid = alive_sim(tmp_path)
    for _ in range(5):
        assert sim.do(Alive("web", pid + 1000, "refused")) == []
    assert sim.state("web") is S.READY


def test_failures_during_a_restart_under_way_do_not_restart_twice(tmp_path: Path) -> None:
    sim, pid = alive_sim(tmp_path)
    for _ in range(3):
        sim.do(Alive("web", pid, "refused"))
    for _ in range(10):  # still READY, waiting for worker to stop
        assert sim.do(Alive("web", pid, "refused")) == []
    sim.exit("worker", killed(TERM))
    sim.exit("web", killed(TERM))
    assert sim.core.procs["web"].restarts_by_reason == {"liveness": 1}


def test_liveness_is_not_run_while_shutting_down(tmp_path: Path) -> None:
    sim, pid = alive_sim(tmp_path)
    sim.do(Alive("web", pid, "refused"))
    sim.do(Alive("web", pid, "refused"))
    sim.do(SignalReceived(TERM))
    assert "restarting" not in " ".join(logs(sim.do(Alive("web", pid, "refused"))))


def test_an_idle_core_with_liveness_has_no_deadline_of_its_own(tmp_path: Path) -> None:
    sim, _ = alive_sim(tmp_path)
    assert sim.core.next_deadline() is None  # the prober times the attempts


# --- the core: watchdog ----------------------------------------------------------------


WATCHDOG = """
[process.web]
command = "w"
watchdog = 2
"""


def test_a_process_that_stops_pinging_is_restarted_with_reason_watchdog(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, WATCHDOG)
    out = sim.do(Boot())
    pid = sim.pid("web")
    assert StartProbe("web", pid) in out  # settle, but the prober learns whose pings count
    assert sim.core.next_deadline() == 1.0  # settle time
    sim.at(1)
    assert sim.state("web") is S.READY
    assert sim.core.next_deadline() == 2.0
    sim.now = 1.5
    sim.do(WatchdogPing("web", pid))
    assert sim.core.next_deadline() == 3.5
    assert sim.at(3.4) == []
    out = sim.at(3.5)
    assert "web: watchdog: no WATCHDOG=1 within 2 s: restarting" in logs(out)
    assert kills(out) == [("web", TERM, False)]
    assert spawns(sim.exit("web", killed(TERM))) == ["web"]
    assert sim.core.procs["web"].restarts_by_reason == {"watchdog": 1}
    assert sim.core.next_deadline() == 3.5 + 1.0  # the new instance's settle and watchdog


def test_a_process_that_keeps_pinging_is_not_restarted(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, WATCHDOG)
    sim.do(Boot())
    pid = sim.pid("web")
    for i in range(1, 200):
        sim.now = i * 1.5
        sim.do(WatchdogPing("web", pid))
        assert sim.at(i * 1.5 + 1.4) == [] or i == 1  # i == 1: it settles
    assert sim.pid("web") == pid
    assert sim.core.procs["web"].restarts_by_reason == {}


def test_watchdog_pings_of_another_instance_do_not_count(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, WATCHDOG)
    sim.do(Boot())
    pid = sim.pid("web")
    sim.now = 1.9
    sim.do(WatchdogPing("web", pid + 7))
    assert "web: watchdog: no WATCHDOG=1 within 2 s: restarting" in logs(sim.at(2))


def test_a_watchdog_counts_from_the_start_even_before_ready(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, WATCHDOG.replace("watchdog = 2", 'watchdog = 2\nready = "notify"'))
    sim.do(Boot())
    out = sim.at(2)
    assert sim.state("web") is S.STOPPING
    assert "web: watchdog: no WATCHDOG=1 within 2 s: restarting" in logs(out)


def test_a_stopped_process_has_no_watchdog_deadline(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, WATCHDOG)
    sim.do(Boot())
    sim.do(Request(C.STOP, ("web",)))
    sim.exit("web", killed(TERM))
    assert sim.state("web") is S.STOPPED
    assert sim.core.next_deadline() is None
