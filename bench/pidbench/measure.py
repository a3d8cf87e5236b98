"""The shapes every measurement shares: what it measures, how it reports.

A measurement runs one round at a time over all inits and records values
as (metric, subject) pairs; a subject is an init's name, or a baseline
such as the bare interpreter. The runner repeats rounds and collects them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pidbench.errors import BenchError
from pidbench.inits import Init
from pidbench.stats import Summary


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    digits: int = 2  # decimals shown in the report


@dataclass(frozen=True)
class Settings:
    workdir: Path  # scratch space for FIFOs and per-launch files
    rounds: int = 5
    idle_window: float = 10.0  # seconds each idle init is watched
    signal_samples: int = 200  # per signal kind, per init, per round
    signal_gap: float = 0.003  # seconds between signals, so none coalesce
    storm_size: int = 2000  # orphans per storm
    storm_timeout: float = 30.0  # seconds after the storm before zombies count as leaked


class Round:
    """What one round of one measurement observed."""

    def __init__(self) -> None:
        self.values: list[tuple[Metric, str, float]] = []
        self.notes: list[str] = []

    def record(self, metric: Metric, subject: str, value: float) -> None:
        self.values.append((metric, subject, value))

    def note(self, text: str) -> None:
        self.notes.append(text)


def each_init(inits: Sequence[Init], out: Round, measure: Callable[[Init], None]) -> None:
    """Run `measure` for every init: one init failing (or dying under us,
    which os.kill reports as an OSError) is noted, and the others are still measured."""
    for init in inits:
        try:
            measure(init)
        except (BenchError, OSError) as exc:
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

    def run_round(self, inits: Sequence[Init], settings: Settings, out: Round) -> None: ...


class Results:
    """Every value recorded, by metric key and subject, across rounds."""

    def __init__(self) -> None:
        self._values: dict[str, dict[str, list[float]]] = {}
        self.notes: list[str] = []

    def add(self, measurement: Measurement, round_no: int, observed: Round) -> None:
        for metric, subject, value in observed.values:
            self._values.setdefault(metric.key, {}).setdefault(subject, []).append(value)
        self.notes += [f"{measurement.name} round {round_no}: {n}" for n in observed.notes]

    def subjects(self, metric: Metric) -> list[str]:
        return list(self._values.get(metric.key, {}))

    def values(self, metric: Metric, subject: str) -> list[float]:
        return self._values.get(metric.key, {}).get(subject, [])

    def summary(self, metric: Metric, subject: str) -> Summary | None:
        values = self.values(metric, subject)
        return Summary.of(values) if values else None
