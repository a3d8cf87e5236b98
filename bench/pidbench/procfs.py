"""What the kernel says about a process, read from /proc on the host.

Every reader raises BenchError when the process is gone, so a measurement
that loses its init says so instead of recording a zero.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from pidbench.errors import BenchError

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _read(pid: int, name: str) -> str:
    try:
        with open(f"/proc/{pid}/{name}", encoding="utf-8", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise BenchError(f"process {pid} is gone (reading /proc/{pid}/{name})") from exc


@dataclass(frozen=True)
class Stat:
    """The few /proc/PID/stat fields the benchmark uses."""

    state: str
    ppid: int
    cpu_ticks: int  # utime + stime, in clock ticks

    @property
    def cpu_ms(self) -> float:
        return self.cpu_ticks * 1000 / CLOCK_TICKS_PER_S


def stat(pid: int) -> Stat:
    text = _read(pid, "stat")
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return Stat(state=fields[0], ppid=int(fields[1]), cpu_ticks=int(fields[11]) + int(fields[12]))


def tasks(pid: int) -> list[int]:
    """The process's threads (the main thread included)."""
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise BenchError(f"process {pid} is gone (listing /proc/{pid}/task)") from exc


def _per_task(pid: int, read: Callable[[int], int]) -> int:
    total = 0
    for tid in tasks(pid):
        # a thread that ended between the listing and the read
        with contextlib.suppress(BenchError):
            total += read(tid)
    return total


def cpu_runtime_ns(pid: int) -> int:
    """Time on CPU in ns (schedstat) of all its threads: the same CPU as
    utime+stime, without the 10 ms tick granularity that rounds an idle init
    down to zero."""

    def one(tid: int) -> int:
        return int(_read(pid, f"task/{tid}/schedstat").split()[0])

    return _per_task(pid, one)


def context_switches(pid: int) -> int:
    """Voluntary + involuntary switches of all its threads: each one is a time it ran."""

    def one(tid: int) -> int:
        total = 0
        for line in _read(pid, f"task/{tid}/status").splitlines():
            key, _, value = line.partition(":")
            if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                total += int(value)
        return total

    return _per_task(pid, one)


def memory_kib(pid: int) -> dict[str, int]:
    """smaps_rollup as {field: KiB}, e.g. {'Rss': 8116, 'Pss': 3794, ...}."""
    fields: dict[str, int] = {}
    for line in _read(pid, "smaps_rollup").splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[key] = int(parts[0])
    if "Rss" not in fields:
        raise BenchError(f"no Rss in /proc/{pid}/smaps_rollup")
    return fields


def fds(pid: int) -> dict[int, str]:
    """The process's open file descriptors and what each one is (its
    /proc/PID/fd link: a path, `socket:[INODE]`, `pipe:[INODE]`...)."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise BenchError(f"process {pid} is gone (reading /proc/{pid}/fd)") from exc
    found = {}
    for name in names:
        with contextlib.suppress(OSError):  # closed meanwhile
            found[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
    return found


def children(pid: int) -> list[int]:
    """Children of the process's main thread (what a single-threaded init forked)."""
    try:
        return [int(p) for p in _read(pid, f"task/{pid}/children").split()]
    except BenchError:
        return []


def all_children(pid: int) -> list[int]:
    """Children forked by any of its threads."""
    found: list[int] = []
    try:
        threads = tasks(pid)
    except BenchError:
        return []
    for tid in threads:
        with contextlib.suppress(BenchError):
            found += [int(p) for p in _read(pid, f"task/{tid}/children").split()]
    return found


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, parents before their children."""
    found: list[int] = []
    queue = [pid]
    while queue:
        kids = all_children(queue.pop(0))
        found += kids
        queue += kids
    return found


def cmdline(pid: int) -> list[str]:
    """argv, or [] for a zombie, a kernel thread, or a process that is gone."""
    try:
        raw = _read(pid, "cmdline")
    except BenchError:
        return []
    return raw.split("\0")[:-1] if raw.endswith("\0") else raw.split("\0")


def exe(pid: int) -> str | None:
    """The executable's path, or None while it cannot be read (gone, exiting)."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def is_child_of(pid: int, parent: int) -> bool:
    try:
        return stat(pid).ppid == parent
    except BenchError:
        return False
