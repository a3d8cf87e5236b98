"""The kernel's count of OOM kills in a process's memory cgroup: the `oom_kill`
line of memory.events (cgroup v2) or memory.oom_control (v1, kernel 4.13+).

A process's memory cgroup is read from /proc/PID/cgroup while it runs; the
counter again after its death. Every read is bounded and may fail (the cgroup
removed, no memory controller, no /sys/fs/cgroup in the container): then the
answer is None, unknown, never an exception.
"""

from __future__ import annotations

import os

MOUNTINFO_MAX = 1 << 20  # bytes of /proc/self/mountinfo: thousands of mounts
CGROUP_FILE_MAX = 1 << 16  # bytes of /proc/PID/cgroup: a dozen hierarchies
COUNTER_FILE_MAX = 4096  # bytes of memory.events / memory.oom_control: a few lines
COUNTER_MAX = 1 << 63  # a larger oom_kill value is garbage


def _read(path: str, limit: int) -> bytes | None:
    """At most `limit` bytes of a /proc or cgroupfs file; None if unreadable or longer."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return None
    try:
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return None if size > limit else b"".join(chunks)


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as \\ooo."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


Mount = tuple[str, str]  # (the cgroup path mounted, where)


def parse_mounts(text: str) -> tuple[Mount | None, Mount | None]:
    """(the v1 memory hierarchy's mount, the v2 mount) from mountinfo's text."""
    memory: Mount | None = None
    unified: Mount | None = None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        mount = (_unescape(fields[3]), _unescape(fields[4]))
        if tail[0] == "cgroup2" and unified is None:
            unified = mount
        elif tail[0] == "cgroup" and "memory" in tail[2].split(",") and memory is None:
            memory = mount
    return memory, unified


def counter_file(cgroup_text: str, mounts: tuple[Mount | None, Mount | None]) -> str | None:
    """The file holding the oom_kill counter of the memory cgroup that
    /proc/PID/cgroup's text names: v1's memory hierarchy when mounted (it has
    the memory controller then), else v2's. None if neither is visible here."""
    memory, unified = mounts
    v1 = v2 = None
    for line in cgroup_text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, sep, path = rest.partition(":")
        if not sep:
            continue
        if hierarchy == "0" and not controllers:
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    if v1 is not None and memory is not None:
        return _under(memory, v1, "memory.oom_control")
    if v2 is not None and unified is not None:
        return _under(unified, v2, "memory.events")
    return None


def _under(mount: Mount, path: str, name: str) -> str | None:
    """Where cgroup `path` is in `mount`; None if outside it (a cgroup above
    a bind-mounted subtree) or removed ("... (deleted)")."""
    root, where = mount
    if not path.startswith("/") or path.endswith(" (deleted)"):
        return None
    if root != "/":
        if path != root and not path.startswith(root + "/"):
            return None
        path = path[len(root) :]
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        return None
    return os.path.join(where, *parts, name)


def parse_oom_kills(text: str) -> int | None:
    """The `oom_kill N` line's N; None if there is none or it is garbage."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            value = value.strip()
            if value.isascii() and value.isdigit() and int(value) < COUNTER_MAX:
                return int(value)
            return None
    return None


class OomCounters:
    """The oom_kill counters of the supervised processes' memory cgroups.

    `sample(pid)` while it runs (at its spawn, again when it is found ready)
    notes its cgroup's counter file and value; `death(pid, by_sigkill)` says
    by how much that counter rose since, less what an earlier death in the
    same cgroup claimed: with several processes in one cgroup (pidone's own,
    the container's), one OOM kill is given to one death, the first reaped.
    At most one entry per pid sampled; each is dropped at that pid's death."""

    def __init__(self, mountinfo: str = "/proc/self/mountinfo", proc: str = "/proc") -> None:
        self._mountinfo = mountinfo
        self._proc = proc
        self._mounts: tuple[Mount | None, Mount | None] | None = None
        self._seen: dict[int, tuple[str, int]] = {}  # pid -> (counter file, value then)
        self._claimed: dict[str, int] = {}  # counter file -> value up to which deaths took it

    def _counter_file(self, pid: int) -> str | None:
        if self._mounts is None:  # read once: pidone's mounts do not change under it
            text = _read(self._mountinfo, MOUNTINFO_MAX)
            self._mounts = parse_mounts(text.decode(errors="replace")) if text else (None, None)
        if self._mounts == (None, None):
            return None
        text = _read(f"{self._proc}/{pid}/cgroup", CGROUP_FILE_MAX)
        return counter_file(text.decode(errors="replace"), self._mounts) if text else None

    @staticmethod
    def read(path: str) -> int | None:
        text = _read(path, COUNTER_FILE_MAX)
        return parse_oom_kills(text.decode(errors="replace")) if text else None

    def sample(self, pid: int, *, again: bool = False) -> None:
        """Note pid's counter; `again`: only a pid sampled before (still alive)."""
        if again and pid not in self._seen:
            return
        path = self._counter_file(pid)
        value = self.read(path) if path else None
        if path is None or value is None:
            self._seen.pop(pid, None)
        else:
            self._seen[pid] = (path, value)

    def death(self, pid: int, by_sigkill: bool) -> int:
        """The rise across this death: 0 if none, not killed by SIGKILL, or unknown."""
        seen = self._seen.pop(pid, None)
        if seen is None or not by_sigkill:
            return 0
        path, before = seen
        now = self.read(path)
        if now is None:  # the cgroup is gone, or its file unreadable: unknown
            self._claimed.pop(path, None)
            return 0
        rise = now - max(before, self._claimed.get(path, 0))
        if rise <= 0:
            return 0
        self._claimed[path] = now
        if len(self._claimed) > max(64, 2 * len(self._seen)):  # bounded: keep live ones
            live = {p for p, _ in self._seen.values()}
            self._claimed = {p: v for p, v in self._claimed.items() if p in live}
        return rise
