"""Log relay: 4 children write as fast as they can; what comes out, how fast, at what cost.

The init's stdout and stderr are one pipe that the bench reads, as docker
reads a container's. Each writer (children/log_writer.py) makes its lines
first, then all start at once (a FIFO closed under them) and write them in
64 KiB writes, then an end marker. Throughput is the writers' bytes over
the time from the start until the last end marker has come out; every line
that came out is then checked against the one written (prefixes and JSON
around it are fine): lines missing or damaged are lost. The relay's CPU
is the supervision tree's time on CPU over the same span (the writers'
own is not counted). Where there is no relay (single-command inits, s6 and
runit without a logger), the writers share the pipe and cut into each
other's lines.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import time
from collections.abc import Sequence
from pathlib import Path

from pidbench import procfs
from pidbench.channel import Channel
from pidbench.children import program
from pidbench.children.log_writer import FILLER
from pidbench.errors import BenchError
from pidbench.inits import Init
from pidbench.measure import Metric, Round, Settings, each_init
from pidbench.measures.common import heavy_rounds
from pidbench.namespace import Namespace
from pidbench.workload import Service, Workload

CHUNK = 65536  # bytes per write() of a writer
READ_SIZE = 1 << 20
JSON_VARIANT = "pidone run json"
RAW_VARIANT = "pidone run raw"
START_TIMEOUT = 30.0

THROUGHPUT = Metric("log_mbps", "Throughput", "MB/s", digits=0, better="higher")
LOST = Metric("log_lost", "Lines lost or damaged", "lines", digits=0)
RELAY_CPU = Metric("log_cpu", "Relay CPU per MB", "ms/MB", digits=2)
RELAY_SHARE = Metric("log_cpu_share", "Relay CPU, share of one core", "%", digits=0)

_END = re.compile(rb"#END (\d+) (\d+)#")
# A line as written, after whatever the relay put in front of it (a prefix,
# a JSON key) and before whatever it put after it (a JSON string's end).
_LINE = re.compile(rb'(?:^|(?<=[ |"\t]))W(\d+) (\d{8}) ([a-z0-9]+)(?="|\r?$)', re.M)


def check_lines(output: bytes, counts: dict[int, int]) -> int:
    """How many of the lines written (`counts`: writer -> lines) did not come
    out intact, each exactly once."""
    seen: set[tuple[int, int]] = set()
    duplicates = 0
    for match in _LINE.finditer(output):
        writer, seq, filler = int(match[1]), int(match[2]), match[3]
        if seq >= counts.get(writer, 0):
            continue
        if filler != FILLER[: (seq * 37 + writer * 11) % 160 + 8].encode():
            continue
        key = (writer, seq)
        duplicates += key in seen
        seen.add(key)
    return sum(counts.values()) - len(seen) + duplicates


def payload_bytes(counts: dict[int, int]) -> int:
    total = 0
    for writer, count in counts.items():
        for seq in range(count):
            # `W<id> <seq:08d> <filler>\n`
            total += len(str(writer)) + 12 + (seq * 37 + writer * 11) % 160 + 8
    return total


class LogRelay:
    name = "logs"
    title = "Log relay"
    metrics = (THROUGHPUT, LOST, RELAY_CPU, RELAY_SHARE)

    def applies(self, init: Init) -> bool:
        return not init.variant or init.name in (JSON_VARIANT, RAW_VARIANT)

    def rounds(self, settings: Settings) -> int:
        return heavy_rounds(settings)

    def describe(self, settings: Settings) -> str:
        return (
            f"{settings.log_writers} children each write {settings.log_mib} MiB of numbered "
            f"lines (8 to 167 bytes of text each) in {CHUNK // 1024} KiB writes, all starting "
            "at once; the init's stdout and stderr are one pipe the bench reads. MB/s is "
            "the children's bytes (10^6) over the time until the last one's end marker came "
            "out; lines lost counts lines missing or damaged; the relay CPU is the supervision "
            "tree's time on CPU (schedstat) over the same span. `pidone run` prefixes each "
            f"line with the process name, `{JSON_VARIANT}` writes JSON, `{RAW_VARIANT}` "
            "relays the lines as they are (no prefix), `pidone` "
            "(single-command) does not relay: like tini, dumb-init, s6 and runit (no logger "
            "configured) the children write straight into the pipe. supervisord relays "
            "(`stdout_logfile=/dev/stdout`), circus too (`StdoutStream`), honcho with "
            "prefixes."
        )

    def run_round(self, inits: Sequence[Init], settings: Settings, out: Round) -> None:
        def measure(init: Init) -> None:
            result = _relay_once(init, settings)
            if result is None:
                for metric in self.metrics:
                    out.flag(metric, init.name, "timed out")
                return
            seconds, megabytes, cpu_ms, lost = result
            out.record(THROUGHPUT, init.name, megabytes / seconds)
            out.record(LOST, init.name, lost)
            out.record(RELAY_CPU, init.name, cpu_ms / megabytes)
            out.record(RELAY_SHARE, init.name, cpu_ms / 10 / seconds)

        each_init(inits, out, measure)


def _relay_once(init: Init, settings: Settings) -> tuple[float, float, float, int] | None:
    """(seconds, MB written, relay CPU ms, lines lost), or None on a timeout."""
    read_end, write_end = os.pipe()
    try:
        with Channel(settings.workdir) as channel:
            go = Path(channel.path).with_name("go")
            os.mkfifo(go, 0o600)
            writers = Workload(
                tuple(
                    Service(
                        f"w{i}",
                        tuple(
                            program(
                                "log_writer",
                                str(channel.path),
                                str(go),
                                str(i),
                                str(settings.log_mib),
                                str(CHUNK),
                            )
                        ),
                    )
                    for i in range(settings.log_writers)
                )
            )
            with Namespace(init, writers, settings.workdir, output=write_end) as ns:
                os.close(write_end)
                write_end = -1
                channel.read_lines(settings.log_writers, START_TIMEOUT)
                _drain(read_end)  # the init's own start-up lines
                tree = ns.supervision_tree()
                cpu_before = _cpu_ns(tree)
                started = time.monotonic_ns()
                os.close(os.open(go, os.O_WRONLY | os.O_NONBLOCK))  # everyone goes
                output, counts, finished = _collect(read_end, settings)
                cpu_ms = (_cpu_ns(tree) - cpu_before) / 1e6
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    if finished is None:
        return None
    seconds = (finished - started) / 1e9
    return seconds, payload_bytes(counts) / 1e6, cpu_ms, check_lines(bytes(output), counts)


def _cpu_ns(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(BenchError):
            total += procfs.cpu_runtime_ns(pid)
    return total


def _drain(fd: int) -> None:
    while select.select([fd], [], [], 0)[0]:
        if not os.read(fd, READ_SIZE):
            return


def _collect(fd: int, settings: Settings) -> tuple[bytearray, dict[int, int], int | None]:
    """Read until every writer's end marker: (what came, writer -> lines, when the
    last marker came, or None if not all came within the timeout)."""
    output = bytearray()
    counts: dict[int, int] = {}
    deadline = time.monotonic() + settings.log_timeout
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while len(counts) < settings.log_writers:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            return output, counts, None
        data = os.read(fd, READ_SIZE)
        if not data:
            return output, counts, None
        tail = len(output)
        output += data
        # A marker may straddle two reads: look from a little before this one.
        for match in _END.finditer(output, max(0, tail - 64)):
            counts[int(match[1])] = int(match[2])
    return output, counts, time.monotonic_ns()
