"""`make bench`: pidone, tini and dumb-init side by side, in one run.

Each init runs as PID 1 of a fresh PID namespace; every measurement is
repeated --rounds times and reported as min / median / max with ratios to
tini. Prints the table and writes bench/RESULTS.md. Needs root (unshare).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from pidbench import machine, report, targets
from pidbench.inits import INITS, Init
from pidbench.measure import Measurement, Results, Round, Settings
from pidbench.measures import ALL

BENCH = Path(__file__).resolve().parent
RESULTS_MD = BENCH / "RESULTS.md"
# Scratch space (git ignores it): FIFOs and per-launch files, removed after each run.
WORK = BENCH / ".work"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {value:g}")
    return value


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=_positive, help="repetitions of each measurement (default 5)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 rounds, 3 s idle window, 50 signal samples"
    )
    parser.add_argument(
        "--idle-window", type=_seconds, help="seconds of idle watching (default 10)"
    )
    parser.add_argument(
        "--signal-samples", type=_positive, help="per signal kind per round (default 200)"
    )
    parser.add_argument("--storm-size", type=_positive, default=2000, help="orphans per storm")
    parser.add_argument(
        "--only", help="comma-separated measurements: " + ",".join(m.name for m in ALL)
    )
    parser.add_argument("--inits", help="comma-separated inits: " + ",".join(i.name for i in INITS))
    parser.add_argument("--output", type=Path, default=RESULTS_MD, help="where to write RESULTS.md")
    return parser.parse_args(argv)


def _pick(names: str | None, known: Sequence[str], what: str) -> list[int]:
    """Indexes of the comma-separated `names` in `known` (all when None)."""
    if names is None:
        return list(range(len(known)))
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return [known.index(n) for n in wanted]


def settings_from(args: argparse.Namespace, workdir: Path) -> Settings:
    quick = args.quick
    return Settings(
        workdir=workdir,
        rounds=args.rounds or (2 if quick else 5),
        idle_window=args.idle_window or (3.0 if quick else 10.0),
        signal_samples=args.signal_samples or (50 if quick else 200),
        storm_size=args.storm_size,
    )


def check_can_run(inits: Sequence[Init]) -> None:
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root, to make PID namespaces with unshare")
    if shutil.which("unshare") is None:
        raise SystemExit("bench: unshare not found (Debian package util-linux)")
    missing = [i.name for i in inits if not i.available()]
    if missing:
        raise SystemExit(f"bench: not installed: {', '.join(missing)} (run `make install`)")


def progress(text: str) -> None:
    sys.stderr.write(f"bench: {text}\n")
    sys.stderr.flush()


def run(measurements: Sequence[Measurement], inits: Sequence[Init], settings: Settings) -> Results:
    results = Results()
    for measurement in measurements:
        for round_no in range(1, settings.rounds + 1):
            # Rotate the order each round so no init always goes first.
            shift = (round_no - 1) % len(inits)
            order = [*inits[shift:], *inits[:shift]]
            started = time.monotonic()
            observed = Round()
            measurement.run_round(order, settings, observed)
            results.add(measurement, round_no, observed)
            took = time.monotonic() - started
            progress(f"{measurement.name} round {round_no}/{settings.rounds} ({took:.1f} s)")
            for note in observed.notes:
                progress(f"  problem: {note}")
    return results


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Unwind through every `with` and `finally`, which stop what we started.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    measurements = [ALL[i] for i in _pick(args.only, [m.name for m in ALL], "measurement")]
    inits = [INITS[i] for i in _pick(args.inits, [i.name for i in INITS], "init")]
    check_can_run(inits)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    WORK.mkdir(exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="run-", dir=WORK) as workdir:
            settings = settings_from(args, Path(workdir))
            results = run(measurements, inits, settings)
    except KeyboardInterrupt:
        progress("interrupted; everything it started is stopped")
        return 130
    verdicts = targets.judge(results)
    print(report.results_table(measurements, results))
    print()
    print(report.targets_table(verdicts))
    document = report.results_markdown(
        measurements=measurements,
        results=results,
        verdicts=verdicts,
        settings=settings,
        machine=machine.describe_machine(),
        tools=machine.describe_tools(inits),
        command=" ".join(["bench/run.py", *argv]) if argv else "make bench",
    )
    args.output.write_text(document)
    progress(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
