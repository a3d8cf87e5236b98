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

from pidbench.errors import BenchError, InitGone


class Channel:
    def __init__(self, workdir: Path) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="channel-", dir=workdir)) / "fifo"
        os.mkfifo(self.path, 0o600)
        self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        self._buffer = b""
        self._read_at = 0

    def __enter__(self) -> Channel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def read_line(self, timeout: float, watch: int | None = None) -> str:
        """The next line; BenchError when none comes within `timeout` seconds,
        InitGone as soon as `watch` (a pidfd of the init) says it has exited."""
        return self.read_line_ns(timeout, watch)[0]

    def read_line_ns(self, timeout: float, watch: int | None = None) -> tuple[str, int]:
        """The next line and time.monotonic_ns() when we read it (for a child
        that cannot tell the time itself, like a shell's echo)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"no line from the child within {timeout:g} s")
            poller = self._poll
            if watch is not None:
                poller = select.poll()
                poller.register(self._fd, select.POLLIN)
                poller.register(watch, select.POLLIN)
            ready = dict(poller.poll(left * 1000))
            if self._fd in ready:
                self._buffer += os.read(self._fd, 65536)
                self._read_at = time.monotonic_ns()
            elif watch is not None and watch in ready:
                raise InitGone("the init exited")
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(), self._read_at

    def read_lines(self, count: int, timeout: float, watch: int | None = None) -> list[str]:
        """`count` lines, all within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        lines = []
        for i in range(count):
            left = deadline - time.monotonic()
            try:
                lines.append(self.read_line(max(left, 0.0), watch))
            except InitGone:
                raise
            except BenchError as exc:
                raise BenchError(f"{i} of {count} lines within {timeout:g} s") from exc
        return lines

    def expect(self, word: str, timeout: float) -> None:
        line = self.read_line(timeout)
        if line != word:
            raise BenchError(f"expected {word!r} from the child, got {line!r}")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
