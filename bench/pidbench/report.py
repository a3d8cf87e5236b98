"""The results table, the targets, and RESULTS.md around them."""

from __future__ import annotations

from collections.abc import Sequence

from pidbench.inits import INITS, REFERENCE
from pidbench.measure import Measurement, Metric, Results, Settings
from pidbench.stats import Summary
from pidbench.targets import Verdict


def _number(value: float, metric: Metric) -> str:
    return f"{value:.{metric.digits}f}"


def _ratio(summary: Summary, reference: Summary | None) -> str:
    if reference is None or reference.median == 0:
        return "-"
    return f"{summary.median / reference.median:.2f}x"


def _in_report_order(subjects: Sequence[str]) -> list[str]:
    """Inits in registry order, then baselines: rounds rotate the run order."""
    names = [init.name for init in INITS]
    return sorted(subjects, key=lambda s: names.index(s) if s in names else len(names))


def results_table(measurements: Sequence[Measurement], results: Results) -> str:
    rows = [
        f"| Metric | Subject | min | median | max | vs {REFERENCE} (median) |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for measurement in measurements:
        for metric in measurement.metrics:
            reference = results.summary(metric, REFERENCE)
            for subject in _in_report_order(results.subjects(metric)):
                s = results.summary(metric, subject)
                if s is None:
                    continue
                numbers = " | ".join(_number(v, metric) for v in (s.minimum, s.median, s.maximum))
                rows.append(
                    f"| {metric.label} ({metric.unit}) | {subject} | {numbers} "
                    f"| {_ratio(s, reference)} |"
                )
    return "\n".join(rows)


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
) -> str:
    method = "\n".join(f"- **{m.title}**: {m.describe(settings)}" for m in measurements)
    notes = _items([("note", n) for n in results.notes]) if results.notes else "None."
    return f"""# pidone benchmark results

Written by `{command}` (bench/run.py); every run rewrites this file.

## Machine

{_items(machine)}

## Tools

{_items(tools)}

## Method

Each init runs as PID 1 of its own PID namespace
(`unshare --pid --fork --kill-child --mount-proc INIT [--] CHILD`) and is
watched from the host through its host pid. {settings.rounds} rounds; each
row is min / median / max over rounds, and the ratio compares medians with
{REFERENCE}.

{method}

## Results

{results_table(measurements, results)}

## Targets

{targets_table(verdicts)}

## Problems during the run

{notes}
"""
