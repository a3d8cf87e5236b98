"""The tables, the targets, and RESULTS.md around them.

Summary tables show medians side by side, one column per init, with the
best peer (the best median among the inits that are not pidone) and each
pidone subject's ratio to it. The details table has min / median / max.
A cell without a number says why in a word (a signal "dropped", a restart
that "stops all"); one with a number and words counts the rounds that had
none.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pidbench.inits import INITS
from pidbench.measure import Measurement, Metric, Results, Settings
from pidbench.stats import Summary
from pidbench.targets import Verdict

TINI = "tini"  # the other yardstick in the details (issue 2 compared with tini)


def _number(value: float, metric: Metric) -> str:
    return f"{value:.{metric.digits}f}"


def _in_report_order(subjects: Sequence[str]) -> list[str]:
    """Inits in registry order, then baselines: rounds rotate the run order."""
    names = [init.name for init in INITS]
    return sorted(subjects, key=lambda s: names.index(s) if s in names else len(names))


def _is_pidone(subject: str) -> bool:
    return subject.startswith("pidone")


def _is_peer(subject: str) -> bool:
    return subject in {i.name for i in INITS} and not _is_pidone(subject)


def best_peer(results: Results, metric: Metric) -> tuple[str, Summary] | None:
    """The peer with the best median, by the metric's direction."""
    if metric.better is None:
        return None
    peers = []
    for subject in results.subjects(metric):
        summary = results.summary(metric, subject)
        if _is_peer(subject) and summary is not None:
            peers.append((subject, summary))
    if not peers:
        return None
    pick = min if metric.better == "lower" else max
    return pick(peers, key=lambda p: p[1].median)


def _ratio(value: float, reference: float) -> str:
    if reference == 0:
        return "-"
    ratio = value / reference
    if ratio >= 100:
        return f"{ratio:.0f}x"
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def _cell(results: Results, metric: Metric, subject: str) -> str:
    summary = results.summary(metric, subject)
    flags = Counter(results.flags(metric, subject))
    words = ", ".join(f"{word}" if summary is None else f"{n}x {word}" for word, n in flags.items())
    if summary is None:
        return words or ""
    text = _number(summary.median, metric)
    return f"{text} ({words})" if words else text


def summary_table(measurement: Measurement, results: Results) -> str:
    subjects: list[str] = []
    for metric in measurement.metrics:
        subjects += [s for s in results.subjects(metric) if s not in subjects]
    subjects = _in_report_order(subjects)
    if not subjects:
        return "Not measured in this run."
    head = f"| {measurement.title} | " + " | ".join(subjects) + " | best peer | pidone vs best |"
    rows = [head, "|---|" + "--:|" * len(subjects) + "---|---|"]
    for metric in measurement.metrics:
        cells = [_cell(results, metric, s) for s in subjects]
        best = best_peer(results, metric)
        if best is None:
            best_text = ratios = ""
        else:
            name, summary = best
            best_text = f"{name} {_number(summary.median, metric)}"
            parts = []
            for subject in subjects:
                ours = results.summary(metric, subject)
                if _is_pidone(subject) and ours is not None:
                    parts.append(f"{subject} {_ratio(ours.median, summary.median)}")
            ratios = "; ".join(parts)
        row = " | ".join([f"{metric.label} ({metric.unit})", *cells, best_text, ratios])
        rows.append(f"| {row} |")
    return "\n".join(rows)


def details_table(measurements: Sequence[Measurement], results: Results) -> str:
    rows = [
        "| Metric | Subject | min | median | max | rounds | vs best peer | vs tini |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for measurement in measurements:
        for metric in measurement.metrics:
            best = best_peer(results, metric)
            tini = results.summary(metric, TINI)
            for subject in _in_report_order(results.subjects(metric)):
                s = results.summary(metric, subject)
                flags = Counter(results.flags(metric, subject))
                note = "".join(f", {n}x {word}" for word, n in flags.items())
                if s is None:
                    numbers = " | ".join("-" for _ in range(3))
                    count = f"0{note}"
                    ratio = to_tini = "-"
                else:
                    numbers = " | ".join(
                        _number(v, metric) for v in (s.minimum, s.median, s.maximum)
                    )
                    count = f"{s.count}{note}"
                    ratio = "-" if best is None else _ratio(s.median, best[1].median)
                    to_tini = "-" if tini is None else _ratio(s.median, tini.median)
                rows.append(
                    f"| {metric.label} ({metric.unit}) | {subject} | {numbers} | {count} "
                    f"| {ratio} | {to_tini} |"
                )
    return "\n".join(rows)


def results_table(measurements: Sequence[Measurement], results: Results) -> str:
    """For the terminal: every summary table."""
    return "\n\n".join(f"{m.title}\n\n{summary_table(m, results)}" for m in measurements)


def targets_table(verdicts: Sequence[Verdict]) -> str:
    rows = ["| pidone target | result | numbers |", "|---|---|---|"]
    rows += [f"| {v.target} | **{v.word}** | {v.detail} |" for v in verdicts]
    return "\n".join(rows)


def _items(pairs: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"- {key}: {value}" for key, value in pairs)


def results_markdown(
    *,
    measurements: Sequence[Measurement],
    results: Results,
    verdicts: Sequence[Verdict],
    settings: Settings,
    machine: Sequence[tuple[str, str]],
    tools: Sequence[tuple[str, str]],
    command: str,
    profiles: Sequence[tuple[str, str]] = (),
    imports: Sequence[tuple[str, str]] = (),
) -> str:
    summaries = "\n\n".join(
        f"### {m.title}\n\n{m.describe(settings)}\n\n{summary_table(m, results)}"
        for m in measurements
    )
    notes = _items([("note", n) for n in results.notes]) if results.notes else "None."
    profile_text = (
        "\n\n".join(f"### {title}\n\n{body}" for title, body in profiles)
        if profiles
        else "No target missed: no profile needed."
    )
    import_text = (
        "\n\n".join(f"### {title}\n\n{body}" for title, body in imports)
        if imports
        else "Not traced in this run (it comes with the memory measurement, without --no-profile)."
    )
    return f"""# pidone benchmark results

Written by `{command}` (bench/run.py); every run rewrites this file.

## Machine

{_items(machine)}

## Tools

{_items(tools)}

## Method

Each init runs as PID 1 of its own PID namespace
(`unshare --pid --fork --kill-child --mount-proc INIT ...`) with the same
workload, in a directory of its own holding its configuration, and is
watched from the host through its host pid. Single-command inits (pidone,
tini, dumb-init) run one command: several services go through a launcher,
`/bin/sh -c 'A & B & exec C'`. Supervisors (pidone run, supervisord,
circus, honcho, s6-svscan, runsvdir) get each service as a program of their
own (pidone.toml, supervisord.conf, circus.ini, Procfile, an s6 scan
directory, a runit service directory). Up to {settings.rounds} rounds
({min(settings.rounds, settings.heavy_rounds)} for the long measurements),
the inits' order rotating each round. Tables show the median over rounds;
"best peer" is the best median among the inits that are not pidone, and
"pidone vs best" divides pidone's median by it (for "higher is better"
rows, above 1x is better). A word in a cell says why there is no number.

## Targets

{targets_table(verdicts)}

## Results (medians)

{summaries}

## What each import costs

{import_text}

## Profiles of the misses

{profile_text}

## Details: min / median / max

{details_table(measurements, results)}

## Problems during the run

{notes}
"""
