"""`make bench`: pidone against every peer, side by side, in one run.

pidone (single-command and `pidone run`), tini, dumb-init, supervisord,
circus, honcho, s6-svscan and runsvdir: each runs as PID 1 of a fresh PID
namespace with the same workload; every measurement is repeated and
reported as min / median / max with ratios to the best peer, and pidone's
targets are judged. Prints the tables and writes bench/RESULTS.md. Needs
root (unshare) and the peers that `make bench` installs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from pidbench import machine, profile, report, targets
from pidbench.inits import INITS, REPO, VENV_PYTHON, Init
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
        "--quick",
        action="store_true",
        help="for iterating: 2 rounds (1 for the long ones), 3 s idle window, fewer "
        "signals, a storm of 500, 4 MiB per log writer, 50 processes to scale",
    )
    parser.add_argument("--rounds", type=_positive, help="repetitions of each measurement (5)")
    parser.add_argument(
        "--heavy-rounds",
        type=_positive,
        help="repetitions of the long ones: idle, storm, log relay, scale (3)",
    )
    parser.add_argument(
        "--idle-window", type=_seconds, help="seconds every init idles, all at once (20)"
    )
    parser.add_argument(
        "--signal-samples", type=_positive, help="per signal kind per single-command init (100)"
    )
    parser.add_argument("--storm-size", type=_positive, help="orphans per storm (2000)")
    parser.add_argument("--log-mib", type=_positive, help="MiB each of 4 log writers writes (16)")
    parser.add_argument("--scale", type=_positive, help="processes in the scale test (200)")
    parser.add_argument(
        "--only", help="comma-separated measurements: " + ",".join(m.name for m in ALL)
    )
    parser.add_argument("--inits", help="comma-separated inits: " + ",".join(i.name for i in INITS))
    parser.add_argument("--no-profile", action="store_true", help="no profile for a missed target")
    parser.add_argument(
        "--no-merge",
        action="store_true",
        help="with --only: write RESULTS.md anew (default: merge into the one there)",
    )
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
        heavy_rounds=args.heavy_rounds or (1 if quick else 3),
        idle_window=args.idle_window or (3.0 if quick else 20.0),
        signal_samples=args.signal_samples or (30 if quick else 100),
        supervisor_signal_samples=5 if quick else 20,
        storm_size=args.storm_size or (500 if quick else 2000),
        log_mib=args.log_mib or (4 if quick else 16),
        scale=args.scale or (50 if quick else 200),
        scrapes=5 if quick else 10,
    )


def check_can_run(inits: Sequence[Init]) -> None:
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root, to make PID namespaces with unshare")
    if shutil.which("unshare") is None:
        raise SystemExit("bench: unshare not found (Debian package util-linux)")
    missing = [f"{i.name} ({i.executable})" for i in inits if not i.available()]
    if missing:
        raise SystemExit(f"bench: not installed: {', '.join(missing)}; `make bench` installs them")


def compile_pidone() -> None:
    """Bytecode first, as an installed package has it: compiling pidone's source
    at start-up (PYTHONDONTWRITEBYTECODE set, or a read-only tree) costs PID 1
    over a MiB of memory that it never gives back."""
    subprocess.run(
        [str(VENV_PYTHON), "-m", "compileall", "-q", str(REPO / "src")],
        stdout=subprocess.DEVNULL,
        check=True,
    )


def progress(text: str) -> None:
    sys.stderr.write(f"bench: {text}\n")
    sys.stderr.flush()


def run(
    measurements: Sequence[Measurement],
    inits: Sequence[Init],
    settings: Settings,
    loads: list[str],
) -> Results:
    """Every measurement's rounds; `loads` gets the 1-minute load average as
    each measurement starts (other sessions share the machine)."""
    results = Results()
    for measurement in measurements:
        subjects = [i for i in inits if measurement.applies(i)]
        if not subjects:
            continue
        loads.append(f"{measurement.name} {os.getloadavg()[0]:.2f}")
        rounds = measurement.rounds(settings)
        for round_no in range(1, rounds + 1):
            # Rotate the order each round so no init always goes first.
            shift = (round_no - 1) % len(subjects)
            order = [*subjects[shift:], *subjects[:shift]]
            started = time.monotonic()
            observed = Round()
            measurement.run_round(order, settings, observed)
            results.add(measurement, round_no, observed)
            took = time.monotonic() - started
            progress(f"{measurement.name} round {round_no}/{rounds} ({took:.1f} s)")
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
    compile_pidone()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    WORK.mkdir(exist_ok=True)
    load_before = machine.load_average()
    began = time.monotonic()
    profiles: list[tuple[str, str]] = []
    imports: list[tuple[str, str]] = []
    loads: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="run-", dir=WORK) as workdir:
            settings = settings_from(args, Path(workdir))
            results = run(measurements, inits, settings, loads)
            verdicts = targets.judge(results)
            if not args.no_profile:
                profiles = profile.misses(verdicts, settings, progress)
                if any(m.name == "memory" for m in measurements):
                    imports = profile.import_costs(settings, progress)
    except KeyboardInterrupt:
        progress("interrupted; everything it started is stopped")
        return 130
    took = time.monotonic() - began
    command = " ".join(["bench/run.py", *argv]) if argv else "make bench"
    print(report.results_table(measurements, results))
    print()
    print(report.targets_table(verdicts))
    about = [
        *machine.describe_machine(),
        ("load average (1, 5, 15 min) before the run", load_before),
        (
            "1-min load average as each measurement started (the bench's own included)",
            ", ".join(loads),
        ),
        ("load average at the end", machine.load_average()),
        ("run time", f"{took / 60:.1f} min"),
    ]
    document = report.results_markdown(
        measurements=measurements,
        results=results,
        verdicts=verdicts,
        settings=settings,
        machine=about,
        tools=machine.describe_tools(inits),
        command=command,
        profiles=profiles,
        imports=imports,
    )
    if args.only is not None and not args.no_merge and args.output.exists():
        # A selective run keeps the other measurements' numbers: its sections go in.
        document = report.merge_markdown(
            args.output.read_text(), document, measurements, ALL, command
        )
        progress(f"merged {', '.join(m.name for m in measurements)} into {args.output}")
    args.output.write_text(document)
    progress(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
