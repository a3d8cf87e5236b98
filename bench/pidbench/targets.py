"""pidone's targets, each judged on the median over rounds unless it says otherwise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pidbench.inits import PIDONE, REFERENCE
from pidbench.measure import Metric, Results
from pidbench.measures import idle, memory, orphans, shutdown, signals
from pidbench.stats import Summary


@dataclass(frozen=True)
class Verdict:
    target: str
    passed: bool | None  # None: not measured in this run
    detail: str

    @property
    def word(self) -> str:
        return {True: "PASS", False: "MISS", None: "n/a"}[self.passed]


class _Missing(Exception):
    pass


def _summary(results: Results, metric: Metric, subject: str) -> Summary:
    summary = results.summary(metric, subject)
    if summary is None:
        raise _Missing(f"no {metric.label} for {subject}")
    return summary


def _rss(results: Results) -> tuple[bool, str]:
    ours = _summary(results, memory.RSS, PIDONE.name).median
    bare = _summary(results, memory.RSS, memory.BASELINE).median
    return ours <= 1.3 * bare, (
        f"pidone {ours:.2f} MiB = {ours / bare:.2f}x the bare interpreter ({bare:.2f} MiB)"
    )


def _wakeups(results: Results) -> tuple[bool, str]:
    s = _summary(results, idle.WAKEUPS, PIDONE.name)
    return s.maximum == 0, f"median {s.median:.2f}/s, worst round {s.maximum:.2f}/s"


def _storm(results: Results) -> tuple[bool, str]:
    ours = _summary(results, orphans.CLEAR, PIDONE.name).median
    ref = _summary(results, orphans.CLEAR, REFERENCE).median
    leaked = _summary(results, orphans.LEAKED, PIDONE.name).maximum
    ratio = ours / ref
    return ratio <= 1.5 and leaked == 0, (
        f"pidone {ours:.1f} ms = {ratio:.2f}x {REFERENCE} ({ref:.1f} ms); "
        f"{leaked:.0f} zombies leaked"
    )


def _signals(results: Results) -> tuple[bool, str]:
    parts, passed = [], True
    for kind, (median_metric, p99_metric) in signals.METRICS.items():
        median = _summary(results, median_metric, PIDONE.name).median
        p99 = _summary(results, p99_metric, PIDONE.name).median
        passed = passed and median < 1.0
        parts.append(f"{kind.name} median {median:.3f} ms (p99 {p99:.3f} ms)")
    return passed, "; ".join(parts)


def _shutdown(results: Results) -> tuple[bool, str]:
    s = _summary(results, shutdown.SHUTDOWN, PIDONE.name)
    return s.median < 10.0, f"median {s.median:.2f} ms (min {s.minimum:.2f}, max {s.maximum:.2f})"


TARGETS: tuple[tuple[str, Callable[[Results], tuple[bool, str]]], ...] = (
    ("RSS within 1.3x of a bare interpreter", _rss),
    ("0 wakeups/s while idle (every round)", _wakeups),
    (f"orphan storm cleared within 1.5x of {REFERENCE}, none leaked", _storm),
    ("signal forwarding latency < 1 ms (median, every signal)", _signals),
    ("shutdown on SIGTERM < 10 ms", _shutdown),
)


def judge(results: Results) -> list[Verdict]:
    verdicts = []
    for target, check in TARGETS:
        try:
            passed, detail = check(results)
        except _Missing as missing:
            verdicts.append(Verdict(target, None, str(missing)))
            continue
        verdicts.append(Verdict(target, passed, detail))
    return verdicts
