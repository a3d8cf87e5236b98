"""Signal forwarding latency: from our kill() of the init to the child's receipt.

One signal at a time: we wait for the child to report each one before the
next, then pause, so the kernel never merges two pending signals. Both ends
read CLOCK_MONOTONIC, which a PID namespace does not change. Each kind gets
a launch of its own: for a supervisor, SIGTERM is a shutdown (one sample per
launch) and SIGHUP may be a reload; whatever the child does not get within
the timeout is dropped, and why is recorded (the init exited without passing
it on, or restarted the child instead).
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections.abc import Sequence

from pidbench.channel import Channel
from pidbench.children import program
from pidbench.errors import BenchError, InitGone
from pidbench.inits import Init
from pidbench.measure import Metric, Round, Settings, each_init
from pidbench.measures.common import heavy_rounds
from pidbench.namespace import Namespace
from pidbench.stats import percentile
from pidbench.waiting import wait_until_quiet

KINDS = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)
READY_TIMEOUT = 20.0  # seconds for the init to start the sink (circus takes a while)

DROPPED = "dropped"
DROPPED_EXIT = "dropped: init exits"
DROPPED_RESTART = "dropped: child restarted"


def _metrics(kind: signal.Signals) -> tuple[Metric, Metric]:
    return (
        Metric(f"{kind.name.lower()}_median", f"{kind.name} latency, median", "ms", digits=3),
        Metric(f"{kind.name.lower()}_p99", f"{kind.name} latency, p99", "ms", digits=3),
    )


METRICS = {kind: _metrics(kind) for kind in KINDS}


class SignalLatency:
    name = "signals"
    title = "Signal forwarding latency"
    metrics = tuple(m for pair in METRICS.values() for m in pair)

    def applies(self, init: Init) -> bool:
        return not init.variant

    def rounds(self, settings: Settings) -> int:
        return heavy_rounds(settings)

    def describe(self, settings: Settings) -> str:
        kinds = ", ".join(k.name for k in KINDS)
        return (
            f"{kinds}, each kind in a launch of its own, sent to the init's host pid "
            f"{settings.signal_gap * 1000:g} ms apart: {settings.signal_samples} of each per "
            "round for a single-command init; for a supervisor, whose child is its only "
            f"service, {settings.supervisor_signal_samples} of SIGHUP and SIGUSR1 and one "
            "SIGTERM (a shutdown). The child blocks all signals, takes them with "
            "sigtimedwait and reports time.monotonic_ns() of each receipt; latency = "
            "receipt - send. A signal the child has not got within "
            f"{settings.signal_timeout:g} s is dropped (the cell says why: the init exited "
            "instead, or restarted the child)."
        )

    def run_round(self, inits: Sequence[Init], settings: Settings, out: Round) -> None:
        def measure(init: Init) -> None:
            for kind in KINDS:
                try:
                    latencies = _launch_and_sample(init, kind, settings)
                except _Dropped as dropped:
                    for metric in METRICS[kind]:
                        out.flag(metric, init.name, dropped.word)
                    continue
                except (BenchError, OSError) as exc:
                    out.note(f"{init.name}, {kind.name}: {exc}")
                    continue
                median_metric, p99_metric = METRICS[kind]
                out.record(median_metric, init.name, statistics.median(latencies))
                out.record(p99_metric, init.name, percentile(latencies, 99))

        each_init(inits, out, measure)


class _Dropped(Exception):
    def __init__(self, word: str) -> None:
        super().__init__(word)
        self.word = word


def _launch_and_sample(init: Init, kind: signal.Signals, settings: Settings) -> list[float]:
    if not init.supervises:
        samples = settings.signal_samples
    elif kind == signal.SIGTERM:
        samples = 1
    else:
        samples = settings.supervisor_signal_samples
    wanted = [str(int(k)) for k in KINDS]
    with Channel(settings.workdir) as channel:
        sink = program("signal_sink", str(channel.path), *wanted)
        with Namespace(init, sink, settings.workdir) as ns:
            channel.expect("ready", READY_TIMEOUT)
            wait_until_quiet(ns.supervision_tree())
            pidfd = ns.pidfd()
            try:
                return _sample(ns.pid, pidfd, kind, samples, channel, settings)
            finally:
                os.close(pidfd)


def _sample(
    init_pid: int,
    pidfd: int,
    kind: signal.Signals,
    samples: int,
    channel: Channel,
    settings: Settings,
) -> list[float]:
    """Latencies in ms; _Dropped if not even the first one arrived."""
    latencies: list[float] = []
    for i in range(samples):
        sent = time.monotonic_ns()
        os.kill(init_pid, kind)
        try:
            signo, received = channel.read_line(settings.signal_timeout, watch=pidfd).split()
        except InitGone as exc:
            if latencies:
                raise BenchError(f"{kind.name} #{i + 1}: the init exited") from exc
            raise _Dropped(DROPPED_EXIT) from exc
        except BenchError as exc:
            if latencies:
                raise BenchError(f"{kind.name} #{i + 1} was not passed on: {exc}") from exc
            raise _Dropped(DROPPED) from exc
        if int(signo) != kind:
            if latencies:
                raise BenchError(f"sent {kind.name} #{i + 1}, the child got signal {signo}")
            raise _Dropped(DROPPED_RESTART if int(signo) == signal.SIGTERM else DROPPED)
        latencies.append((int(received) - sent) / 1e6)
        time.sleep(settings.signal_gap)
    return latencies
