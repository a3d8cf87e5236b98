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


# --- a selective run merged into the last full run's RESULTS.md ------------------------------

RESULTS_HEADING = "## Results (medians)"
DETAILS_HEADING = "## Details: min / median / max"
TARGETS_HEADING = "## Targets"
MACHINE_HEADING = "## Machine"
TOOLS_HEADING = "## Tools"
PROBLEMS_HEADING = "## Problems during the run"
PROFILES_HEADING = "## Profiles of the misses"
IMPORTS_HEADING = "## What each import costs"
NO_PROFILE = "No target missed: no profile needed."


def _split(text: str, level: str) -> tuple[str, list[list[str]]]:
    """(the text before the first heading of `level` ("## "), [[heading, body], ...])."""
    head = ""
    sections: list[list[str]] = []
    for line in text.splitlines(keepends=True):
        if line.startswith(level):
            sections.append([line.rstrip("\n"), ""])
        elif sections:
            sections[-1][1] += line
        else:
            head += line
    return head, sections


def _join(head: str, sections: Sequence[Sequence[str]]) -> str:
    return head + "".join(f"{heading}\n{body}" for heading, body in sections)


def _section(sections: Sequence[list[str]], heading: str) -> list[str] | None:
    return next((s for s in sections if s[0] == heading), None)


def _detail_rows(body: str, order: Sequence[Measurement]) -> list[tuple[int, str]]:
    """Each row of a details table with the index in `order` of the measurement
    it belongs to. The table lists measurements, metrics and subjects in that
    order, and labels repeat across measurements ("Init RSS"), so each row is
    matched forward from the last one's metric; a subject seen twice for one
    metric starts the next metric with that label."""
    flat = [
        (i, f"{metric.label} ({metric.unit})") for i, m in enumerate(order) for metric in m.metrics
    ]
    rows: list[tuple[int, str]] = []
    cursor, seen = 0, set[str]()
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| ") or len(cells) < 2 or cells[0] == "Metric":
            continue
        label, subject = cells[0], cells[1]
        start = cursor + 1 if subject in seen and flat[cursor][1] == label else cursor
        found = next((j for j in range(start, len(flat)) if flat[j][1] == label), None)
        if found is not None and found != cursor:
            cursor, seen = found, set()
        seen.add(subject)
        rows.append((flat[cursor][0] if flat else 0, line))
    return rows


def merge_markdown(
    old: str, new: str, measured: Sequence[Measurement], order: Sequence[Measurement], command: str
) -> str:
    """`old` (RESULTS.md of an earlier run) with what the selective run `new`
    measured: its measurements' summaries and details rows replace theirs (or
    are put in `order`), the targets it judged replace theirs; its machine,
    tools, problems and profiles are added under the earlier run's. Everything
    else of the earlier run stays as it was."""
    old_head, old_parts = _split(old, "## ")
    _, new_parts = _split(new, "## ")
    titles = [m.title for m in order]
    measured_at = {order.index(m) for m in measured if m in order}

    def part(parts: list[list[str]], heading: str) -> list[str]:
        found = _section(parts, heading)
        if found is None:
            found = [heading, "\n"]
            parts.append(found)
        return found

    # Summaries: one "### title" each, in report order.
    old_results, new_results = part(old_parts, RESULTS_HEADING), part(new_parts, RESULTS_HEADING)
    intro, old_subs = _split(old_results[1], "### ")
    _, new_subs = _split(new_results[1], "### ")
    replaced = {s[0]: s for s in new_subs if s[0][4:] in {m.title for m in measured}}
    merged = [replaced.pop(s[0], s) for s in old_subs]
    merged += replaced.values()
    rank = {f"### {t}": i for i, t in enumerate(titles)}
    merged.sort(key=lambda s: rank.get(s[0], len(titles)))
    for sub in merged:
        sub[1] = sub[1].rstrip("\n") + "\n\n"
    old_results[1] = intro + _join("", merged)

    # Details: the rows of the measured measurements come from the new run.
    old_details, new_details = part(old_parts, DETAILS_HEADING), part(new_parts, DETAILS_HEADING)
    kept = [r for r in _detail_rows(old_details[1], order) if r[0] not in measured_at]
    fresh = [r for r in _detail_rows(new_details[1], order) if r[0] in measured_at]
    rows = [line for _, line in sorted(kept + fresh, key=lambda r: r[0])]
    header = [line for line in new_details[1].splitlines() if line.startswith("|")][:2]
    old_details[1] = "\n" + "\n".join(header + rows) + "\n\n"

    # Targets: a row the new run judged (not n/a) replaces the old one, or is added.
    old_targets, new_targets = part(old_parts, TARGETS_HEADING), part(new_parts, TARGETS_HEADING)
    target_rows = [line for line in old_targets[1].splitlines() if line.startswith("|")]
    for line in new_targets[1].splitlines():
        if not line.startswith("| ") or "**n/a**" in line or "**" not in line:
            continue
        name = line.split("|")[1]
        at = next((i for i, r in enumerate(target_rows) if r.split("|")[1] == name), None)
        if at is None:
            target_rows.append(line)
        else:
            target_rows[at] = line
    old_targets[1] = "\n" + "\n".join(target_rows) + "\n\n"

    # The selective run's machine, problems and profiles, under the earlier run's.
    names = ", ".join(m.name for m in measured)
    new_machine = part(new_parts, MACHINE_HEADING)[1].strip()
    machine = part(old_parts, MACHINE_HEADING)
    machine[1] = (
        machine[1].rstrip("\n") + f"\n\nMerged in later: {names}, from `{command}`:\n\n"
        f"{new_machine}\n\n"
    )
    new_tools = part(new_parts, TOOLS_HEADING)[1].strip()
    tools = part(old_parts, TOOLS_HEADING)
    tools[1] = tools[1].rstrip("\n") + f"\n\nIn the run merged in later:\n\n{new_tools}\n\n"
    new_problems = part(new_parts, PROBLEMS_HEADING)[1].strip()
    if new_problems != "None.":
        problems = part(old_parts, PROBLEMS_HEADING)
        before = problems[1].strip()
        joined = f"{'' if before == 'None.' else before + chr(10) * 2}From `{command}`:\n\n"
        problems[1] = f"\n{joined}{new_problems}\n"
    new_profiles = part(new_parts, PROFILES_HEADING)[1].strip()
    if new_profiles != NO_PROFILE:
        profiles = part(old_parts, PROFILES_HEADING)
        before = profiles[1].strip()
        profiles[1] = f"\n{'' if before == NO_PROFILE else before + chr(10) * 2}{new_profiles}\n\n"
    if any(m.name == "memory" for m in measured):
        part(old_parts, IMPORTS_HEADING)[1] = part(new_parts, IMPORTS_HEADING)[1]

    head = old_head.rstrip("\n") + f"\nSections merged in from `{command}`: {names}.\n\n"
    return _join(head, old_parts).rstrip("\n") + "\n"
