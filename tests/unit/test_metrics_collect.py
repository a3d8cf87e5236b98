"""The metrics collector over hand-built snapshots, rendered by
prometheus-client in both formats and read back with its own parsers: exact
values, no processes, no HTTP."""

from __future__ import annotations

import signal
from collections.abc import Collection

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from pidone.core.counters import PidoneCounters
from pidone.core.snapshot import ExitInfo, ProcessStatus, Snapshot
from pidone.core.states import ProcessState
from pidone.observe.health import HealthCheck, check_ready
from pidone.observe.metrics import (
    PidoneCollector,
    TreeUsage,
)

S = ProcessState
MONO = 1000.0  # the loop's monotonic "now"
WALL = 1_700_000_000.0  # unix time at that moment

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def proc(
    name: str,
    state: ProcessState = S.READY,
    *,
    pid: int | None = None,
    started_at: float | None = None,
    restarts_by_reason: dict[str, int] | None = None,
    exits_by_status: dict[int, int] | None = None,
    last_exit: ExitInfo | None = None,
    has_ready_check: bool = True,
    completed: bool = False,
    oom_kills: int = 0,
) -> ProcessStatus:
    reasons = restarts_by_reason or {}
    return ProcessStatus(
        name=name,
        state=state,
        ready=state is S.READY,
        pid=pid,
        started_at=started_at,
        restarts=sum(reasons.values()),
        restarts_by_reason=reasons,
        exits_by_status=exits_by_status or {},
        last_exit=last_exit,
        has_ready_check=has_ready_check,
        completed=completed,
        oom_kills=oom_kills,
    )


class FakeSampler:
    def __init__(self, usage: dict[int, TreeUsage] | None = None) -> None:
        self.usage = usage or {}
        self.asked: list[set[int]] = []
        self.fail = False

    def __call__(self, roots: Collection[int]) -> dict[int, TreeUsage]:
        self.asked.append(set(roots))
        if self.fail:
            raise RuntimeError("/proc exploded")
        return {pid: u for pid, u in self.usage.items() if pid in roots}


def make(
    snap: Snapshot | None,
    counters: PidoneCounters | None = None,
    sampler: FakeSampler | None = None,
    log: list[str] | None = None,
) -> PidoneCollector:
    return PidoneCollector(
        lambda: snap,
        counters or PidoneCounters(),
        sample=sampler or FakeSampler(),
        monotonic=lambda: MONO,
        wall=lambda: WALL,
        version="9.8.7",
        log=(log.append if log is not None else lambda _: None),
    )


def registry(collector: PidoneCollector) -> CollectorRegistry:
    r = CollectorRegistry(auto_describe=False)
    r.register(collector)
    return r


def scrape(collector: PidoneCollector) -> Samples:
    """The text format 0.0.4, parsed back; OpenMetrics of the same scrape too."""
    text = generate_latest(registry(collector)).decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = s.value
    return samples


def scrape_openmetrics(collector: PidoneCollector) -> Samples:
    text = generate_openmetrics(registry(collector)).decode()  # type: ignore[no-untyped-call]
    assert text.endswith("# EOF\n")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in parse_openmetrics(text)  # type: ignore[no-untyped-call]
        for s in family.samples
    }


def series(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


# --- per-process state ------------------------------------------------------------------


def test_up_ready_and_a_one_hot_state_per_process() -> None:
    snap = Snapshot(
        (
            proc("redis", S.READY, pid=10, started_at=900.0),
            proc("web", S.RUNNING, pid=11, started_at=990.0),
            proc("worker", S.BACKOFF),
            proc("cron", S.STOPPING, pid=12, started_at=100.0),
            proc("migrate", S.EXITED, last_exit=ExitInfo(0, 0, 950.0, planned=False)),
        ),
        shutting_down=False,
    )
    m = scrape(make(snap))

    assert series(m, "pidone_process_up") == {
        (("process", "redis"),): 1.0,
        (("process", "web"),): 1.0,
        (("process", "worker"),): 0.0,
        (("process", "cron"),): 1.0,  # stopping: it still has a pid
        (("process", "migrate"),): 0.0,
    }
    assert series(m, "pidone_process_ready") == {
        (("process", "redis"),): 1.0,
        (("process", "web"),): 0.0,
        (("process", "worker"),): 0.0,
        (("process", "cron"),): 0.0,
        (("process", "migrate"),): 0.0,
    }
    for name, state in [("redis", S.READY), ("web", S.RUNNING), ("worker", S.BACKOFF)]:
        one_hot = {
            dict(labels)["state"]: v
            for labels, v in series(m, "pidone_process_state").items()
            if dict(labels)["process"] == name
        }
        assert one_hot == {s.value: (1.0 if s is state else 0.0) for s in ProcessState}
    assert value(m, "pidone_shutting_down") == 0.0


def test_restarts_by_reason_start_from_zero_and_keep_unknown_reasons() -> None:
    snap = Snapshot(
        (
            proc("web", pid=5, started_at=999.0, restarts_by_reason={"crash": 3, "manual": 1}),
            proc("worker", pid=6, started_at=999.0, restarts_by_reason={"oom-guard": 2}),
        ),
        shutting_down=False,
    )
    m = scrape(make(snap))
    restarts = series(m, "pidone_process_restarts_total")
    assert restarts == {
        (("process", "web"), ("reason", "crash")): 3.0,
        (("process", "web"), ("reason", "dependency")): 0.0,
        (("process", "web"), ("reason", "liveness")): 0.0,
        (("process", "web"), ("reason", "manual")): 1.0,
        (("process", "web"), ("reason", "ready_timeout")): 0.0,
        (("process", "web"), ("reason", "touch")): 0.0,
        (("process", "web"), ("reason", "watchdog")): 0.0,
        (("process", "worker"), ("reason", "crash")): 0.0,
        (("process", "worker"), ("reason", "dependency")): 0.0,
        (("process", "worker"), ("reason", "liveness")): 0.0,
        (("process", "worker"), ("reason", "manual")): 0.0,
        (("process", "worker"), ("reason", "oom-guard")): 2.0,
        (("process", "worker"), ("reason", "ready_timeout")): 0.0,
        (("process", "worker"), ("reason", "touch")): 0.0,
        (("process", "worker"), ("reason", "watchdog")): 0.0,
    }


def test_exits_by_status_last_exit_and_times_in_unix_seconds() -> None:
    snap = Snapshot(
        (
            proc(
                "web",
                S.READY,
                pid=7,
                started_at=990.0,  # 10 s before MONO
                exits_by_status={1: 2, 137: 1, 0: 4},
                last_exit=ExitInfo(137, 9, 975.5, planned=False),
            ),
            proc("down", S.BACKOFF, started_at=500.0),  # not running: no start time
        ),
        shutting_down=True,
    )
    m = scrape(make(snap))
    assert series(m, "pidone_process_exits_total") == {
        (("process", "web"), ("status", "0")): 4.0,
        (("process", "web"), ("status", "1")): 2.0,
        (("process", "web"), ("status", "137")): 1.0,
    }
    assert series(m, "pidone_process_start_time_seconds") == {(("process", "web"),): WALL - 10.0}
    assert value(m, "pidone_process_last_exit_time_seconds", process="web") == WALL - 24.5
    assert value(m, "pidone_process_last_exit_status", process="web") == 137.0
    assert ("pidone_process_last_exit_status", (("process", "down"),)) not in m
    assert value(m, "pidone_shutting_down") == 1.0


def test_oom_kills_are_counted_per_process_from_zero() -> None:
    snap = Snapshot(
        (
            proc("web", S.RUNNING, pid=7, started_at=990.0, oom_kills=2),
            proc("job", S.EXITED),
        ),
        shutting_down=False,
    )
    assert series(scrape(make(snap)), "pidone_process_oom_kills_total") == {
        (("process", "web"),): 2.0,
        (("process", "job"),): 0.0,
    }


def test_both_formats_carry_the_same_series_and_values_are_written_as_before() -> None:
    snap = Snapshot(
        (
            proc(
                "web",
                S.READY,
                pid=7,
                started_at=990.0,
                restarts_by_reason={"crash": 2},
                exits_by_status={137: 2},
                last_exit=ExitInfo(137, 9, 975.5, planned=False),
            ),
            proc("job", S.EXITED, last_exit=ExitInfo(0, 0, 950.0, planned=False)),
        ),
        shutting_down=False,
    )
    counters = PidoneCounters()
    counters.zombies_reaped = 1234567
    collector = make(snap, counters)
    text = scrape(collector)
    openmetrics = scrape_openmetrics(collector)
    duration = ("pidone_scrape_duration_seconds", ())
    del text[duration], openmetrics[duration]
    assert text == openmetrics
    assert len(text) == 47  # 2 counters, 16 states, 14 restarts, 2 oom, ... (no tree: no sampler)
    # dashboards and scripts grep for these lines: as pidone wrote them before
    body = generate_latest(registry(collector)).decode().splitlines()
    assert 'pidone_process_up{process="web"} 1.0' in body
    assert "pidone_zombies_reaped_total 1.234567e+06" in body
    assert 'pidone_process_exits_total{process="web",status="137"} 2.0' in body
    assert "# TYPE pidone_process_restarts_total counter" in body


# --- process trees ----------------------------------------------------------------------


def test_tree_usage_for_running_processes_only() -> None:
    sampler = FakeSampler(
        {
            100: TreeUsage(processes=3, cpu_seconds=12.5, resident_bytes=150 << 20, open_fds=42),
            200: TreeUsage(processes=1, cpu_seconds=0.25, resident_bytes=4096, open_fds=3),
        }
    )
    snap = Snapshot(
        (
            proc("web", S.READY, pid=100, started_at=1.0),
            proc("redis", S.STOPPING, pid=200, started_at=1.0),
            proc("gone", S.RUNNING, pid=300, started_at=1.0),  # exited since the snapshot
            proc("idle", S.STOPPED),
        ),
        shutting_down=False,
    )
    m = scrape(make(snap, sampler=sampler))
    assert sampler.asked == [{100, 200, 300}]
    assert series(m, "pidone_process_cpu_seconds_total") == {
        (("process", "web"),): 12.5,
        (("process", "redis"),): 0.25,
    }
    assert series(m, "pidone_process_resident_memory_bytes") == {
        (("process", "web"),): float(150 << 20),
        (("process", "redis"),): 4096.0,
    }
    assert series(m, "pidone_process_open_fds") == {
        (("process", "web"),): 42.0,
        (("process", "redis"),): 3.0,
    }
    assert series(m, "pidone_process_processes") == {
        (("process", "web"),): 3.0,
        (("process", "redis"),): 1.0,
    }


# --- pidone itself ----------------------------------------------------------------------


def test_pidone_counters_and_build_info() -> None:
    counters = PidoneCounters()
    counters.zombies_reaped = 17
    counters.signals_received = {signal.SIGTERM: 1, signal.SIGHUP: 3}
    PidoneCounters.count(counters.signals_forwarded, signal.SIGHUP)
    PidoneCounters.count(counters.signals_forwarded, signal.SIGHUP)
    PidoneCounters.count(counters.signals_forwarded, signal.SIGRTMIN + 2)
    m = scrape(make(Snapshot((), False), counters))
    assert value(m, "pidone_zombies_reaped_total") == 17.0
    assert series(m, "pidone_signals_received_total") == {
        (("signal", "SIGHUP"),): 3.0,
        (("signal", "SIGTERM"),): 1.0,
    }
    assert series(m, "pidone_signals_forwarded_total") == {
        (("signal", "SIGHUP"),): 2.0,
        (("signal", "SIGRTMIN+2"),): 1.0,
    }
    assert value(m, "pidone_build_info", version="9.8.7") == 1.0
    assert value(m, "pidone_scrape_errors_total") == 0.0
    assert value(m, "pidone_last_scrape_error") == 0.0
    assert value(m, "pidone_scrape_duration_seconds") >= 0.0


def test_no_snapshot_yet_gives_pidone_metrics_only() -> None:
    m = scrape(make(None))
    assert not [name for name, _ in m if name.startswith("pidone_process_")]
    assert value(m, "pidone_build_info", version="9.8.7") == 1.0
    assert value(m, "pidone_last_scrape_error") == 0.0


# --- failures ------------------------------------------------------------------------------


def test_a_failing_part_is_logged_and_counted_and_the_rest_still_served() -> None:
    sampler = FakeSampler()
    sampler.fail = True
    log: list[str] = []
    collector = make(Snapshot((proc("web", pid=5, started_at=1.0),), False), None, sampler, log)

    m = scrape(collector)
    assert value(m, "pidone_scrape_errors_total") == 1.0
    assert value(m, "pidone_last_scrape_error") == 1.0
    assert value(m, "pidone_process_up", process="web") == 1.0  # the states part still works
    assert not series(m, "pidone_process_cpu_seconds_total")
    assert len(log) == 1
    assert "process trees" in log[0] and "/proc exploded" in log[0]

    sampler.fail = False
    m = scrape(collector)
    assert value(m, "pidone_scrape_errors_total") == 1.0  # a counter: it stays
    assert value(m, "pidone_last_scrape_error") == 0.0


def test_a_failing_snapshot_still_serves_pidone_counters() -> None:
    def broken() -> Snapshot | None:
        raise ValueError("no snapshot")

    log: list[str] = []
    collector = PidoneCollector(broken, PidoneCounters(), sample=FakeSampler(), log=log.append)
    m = scrape(collector)
    assert value(m, "pidone_last_scrape_error") == 1.0
    assert value(m, "pidone_zombies_reaped_total") == 0.0
    assert "no snapshot" in log[0]


def test_counters_changing_during_a_scrape_do_not_break_it() -> None:
    counters = PidoneCounters()

    class Growing(dict[int, int]):
        """A dict that the 'loop' grows while the scrape copies it."""

        def copy(self) -> dict[int, int]:
            result = dict(self)
            self[len(self) + 1] = 1
            return result

    counters.signals_received = Growing({15: 1})
    m = scrape(make(Snapshot((), False), counters))
    assert series(m, "pidone_signals_received_total") == {(("signal", "SIGTERM"),): 1.0}


# --- health and readiness verdicts -----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_health_fresh_heartbeat_needs_no_wakeup() -> None:
    clock = Clock()
    woken: list[int] = []
    check = HealthCheck(lambda: 99.5, lambda: woken.append(1), clock=clock)
    assert check.verdict == (True, "ok")
    assert woken == []


def test_health_wakes_an_idle_loop_and_waits_for_its_turn() -> None:
    clock = Clock()
    beat = [10.0]  # idle for 90 s
    check = HealthCheck(lambda: beat[0], lambda: None, clock=clock)
    assert check.verdict is None and check.poll() is None  # woken, not turned yet
    beat[0] = clock.now + 0.001  # the loop turns right after the wake-up
    assert check.poll() == (True, "ok")


def test_health_fails_when_the_loop_does_not_turn_after_a_wakeup() -> None:
    clock = Clock()
    woken: list[int] = []
    check = HealthCheck(lambda: 10.0, lambda: woken.append(1), clock=clock, wait=0.8)
    clock.now += 0.5
    assert check.poll() is None
    clock.now += 4.5  # time passes; the loop never turns
    assert woken == [1]
    assert check.poll() == (
        False,
        "the event loop did not turn within 0.8 s of a wake-up (last turn 95.0 s ago)",
    )


def test_health_without_a_waker_judges_by_the_heartbeat_alone() -> None:
    clock = Clock()
    assert HealthCheck(lambda: 99.8, None, clock=clock).verdict == (True, "ok")
    assert HealthCheck(lambda: 40.0, None, clock=clock).poll() == (
        False,
        "the event loop last turned 60.0 s ago",
    )


@pytest.mark.parametrize(
    ("snap", "expected"),
    [
        (None, (False, "starting")),
        (Snapshot((proc("web"),), shutting_down=True), (False, "shutting down")),
        (Snapshot((proc("web"), proc("redis")), False), (True, "ready")),
        (
            Snapshot(
                (
                    proc("redis"),
                    proc("web", S.STARTING),
                    proc("worker", S.BACKOFF),
                    proc("cron", S.RUNNING, has_ready_check=False),  # no check: not waited for
                    proc("migrate", S.EXITED, last_exit=ExitInfo(0, 0, 1.0, False), completed=True),
                ),
                False,
            ),
            (False, "not ready: web (starting), worker (backoff)"),
        ),
        (
            Snapshot((proc("job", S.EXITED, last_exit=ExitInfo(2, 0, 1.0, False)),), False),
            (False, "not ready: job (exited)"),
        ),
    ],
)
def test_readiness_verdicts(snap: Snapshot | None, expected: tuple[bool, str]) -> None:
    assert check_ready(snap) == expected


def test_legion_lord_and_lease_changes_are_exported() -> None:
    from pidone.core.snapshot import LegionStatus

    changes = {"acquired": 2, "lost": 1, "released": 0}
    snap = Snapshot(
        (proc("beat", S.STOPPED),),
        False,
        (LegionStatus("beat", False, "web-2", "", changes),),
    )
    samples = scrape(make(snap))
    assert samples[("pidone_legion_lord", (("legion", "beat"),))] == 0
    for change, n in changes.items():
        key = ("pidone_legion_lease_changes_total", (("change", change), ("legion", "beat")))
        assert samples[key] == n
    assert scrape_openmetrics(make(snap))[("pidone_legion_lord", (("legion", "beat"),))] == 0


def test_a_standby_legion_process_does_not_fail_readyz() -> None:
    standby = ProcessStatus(
        name="beat", state=S.STOPPED, ready=False, pid=None, started_at=None, restarts=0,
        restarts_by_reason={}, exits_by_status={}, last_exit=None, has_ready_check=True,
        standby="standby: legion beat is held by web-2",
    )  # fmt: skip
    from pidone.core.snapshot import not_ready

    assert not_ready(Snapshot((standby,), False), checked_only=True) == []
    assert not_ready(Snapshot((proc("beat", S.STOPPED),), False), checked_only=True) == [
        "beat (stopped)"
    ]
