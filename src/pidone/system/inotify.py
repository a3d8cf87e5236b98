"""inotify(7) for `touch = [...]`: one fd that becomes readable when a
watched file is touched, for the loop's selector (no polling: an idle
pidone still wakes zero times).

The directories are watched, not the files: a file may be missing at the
start (created later), and a deploy's `mv new FILE` replaces the file's
inode, which a watch on the file itself would lose. What counts as touched,
in a watched directory, for a name: IN_ATTRIB (`touch FILE`: its times;
chmod), IN_CLOSE_WRITE (written and closed: an editor, `echo > FILE`),
IN_CREATE and IN_MOVED_TO (created, or replaced by a rename). Not
IN_MODIFY: a long write would be one event per write(2); its close
follows. A directory is watched by inode: one removed or renamed is no
longer watched (Watcher.read says which), and pidone runs on.

Through ctypes (loaded already for the signalfd), about 60 lines: see the
commit that brought it for the comparison with inotify_simple.
"""

from __future__ import annotations

import os
import stat
import struct

IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
TOUCHED = IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED

# Bytes read per turn of the loop: 16-byte headers and names of at most
# 256 bytes, so 64 KiB holds 240 events or more; the rest waits for the
# next turn (the fd stays readable). The kernel's own queue is bounded
# (fs.inotify.max_queued_events, 16384 by default): past it, IN_Q_OVERFLOW.
READ_SIZE = 64 * 1024
_HEADER = struct.Struct("=iIII")  # wd, mask, cookie, len (then the name, NUL-padded)


def directory_problem(directory: str) -> str | None:
    """Why `directory` cannot be watched (for `pidone check`), or None."""
    try:
        info = os.stat(directory)
    except OSError as exc:
        return f"its directory {directory}: {exc.strerror}"
    if not stat.S_ISDIR(info.st_mode):
        return f"{directory} is not a directory"
    if not os.access(directory, os.R_OK):  # inotify_add_watch needs read permission
        return f"its directory {directory} is not readable by pidone"
    return None


class Watcher:
    """An inotify fd watching the directories of `paths` (absolute)."""

    def __init__(self, paths: list[str]) -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        self._rm_watch = libc.inotify_rm_watch
        self.fd: int = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self.directories: dict[int, str] = {}  # watch descriptor -> directory
        self.problems: list[str] = []  # directories that could not be watched
        for directory in sorted({os.path.dirname(p) for p in paths}):
            mask = TOUCHED | IN_ONLYDIR | IN_DELETE_SELF | IN_MOVE_SELF
            wd = libc.inotify_add_watch(self.fd, os.fsencode(directory), mask)
            if wd < 0:
                self.problems.append(f"{directory}: {os.strerror(ctypes.get_errno())}")
            else:
                self.directories[wd] = directory

    def read(self) -> tuple[set[str], bool, list[str]]:
        """One read of at most READ_SIZE bytes: (the paths touched, whether
        the kernel's queue overflowed, the directories no longer watched).
        Raises BlockingIOError when there is nothing to read."""
        data = os.read(self.fd, READ_SIZE)
        touched: set[str] = set()
        overflow = False
        gone: list[str] = []
        offset = 0
        while offset + _HEADER.size <= len(data):
            wd, mask, _, size = _HEADER.unpack_from(data, offset)
            name = data[offset + _HEADER.size : offset + _HEADER.size + size].rstrip(b"\0")
            offset += _HEADER.size + size
            if mask & IN_Q_OVERFLOW:
                overflow = True
            directory = self.directories.get(wd)
            if directory is None:
                continue
            if mask & GONE:
                del self.directories[wd]
                gone.append(directory)
                if mask & IN_MOVE_SELF:  # renamed away: the kernel keeps it until told
                    self._rm_watch(self.fd, wd)
            elif mask & TOUCHED and name:
                touched.add(os.path.join(directory, os.fsdecode(name)))
        return touched, overflow, gone

    def close(self) -> None:
        os.close(self.fd)
