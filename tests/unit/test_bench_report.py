"""bench/pidbench/report.py: the tables and RESULTS.md, line by line."""

from __future__ import annotations

from pathlib import Path

import pytest
from pidbench import report
from pidbench.measure import Measurement, Metric, Results, Round, Settings
from pidbench.measures import memory, restart, shutdown
from pidbench.measures.memory import Memory
from pidbench.measures.restart import Restart
from pidbench.measures.scale import Scale
from pidbench.measures.shutdown import Shutdown
from pidbench.stats import Summary
from pidbench.targets import Verdict, judge

Entry = tuple[Metric, str, float | str]  # a number, or the word of a flagged round


def results(measurement: Measurement, *rounds: list[Entry]) -> Results:
    out = Results()
    for number, entries in enumerate(rounds, 1):
        observed = Round()
        for metric, subject, value in entries:
            if isinstance(value, str):
                observed.flag(metric, subject, value)
            else:
                observed.record(metric, subject, value)
        out.add(measurement, number, observed)
    return out


R = restart.RESTART


def restarts() -> Results:
    """Two rounds, recorded in a rotated order; honcho stops everything, runsvdir
    once does not restart."""
    return results(
        Restart(),
        [
            (R, "runsvdir", 3.0),
            (R, "honcho", "stops all"),
            (R, "pidone run", 5.0),
            (R, "supervisord", 20.0),
        ],
        [
            (R, "supervisord", 22.0),
            (R, "pidone run", 7.0),
            (R, "runsvdir", "not restarted"),
            (R, "honcho", "stops all"),
        ],
    )


def test_summary_table_columns_in_registry_order_with_best_peer_and_ratio() -> None:
    got = report.summary_table(
        Restart(),
        results(
            Restart(), [(R, "s6-svscan", 2.5), (R, "supervisord", 20.0), (R, "pidone run", 5.0)]
        ),
    )
    assert got.splitlines() == [
        "| Restart after kill -9 | pidone run | supervisord | s6-svscan "
        "| best peer | pidone vs best |",
        "|---|--:|--:|--:|---|---|",
        "| kill -9 to running again (ms) | 5.00 | 20.00 | 2.50 "
        "| s6-svscan 2.50 | pidone run 2.00x |",
        *(f"| kill {n} of 5 to running again (ms) |  |  |  |  |  |" for n in range(1, 6)),
    ]


def test_summary_table_words_instead_of_numbers() -> None:
    got = report.summary_table(Restart(), restarts())
    assert got.splitlines()[0] == (
        "| Restart after kill -9 | pidone run | supervisord | honcho | runsvdir "
        "| best peer | pidone vs best |"
    )
    # Medians; honcho has only a word; runsvdir a number and the round without one.
    assert got.splitlines()[2] == (
        "| kill -9 to running again (ms) | 6.00 | 21.00 | stops all | 3.00 (1x not restarted) "
        "| runsvdir 3.00 | pidone run 2.00x |"
    )


def test_summary_table_higher_is_better_and_subjects_missing_a_metric() -> None:
    S, T, X = shutdown.SHUTDOWN, shutdown.TOLD, shutdown.SLOW_EXTRA
    data = results(
        Shutdown(),
        [
            (S, "pidone", 3.0),
            (T, "pidone", 2.0),
            (S, "pidone run", 4.0),
            (T, "pidone run", 3.0),
            (X, "pidone run", 2.0),
            (S, "tini", 1.5),
            (T, "tini", 1.0),
            (X, "tini", 0.5),
            (S, "dumb-init", 2.0),
            (T, "dumb-init", 3.0),
            (S, "supervisord", 300.0),
            (T, "supervisord", 2.0),
            (X, "supervisord", "not told"),
            (S, "honcho", 50.0),
            (T, "honcho", 2.0),
            (X, "honcho", 120.0),
        ],
    )
    assert report.summary_table(Shutdown(), data).splitlines() == [
        "| Shutdown on SIGTERM | pidone | pidone run | tini | dumb-init | supervisord | honcho "
        "| best peer | pidone vs best |",
        "|---|--:|--:|--:|--:|--:|--:|---|---|",
        "| 3 prompt children: SIGTERM to init exited (ms) | 3.00 | 4.00 | 1.50 | 2.00 | 300.00 "
        "| 50.00 | tini 1.50 | pidone 2.00x; pidone run 2.67x |",
        # Higher is better: the best peer is the most told.
        "| 3 prompt children: children that got SIGTERM (of 3) | 2 | 3 | 1 | 3 | 2 | 2 "
        "| dumb-init 3 | pidone 0.67x; pidone run 1.00x |",
        # pidone and dumb-init have no such row: empty cells, and no ratio for pidone.
        "| One child stops in 200 ms: exit beyond that (ms) |  | 2.00 | 0.50 |  | not told "
        "| 120.00 | tini 0.50 | pidone run 4.00x |",
    ]


def test_summary_table_baseline_last_never_the_best_peer_and_unranked_rows() -> None:
    data = results(
        Memory(),
        [
            (memory.RSS, memory.BASELINE, 0.5),
            (memory.RSS, "tini", 1.25),
            (memory.RSS, "pidone run +metrics", 17.5),
            (memory.RSS, "pidone", 10.0),
            (memory.TREE_SIZE, "tini", 1.0),
            (memory.TREE_SIZE, "pidone", 1.0),
        ],
    )
    assert report.summary_table(Memory(), data).splitlines() == [
        "| Memory with 3 sleeping children | pidone | pidone run +metrics | tini "
        "| python (bare) | best peer | pidone vs best |",
        "|---|--:|--:|--:|--:|---|---|",
        "| Init RSS (MiB) | 10.00 | 17.50 | 1.25 | 0.50 | tini 1.25 "
        "| pidone 8.00x; pidone run +metrics 14.00x |",
        "| Init PSS (MiB) |  |  |  |  |  |  |",
        "| Supervision tree RSS (MiB) |  |  |  |  |  |  |",
        "| Supervision tree PSS (MiB) |  |  |  |  |  |  |",
        # better=None: a count, no best peer and no ratio.
        "| Supervision tree processes (count) | 1 |  | 1 |  |  |  |",
        "| Init CPU to start up (ms) |  |  |  |  |  |  |",
    ]


def test_summary_table_without_any_subject() -> None:
    assert report.summary_table(Restart(), Results()) == "Not measured in this run."


def test_best_peer_ignores_pidone_baselines_and_unranked_metrics() -> None:
    data = results(
        Memory(),
        [
            (memory.RSS, "pidone", 0.1),
            (memory.RSS, memory.BASELINE, 0.2),
            (memory.RSS, "dumb-init", 1.2),
            (memory.RSS, "tini", 1.3),
            (memory.TREE_SIZE, "tini", 1.0),
        ],
    )
    assert report.best_peer(data, memory.RSS) == ("dumb-init", Summary(1.2, 1.2, 1.2, 1))
    assert report.best_peer(data, memory.TREE_SIZE) is None
    assert report.best_peer(data, memory.PSS) is None
    only_pidone = results(Memory(), [(memory.RSS, "pidone", 9.0)])
    assert report.best_peer(only_pidone, memory.RSS) is None


@pytest.mark.parametrize(
    ("value", "reference", "text"),
    [
        (6.0, 3.0, "2.00x"),
        (99.9, 1.0, "99.90x"),
        (150.4, 1.0, "150x"),
        (1.0, 10.0, "0.10x"),
        (1.0, 20.0, "0.05x"),
        (1.0, 40.0, "0.025x"),
        (0.0, 5.0, "0x"),
        (3.0, 0.0, "-"),  # a peer with 0 wakeups: no ratio to it
    ],
)
def test_ratio_text(value: float, reference: float, text: str) -> None:
    assert report._ratio(value, reference) == text


def test_details_table_min_median_max_rounds_and_ratios() -> None:
    assert report.details_table([Restart()], restarts()).splitlines() == [
        "| Metric | Subject | min | median | max | rounds | vs best peer | vs tini |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
        "| kill -9 to running again (ms) | pidone run | 5.00 | 6.00 | 7.00 | 2 | 2.00x | - |",
        "| kill -9 to running again (ms) | supervisord | 20.00 | 21.00 | 22.00 | 2 | 7.00x | - |",
        "| kill -9 to running again (ms) | honcho | - | - | - | 0, 2x stops all | - | - |",
        "| kill -9 to running again (ms) | runsvdir | 3.00 | 3.00 | 3.00 "
        "| 1, 1x not restarted | 1.00x | - |",
    ]


def test_details_table_against_tini_and_unranked() -> None:
    data = results(
        Memory(),
        [
            (memory.RSS, "pidone", 8.0),
            (memory.RSS, "tini", 1.0),
            (memory.RSS, "dumb-init", 0.8),
            (memory.TREE_SIZE, "pidone", 1.0),
            (memory.TREE_SIZE, "tini", 1.0),
        ],
        [
            (memory.RSS, "pidone", 9.0),
            (memory.RSS, "tini", 1.0),
            (memory.RSS, "dumb-init", 0.8),
            (memory.TREE_SIZE, "pidone", 1.0),
            (memory.TREE_SIZE, "tini", 1.0),
        ],
    )
    assert report.details_table([Memory()], data).splitlines()[2:] == [
        "| Init RSS (MiB) | pidone | 8.00 | 8.50 | 9.00 | 2 | 10.62x | 8.50x |",
        "| Init RSS (MiB) | tini | 1.00 | 1.00 | 1.00 | 2 | 1.25x | 1.00x |",
        "| Init RSS (MiB) | dumb-init | 0.80 | 0.80 | 0.80 | 2 | 1.00x | 0.80x |",
        "| Supervision tree processes (count) | pidone | 1 | 1 | 1 | 2 | - | 1.00x |",
        "| Supervision tree processes (count) | tini | 1 | 1 | 1 | 2 | - | 1.00x |",
    ]


def test_results_table_titles_every_summary_table() -> None:
    got = report.results_table([Restart(), Shutdown()], restarts())
    assert got.startswith("Restart after kill -9\n\n| Restart after kill -9 | pidone run |")
    assert got.endswith("\n\nShutdown on SIGTERM\n\nNot measured in this run.")


VERDICTS = [
    Verdict(
        "restart", "restart after kill -9 < 10 ms", True, "median 5.00 ms (min 4.00, max 6.00)"
    ),
    Verdict("rss_metrics", "init RSS <= 18 MiB with metrics enabled", False, "25.79 MiB"),
    Verdict("scrape", "200 processes: /metrics scrape < 250 ms", None, "no /metrics scrape"),
]


def test_targets_table() -> None:
    assert report.targets_table(VERDICTS).splitlines() == [
        "| pidone target | result | numbers |",
        "|---|---|---|",
        "| restart after kill -9 < 10 ms | **PASS** | median 5.00 ms (min 4.00, max 6.00) |",
        "| init RSS <= 18 MiB with metrics enabled | **MISS** | 25.79 MiB |",
        "| 200 processes: /metrics scrape < 250 ms | **n/a** | no /metrics scrape |",
    ]


def test_targets_table_of_a_run_that_measured_nothing() -> None:
    lines = report.targets_table(judge(Results())).splitlines()
    assert len(lines) == 2 + 12
    assert lines[2] == (
        "| 0 wakeups/s while idle, both modes, every round | **n/a** "
        "| no Init wakeups while idle for pidone |"
    )
    assert lines[-3] == (
        "| 200 processes: /metrics scrape < 250 ms | **n/a** "
        "| no /metrics scrape, median for pidone run |"
    )
    assert lines[-1] == (
        "| 10 ctl reexecs as PID 1: every pid kept, no fd leaked, RSS within 1 MiB of before "
        "| **n/a** | no Pids kept of 10 after 10 reexecs for pidone run |"
    )


SETTINGS = Settings(Path("/nonexistent"), rounds=5, heavy_rounds=3)


def _markdown(data: Results, profiles: list[tuple[str, str]]) -> str:
    return report.results_markdown(
        measurements=[Restart()],
        results=data,
        verdicts=VERDICTS,
        settings=SETTINGS,
        machine=[("CPU", "2 cores"), ("kernel", "6.1")],
        tools=[("tini", "tini version 0.19.0")],
        command="make bench",
        profiles=profiles,
    )


def test_results_markdown_sections() -> None:
    data = restarts()
    text = _markdown(data, [])
    lines = text.splitlines()
    assert lines[0] == "# pidone benchmark results"
    assert "Written by `make bench` (bench/run.py); every run rewrites this file." in lines
    assert "## Machine\n\n- CPU: 2 cores\n- kernel: 6.1\n\n## Tools\n\n" in text
    assert "- tini: tini version 0.19.0" in lines
    assert "directory). Up to 5 rounds" in text
    assert "(3 for the long measurements)" in text
    assert f"## Targets\n\n{report.targets_table(VERDICTS)}\n\n## Results (medians)" in text
    restart_section = (
        f"### Restart after kill -9\n\n{Restart().describe(SETTINGS)}\n\n"
        f"{report.summary_table(Restart(), data)}\n\n## What each import costs\n\n"
        "Not traced in this run (it comes with the memory measurement, without --no-profile)."
        "\n\n## Profiles of the misses"
    )
    assert restart_section in text
    assert "## Profiles of the misses\n\nNo target missed: no profile needed.\n" in text
    assert f"## Details: min / median / max\n\n{report.details_table([Restart()], data)}" in text
    assert text.endswith("## Problems during the run\n\nNone.\n")


def test_results_markdown_lists_what_each_import_costs() -> None:
    text = report.results_markdown(
        measurements=[Restart()],
        results=restarts(),
        verdicts=VERDICTS,
        settings=SETTINGS,
        machine=[],
        tools=[],
        command="make bench",
        imports=[("`pidone run`", "| where | modules | RSS (KiB) |")],
    )
    assert "## What each import costs\n\n### `pidone run`\n\n| where |" in text


def test_results_markdown_profiles_and_problems() -> None:
    noted = Round()
    noted.note("honcho: still running 15 s after SIGTERM")
    data = restarts()
    data.add(Restart(), 3, noted)
    text = _markdown(data, [("init RSS: 25.79 MiB", "| where |"), ("restart", "py-spy")])
    assert "## Profiles of the misses\n\n### init RSS: 25.79 MiB\n\n| where |\n\n" in text
    assert "### restart\n\npy-spy\n\n## Details" in text
    assert "No target missed" not in text
    assert text.endswith(
        "## Problems during the run\n\n"
        "- note: restart round 3: honcho: still running 15 s after SIGTERM\n"
    )


# --- a selective run (--only) merged into the RESULTS.md of a full run ------------


def _document(
    measurements: list[Measurement],
    data: Results,
    verdicts: list[Verdict],
    command: str,
    machine: list[tuple[str, str]],
) -> str:
    return report.results_markdown(
        measurements=measurements,
        results=data,
        verdicts=verdicts,
        settings=SETTINGS,
        machine=machine,
        tools=[("tini", "tini version 0.19.0")],
        command=command,
    )


def _full_and_selective() -> tuple[str, str, Results, Results]:
    full = restarts()
    full.add(Shutdown(), 1, _round([(shutdown.SHUTDOWN, "pidone", 3.0)]))
    full.add(Memory(), 1, _round([(memory.RSS, "pidone", 9.0)]))
    old = _document(
        [Memory(), Restart(), Shutdown()], full, VERDICTS, "make bench", [("date", "10:00")]
    )
    again = results(Shutdown(), [(shutdown.SHUTDOWN, "pidone", 5.0)])
    verdicts = [
        Verdict("restart", "restart after kill -9 < 10 ms", None, "not measured"),
        Verdict("shutdown", "shutdown < 10 ms", True, "pidone 5.00 ms"),
    ]
    command = "bench/run.py --only shutdown"
    new = _document([Shutdown()], again, verdicts, command, [("date", "16:00")])
    return old, new, full, again


def _round(entries: list[tuple[Metric, str, float]]) -> Round:
    observed = Round()
    for metric, subject, value in entries:
        observed.record(metric, subject, value)
    return observed


ORDER: list[Measurement] = [Memory(), Restart(), Shutdown()]


def test_merge_replaces_only_the_measured_sections_and_keeps_the_rest() -> None:
    old, new, full, again = _full_and_selective()
    merged = report.merge_markdown(old, new, [ORDER[2]], ORDER, "bench/run.py --only shutdown")
    # The restart and memory summaries of the full run are there as they were.
    assert f"### Restart after kill -9\n\n{Restart().describe(SETTINGS)}\n\n" in merged
    assert report.summary_table(Restart(), full) in merged
    assert report.summary_table(Memory(), full) in merged
    # Shutdown's summary is the new run's, once.
    assert report.summary_table(Shutdown(), again) in merged
    assert report.summary_table(Shutdown(), full) not in merged
    assert merged.count("### Shutdown on SIGTERM") == 1
    # In report order: memory, restart, shutdown.
    at = [merged.index(f"### {m.title}") for m in ORDER]
    assert at == sorted(at)
    # Details: the old rows of restart and memory, the new ones of shutdown, in order.
    details = merged.split("## Details: min / median / max\n\n")[1].split("\n\n")[0]
    assert details.splitlines() == [
        "| Metric | Subject | min | median | max | rounds | vs best peer | vs tini |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
        "| Init RSS (MiB) | pidone | 9.00 | 9.00 | 9.00 | 1 | - | - |",
        *report.details_table([Restart()], full).splitlines()[2:],
        "| 3 prompt children: SIGTERM to init exited (ms) | pidone | 5.00 | 5.00 | 5.00 | 1 "
        "| - | - |",
    ]


def test_merge_replaces_the_targets_judged_and_keeps_those_not_measured() -> None:
    old, new, _, _ = _full_and_selective()
    merged = report.merge_markdown(old, new, [ORDER[2]], ORDER, "bench/run.py --only shutdown")
    targets = merged.split("## Targets\n\n")[1].split("\n\n")[0].splitlines()
    assert targets == [
        "| pidone target | result | numbers |",
        "|---|---|---|",
        # n/a in the new run: the full run's verdict stays.
        "| restart after kill -9 < 10 ms | **PASS** | median 5.00 ms (min 4.00, max 6.00) |",
        "| init RSS <= 18 MiB with metrics enabled | **MISS** | 25.79 MiB |",
        "| 200 processes: /metrics scrape < 250 ms | **n/a** | no /metrics scrape |",
        "| shutdown < 10 ms | **PASS** | pidone 5.00 ms |",
    ]


def test_merge_says_what_was_merged_from_which_command_on_which_machine() -> None:
    old, new, _, _ = _full_and_selective()
    merged = report.merge_markdown(old, new, [ORDER[2]], ORDER, "bench/run.py --only shutdown")
    assert (
        "Written by `make bench` (bench/run.py); every run rewrites this file.\n"
        "Sections merged in from `bench/run.py --only shutdown`: shutdown.\n\n## Machine" in merged
    )
    assert (
        "## Machine\n\n- date: 10:00\n\nMerged in later: shutdown, from "
        "`bench/run.py --only shutdown`:\n\n- date: 16:00\n\n## Tools" in merged
    )
    assert (
        "## Tools\n\n- tini: tini version 0.19.0\n\nIn the run merged in later:\n\n"
        "- tini: tini version 0.19.0\n\n## Method" in merged
    )
    assert merged.endswith("## Problems during the run\n\nNone.\n")
    assert merged.count("## ") == old.count("## ")


def test_merge_puts_a_measurement_the_old_run_lacked_in_report_order() -> None:
    old_data = results(Shutdown(), [(shutdown.SHUTDOWN, "pidone", 3.0)])
    old = _document([Shutdown()], old_data, [], "make bench", [])
    new = _document([Restart()], restarts(), [], "bench/run.py --only restart", [])
    merged = report.merge_markdown(old, new, [ORDER[1]], ORDER, "bench/run.py --only restart")
    assert merged.index("### Restart after kill -9") < merged.index("### Shutdown on SIGTERM")
    details = merged.split("## Details: min / median / max\n\n")[1].split("\n\n")[0]
    rows = details.splitlines()[2:]
    assert rows[0].startswith("| kill -9 to running again (ms) | pidone run |")
    assert rows[-1].startswith("| 3 prompt children: SIGTERM to init exited (ms) | pidone |")


def test_detail_rows_with_a_label_two_measurements_share_go_to_the_right_one() -> None:
    # "Init RSS (MiB)" is memory's first row and scale's third.
    body = "\n".join(
        [
            "| Metric | Subject | min | median | max | rounds | vs best peer | vs tini |",
            "|---|---|--:|--:|--:|--:|--:|--:|",
            "| Init RSS (MiB) | pidone | 1 | 1 | 1 | 1 | - | - |",
            "| Init RSS (MiB) | tini | 1 | 1 | 1 | 1 | - | - |",
            "| Init PSS (MiB) | pidone | 1 | 1 | 1 | 1 | - | - |",
            "| Supervised processes (count) | pidone run | 1 | 1 | 1 | 1 | - | - |",
            "| Init RSS (MiB) | pidone run | 1 | 1 | 1 | 1 | - | - |",
            "| a row of a metric since renamed | pidone run | 1 | 1 | 1 | 1 | - | - |",
        ]
    )
    rows = report._detail_rows(body, [Memory(), Scale()])
    assert [at for at, _ in rows] == [0, 0, 0, 1, 1, 1]
