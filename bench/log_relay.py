"""Log relay throughput: N children write as fast as they can through LogRelay.

    .venv/bin/python bench/log_relay.py [--mib 64] [--children 4] [--rounds 3]
                                        [--modes direct,text,color,json] [--sink pipe|file]

Each child writes `--mib` MiB of numbered lines of varied length (8 to 167
bytes of payload) in 1 MiB blocks, as fast as the pipe takes them. The relay
runs in this process in a real single-threaded selector loop, as in pidone
(child exits arrive on pidfds), and writes to the sink:

- pipe: a pipe read by `cat` into a file on /dev/shm, as docker reads a
  container's stdout (the relay's non-blocking, EAGAIN-driven path);
- file: a file on /dev/shm directly.

Modes: text (prefixes), color (prefixes with ANSI colours), json (one object
per line), direct (no relay: the children write straight into the sink, the
ceiling; into a pipe they cut each other's lines, which is why the relay
exists). MB/s counts the children's bytes (payload) from the first spawn
until the relay has written everything; "relay CPU" is this process's user +
system time over that window. Afterwards every child's lines are taken back
out of the sink and compared byte for byte with what it wrote: "lost" counts
lines missing or damaged, and "intact" says whether each child's stream came
out complete and in order.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pidone.runtime.logs import LogRelay

BLOCK_SIZE = 1024 * 1024
_FILLER = b"abcdefghijklmnopqrstuvwxyz0123456789" * 5
_ANSI = re.compile(rb"\x1b\[[0-9;]*m")


def block_for(child: int) -> bytes:
    """About 1 MiB of whole lines; each child's lengths follow a different pattern."""
    lines = []
    size = 0
    i = 0
    while size < BLOCK_SIZE:
        line = b"%07d %s\n" % (i, _FILLER[: (i * 37 + child * 11) % 160 + 8])
        lines.append(line)
        size += len(line)
        i += 1
    return b"".join(lines)


def child_main(child: int, mib: int) -> None:
    block = block_for(child)
    view = memoryview(block)
    for _ in range(mib):
        done = 0
        while done < len(block):
            done += os.write(1, view[done:])


@dataclass
class Result:
    mode: str
    seconds: float
    megabytes: float  # payload written by the children, 10^6 bytes
    cpu: float
    lines: int
    lost: int
    intact: bool

    @property
    def rate(self) -> float:
        return self.megabytes / self.seconds


def names_for(children: int) -> list[str]:
    return [f"c{i}" for i in range(children)]


def run_once(
    mode: str, children: int, mib: int, sink: Literal["pipe", "file"], workdir: Path
) -> Result:
    out_path = workdir / f"sink-{mode}.log"
    cat: subprocess.Popen[bytes] | None = None
    with open(out_path, "wb") as out_file:
        if sink == "pipe":
            read_end, sink_fd = os.pipe()
            cat = subprocess.Popen(["cat"], stdin=read_end, stdout=out_file)
            os.close(read_end)
        else:
            sink_fd = os.dup(out_file.fileno())
    names = names_for(children)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    if mode == "direct":
        procs = [spawn_child(i, mib, sink_fd) for i in range(children)]
        for proc in procs:
            proc.wait()
    else:
        relay_loop(mode, names, mib, sink_fd)
    seconds = time.perf_counter() - start
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    os.close(sink_fd)
    if cat is not None:
        cat.wait()
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    lines, lost, intact = verify(out_path.read_bytes(), mode, children, mib)
    out_path.unlink()
    return Result(mode, seconds, children * mib * BLOCK_SIZE / 1e6, cpu, lines, lost, intact)


def spawn_child(child: int, mib: int, stdout: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, __file__, "--child", str(child), "--mib", str(mib)]
    return subprocess.Popen(argv, stdout=stdout)


def relay_loop(mode: str, names: list[str], mib: int, sink_fd: int) -> None:
    selector = selectors.DefaultSelector()
    relay = LogRelay(
        selector,
        names=names,
        fmt="json" if mode == "json" else "text",
        color=mode == "color",
        stdout_fd=sink_fd,
        stderr_fd=sink_fd,
    )
    running = set()

    def exited(pidfd: int) -> None:
        selector.unregister(pidfd)
        os.close(pidfd)
        running.discard(pidfd)

    procs = []
    for i, name in enumerate(names):
        proc = spawn_child(i, mib, relay.pipe_for(name, "stdout"))
        procs.append(proc)
        pidfd = os.pidfd_open(proc.pid)
        running.add(pidfd)
        selector.register(pidfd, selectors.EVENT_READ, lambda mask, fd=pidfd: exited(fd))
    while running:
        for key, mask in selector.select():
            key.data(mask)
    relay.drain(30.0)
    if relay.pending():
        raise SystemExit(f"{mode}: {relay.pending()} bytes still queued after drain")
    relay.close()
    selector.close()
    for proc in procs:
        proc.wait()


def verify(output: bytes, mode: str, children: int, mib: int) -> tuple[int, int, bool]:
    """(lines expected, lines lost or damaged, every child's stream intact)."""
    names = names_for(children)
    by_name: dict[str, list[bytes]] = {name: [] for name in names}
    for line in output.split(b"\n")[:-1]:
        if mode == "json":
            record = json.loads(line)
            name, payload = record["process"], record["message"].encode()
        elif mode == "direct":
            name, payload = "c?", line
        else:
            head, _, payload = line.partition(b" | ")
            name = _ANSI.sub(b"", head).decode().strip()
            payload = _ANSI.sub(b"", payload[:4]) + payload[4:]  # a reset after the prefix
        by_name.setdefault(name, []).append(payload)
    expected_lines = 0
    lost = 0
    intact = True
    for child, name in enumerate(names):
        block = block_for(child)
        per_block = block.count(b"\n")
        expected_lines += per_block * mib
        if mode == "direct":
            continue
        got = by_name.get(name, [])
        if b"\n".join(got) + b"\n" != block * mib:
            intact = False
        wanted = block.split(b"\n")[:-1]
        limit = per_block * mib
        matched = sum(
            1 for i, line in enumerate(got) if i < limit and line == wanted[i % per_block]
        )
        lost += per_block * mib - matched
    if mode == "direct":
        # No names to sort by: count lines that are exactly some child's line.
        known = {line for c in range(children) for line in block_for(c).split(b"\n")[:-1]}
        good = sum(1 for line in by_name.get("c?", []) if line in known)
        lost = expected_lines - good
        intact = lost == 0
    return expected_lines, lost, intact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mib", type=int, default=64, help="MiB written by each child")
    parser.add_argument("--children", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="direct,text,color,json")
    parser.add_argument("--sink", choices=["pipe", "file"], default="pipe")
    args = parser.parse_args()
    if args.child is not None:
        child_main(args.child, args.mib)
        return
    workdir = Path(tempfile.mkdtemp(prefix="pidone-logbench-", dir="/dev/shm"))
    try:
        print(
            f"{args.children} children x {args.mib} MiB, sink: {args.sink}, "
            f"{args.rounds} rounds, {os.cpu_count()} CPUs"
        )
        print(f"{'mode':<8} {'MB/s min/med/max':>22} {'relay CPU':>10} {'lines':>10} {'lost':>6}")
        for mode in args.modes.split(","):
            results = [
                run_once(mode, args.children, args.mib, args.sink, workdir)
                for _ in range(args.rounds)
            ]
            rates = sorted(r.rate for r in results)
            cpu_share = statistics.median(r.cpu / r.seconds for r in results)
            lost = max(r.lost for r in results)
            intact = all(r.intact for r in results)
            print(
                f"{mode:<8} {rates[0]:>6.0f} /{statistics.median(rates):>6.0f} /{rates[-1]:>6.0f}"
                f" {cpu_share:>9.0%} {results[0].lines:>10} {lost:>6}"
                f"{'' if intact else '  (streams damaged)'}"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
