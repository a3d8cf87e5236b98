"""Profiles for the targets pidone misses: where the time (or memory) goes.

Run after the measurements, only for a MISS, and written into RESULTS.md:

- time: the measurement that missed runs again for the pidone subject with
  py-spy (from the bench's own venv) sampling the init at 1000 Hz on every
  launch, only while it holds the GIL (runs Python code) and without
  pausing it (`py-spy record --pid PID --rate 1000 --gil --nonblocking
  --function --format raw`); the collapsed stacks of all launches are
  summed, and the tables show the functions with the most samples,
  inclusive (on the stack) and self (at the top). Start-up is in them too:
  the shares of the functions on the path that missed are what count.
- memory: pidone runs under rss_trace.py (RSS at every import) with
  PYTHONPROFILEIMPORTTIME=1 (who imported whom); each module's growth goes
  to the import in pidone's own code that pulled it in.
- wakeups: strace of the idle init: the system calls it made.
- ctl update, ctl reexec (what they keep): one launch again, logged: what
  each command said, the pids before and after, and after each reexec
  pidone's RSS and the fds unlike those it had before.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from itertools import pairwise, zip_longest
from pathlib import Path

from pidbench import namespace, procfs
from pidbench.children import SLEEP
from pidbench.errors import BenchError
from pidbench.inits import INITS, PEERS_BIN, REPO, VENV_PYTHON, Init
from pidbench.measure import Measurement, Round, Settings
from pidbench.measures import logs, orphans, reexec, restart, scale, shutdown, signals, update
from pidbench.measures.common import SLEEPERS
from pidbench.namespace import Namespace
from pidbench.targets import RUN, RUN_METRICS, SINGLE, Verdict
from pidbench.waiting import wait_until_quiet
from pidbench.workload import Workload

PY_SPY = PEERS_BIN / "py-spy"
RATE = 1000  # samples per second
# Only samples holding the GIL: running Python code, not waiting in epoll.
# Without pausing the process: a paused process is never idle, and the
# measurements wait for the init to go idle.
SPY_OPTIONS = ("--gil", "--nonblocking", "--function", "--format", "raw")
TOP = 12  # rows per table
MAX_TIMELINE = 80  # lines of strace shown
# A sample is of the loop (not start-up) when one of these is on its stack:
# pidone run's loop turn, single-command mode's loop.
LOOP_FRAMES = ("Loop._turn (", "supervise (")
RSS_TRACE = Path(__file__).resolve().parent / "rss_trace.py"
STRACE_WINDOW = 5.0  # seconds of idle watched by strace


def _by_name(name: str) -> Init:
    for init in INITS:
        if init.name == name:
            return init
    raise KeyError(name)


def _short(frame: str) -> str:
    """`poll (pidone/loop.py:120)` with the repo's and venvs' prefixes cut."""
    for prefix in (str(REPO / "src") + "/", str(REPO) + "/", "/usr/lib/python3.11/"):
        frame = frame.replace(prefix, "")
    return frame


# --- py-spy ---------------------------------------------------------------


class _Spy:
    """py-spy on every launch of one init; the collapsed stacks, summed."""

    def __init__(self, subject: str, workdir: Path) -> None:
        self.subject = subject
        self.workdir = workdir
        self.stacks: Counter[str] = Counter()
        self.launches = 0
        self.errors: list[str] = []

    def __call__(self, ns: Namespace) -> Callable[[], None]:
        if ns.init.name != self.subject:
            return lambda: None
        out = Path(tempfile.mkstemp(prefix="spy-", suffix=".txt", dir=self.workdir)[1])
        argv = [str(PY_SPY), "record", "--pid", str(ns.pid), "--rate", str(RATE)]
        argv += [*SPY_OPTIONS, "--output", str(out)]
        errors = out.with_suffix(".err")
        with open(errors, "wb") as stderr:
            spy = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr
            )
        # py-spy says it samples once it has found the interpreter (or exits).
        assert spy.stdout is not None
        if b"Sampling" not in spy.stdout.readline():
            text = errors.read_text(errors="replace").strip().splitlines()
            self.errors.append(f"py-spy did not start: {text[0] if text else '?'}")

        def done() -> None:
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)
            try:
                spy.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.communicate()
            self._add(out)

        return done

    def _add(self, out: Path) -> None:
        self.launches += 1
        try:
            text = out.read_text(errors="replace")
        except OSError:
            return
        for line in text.splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                self.stacks[stack] += int(count)

    def tables(self) -> str:
        everything = sum(self.stacks.values())
        # The event loop's turns, not the start-up (imports, configuration).
        looping = {s: n for s, n in self.stacks.items() if any(m in s for m in LOOP_FRAMES)}
        total = sum(looping.values())
        if not total:
            return f"py-spy took no sample in the loop ({everything} in all). " + " ".join(
                self.errors
            )
        inclusive: Counter[str] = Counter()
        own: Counter[str] = Counter()
        for stack, count in looping.items():
            frames = [_short(f) for f in stack.split(";") if f]
            # Every frame, outermost first (py-spy adds no thread frame without
            # --threads), once per sample however often it recurs.
            for frame in dict.fromkeys(frames):
                inclusive[frame] += count
            if frames:
                own[frames[-1]] += count
        rows = [
            f"{total} samples in the loop over {self.launches} launches ({everything} in all: "
            "the rest is start-up, imports and configuration), shares of those in the loop:",
            "",
            "| on the stack (inclusive) | share | at the top (self) | share |",
            "|---|--:|---|--:|",
        ]
        # There are fewer frames at the top than on the stack: every row of
        # the longer column, the shorter one's cells left empty.
        for on_stack, at_top in zip_longest(inclusive.most_common(TOP), own.most_common(TOP)):
            rows.append(f"| {_share(on_stack, total)} | {_share(at_top, total)} |")
        return "\n".join(rows)


def _share(entry: tuple[str, int] | None, total: int) -> str:
    """Two table cells: the frame and its share of the samples, or empty."""
    if entry is None:
        return " | "
    frame, count = entry
    return f"`{frame}` | {count / total:.0%}"


def _spy_on(
    subject: str,
    measurement: Measurement,
    settings: Settings,
    repeat: int,
) -> str:
    spy = _Spy(subject, settings.workdir)
    init = _by_name(subject)
    notes: list[str] = []
    namespace.observer = spy
    try:
        for _ in range(repeat):
            observed = Round()
            measurement.run_round([init], settings, observed)
            notes += observed.notes
    finally:
        namespace.observer = None
    command = (
        f"`{PY_SPY.relative_to(REPO)} record --pid PID --rate {RATE} {' '.join(SPY_OPTIONS)}` "
        f"on `{subject}` through {repeat} round(s) of the `{measurement.name}` measurement"
    )
    problems = f"\n\nProblems: {'; '.join(notes + spy.errors)}" if notes or spy.errors else ""
    return f"{command}:\n\n{spy.tables()}{problems}"


class _Timeline:
    """strace on the first launch of one init: its system calls, with times."""

    def __init__(self, subject: str, event: str) -> None:
        self.subject = subject
        self.event = event  # e.g. "SIGTERM": the timeline starts where it arrives
        self.lines: list[str] = []
        self.taken = False

    def __call__(self, ns: Namespace) -> Callable[[], None]:
        if ns.init.name != self.subject or self.taken:
            return lambda: None
        self.taken = True
        out = ns.rundir / "strace.txt"
        argv = ["strace", "-tt", "-T", "-p", str(ns.pid), "-o", str(out)]
        tracer = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # attached by then

        def done() -> None:
            time.sleep(0.05)
            if tracer.poll() is None:
                tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=10)
            with contextlib.suppress(OSError):
                self.lines = out.read_text(errors="replace").splitlines()

        return done

    def text(self) -> str:
        """From the event's arrival until the init blocks again (or exits), with
        ms since the arrival; a system call's own time is in <...>."""
        start = next((i for i, line in enumerate(self.lines) if f"--- {self.event}" in line), None)
        if start is None:
            return f"(strace saw no {self.event})"
        t0 = _seconds(self.lines[start])
        shown = []
        for line in self.lines[start:]:
            rest = line.partition(" ")[2]
            shown.append(f"+{(_seconds(line) - t0) * 1000:7.3f} ms  {rest[:110]}")
            if rest.startswith(("epoll_wait", "select", "poll", "read(")) and _took(rest) > 0.05:
                break
            if len(shown) >= MAX_TIMELINE:
                shown.append("...")
                break
        return "\n".join(shown)


def _seconds(line: str) -> float:
    hours, minutes, seconds = line.split(" ", 1)[0].split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _took(rest: str) -> float:
    """A system call's own time, from strace -T's `<0.000123>`."""
    if rest.endswith(">") and "<" in rest:
        try:
            return float(rest[rest.rindex("<") + 1 : -1])
        except ValueError:
            return 0.0
    return 0.0


def _timeline_of(subject: str, event: str, measurement: Measurement, settings: Settings) -> str:
    timeline = _Timeline(subject, event)
    namespace.observer = timeline
    try:
        measurement.run_round([_by_name(subject)], settings, Round())
    finally:
        namespace.observer = None
    return (
        f"`strace -tt -T -p PID` on `{subject}` in one launch of the `{measurement.name}` "
        f"measurement, from the {event} until it waits again (strace slows each system "
        f"call down; the gaps between calls are Python):\n\n```\n{timeline.text()}\n```"
    )


# --- memory ---------------------------------------------------------------


def _import_tree(stderr: str) -> dict[str, str]:
    """module -> the module that imported it, from PYTHONPROFILEIMPORTTIME's
    tree (children are printed before their parent, one level deeper)."""
    entries = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        name = line.split("|")[-1]
        depth = (len(name) - len(name.lstrip())) // 2
        entries.append((depth, name.strip()))
    parent: dict[str, str] = {}
    pending: dict[int, list[str]] = defaultdict(list)  # depth -> children waiting
    for depth, name in entries:
        for child in pending.pop(depth + 1, []):
            parent[child] = name
        pending[depth].append(name)
    return parent


def _group(module: str, parent: dict[str, str], callers: dict[str, str]) -> str:
    """`pidone.observe.metrics -> http.server`: the import in pidone's code that
    brought `module` in (`pidone.runtime.loop.run() -> ...` for one in a function);
    `pidone (own code)` for pidone's modules."""
    if module.startswith("pidone"):
        return "pidone (own code)"
    chain = [module]
    while chain[-1] in parent and not parent[chain[-1]].startswith("pidone"):
        chain.append(parent[chain[-1]])
    top = chain[-1]
    importer = parent.get(top)
    if importer:
        return f"{importer} -> {top}"
    return f"{callers.get(top, '-')}() -> {top}"


def _rss_table(trace: str, stderr: str, final: int) -> list[str]:
    """The rows of the RSS table: rss_trace.py's lines (`trace`) paired with
    PYTHONPROFILEIMPORTTIME's tree (`stderr`); `final` is the init's RSS (KiB)."""
    lines = [line.split() for line in trace.splitlines() if len(line.split()) == 4]
    # pidone's own lines, not those of a child between its fork and its exec.
    rows = [(module, rss) for pid, module, rss, _ in lines if pid == lines[0][0]]
    callers = {module: caller for _, module, _, caller in lines}
    parent = _import_tree(stderr)
    groups: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    for (module, rss), (_, after) in pairwise(rows):
        if module == "<start>":
            continue
        key = _group(module, parent, callers)
        groups[key] += int(after) - int(rss)
        modules[key] += 1
    start = int(rows[0][1])
    # What rss_trace.py itself grew by (its audit hook, its first read of
    # statm) before pidone's first import: in the total too.
    first = int(rows[1][1]) if len(rows) > 1 else start
    last = int(rows[-1][1])
    table = [
        "| where | modules | RSS (KiB) |",
        "|---|--:|--:|",
        f"| the interpreter before pidone (`python` and `site`) | | {start} |",
        f"| the tracer (rss_trace.py) until pidone's first import | | {first - start} |",
    ]
    for key, kib in groups.most_common():
        if kib >= 64:
            table.append(f"| `{key}` | {modules[key]} | {kib} |")
    small = sum(kib for kib in groups.values() if kib < 64)
    table.append(f"| everything under 64 KiB each | | {small} |")
    table.append(
        f"| after the last import (running: buffers, threads, the heap) | | {final - last} |"
    )
    table.append(f"| **total: the init's RSS** | | **{final}** |")
    return table


def _rss_profile(subject: str, settings: Settings) -> str:
    base = _by_name(subject)
    trace = Path(tempfile.mkstemp(prefix="rss-", suffix=".txt", dir=settings.workdir)[1])

    def render(workload: Workload, rundir: Path) -> list[str]:
        argv = base.render(workload, rundir)
        return [str(VENV_PYTHON), str(RSS_TRACE), str(trace), *argv[1:]]

    traced = Init(f"{subject} (traced)", base.kind, base.executable, render)
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    with Namespace(traced, SLEEPERS, settings.workdir, env=env) as ns:
        ns.wait_workload(SLEEP, 3)
        wait_until_quiet(ns.supervision_tree())
        final = procfs.memory_kib(ns.pid)["Rss"]
        stderr = ns.log_path.read_text(errors="replace")
    table = _rss_table(trace.read_text(), stderr, final)
    command = (
        f"`PYTHONPROFILEIMPORTTIME=1 {VENV_PYTHON.relative_to(REPO)} "
        f"{RSS_TRACE.relative_to(REPO)} OUT run -c pidone.toml` (`{subject}` with 3 `sleep` "
        "children), RSS from /proc/self/statm at each import, each module's growth put on the "
        "import in pidone's code that pulled it in (`importer -> import`)"
    )
    return f"{command}:\n\n" + "\n".join(table)


# --- wakeups --------------------------------------------------------------


def _strace_idle(subject: str, settings: Settings) -> str:
    init = _by_name(subject)
    with Namespace(init, SLEEPERS, settings.workdir) as ns:
        ns.wait_workload(SLEEP, 3)
        wait_until_quiet(ns.supervision_tree())
        out = ns.rundir / "strace.txt"
        argv = ["strace", "-f", "-tt", "-p", str(ns.pid), "-o", str(out)]
        tracer = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(STRACE_WINDOW)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=10)
        lines = out.read_text(errors="replace").splitlines()
    calls = Counter(line.split()[2].split("(")[0] for line in lines if len(line.split()) > 2)
    listing = "\n".join(lines[:30])
    return (
        f"`strace -f -tt -p PID` on `{subject}` (3 `sleep` children) for {STRACE_WINDOW:g} s "
        f"of idle: {len(lines)} lines; calls: "
        + ", ".join(f"{name} x{n}" for name, n in calls.most_common(10))
        + f"\n\n```\n{listing}\n```"
    )


# --- which profile for which target --------------------------------------


def _profile(key: str, settings: Settings) -> str:
    if key == "rss_run":
        return _rss_profile(RUN, settings)
    if key == "rss_metrics":
        return _rss_profile(RUN_METRICS, settings)
    if key == "rss_single":
        return _rss_profile(SINGLE, settings)
    if key == "wakeups":
        return "\n\n".join(_strace_idle(s, settings) for s in (SINGLE, RUN, RUN_METRICS))
    if key == "restart":
        return "\n\n".join(
            [
                _spy_on(RUN, restart.Restart(), settings, repeat=2),  # 2 x KILLS restarts
                _timeline_of(RUN, "SIGCHLD", restart.Restart(), settings),
            ]
        )
    if key == "shutdown":
        return "\n\n".join(
            [
                _spy_on(RUN, shutdown.Shutdown(), settings, repeat=5),
                _timeline_of(RUN, "SIGTERM", shutdown.Shutdown(), settings),
            ]
        )
    if key == "signals":
        return "\n\n".join(
            [
                *(_spy_on(s, signals.SignalLatency(), settings, repeat=1) for s in (SINGLE, RUN)),
                _timeline_of(RUN, "SIGUSR1", signals.SignalLatency(), settings),
            ]
        )
    if key == "storm":
        return "\n\n".join(
            _spy_on(s, orphans.OrphanStorm(), settings, repeat=1) for s in (SINGLE, RUN)
        )
    if key == "logs":
        return _spy_on(RUN, logs.LogRelay(), settings, repeat=1)
    if key == "scrape":
        return _spy_on(RUN, scale.Scale(), replace(settings, scrapes=50), repeat=1)
    if key == "update":
        return "What each `ctl update` said, the pids before and after:\n\n" + update.trace(
            _by_name(RUN), settings
        )
    if key == "reexec":
        return (
            "pidone's RSS and fds after each reexec; the fds unlike those before "
            "(`FD->LINK`):\n\n" + reexec.trace(_by_name(RUN), settings)
        )
    return "no profiler for this target"


def import_costs(settings: Settings, progress: Callable[[str], None]) -> list[tuple[str, str]]:
    """(subject, markdown): the RSS of every import of `pidone run` without and
    with metrics, traced in every run that measures memory (issue 13)."""
    found = []
    for subject in (RUN, RUN_METRICS):
        progress(f"tracing the RSS of each import: {subject}")
        try:
            body = _rss_profile(subject, settings)
        except (BenchError, OSError) as exc:
            body = f"the trace failed: {exc}"
        found.append((f"`{subject}`", body))
    return found


def misses(
    verdicts: Sequence[Verdict], settings: Settings, progress: Callable[[str], None]
) -> list[tuple[str, str]]:
    """(target, markdown) for every target missed."""
    found = []
    for verdict in verdicts:
        if verdict.passed is not False:
            continue
        progress(f"profiling a miss: {verdict.target}")
        try:
            body = _profile(verdict.key, settings)
        except (BenchError, OSError) as exc:
            body = f"the profile failed: {exc}"
        found.append((f"{verdict.target}: {verdict.detail}", body))
    return found
