"""`pidone ctl reexec`: pidone as PID 1 executes itself again, STACK
processes kept, REEXECS times in a row in one launch.

Each reexec is timed from starting the command until it exits 0 having
printed `re-executed`: the client waits until the new pidone answers a
status request, so the round trip holds the preflight (`python -m pidone
check` of the new code), the handover, the exec and the new interpreter's
start. pidone's RSS and open fds are read once it is quiet: before, after
the first and after the last reexec; then how many of the processes still
run with the pid they had. No peer does this (systemd's daemon-reexec is
the idea, and systemd is not a subject here).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence

from pidbench import configs, procfs
from pidbench.channel import Channel
from pidbench.children import SLEEP, script
from pidbench.errors import BenchError
from pidbench.inits import PIDONE_RUN, Init
from pidbench.measure import Metric, Round, Settings, each_init
from pidbench.measures.common import heavy_rounds
from pidbench.namespace import Namespace
from pidbench.waiting import wait_until_quiet
from pidbench.workload import Service, Workload

STACK = 10  # processes pidone supervises through the reexecs
REEXECS = 10  # in a row, in one launch
START_TIMEOUT = 30.0
REEXEC_TIMEOUT = 60.0  # the client's own default wait for the new pidone
QUIET_TIMEOUT = 30.0
# MiB more after REEXECS than before that still counts as no growth: the new
# interpreter's heap is laid out afresh, a page here or there (the target's slack).
RSS_SLACK = 1.0

ROUND_TRIP = Metric("reexec_trip", "Command to the new pidone answering", "ms", digits=0)
RSS_BEFORE = Metric("reexec_rss_0", "RSS before", "MiB", digits=2)
RSS_FIRST = Metric("reexec_rss_1", "RSS after 1 reexec", "MiB", digits=2)
RSS_LAST = Metric("reexec_rss_n", f"RSS after {REEXECS} reexecs", "MiB", digits=2)
RSS_GROWTH = Metric(
    "reexec_rss_growth", f"RSS after {REEXECS} minus before", "MiB", digits=2, better=None
)
FDS_BEFORE = Metric("reexec_fds_0", "Open fds before", "count", digits=0, better=None)
FDS_LAST = Metric(
    "reexec_fds_n", f"Open fds after {REEXECS} reexecs", "count", digits=0, better=None
)
KEPT = Metric(
    "reexec_kept",
    f"Pids kept of {STACK} after {REEXECS} reexecs",
    "count",
    digits=0,
    better="higher",
)


class Reexec:
    name = "reexec"
    title = f"ctl reexec of pidone as PID 1 with {STACK} processes"
    metrics = (ROUND_TRIP, RSS_BEFORE, RSS_FIRST, RSS_LAST, RSS_GROWTH, FDS_BEFORE, FDS_LAST, KEPT)

    def applies(self, init: Init) -> bool:
        return init.name == PIDONE_RUN.name

    def rounds(self, settings: Settings) -> int:
        return heavy_rounds(settings)

    def describe(self, settings: Settings) -> str:
        return (
            f"`pidone run` as PID 1 with {STACK} processes, each `sh up.sh` (says `up` on a "
            "FIFO, then execs `sleep`), all ready (`pidone ctl wait-ready`); then "
            f"`pidone ctl reexec` {REEXECS} times in a row in one launch, each timed from "
            "starting the command until it exits 0 having printed `re-executed` (the client "
            "asks for the status until the new pidone answers: the round trip holds the "
            "preflight `python -m pidone check` of the new code, the handover, the exec and "
            "the new interpreter's start-up). pidone's RSS (smaps_rollup) and open fds "
            "(/proc/PID/fd) once it is quiet: before, after the first reexec and after the "
            f"last; then how many of the {STACK} still run with their pid. Every reexec is "
            "a sample of the round trip. No peer does this: systemd's `daemon-reexec` is the "
            "only one, and systemd is not a subject of this bench."
        )

    def run_round(self, inits: Sequence[Init], settings: Settings, out: Round) -> None:
        each_init(inits, out, lambda init: _launch(init, settings, out), failed=KEPT)


def trace(init: Init, settings: Settings) -> str:
    """The profile of a miss: one launch, pidone's RSS and fds after each
    reexec, the fds it gained or lost, and the pids that changed."""
    log: list[str] = []
    try:
        _launch(init, settings, Round(), log)
    except (BenchError, OSError) as exc:
        log.append(f"failed: {exc}")
    return "\n".join(["```", *log, "```"])


def _launch(init: Init, settings: Settings, out: Round, log: list[str] | None = None) -> None:
    """One launch of STACK processes and REEXECS reexecs, recorded in `out`;
    with `log`, the state after each reexec goes there too."""
    with Channel(settings.workdir) as channel:
        fifo = str(channel.path)
        stack = tuple(
            Service(n, tuple(script("up", fifo, n))) for n in (f"p{i:02d}" for i in range(STACK))
        )
        with Namespace(init, Workload(stack), settings.workdir) as ns:
            channel.read_lines(STACK, START_TIMEOUT)
            pids = set(ns.wait_workload(SLEEP, STACK))
            _ctl(ns, "wait-ready", "--timeout", "30")
            wait_until_quiet(ns.pid, timeout=QUIET_TIMEOUT)
            rss_before = _rss_mib(ns.pid)
            fds_before = procfs.fds(ns.pid)
            out.record(RSS_BEFORE, init.name, rss_before)
            out.record(FDS_BEFORE, init.name, len(fds_before))
            if log is not None:
                log.append(f"before: RSS {rss_before:.2f} MiB, {len(fds_before)} fds")
            for n in range(1, REEXECS + 1):
                started = time.monotonic_ns()
                said = _ctl(ns, "reexec")
                took = (time.monotonic_ns() - started) / 1e6
                out.record(ROUND_TRIP, init.name, took)
                if "re-executed" not in said:
                    raise BenchError(f"reexec {n}: no new pidone: {said!r}")
                ns.check_running()
                wait_until_quiet(ns.pid, timeout=QUIET_TIMEOUT)
                if n == 1:
                    out.record(RSS_FIRST, init.name, _rss_mib(ns.pid))
                if log is not None:
                    log.append(_state(n, took, ns.pid, fds_before))
            rss_last = _rss_mib(ns.pid)
            out.record(RSS_LAST, init.name, rss_last)
            out.record(RSS_GROWTH, init.name, rss_last - rss_before)
            out.record(FDS_LAST, init.name, len(procfs.fds(ns.pid)))
            now = set(ns.workload_pids(SLEEP))
            out.record(KEPT, init.name, len(pids & now))
            if log is not None:
                log.append(f"pids gone: {sorted(pids - now)}; new: {sorted(now - pids)}")


def _state(n: int, took: float, pid: int, before: dict[int, str]) -> str:
    """One line for the trace: after reexec `n`, and the fds unlike `before`'s."""
    now = procfs.fds(pid)
    gained = sorted(f"{fd}->{what}" for fd, what in now.items() if before.get(fd) != what)
    lost = sorted(f"{fd}->{what}" for fd, what in before.items() if now.get(fd) != what)
    return (
        f"reexec {n}: {took:.0f} ms; RSS {_rss_mib(pid):.2f} MiB, {len(now)} fds; "
        f"gained {gained or 'none'}; lost {lost or 'none'}"
    )


def _rss_mib(pid: int) -> float:
    return procfs.memory_kib(pid)["Rss"] / 1024


def _ctl(ns: Namespace, *argv: str) -> str:
    """`pidone ctl ARGV...` on the launch's control socket: its output; BenchError unless 0."""
    command = [configs.PIDONE_BIN, "ctl", "--socket", str(ns.rundir / "control.sock"), *argv]
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=REEXEC_TIMEOUT + 10,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(
            f"pidone ctl {' '.join(argv)}: no answer within {exc.timeout:g} s"
        ) from exc
    if done.returncode != 0:
        raise BenchError(
            f"pidone ctl {' '.join(argv)} exited {done.returncode}: "
            f"{(done.stdout + done.stderr).strip()!r}"
        )
    return done.stdout
