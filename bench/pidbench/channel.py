"""A named pipe that a child program under the init writes lines to.

A path rather than an inherited fd, because an init may close the fds it
does not know about (supervisord does). We hold it open read-write, so the
child's open never blocks and we never see end-of-file while waiting.
"""

from __future__ import annotations

import os
import select
import tempfile
import time
from pathlib import Path
from types import TracebackType

from pidbench.errors import BenchError


class Channel:
    def __init__(self, workdir: Path) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="channel-", dir=workdir)) / "fifo"
        os.mkfifo(self.path, 0o600)
        self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        self._buffer = b""

    def __enter__(self) -> Channel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def read_line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not self._poll.poll(left * 1000):
                raise BenchError(f"no line from the child within {timeout:g} s")
            self._buffer += os.read(self._fd, 65536)
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def expect(self, word: str, timeout: float) -> None:
        line = self.read_line(timeout)
        if line != word:
            raise BenchError(f"expected {word!r} from the child, got {line!r}")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
