"""`include = ["pidone.d/*.toml"]`: the files pidone.toml names, found and
read (bounded), and the rule by which their tables merge into its own.

- `include` is a top-level key of pidone.toml (before its first table): a
  list of patterns, each relative to pidone.toml's directory (or absolute),
  expanded by glob (`*`, `?`, `[...]`; no `**` recursion; names starting
  with a dot are not matched), each pattern's matches in sorted order, the
  patterns in their order. A pattern with glob characters that matches
  nothing is fine (an empty conf.d); a plain path that is missing is an error.
- Only pidone.toml includes: an included file that sets `include` is an
  error (no nesting, so no cycles and no depth to bound); a file matched
  twice, or pidone.toml itself, is an error.
- At most MAX_FILES files, each a regular file (opened without blocking, so
  a FIFO or a device is refused, never read) within the size bound
  pidone.toml has.
- The files merge after pidone.toml's own tables, in that order, the later
  one winning per key: two files' [process.web] merge key by key; a key set
  twice takes the last file's value (whole: an `environment` table too).
"""

from __future__ import annotations

import glob
import itertools
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MAX_FILES = 64  # included files in all

# How many table levels lie above a key, per top-level table: [pidone] KEY,
# [process.NAME] KEY...; anything else (a mistake _check_top_level reports)
# is replaced whole.
TABLE_LEVELS = {"pidone": 1, "process": 2, "socket": 2, "legion": 2}

EXAMPLE = 'include = ["pidone.d/*.toml"]'


class IncludeError(Exception):
    """A problem with one include: its message says what and how to fix it."""


def patterns(value: Any) -> list[str]:
    """`include`'s value: a list of non-empty strings. Raises IncludeError."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise IncludeError(f"must be a list of file patterns, like {EXAMPLE}")
    if any("\0" in v for v in value):
        raise IncludeError("holds a NUL character (\\u0000), which no path can; remove it")
    return value


def expand(found: list[str], base: str) -> list[Path]:
    """The files `found` (patterns) name, relative to directory `base`, in
    order. Raises IncludeError when more than MAX_FILES match."""
    files: list[Path] = []
    for pattern in found:
        if not glob.has_magic(pattern):
            files.append(Path(os.path.join(base, pattern)))
        else:
            # base is escaped: its own [ or * are not the pattern's.
            full = os.path.join(glob.escape(base), pattern)
            matches = itertools.islice(glob.iglob(full), MAX_FILES + 1 - len(files))
            files.extend(sorted(Path(m) for m in matches))
        if len(files) > MAX_FILES:
            raise IncludeError(
                f"matches more than {MAX_FILES} files; merge some of them, or name fewer"
            )
    return files


def read_regular(path: Path, limit: int) -> tuple[bytes, tuple[int, int]]:
    """At most `limit` + 1 bytes of the regular file `path` and its (device,
    inode). O_NONBLOCK: a FIFO's open does not wait for a writer; anything
    but a regular file is refused before a read. Raises OSError, IncludeError."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IncludeError("is not a regular file (a FIFO, a device, a directory?)")
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 16))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), (st.st_dev, st.st_ino)
    finally:
        os.close(fd)


def merge(into: dict[str, Any], data: Mapping[str, Any]) -> None:
    """Merge an included file's tables into `into`, its keys winning."""
    for key, value in data.items():
        into[key] = _merged(into.get(key), value, TABLE_LEVELS.get(key, 0))


def _merged(old: Any, new: Any, levels: int) -> Any:
    if levels == 0 or not isinstance(old, dict) or not isinstance(new, dict):
        return new
    result = dict(old)
    for key, value in new.items():
        result[key] = _merged(old.get(key), value, levels - 1)
    return result
