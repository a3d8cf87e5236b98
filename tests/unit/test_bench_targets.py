"""bench/pidbench/targets.py: pidone's targets judged from hand-built results.

Every target gets a value just under and just over its threshold; all the
other measurements pass, so the verdict is about that one value.
"""

from __future__ import annotations

import signal

import pytest
from pidbench import targets
from pidbench.measure import Measurement, Metric, Results, Round
from pidbench.measures import (
    ALL,
    idle,
    logs,
    memory,
    orphans,
    reexec,
    restart,
    scale,
    shutdown,
    signals,
    update,
)
from pidbench.targets import RUN, RUN_METRICS, SINGLE, Verdict, judge

Values = dict[tuple[Metric, str], list[float]]
Words = dict[tuple[Metric, str], list[str]]

KEYS = [
    "wakeups",
    "rss_run",
    "rss_metrics",
    "rss_single",
    "storm",
    "restart",
    "signals",
    "shutdown",
]
KEYS += ["logs", "scrape", "update", "reexec"]


def _measurement(metric: Metric) -> Measurement:
    return next(m for m in ALL if metric in m.metrics)


def passing() -> Values:
    """One round of everything the targets read, every target passed."""
    values: Values = {
        (memory.RSS, RUN): [17.0],
        (memory.RSS, RUN_METRICS): [17.5],
        (memory.RSS, "supervisord"): [20.0],
        (memory.RSS, SINGLE): [10.0],
        (memory.RSS, memory.BASELINE): [10.0],
        (orphans.CLEAR, "tini"): [100.0],
        (orphans.CLEAR, SINGLE): [120.0],
        (orphans.CLEAR, RUN): [140.0],
        (orphans.LEAKED, SINGLE): [0.0],
        (orphans.LEAKED, RUN): [0.0],
        (restart.RESTART, RUN): [5.0] * restart.KILLS,
        (shutdown.SHUTDOWN, SINGLE): [3.0],
        (shutdown.SHUTDOWN, RUN): [4.0],
        (shutdown.TOLD, RUN): [3.0],
        (shutdown.SLOW_EXTRA, RUN): [2.0],
        (logs.THROUGHPUT, RUN): [300.0],
        (logs.LOST, RUN): [0.0],
        (scale.SCRAPE, RUN): [40.0],
        (update.KEPT, RUN): [float(update.STACK)],
        (update.TO_RUNNING, RUN): [150.0],
        (update.TO_READY, RUN): [1200.0],
        (reexec.KEPT, RUN): [float(reexec.STACK)],
        (reexec.FDS_BEFORE, RUN): [20.0],
        (reexec.FDS_LAST, RUN): [20.0],
        (reexec.RSS_GROWTH, RUN): [0.25],
        (reexec.ROUND_TRIP, RUN): [700.0] * reexec.REEXECS,
    }
    for metric in restart.EACH_KILL:
        values[(metric, RUN)] = [5.0]
    for subject in (SINGLE, RUN, RUN_METRICS):
        values[(idle.WAKEUPS, subject)] = [0.0]
    for median, _ in signals.METRICS.values():
        for subject in (SINGLE, RUN):
            values[(median, subject)] = [0.2]
    return values


def results(values: Values, words: Words | None = None) -> Results:
    """Round i of every metric holds its i-th value (or word)."""
    rounds: dict[tuple[Measurement, int], Round] = {}
    for (metric, subject), series in values.items():
        for number, value in enumerate(series, 1):
            key = (_measurement(metric), number)
            rounds.setdefault(key, Round()).record(metric, subject, value)
    for (metric, subject), flags in (words or {}).items():
        for number, word in enumerate(flags, 1):
            key = (_measurement(metric), number)
            rounds.setdefault(key, Round()).flag(metric, subject, word)
    out = Results()
    for (measurement, number), observed in rounds.items():
        out.add(measurement, number, observed)
    return out


def verdict(key: str, values: Values, words: Words | None = None) -> Verdict:
    (found,) = [v for v in judge(results(values, words)) if v.key == key]
    return found


def with_value(metric: Metric, subject: str, *series: float) -> Values:
    values = passing()
    values[(metric, subject)] = list(series)
    return values


def with_restarts(*kills: list[float]) -> Values:
    """passing(), with each kill's rounds (the first kill's, the second's, ...)
    and all of them together, as the restart measurement records them."""
    values = passing()
    for metric, series in zip(restart.EACH_KILL, kills, strict=True):
        values[(metric, RUN)] = series
    values[(restart.RESTART, RUN)] = [v for series in kills for v in series]
    return values


def test_everything_passing_passes_every_target_in_order() -> None:
    verdicts = judge(results(passing()))
    assert [v.key for v in verdicts] == KEYS
    assert [v.word for v in verdicts] == ["PASS"] * len(KEYS)
    assert [v.target for v in verdicts] == [target for _, target, _ in targets.TARGETS]


def test_the_details_give_the_numbers() -> None:
    details = {v.key: v.detail for v in judge(results(passing()))}
    assert details == {
        "wakeups": "pidone median 0.00/s, worst round 0.00/s; "
        "pidone run median 0.00/s, worst round 0.00/s; "
        "pidone run +metrics median 0.00/s, worst round 0.00/s",
        "rss_run": "pidone run 17.00 MiB (3 children)",
        "rss_metrics": "pidone run +metrics 17.50 MiB = 0.88x supervisord (20.00 MiB, 3 children)",
        "rss_single": "pidone 10.00 MiB = 1.00x the bare interpreter (10.00 MiB)",
        "storm": "pidone 120.0 ms = 1.20x, 0 leaked; pidone run 140.0 ms = 1.40x, 0 leaked "
        "(tini 100.0 ms)",
        "restart": "each kill's median 5.00, 5.00, 5.00, 5.00, 5.00 ms; "
        "all 5: median 5.00 (min 5.00, max 5.00)",
        "signals": "pidone: SIGTERM 0.200, SIGHUP 0.200, SIGUSR1 0.200 ms; "
        "pidone run: SIGTERM 0.200, SIGHUP 0.200, SIGUSR1 0.200 ms",
        "shutdown": "3 prompt children: pidone 3.00 ms, pidone run 4.00 ms; pidone run told "
        "3 of 3 at worst; one child stopping in 200 ms: pidone run exits 2.00 ms after it "
        "(max 2.00)",
        "logs": "pidone run (prefixes) 300 MB/s, 0 lines lost at worst",
        "scrape": "median of medians 40.0 ms (max 40.0)",
        "update": "10 of 10 kept their pid at worst; command to running 150.0 ms, "
        "to ready 1200.0 ms (not judged)",
        "reexec": "10 of 10 pids kept at worst; fds 20 before, 20 after (most gained in a "
        "round: 0); RSS growth median +0.25 MiB (max +0.25); round trip 700 ms (max 700, "
        "not judged)",
    }


# --- 0 wakeups/s, every round ---------------------------------------------


@pytest.mark.parametrize("subject", [SINGLE, RUN, RUN_METRICS])
def test_wakeups_zero_in_every_round_passes(subject: str) -> None:
    assert verdict("wakeups", with_value(idle.WAKEUPS, subject, 0.0, 0.0, 0.0)).passed is True


@pytest.mark.parametrize("subject", [SINGLE, RUN, RUN_METRICS])
def test_wakeups_in_one_round_miss_though_the_median_is_zero(subject: str) -> None:
    found = verdict("wakeups", with_value(idle.WAKEUPS, subject, 0.0, 0.05, 0.0))
    assert found.word == "MISS"
    assert f"{subject} median 0.00/s, worst round 0.05/s" in found.detail


# --- pidone run: RSS <= 18 MiB without metrics; with metrics <= 1.5x supervisord's ---


@pytest.mark.parametrize(("mib", "passed"), [(17.99, True), (18.0, True), (18.01, False)])
def test_rss_of_pidone_run_at_18_mib(mib: float, passed: bool) -> None:
    found = verdict("rss_run", with_value(memory.RSS, RUN, mib))
    assert found.passed is passed
    assert found.detail == f"pidone run {mib:.2f} MiB (3 children)"


@pytest.mark.parametrize(("mib", "passed"), [(29.99, True), (30.0, True), (30.01, False)])
def test_rss_with_metrics_at_1_5x_of_supervisord(mib: float, passed: bool) -> None:
    found = verdict("rss_metrics", with_value(memory.RSS, RUN_METRICS, mib))  # supervisord: 20
    assert found.passed is passed
    assert found.detail == (
        f"pidone run +metrics {mib:.2f} MiB = {mib / 20:.2f}x supervisord (20.00 MiB, 3 children)"
    )


def test_rss_with_metrics_follows_supervisord_in_the_same_run() -> None:
    values = with_value(memory.RSS, RUN_METRICS, 25.0)
    values[(memory.RSS, "supervisord")] = [16.0]
    assert verdict("rss_metrics", values).passed is False
    del values[(memory.RSS, "supervisord")]
    found = verdict("rss_metrics", values)
    assert found.passed is None  # no reference: not judged
    assert found.detail == "no Init RSS for supervisord"


def test_rss_with_metrics_is_the_median_over_rounds() -> None:
    found = verdict("rss_metrics", with_value(memory.RSS, RUN_METRICS, 29.9, 31.0, 29.8))
    assert found.passed is True  # one round over, the median under


def test_rss_at_scale_is_shown_but_not_judged() -> None:
    values = with_value(memory.RSS, RUN_METRICS, 17.0)
    values[(scale.SCALE_RSS, RUN)] = [27.14]
    found = verdict("rss_metrics", values)
    assert found.passed is True
    assert found.detail == (
        "pidone run +metrics 17.00 MiB = 0.85x supervisord (20.00 MiB, 3 children); "
        "with 200 processes and metrics: 27.1 MiB (not judged)"
    )


# --- single-command RSS within 1.3x of the bare interpreter -------------------


@pytest.mark.parametrize(("mib", "passed"), [(12.99, True), (13.0, True), (13.01, False)])
def test_rss_single_at_1_3x_of_the_bare_interpreter(mib: float, passed: bool) -> None:
    found = verdict("rss_single", with_value(memory.RSS, SINGLE, mib))  # bare: 10.00 MiB
    assert found.passed is passed
    ratio = f"{mib / 10:.2f}"
    assert found.detail == f"pidone {mib:.2f} MiB = {ratio}x the bare interpreter (10.00 MiB)"


def test_rss_single_follows_the_baseline() -> None:
    values = with_value(memory.RSS, SINGLE, 13.0)
    values[(memory.RSS, memory.BASELINE)] = [9.9]
    assert verdict("rss_single", values).passed is False


# --- orphan storm within 1.5x of tini, no zombie left -------------------------


@pytest.mark.parametrize("subject", [SINGLE, RUN])
@pytest.mark.parametrize(("ms", "passed"), [(149.9, True), (150.0, True), (150.1, False)])
def test_storm_at_1_5x_of_tini(subject: str, ms: float, passed: bool) -> None:
    found = verdict("storm", with_value(orphans.CLEAR, subject, ms))  # tini: 100 ms
    assert found.passed is passed
    assert f"{subject} {ms:.1f} ms = {ms / 100:.2f}x, 0 leaked" in found.detail


@pytest.mark.parametrize("subject", [SINGLE, RUN])
def test_storm_with_one_zombie_leaked_in_one_round_misses(subject: str) -> None:
    found = verdict("storm", with_value(orphans.LEAKED, subject, 0.0, 1.0, 0.0))
    assert found.word == "MISS"
    assert f"{subject} " in found.detail
    assert ", 1 leaked" in found.detail


def test_storm_is_measured_against_tini_median() -> None:
    values = passing()
    values[(orphans.CLEAR, "tini")] = [80.0, 90.0, 400.0]  # median 90: 1.5x is 135
    assert verdict("storm", values).passed is False  # pidone run takes 140


# --- every restart of a stable process after kill -9 < 10 ms ------------------


@pytest.mark.parametrize(("ms", "passed"), [(9.99, True), (10.0, False), (10.01, False)])
def test_restart_under_10_ms_at_every_kill(ms: float, passed: bool) -> None:
    found = verdict("restart", with_restarts([2.0], [2.0], [2.0], [2.0], [ms]))
    assert found.passed is passed
    assert found.detail == (
        f"each kill's median 2.00, 2.00, 2.00, 2.00, {ms:.2f} ms; "
        f"all 5: median 2.00 (min 2.00, max {ms:.2f})"
    )


def test_restart_is_judged_on_each_kills_median() -> None:
    found = verdict("restart", with_restarts(*[[6.0, 12.0, 5.0]] * restart.KILLS))
    assert found.passed is True
    assert found.detail.startswith("each kill's median 6.00, 6.00, 6.00, 6.00, 6.00 ms; all 15")


def test_a_backoff_from_the_fourth_kill_on_misses_though_most_restarts_are_quick() -> None:
    # The pooled median (2 ms) would pass: the kills it hides do not.
    slow = [500.0, 500.0, 500.0]
    found = verdict("restart", with_restarts([2.0] * 3, [2.0] * 3, [2.0] * 3, slow, slow))
    assert found.passed is False
    assert found.detail == (
        "each kill's median 2.00, 2.00, 2.00, 500.00, 500.00 ms; "
        "all 15: median 2.00 (min 2.00, max 500.00)"
    )


def test_an_init_that_stopped_at_the_second_kill_every_round_misses() -> None:
    values = with_restarts([2.0, 2.0], [], [], [], [])
    for metric in restart.EACH_KILL[1:]:
        del values[(metric, RUN)]
    words = {
        (restart.EACH_KILL[1], RUN): ["stops all"] * 2,
        (restart.RESTART, RUN): ["stops all"] * 2,
    }
    found = verdict("restart", values, words)
    assert found.passed is False
    assert found.detail == (
        "each kill's median 2.00 ms; all 2: median 2.00 (min 2.00, max 2.00); 2x stops all"
    )


# --- signal forwarding < 1 ms, every kind, none dropped -----------------------

SIGNAL_CASES = [(kind, subject) for kind in signals.KINDS for subject in (SINGLE, RUN)]


@pytest.mark.parametrize(("kind", "subject"), SIGNAL_CASES)
@pytest.mark.parametrize(("ms", "passed"), [(0.999, True), (1.0, False), (1.001, False)])
def test_signals_under_1_ms_for_every_kind(
    kind: signal.Signals, subject: str, ms: float, passed: bool
) -> None:
    median, _ = signals.METRICS[kind]
    found = verdict("signals", with_value(median, subject, ms))
    assert found.passed is passed
    assert f"{kind.name} {ms:.3f}" in found.detail


@pytest.mark.parametrize(("kind", "subject"), SIGNAL_CASES)
def test_one_signal_dropped_misses_however_fast_the_rest(
    kind: signal.Signals, subject: str
) -> None:
    median, p99 = signals.METRICS[kind]
    values = with_value(median, subject, 0.1, 0.1)
    found = verdict(
        "signals", values, {(median, subject): ["dropped"], (p99, subject): ["dropped"]}
    )
    assert found.word == "MISS"
    assert f"{subject}: " in found.detail
    assert f"{kind.name} 0.100 (1 dropped)" in found.detail


def test_the_p99_is_not_judged() -> None:
    values = passing()
    for _, p99 in signals.METRICS.values():
        values[(p99, SINGLE)] = [5.0]
    assert verdict("signals", values).passed is True


# --- shutdown < 10 ms, all told, bounded by the slowest stop ------------------


@pytest.mark.parametrize("subject", [SINGLE, RUN])
@pytest.mark.parametrize(("ms", "passed"), [(9.99, True), (10.0, False), (10.01, False)])
def test_shutdown_under_10_ms(subject: str, ms: float, passed: bool) -> None:
    found = verdict("shutdown", with_value(shutdown.SHUTDOWN, subject, ms))
    assert found.passed is passed
    assert f"{subject} {ms:.2f} ms" in found.detail


def test_shutdown_with_a_child_not_told_in_one_round_misses() -> None:
    found = verdict("shutdown", with_value(shutdown.TOLD, RUN, 3.0, 2.0, 3.0))
    assert found.word == "MISS"
    assert "pidone run told 2 of 3 at worst" in found.detail


@pytest.mark.parametrize(("ms", "passed"), [(9.99, True), (10.0, False), (10.01, False)])
def test_shutdown_beyond_the_slowest_stop_under_10_ms(ms: float, passed: bool) -> None:
    found = verdict("shutdown", with_value(shutdown.SLOW_EXTRA, RUN, ms))
    assert found.passed is passed
    assert found.detail.endswith(f"pidone run exits {ms:.2f} ms after it (max {ms:.2f})")


# --- log relay >= 200 MB/s, zero lines lost ------------------------------------


@pytest.mark.parametrize(("rate", "passed"), [(199.9, False), (200.0, True), (200.1, True)])
def test_log_relay_at_200_mb_per_s(rate: float, passed: bool) -> None:
    found = verdict("logs", with_value(logs.THROUGHPUT, RUN, rate))
    assert found.passed is passed
    assert found.detail == f"pidone run (prefixes) {rate:.0f} MB/s, 0 lines lost at worst"


def test_log_relay_losing_one_line_in_one_round_misses() -> None:
    found = verdict("logs", with_value(logs.LOST, RUN, 0.0, 1.0, 0.0))
    assert found.word == "MISS"
    assert found.detail == "pidone run (prefixes) 300 MB/s, 1 lines lost at worst"


def test_log_relay_json_variant_is_shown_but_not_judged() -> None:
    values = passing()
    values[(logs.THROUGHPUT, logs.JSON_VARIANT)] = [150.0]
    values[(logs.LOST, logs.JSON_VARIANT)] = [4.0]
    found = verdict("logs", values)
    assert found.passed is True
    assert found.detail == (
        "pidone run (prefixes) 300 MB/s, 0 lines lost at worst; JSON (not judged) 150 MB/s, 4 lost"
    )


def test_log_relay_raw_variant_is_shown_but_not_judged() -> None:
    values = passing()
    values[(logs.THROUGHPUT, logs.RAW_VARIANT)] = [450.0]
    values[(logs.LOST, logs.RAW_VARIANT)] = [0.0]
    found = verdict("logs", values)
    assert found.passed is True
    assert found.detail == (
        "pidone run (prefixes) 300 MB/s, 0 lines lost at worst;"
        " without prefixes (not judged) 450 MB/s, 0 lost"
    )


# --- /metrics scrape with 200 processes < 250 ms -------------------------------


@pytest.mark.parametrize(("ms", "passed"), [(249.9, True), (250.0, False), (250.1, False)])
def test_scrape_under_250_ms(ms: float, passed: bool) -> None:
    found = verdict("scrape", with_value(scale.SCRAPE, RUN, ms))
    assert found.passed is passed
    assert found.detail == f"median of medians {ms:.1f} ms (max {ms:.1f})"


def test_scrape_names_the_process_count() -> None:
    values = with_value(scale.SCRAPE, RUN, 39.3)
    values[(scale.PROCESSES, RUN)] = [200.0]
    assert (
        verdict("scrape", values).detail
        == "median of medians 39.3 ms with 200 processes (max 39.3)"
    )


# --- not measured: n/a, and why -------------------------------------------------


def test_nothing_measured_is_n_a_for_every_target_with_what_is_missing() -> None:
    verdicts = judge(Results())
    assert [v.word for v in verdicts] == ["n/a"] * len(KEYS)
    assert all(v.passed is None for v in verdicts)
    assert {v.key: v.detail for v in verdicts} == {
        "wakeups": "no Init wakeups while idle for pidone",
        "rss_run": "no Init RSS for pidone run",
        "rss_metrics": "no Init RSS for pidone run +metrics",
        "rss_single": "no Init RSS for pidone",
        "storm": "no Storm start to no zombie left for tini",
        "restart": "no kill -9 to running again for pidone run",
        "signals": "no SIGTERM latency, median for pidone",
        "shutdown": "no 3 prompt children: SIGTERM to init exited for pidone",
        "logs": "no Throughput for pidone run",
        "scrape": "no /metrics scrape, median for pidone run",
        "update": "no Pids kept of the 10 running before for pidone run",
        "reexec": "no Pids kept of 10 after 10 reexecs for pidone run",
    }


@pytest.mark.parametrize(
    ("key", "metric", "subject"),
    [
        ("wakeups", idle.WAKEUPS, RUN_METRICS),
        ("rss_single", memory.RSS, memory.BASELINE),
        ("storm", orphans.LEAKED, RUN),
        ("signals", signals.METRICS[signal.SIGUSR1][0], RUN),
        ("shutdown", shutdown.TOLD, RUN),
        ("shutdown", shutdown.SLOW_EXTRA, RUN),
        ("logs", logs.LOST, RUN),
    ],
)
def test_one_missing_measurement_makes_only_its_target_n_a(
    key: str, metric: Metric, subject: str
) -> None:
    values = passing()
    del values[(metric, subject)]
    verdicts = judge(results(values))
    assert {v.key: v.word for v in verdicts} == {k: "n/a" if k == key else "PASS" for k in KEYS}
    (found,) = [v for v in verdicts if v.key == key]
    assert found.detail == f"no {metric.label} for {subject}"


def test_a_missing_reference_gives_n_a_with_the_words_it_had() -> None:
    values = passing()
    del values[(orphans.CLEAR, "tini")]
    found = verdict("storm", values, {(orphans.CLEAR, "tini"): ["leaks", "leaks"]})
    assert found.passed is None
    assert found.detail == "no Storm start to no zombie left for tini (leaks)"


# --- words instead of numbers: pidone failed, it was not "not measured" ---------


@pytest.mark.parametrize(
    ("key", "metric", "subject", "word"),
    [
        ("storm", orphans.CLEAR, SINGLE, "leaks"),
        ("storm", orphans.CLEAR, RUN, "leaks"),
        ("restart", restart.RESTART, RUN, "not restarted"),
        ("restart", restart.RESTART, RUN, "stops all"),
        ("signals", signals.METRICS[signal.SIGTERM][0], SINGLE, signals.DROPPED_EXIT),
        ("signals", signals.METRICS[signal.SIGHUP][0], RUN, signals.DROPPED_RESTART),
        ("shutdown", shutdown.SLOW_EXTRA, RUN, "not told"),
        ("logs", logs.THROUGHPUT, RUN, "timed out"),
    ],
)
def test_pidone_with_a_word_in_every_round_misses_and_says_why(
    key: str, metric: Metric, subject: str, word: str
) -> None:
    values = passing()
    del values[(metric, subject)]
    found = verdict(key, values, {(metric, subject): [word, word, word]})
    assert found.word == "MISS"
    assert found.detail == f"no {metric.label} for {subject} ({word})"


def test_different_words_are_all_named_once() -> None:
    median = signals.METRICS[signal.SIGTERM][0]
    values = passing()
    del values[(median, RUN)]
    words = [signals.DROPPED, signals.DROPPED_EXIT, signals.DROPPED]
    found = verdict("signals", values, {(median, RUN): words})
    assert found.word == "MISS"
    assert (
        found.detail == "no SIGTERM latency, median for pidone run (dropped, dropped: init exits)"
    )


# --- a word in some rounds: those rounds failed, the others do not outvote them ---


def test_restart_with_a_round_not_restarted_misses() -> None:
    values = with_restarts([5.0, 5.0], [5.0, 5.0], [5.0, 5.0], [5.0, 5.0], [5.0])
    words = {
        (restart.EACH_KILL[4], RUN): ["not restarted"],
        (restart.RESTART, RUN): ["not restarted"],
    }
    found = verdict("restart", values, words)
    assert found.word == "MISS"
    assert found.detail == (
        "each kill's median 5.00, 5.00, 5.00, 5.00, 5.00 ms; "
        "all 9: median 5.00 (min 5.00, max 5.00); 1x not restarted"
    )


def test_shutdown_with_the_slow_child_not_told_in_a_round_misses() -> None:
    values = with_value(shutdown.SLOW_EXTRA, RUN, 2.0, 2.0)
    found = verdict("shutdown", values, {(shutdown.SLOW_EXTRA, RUN): ["not told"]})
    assert found.word == "MISS"
    assert found.detail.endswith("pidone run exits 2.00 ms after it (max 2.00; 1x not told)")


def test_log_relay_timing_out_in_a_round_misses() -> None:
    values = passing()
    values[(logs.THROUGHPUT, RUN)] = [300.0, 300.0]
    values[(logs.LOST, RUN)] = [0.0, 0.0]
    timed_out = ["timed out"]
    words = {(logs.THROUGHPUT, RUN): timed_out, (logs.LOST, RUN): timed_out}
    found = verdict("logs", values, words)
    assert found.word == "MISS"
    assert found.detail == "pidone run (prefixes) 300 MB/s, 0 lines lost at worst; 1x timed out"


# --- ctl update: the others keep their pids --------------------------------------


def test_update_where_one_process_got_a_new_pid_in_one_round_misses() -> None:
    found = verdict("update", with_value(update.KEPT, RUN, 10.0, 9.0, 10.0))
    assert found.passed is False
    assert found.detail.startswith("9 of 10 kept their pid at worst;")


def test_update_that_failed_in_one_round_misses_though_the_others_kept_all() -> None:
    found = verdict("update", passing(), {(update.KEPT, RUN): ["failed"]})
    assert found.passed is False
    assert found.detail.endswith("; 1x failed")


def test_update_is_not_judged_on_its_times() -> None:
    values = with_value(update.TO_READY, RUN, 60_000.0)
    assert verdict("update", values).passed is True


# --- ctl reexec: pids kept, no fd leaked, no RSS growth ---------------------------


def test_reexec_leaking_one_fd_in_one_round_misses() -> None:
    values = with_value(reexec.FDS_BEFORE, RUN, 20.0, 20.0, 20.0)
    values[(reexec.FDS_LAST, RUN)] = [20.0, 21.0, 19.0]  # the median gained nothing
    found = verdict("reexec", values)
    assert found.passed is False
    assert "(most gained in a round: 1)" in found.detail


@pytest.mark.parametrize(("mib", "passed"), [(0.99, True), (1.0, True), (1.01, False)])
def test_reexec_rss_growth_within_the_slack_in_every_round(mib: float, passed: bool) -> None:
    found = verdict("reexec", with_value(reexec.RSS_GROWTH, RUN, 0.0, mib, -0.5))
    assert found.passed is passed
    assert f"(max +{mib:.2f})" in found.detail


def test_reexec_losing_a_child_pid_misses() -> None:
    found = verdict("reexec", with_value(reexec.KEPT, RUN, 10.0, 9.0))
    assert found.passed is False
    assert found.detail.startswith("9 of 10 pids kept at worst;")


def test_reexec_that_failed_misses() -> None:
    found = verdict("reexec", passing(), {(reexec.KEPT, RUN): ["failed"]})
    assert found.passed is False
    assert found.detail.endswith("; 1x failed")
