"""Signal forwarding latency: from our kill() of the init to the child's receipt.

One signal at a time: we wait for the child to report each one before the
next, then pause, so the kernel never merges two pending signals. Both ends
read CLOCK_MONOTONIC, which a PID namespace does not change.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections.abc import Sequence

from pidbench.channel import Channel
from pidbench.children import program
from pidbench.errors import BenchError
from pidbench.inits import Init
from pidbench.measure import Metric, Round, Settings, each_init
from pidbench.namespace import Namespace
from pidbench.stats import percentile
from pidbench.waiting import wait_until_quiet

KINDS = (signal.SIGUSR1, signal.SIGTERM, signal.SIGHUP)
REPLY_TIMEOUT = 1.0  # seconds: a signal not passed on by then counts as lost


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

    def describe(self, settings: Settings) -> str:
        kinds = ", ".join(k.name for k in KINDS)
        return (
            f"{settings.signal_samples} samples of each of {kinds} per round, taking turns, "
            f"{settings.signal_gap * 1000:g} ms apart, each sent to the init's host pid; "
            "the child blocks all signals, takes them with sigtimedwait and reports "
            "time.monotonic_ns() of each receipt; latency = receipt - send."
        )

    def run_round(self, inits: Sequence[Init], settings: Settings, out: Round) -> None:
        def measure(init: Init) -> None:
            kinds = [str(int(k)) for k in KINDS]
            with Channel(settings.workdir) as channel:
                sink = program("signal_sink", str(channel.path), *kinds)
                with Namespace(init, sink, settings.workdir) as ns:
                    channel.expect("ready", 10)
                    wait_until_quiet(ns.pid)
                    latencies = _sample(ns.pid, channel, settings)
            for kind, (median_metric, p99_metric) in METRICS.items():
                out.record(median_metric, init.name, statistics.median(latencies[kind]))
                out.record(p99_metric, init.name, percentile(latencies[kind], 99))

        each_init(inits, out, measure)


def _sample(
    init_pid: int, channel: Channel, settings: Settings
) -> dict[signal.Signals, list[float]]:
    """Latencies in ms, by kind; the kinds take turns so each sees the same conditions."""
    latencies: dict[signal.Signals, list[float]] = {kind: [] for kind in KINDS}
    for i in range(settings.signal_samples):
        for kind in KINDS:
            sent = time.monotonic_ns()
            os.kill(init_pid, kind)
            try:
                signo, received = channel.read_line(REPLY_TIMEOUT).split()
            except BenchError as exc:
                raise BenchError(f"{kind.name} #{i + 1} was not passed on: {exc}") from exc
            if int(signo) != kind:
                raise BenchError(f"sent {kind.name}, the child got signal {signo}")
            latencies[kind].append((int(received) - sent) / 1e6)
            time.sleep(settings.signal_gap)
    return latencies
