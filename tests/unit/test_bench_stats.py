"""bench/pidbench: summaries over rounds (stats.py) and how rounds add up (measure.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pidbench.measure import Metric, Results, Round, Settings
from pidbench.measures.common import heavy_rounds
from pidbench.measures.restart import RESTART, Restart
from pidbench.measures.shutdown import Shutdown
from pidbench.stats import Summary, percentile


def test_summary_of_an_odd_count_takes_the_middle_value() -> None:
    assert Summary.of([3.0, 9.0, 1.0, 7.0, 5.0]) == Summary(1.0, 5.0, 9.0, 5)


def test_summary_of_an_even_count_averages_the_middle_two() -> None:
    assert Summary.of([4.0, 1.0, 3.0, 2.0]) == Summary(1.0, 2.5, 4.0, 4)


def test_summary_of_one_value_is_that_value_three_times() -> None:
    assert Summary.of([7.25]) == Summary(7.25, 7.25, 7.25, 1)


def test_summary_keeps_repeated_values() -> None:
    assert Summary.of([0.0, 0.0, 0.5]) == Summary(0.0, 0.0, 0.5, 3)


def test_summary_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        Summary.of([])


def test_percentile_is_the_nearest_rank_not_an_interpolation() -> None:
    samples = [float(v) for v in range(1, 201)]  # 1 .. 200, in any order
    samples.reverse()
    assert percentile(samples, 99) == 198.0  # rank ceil(198) = 198: the second-worst
    assert percentile(samples, 50) == 100.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0  # not 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0


def test_percentile_extremes_are_observed_values() -> None:
    assert percentile([5.0, 3.0, 9.0], 0) == 3.0
    assert percentile([5.0, 3.0, 9.0], 100) == 9.0
    assert percentile([0.125], 99) == 0.125


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 99)


def _results(*rounds: Round) -> Results:
    results = Results()
    for number, observed in enumerate(rounds, 1):
        results.add(Restart(), number, observed)
    return results


def _round(values: dict[str, float], flags: dict[str, str] | None = None) -> Round:
    observed = Round()
    for subject, value in values.items():
        observed.record(RESTART, subject, value)
    for subject, word in (flags or {}).items():
        observed.flag(RESTART, subject, word)
    return observed


def test_results_summarise_each_subject_over_its_rounds() -> None:
    results = _results(
        _round({"pidone run": 4.0, "supervisord": 30.0}),
        _round({"pidone run": 6.0, "supervisord": 10.0}),
        _round({"pidone run": 5.0}),
    )
    assert results.values(RESTART, "pidone run") == [4.0, 6.0, 5.0]
    assert results.summary(RESTART, "pidone run") == Summary(4.0, 5.0, 6.0, 3)
    assert results.summary(RESTART, "supervisord") == Summary(10.0, 20.0, 30.0, 2)


def test_flagged_rounds_are_not_values() -> None:
    results = _results(
        _round({"pidone run": 4.0}),
        _round({}, {"pidone run": "not restarted"}),
        _round({"pidone run": 8.0}),
    )
    assert results.summary(RESTART, "pidone run") == Summary(4.0, 6.0, 8.0, 2)
    assert results.flags(RESTART, "pidone run") == ["not restarted"]


def test_a_subject_with_only_flags_has_no_summary_but_is_a_subject() -> None:
    results = _results(
        _round({"s6-svscan": 2.0}, {"honcho": "stops all"}),
        _round({"s6-svscan": 3.0}, {"honcho": "stops all"}),
    )
    assert results.summary(RESTART, "honcho") is None
    assert results.values(RESTART, "honcho") == []
    assert results.flags(RESTART, "honcho") == ["stops all", "stops all"]
    # Subjects with values first, then those with only words.
    assert results.subjects(RESTART) == ["s6-svscan", "honcho"]


def test_a_metric_never_recorded_is_missing_everywhere() -> None:
    results = _results(_round({"pidone run": 4.0}))
    other = Metric("other", "Something else", "ms")
    assert results.subjects(other) == []
    assert results.summary(other, "pidone run") is None
    assert results.summary(RESTART, "tini") is None
    assert results.flags(RESTART, "tini") == []


def test_notes_name_the_measurement_and_the_round() -> None:
    first, second = Round(), Round()
    second.note("honcho: still running 15 s after SIGTERM")
    results = _results(first, second)
    assert results.notes == ["restart round 2: honcho: still running 15 s after SIGTERM"]


def test_settings_long_measurements_take_the_fewer_rounds() -> None:
    assert heavy_rounds(Settings(Path("/nonexistent"))) == 3
    assert heavy_rounds(Settings(Path("/nonexistent"), rounds=2, heavy_rounds=3)) == 2
    assert Shutdown().rounds(Settings(Path("/nonexistent"), rounds=7)) == 7
    # 5 kills a launch, 2.5 s apart: the fewer rounds
    assert Restart().rounds(Settings(Path("/nonexistent"), rounds=7)) == 3
