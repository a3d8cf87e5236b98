"""The shapes every measurement shares: what it measures, how it reports.

A measurement runs one round at a time over all inits and records values
as (metric, subject) pairs; a subject is an init's name, or a baseline
such as the bare interpreter. The runner repeats rounds and collects them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from pidbench.errors import BenchError
from pidbench.inits import Init
from pidbench.stats import Summary


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    digits: int = 2  # decimals shown in the report
    # Which way is better, for "the best peer"; None: no ranking (a count of
    # processes, say).
    better: Literal["lower", "higher"] | None = "lower"


@dataclass(frozen=True)
class Settings:
    workdir: Path  # scratch space for FIFOs and per-launch files
    rounds: int = 5
    heavy_rounds: int = 3  # for the long ones: idle window, storm, log relay, scale
    idle_window: float = 20.0  # seconds every init idles, all at once
    signal_samples: int = 200  # per signal kind, per single-command init, per round
    supervisor_signal_samples: int = 20  # per signal kind, per supervisor (TERM: 1)
    signal_gap: float = 0.003  # seconds between signals, so none coalesce
    signal_timeout: float = 1.5  # a signal not passed on by then is dropped
    storm_size: int = 2000  # orphans per storm
    storm_timeout: float = 30.0  # seconds after the storm before zombies count as leaked
    storm_stall: float = 5.0  # ... or this long without one zombie reaped
    log_mib: int = 16  # MiB each log writer writes
    log_writers: int = 4
    log_timeout: float = 60.0  # seconds for the relay to pass everything on
    scale: int = 200  # supervised processes in the scale test
    scrapes: int = 10  # /metrics scrapes per round


class Round:
    """What one round of one measurement observed."""

    def __init__(self) -> None:
        self.values: list[tuple[Metric, str, float]] = []
        self.flags: list[tuple[Metric, str, str]] = []
        self.notes: list[str] = []

    def record(self, metric: Metric, subject: str, value: float) -> None:
        self.values.append((metric, subject, value))

    def flag(self, metric: Metric, subject: str, word: str) -> None:
        """A round in which there was no value, and why, in a word ("dropped")."""
        self.flags.append((metric, subject, word))

    def note(self, text: str) -> None:
        self.notes.append(text)


def each_init(
    inits: Sequence[Init],
    out: Round,
    measure: Callable[[Init], None],
    failed: Metric | None = None,
) -> None:
    """Run `measure` for every init: one init failing (or dying under us,
    which os.kill reports as an OSError) is noted, and the others are still
    measured. `failed`: the metric a failed launch flags "failed" (it kept
    nothing to count, so its target misses)."""
    for init in inits:
        try:
            measure(init)
        except (BenchError, OSError) as exc:
            if failed is not None:
                out.flag(failed, init.name, "failed")
            out.note(f"{init.name}: {exc}")


class Measurement(Protocol):
    # Read-only, so that plain class attributes satisfy the protocol.
    @property
    def name(self) -> str:
        """Short, for --only and progress lines."""

    @property
    def title(self) -> str:
        """For the report."""

    @property
    def metrics(self) -> tuple[Metric, ...]:
        """What it records, in report order."""

    def describe(self, settings: Settings) -> str:
        """One paragraph for the report: how it is measured."""

    def applies(self, init: Init) -> bool:
        """Whether `init` is a subject of this measurement (variants only where named)."""

    def rounds(self, settings: Settings) -> int:
        """How many rounds it runs: settings.rounds or, if it is long, heavy_rounds."""

    def run_round(self, inits: Sequence[Init], settings: Settings, out: Round) -> None: ...


class Results:
    """Every value recorded, by metric key and subject, across rounds."""

    def __init__(self) -> None:
        self._values: dict[str, dict[str, list[float]]] = {}
        self._flags: dict[str, dict[str, list[str]]] = {}
        self.notes: list[str] = []

    def add(self, measurement: Measurement, round_no: int, observed: Round) -> None:
        for metric, subject, value in observed.values:
            self._values.setdefault(metric.key, {}).setdefault(subject, []).append(value)
        for metric, subject, word in observed.flags:
            self._flags.setdefault(metric.key, {}).setdefault(subject, []).append(word)
        self.notes += [f"{measurement.name} round {round_no}: {n}" for n in observed.notes]

    def subjects(self, metric: Metric) -> list[str]:
        names = list(self._values.get(metric.key, {}))
        return names + [s for s in self._flags.get(metric.key, {}) if s not in names]

    def flags(self, metric: Metric, subject: str) -> list[str]:
        return self._flags.get(metric.key, {}).get(subject, [])

    def values(self, metric: Metric, subject: str) -> list[float]:
        return self._values.get(metric.key, {}).get(subject, [])

    def summary(self, metric: Metric, subject: str) -> Summary | None:
        values = self.values(metric, subject)
        return Summary.of(values) if values else None
