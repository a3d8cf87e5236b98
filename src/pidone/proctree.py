"""Usage of process trees (a pid and all its descendants), read from /proc.

Read straight from /proc rather than through psutil: psutil and what it
imports (subprocess, its C extension) cost over 1 MiB of resident memory in
PID 1, for three numbers per process that /proc/PID/stat and /proc/PID/fd
give directly. Linux only, like pidone.

Descendants come from the kernel's own child lists
(/proc/PID/task/TID/children): the work is proportional to the trees, not
to every process on the host. Without that file (a kernel built without
CONFIG_PROC_CHILDREN) one pass over /proc/*/stat maps parents.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import cache

from pidone import system

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class TreeUsage:
    processes: int
    cpu_seconds: float  # user + system, waited-for children's included
    resident_bytes: int  # summed per process
    open_fds: int


@dataclass(frozen=True, slots=True)
class Stat:
    """The fields of /proc/PID/stat that pidone uses."""

    ppid: int
    cpu_seconds: float  # user + system, its waited-for children's included
    resident_bytes: int
    vsize: int
    start_ticks: int  # clock ticks after boot


def parse_stat(data: bytes) -> Stat:
    """The contents of /proc/PID/stat. The command name (field 2) is in
    parentheses and may itself hold spaces and parentheses: the fields
    that follow are counted from its last ')'."""
    rest = data[data.rindex(b")") + 2 :].split()
    # rest[0] is field 3 (state): field N is rest[N - 3]
    utime, stime, cutime, cstime = (int(rest[i]) for i in range(11, 15))
    return Stat(
        ppid=int(rest[1]),
        cpu_seconds=(utime + stime + cutime + cstime) / CLOCK_TICKS,
        resident_bytes=int(rest[21]) * PAGE_SIZE,
        vsize=int(rest[20]),
        start_ticks=int(rest[19]),
    )


def read_stat(pid: int | str) -> Stat | None:
    """/proc/PID/stat parsed; None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return parse_stat(f.read())
    except (OSError, ValueError, IndexError):
        return None  # gone (or reaped between open and read)


def count_fds(pid: int | str) -> int:
    """Open fds of a process; 0 for a zombie or one not ours to look at."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def parent_map() -> Callable[[int], list[int]]:
    """Children of every process, from one pass over /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = read_stat(name)
            if stat is not None and stat.ppid != int(name):
                children.setdefault(stat.ppid, []).append(int(name))
    return lambda pid: children.get(pid, [])


def has_kernel_children() -> bool:
    return os.path.exists(f"/proc/self/task/{os.getpid()}/children")


Sampler = Callable[[Collection[int]], dict[int, TreeUsage]]


class TreeSampler:
    """Callable: {root pid: TreeUsage of its tree} for the roots that still
    exist. Not thread-safe: the collector serializes scrapes."""

    def __init__(self, *, use_kernel_children: bool | None = None) -> None:
        if use_kernel_children is None:
            use_kernel_children = has_kernel_children()
        self._kernel_children = use_kernel_children

    def __call__(self, roots: Collection[int]) -> dict[int, TreeUsage]:
        if not roots:
            return {}
        children = system.children_of if self._kernel_children else parent_map()
        usage: dict[int, TreeUsage] = {}
        for root in roots:
            tree = [root]
            seen = {root}
            for pid in tree:  # grows while we walk it: breadth first
                for child in children(pid):
                    if child not in seen:
                        seen.add(child)
                        tree.append(child)
            count, cpu, rss, fds = 0, 0.0, 0, 0
            for pid in tree:
                stat = read_stat(pid)
                if stat is None:
                    continue  # exited since we listed it
                count += 1
                cpu += stat.cpu_seconds
                rss += stat.resident_bytes
                fds += count_fds(pid)
            if count:
                usage[root] = TreeUsage(count, cpu, rss, fds)
        return usage


def sample_trees(roots: Collection[int]) -> dict[int, TreeUsage]:
    """One-off TreeSampler call (tests, tools)."""
    return TreeSampler()(roots)


def start_time(stat: Stat) -> float:
    """Unix time the process of `stat` started."""
    return boot_time() + stat.start_ticks / CLOCK_TICKS


@cache  # it never changes: read /proc/stat once
def boot_time() -> float:
    """Unix time the machine booted (`btime` of /proc/stat)."""
    with open("/proc/stat", "rb") as f:
        for line in f:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    raise OSError("/proc/stat has no btime line")
