"""pidone's targets (issues 2, 8, 13 and 19), each judged on the median over rounds
unless it says otherwise. A round in which pidone did not do the thing at
all (a word instead of a number: not restarted, timed out, dropped) misses
the target, whatever the other rounds' median."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from pidbench.measure import Metric, Results
from pidbench.measures import (
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
from pidbench.stats import Summary

SINGLE = "pidone"
RUN = "pidone run"
RUN_METRICS = "pidone run +metrics"
STORM_REFERENCE = "tini"
MEMORY_REFERENCE = "supervisord"  # serves no metrics at all


@dataclass(frozen=True)
class Verdict:
    key: str  # for the profile of a miss
    target: str
    passed: bool | None  # None: not measured in this run
    detail: str

    @property
    def word(self) -> str:
        return {True: "PASS", False: "MISS", None: "n/a"}[self.passed]


class _Missing(Exception):
    """No number for a subject. Not measured: n/a. But a word in every round
    of one of pidone's (a signal dropped, zombies leaked, a child not
    restarted) is what was measured, and the target is missed."""

    def __init__(self, text: str, passed: bool | None) -> None:
        super().__init__(text)
        self.passed = passed


def _summary(results: Results, metric: Metric, subject: str) -> Summary:
    summary = results.summary(metric, subject)
    if summary is None:
        flags = results.flags(metric, subject)
        why = f" ({', '.join(sorted(set(flags)))})" if flags else ""
        # A reference (tini, the bare interpreter) without a number leaves
        # nothing to judge against.
        failed = bool(flags) and subject in (SINGLE, RUN, RUN_METRICS)
        raise _Missing(f"no {metric.label} for {subject}{why}", False if failed else None)
    return summary


def _words(results: Results, metric: Metric, subject: str) -> str:
    """The rounds of one of pidone's with a word instead of a number ("1x not
    restarted"): rounds that failed, which the others' median does not excuse."""
    flags = Counter(results.flags(metric, subject))
    return ", ".join(f"{n}x {word}" for word, n in flags.items())


def _wakeups(results: Results) -> tuple[bool, str]:
    parts, passed = [], True
    for subject in (SINGLE, RUN, RUN_METRICS):
        s = _summary(results, idle.WAKEUPS, subject)
        passed = passed and s.maximum == 0
        parts.append(f"{subject} median {s.median:.2f}/s, worst round {s.maximum:.2f}/s")
    return passed, "; ".join(parts)


def _rss_run(results: Results) -> tuple[bool, str]:
    s = _summary(results, memory.RSS, RUN)
    return s.median <= 18.0, f"{RUN} {s.median:.2f} MiB (3 children)"


def _rss_metrics(results: Results) -> tuple[bool, str]:
    ours = _summary(results, memory.RSS, RUN_METRICS).median
    ref = _summary(results, memory.RSS, MEMORY_REFERENCE).median
    detail = (
        f"{RUN_METRICS} {ours:.2f} MiB = {ours / ref:.2f}x {MEMORY_REFERENCE}"
        f" ({ref:.2f} MiB, 3 children)"
    )
    at_scale = results.summary(scale.SCALE_RSS, RUN)
    if at_scale is not None:
        detail += f"; with 200 processes and metrics: {at_scale.median:.1f} MiB (not judged)"
    return ours <= 1.5 * ref, detail


def _rss_single(results: Results) -> tuple[bool, str]:
    ours = _summary(results, memory.RSS, SINGLE).median
    bare = _summary(results, memory.RSS, memory.BASELINE).median
    return ours <= 1.3 * bare, (
        f"pidone {ours:.2f} MiB = {ours / bare:.2f}x the bare interpreter ({bare:.2f} MiB)"
    )


def _storm(results: Results) -> tuple[bool, str]:
    ref = _summary(results, orphans.CLEAR, STORM_REFERENCE).median
    parts, passed = [], True
    for subject in (SINGLE, RUN):
        ours = _summary(results, orphans.CLEAR, subject).median
        leaked = _summary(results, orphans.LEAKED, subject).maximum
        passed = passed and ours <= 1.5 * ref and leaked == 0
        parts.append(f"{subject} {ours:.1f} ms = {ours / ref:.2f}x, {leaked:.0f} leaked")
    return passed, f"{'; '.join(parts)} (tini {ref:.1f} ms)"


def _restart(results: Results) -> tuple[bool, str]:
    """Every kill of the stable service under 10 ms: the median of each one
    (the first, the second, ...) over the rounds, so that a backoff from the
    second kill on misses even when the first restarts at once."""
    every = _summary(results, restart.RESTART, RUN)
    words = _words(results, restart.RESTART, RUN)
    each = [results.summary(metric, RUN) for metric in restart.EACH_KILL]
    medians = [s.median for s in each if s is not None]
    detail = (
        f"each kill's median {', '.join(f'{m:.2f}' for m in medians)} ms; "
        f"all {every.count}: median {every.median:.2f} (min {every.minimum:.2f}, "
        f"max {every.maximum:.2f})"
    )
    measured = len(medians) == len(each)
    passed = measured and max(medians) < 10.0 and not words
    return passed, detail + (f"; {words}" if words else "")


def _signals(results: Results) -> tuple[bool, str]:
    parts, passed = [], True
    for subject in (SINGLE, RUN):
        kinds = []
        for kind, (median_metric, _) in signals.METRICS.items():
            median = _summary(results, median_metric, subject).median
            dropped = len(results.flags(median_metric, subject))
            passed = passed and median < 1.0 and dropped == 0
            kinds.append(f"{kind.name} {median:.3f}" + (f" ({dropped} dropped)" if dropped else ""))
        parts.append(f"{subject}: " + ", ".join(kinds) + " ms")
    return passed, "; ".join(parts)


def _shutdown(results: Results) -> tuple[bool, str]:
    parts, passed = [], True
    for subject in (SINGLE, RUN):
        s = _summary(results, shutdown.SHUTDOWN, subject)
        passed = passed and s.median < 10.0
        parts.append(f"{subject} {s.median:.2f} ms")
    told = _summary(results, shutdown.TOLD, RUN)
    passed = passed and told.minimum == 3
    slow = _summary(results, shutdown.SLOW_EXTRA, RUN)
    words = _words(results, shutdown.SLOW_EXTRA, RUN)
    passed = passed and slow.median < 10.0 and not words
    return passed, (
        f"3 prompt children: {', '.join(parts)}; pidone run told {told.minimum:.0f} of 3 "
        f"at worst; one child stopping in {shutdown.SLOW_STOP * 1000:g} ms: pidone run "
        f"exits {slow.median:.2f} ms after it (max {slow.maximum:.2f}"
        + (f"; {words})" if words else ")")
    )


def _logs(results: Results) -> tuple[bool, str]:
    rate = _summary(results, logs.THROUGHPUT, RUN)
    lost = _summary(results, logs.LOST, RUN)
    words = _words(results, logs.LOST, RUN)
    detail = f"pidone run (prefixes) {rate.median:.0f} MB/s, {lost.maximum:.0f} lines lost at worst"
    detail += f"; {words}" if words else ""
    json_rate = results.summary(logs.THROUGHPUT, logs.JSON_VARIANT)
    json_lost = results.summary(logs.LOST, logs.JSON_VARIANT)
    if json_rate is not None and json_lost is not None:
        detail += f"; JSON (not judged) {json_rate.median:.0f} MB/s, {json_lost.maximum:.0f} lost"
    raw_rate = results.summary(logs.THROUGHPUT, logs.RAW_VARIANT)
    raw_lost = results.summary(logs.LOST, logs.RAW_VARIANT)
    if raw_rate is not None and raw_lost is not None:
        detail += (
            f"; without prefixes (not judged) {raw_rate.median:.0f} MB/s,"
            f" {raw_lost.maximum:.0f} lost"
        )
    return rate.median >= 200 and lost.maximum == 0 and not words, detail


def _scrape(results: Results) -> tuple[bool, str]:
    s = _summary(results, scale.SCRAPE, RUN)
    count = results.summary(scale.PROCESSES, RUN)
    processes = f" with {count.median:.0f} processes" if count is not None else ""
    return s.median < 250, f"median of medians {s.median:.1f} ms{processes} (max {s.maximum:.1f})"


def _update(results: Results) -> tuple[bool, str]:
    """Every round: all the others kept their pid (a number, not timed)."""
    kept = _summary(results, update.KEPT, RUN)
    words = _words(results, update.KEPT, RUN)
    running = _summary(results, update.TO_RUNNING, RUN)
    ready = _summary(results, update.TO_READY, RUN)
    detail = (
        f"{kept.minimum:.0f} of {update.STACK} kept their pid at worst; command to running "
        f"{running.median:.1f} ms, to ready {ready.median:.1f} ms (not judged)"
    )
    return kept.minimum == update.STACK and not words, detail + (f"; {words}" if words else "")


def _reexec(results: Results) -> tuple[bool, str]:
    """Every round: the pids kept, no fd more, RSS within RSS_SLACK of before."""
    kept = _summary(results, reexec.KEPT, RUN)
    words = _words(results, reexec.KEPT, RUN)
    growth = _summary(results, reexec.RSS_GROWTH, RUN)
    before = _summary(results, reexec.FDS_BEFORE, RUN)
    after = _summary(results, reexec.FDS_LAST, RUN)
    fds = [
        a - b
        for a, b in zip(
            results.values(reexec.FDS_LAST, RUN),
            results.values(reexec.FDS_BEFORE, RUN),
            strict=False,
        )
    ]
    trip = _summary(results, reexec.ROUND_TRIP, RUN)
    detail = (
        f"{kept.minimum:.0f} of {reexec.STACK} pids kept at worst; fds {before.median:.0f} "
        f"before, {after.median:.0f} after (most gained in a round: {max(fds):.0f}); RSS "
        f"growth median {growth.median:+.2f} MiB (max {growth.maximum:+.2f}); round trip "
        f"{trip.median:.0f} ms (max {trip.maximum:.0f}, not judged)"
    )
    passed = (
        kept.minimum == reexec.STACK
        and max(fds) <= 0
        and growth.maximum <= reexec.RSS_SLACK
        and not words
    )
    return passed, detail + (f"; {words}" if words else "")


TARGETS: tuple[tuple[str, str, Callable[[Results], tuple[bool, str]]], ...] = (
    ("wakeups", "0 wakeups/s while idle, both modes, every round", _wakeups),
    ("rss_run", "pidone run RSS <= 18 MiB without metrics", _rss_run),
    (
        "rss_metrics",
        f"pidone run RSS with metrics <= 1.5x {MEMORY_REFERENCE}'s in the same run",
        _rss_metrics,
    ),
    ("rss_single", "single-command RSS within 1.3x of a bare interpreter", _rss_single),
    ("storm", f"orphan storm within 1.5x of {STORM_REFERENCE}, no zombie left", _storm),
    ("restart", "every restart of a stable process after kill -9 < 10 ms", _restart),
    ("signals", "signal forwarding < 1 ms (median, every kind, none dropped)", _signals),
    (
        "shutdown",
        "shutdown of 3 prompt children < 10 ms, all told; bounded by the slowest stop",
        _shutdown,
    ),
    ("logs", "log relay >= 200 MB/s, zero lines lost", _logs),
    ("scrape", "200 processes: /metrics scrape < 250 ms", _scrape),
    ("update", f"ctl update adding a process: the other {update.STACK} keep their pids", _update),
    (
        "reexec",
        f"{reexec.REEXECS} ctl reexecs as PID 1: every pid kept, no fd leaked, "
        f"RSS within {reexec.RSS_SLACK:g} MiB of before",
        _reexec,
    ),
)


def judge(results: Results) -> list[Verdict]:
    verdicts = []
    for key, target, check in TARGETS:
        try:
            passed, detail = check(results)
        except _Missing as missing:
            verdicts.append(Verdict(key, target, missing.passed, str(missing)))
            continue
        verdicts.append(Verdict(key, target, passed, detail))
    return verdicts
