"""Where the relay's lines go: pidone's stdout and stderr, written without
ever blocking the loop (see `open_output` for how each kind of fd is
handled), with a queue per destination and its backpressure marks."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import socket
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING

from pidone.system import process

if TYPE_CHECKING:
    from pidone.runtime.logs import _Source

HIGH_WATER = 1024 * 1024  # queued bytes past which the relay stops reading pipes
LOW_WATER = 256 * 1024  # ... and under which it reads them again

# A bound on the iovecs one writev() takes.
try:
    _IOV_MAX = os.sysconf("SC_IOV_MAX")
except (ValueError, OSError):  # pragma: no cover - every Linux has it
    _IOV_MAX = 1024


# --- destinations ---------------------------------------------------------


class Output:
    """One destination (our stdout or stderr) and the bytes queued for it.

    `flush()` writes without blocking and returns False when the destination
    is full (EAGAIN); the relay then waits for EVENT_WRITE on `fd`.
    """

    def __init__(self, label: str, fd: int) -> None:
        self.label = label
        self.fd = fd
        self.queue: deque[bytes | memoryview] = deque()
        self.queued = 0
        self.sources: list[_Source] = []
        self.paused = False  # its sources are out of the selector (backpressure)
        self.watching = False  # registered for EVENT_WRITE
        self.failed: OSError | None = None  # the last error not yet reported
        self.reported: set[int] = set()
        self.dropped = 0
        self.dropped_events = 0  # pidone's own events not queued (see logs.EVENT_LIMIT)
        self.dropped_leftovers = 0  # bytes exited processes left that did not fit

    def pending(self) -> int:
        return self.queued

    def pause_if_over(self, mark: int) -> bool:
        """Enter backpressure: True if just paused."""
        if self.paused or self.queued <= mark:
            return False
        self.paused = True
        return True

    def resume_if_under(self, mark: int) -> bool:
        """Leave backpressure: True if just resumed."""
        if not self.paused or self.queued >= mark:
            return False
        self.paused = False
        return True

    def push(self, data: bytes) -> None:
        if data:
            self.queue.append(data)
            self.queued += len(data)

    def _send(self, buffers: list[bytes | memoryview]) -> int:
        return os.writev(self.fd, buffers)

    def flush(self) -> bool:
        while self.queue:
            try:
                written = self._send(list(islice(self.queue, _IOV_MAX)))
            except BlockingIOError:
                return False
            except InterruptedError:
                continue
            except OSError as exc:
                self._fail(exc)
                return True
            self._consume(written)
        return True

    def _consume(self, written: int) -> None:
        self.queued -= written
        queue = self.queue
        while written:
            head = queue[0]
            if len(head) <= written:
                written -= len(head)
                queue.popleft()
            else:  # a partial write: the rest of this chunk goes first next time
                queue[0] = memoryview(head)[written:]
                written = 0

    def _fail(self, exc: OSError) -> None:
        # A broken destination cannot be fixed from here: drop what is
        # queued (the children must not stall behind it) and carry on.
        self.dropped += self.queued
        self.queue.clear()
        self.queued = 0
        self.failed = exc

    def take_failure(self) -> OSError | None:
        exc, self.failed = self.failed, None
        return exc

    def wait_writable(self, timeout: float) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLOUT)
        poller.poll(max(0, int(timeout * 1000)))

    def finish(self, deadline: float) -> None:
        """Write everything out, blocking up to `deadline` (monotonic)."""
        while not self.flush():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.wait_writable(left)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class SocketOutput(Output):
    """A stream socket (journald's stdout stream): MSG_DONTWAIT makes each
    send non-blocking without touching the shared file description, which
    cannot be reopened through /proc (ENXIO)."""

    def __init__(self, label: str, sock: socket.socket) -> None:
        super().__init__(label, sock.fileno())
        self.sock = sock

    def _send(self, buffers: list[bytes | memoryview]) -> int:
        return self.sock.sendmsg(buffers, (), socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)

    def close(self) -> None:
        self.sock.close()


class NullOutput(Output):
    """fd 1 or 2 is closed: there is nowhere to write, so nothing is kept."""

    def push(self, data: bytes) -> None:
        self.dropped += len(data)

    def close(self) -> None:
        pass


class ThreadOutput(Output):
    """A destination that can be neither reopened non-blocking nor sent to
    with MSG_DONTWAIT (no /proc, a datagram socket, ...): a dedicated thread
    does blocking writes, so only that thread ever waits on it. (The loop
    stays single-threaded everywhere else: a thread costs memory and GIL
    switches, and is needed only here.)

    The queue is bounded by the same backpressure as everywhere else; when
    the thread has written it down below LOW_WATER while the relay paused
    reading (or failed), it marks itself `woken` and makes the loop turn
    with `wake` (signals.wake_loop, the one way a side thread does), once
    until the loop takes the mark (`take_wake`): only the loop thread
    touches the selector.
    """

    def __init__(self, label: str, fd: int, wake: Callable[[], None]) -> None:
        super().__init__(label, fd)
        self.cond = threading.Condition()
        self.busy = 0  # bytes the thread has taken but not yet written
        self.closing = False
        self.woken = False  # the thread asked the loop to look at it (take_wake)
        self._wake = wake
        self.thread = process.start_thread(self._run, f"pidone-{label}")

    def pending(self) -> int:
        with self.cond:
            return self.queued

    # The thread reads `paused` to decide whether to wake the loop: both
    # sides change and test it under the lock, or a wakeup could be lost.
    def pause_if_over(self, mark: int) -> bool:
        with self.cond:
            return super().pause_if_over(mark)

    def resume_if_under(self, mark: int) -> bool:
        with self.cond:
            return super().resume_if_under(mark)

    def take_failure(self) -> OSError | None:
        with self.cond:
            return super().take_failure()

    def take_wake(self) -> bool:
        """In the loop: did the thread ask for a look since the last call?"""
        with self.cond:
            woken, self.woken = self.woken, False
            return woken

    def push(self, data: bytes) -> None:
        if data:
            with self.cond:
                self.queue.append(data)
                self.queued += len(data)
                self.cond.notify()

    def flush(self) -> bool:
        return True  # the thread writes; the loop never waits for it

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.closing:
                    self.cond.wait()
                if self.closing and not self.queue:
                    return
                batch = list(self.queue)
                self.queue.clear()
                self.busy = sum(len(chunk) for chunk in batch)
            error = self._write_all(batch)
            with self.cond:
                self.queued -= self.busy
                self.busy = 0
                if error is not None:
                    self.failed = error
                    self.dropped += self.queued
                    self.queued = 0
                    self.queue.clear()
                wanted = (self.paused and self.queued < LOW_WATER) or error is not None
                wake = wanted and not self.woken  # else the loop has yet to take the last one
                self.woken |= wanted
                self.cond.notify_all()
            if wake:
                self._wake()

    def _write_all(self, batch: list[bytes | memoryview]) -> OSError | None:
        # Chunk by chunk, each whole lines: a datagram socket gets whole
        # lines in every message.
        for chunk in batch:
            error = self._write_lines(memoryview(chunk))
            if error is not None:
                return error
        return None

    def _write_lines(self, view: memoryview) -> OSError | None:
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except InterruptedError:
                continue
            except OSError as exc:
                # A datagram bigger than the socket's send buffer (212 KiB by
                # default; one read of a pipe yields up to 256 KiB): in two,
                # at a line's end, down to one line, which always fits.
                cut = _line_cut(view) if exc.errno == errno.EMSGSIZE else 0
                if not cut:
                    return exc
                error = self._write_lines(view[:cut])
                if error is not None:
                    return error
                view = view[cut:]
        return None

    def finish(self, deadline: float) -> None:
        with self.cond:
            while self.queued:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.cond.wait(left)

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.queue.clear()
            self.cond.notify_all()
        # It may be stuck in a blocking write to a reader that never reads;
        # it is a daemon thread, so waiting briefly is all we owe it.
        self.thread.join(0.1)
        if not self.thread.is_alive():
            super().close()


def _line_cut(view: memoryview) -> int:
    """Where to cut whole lines into two near the middle; 0 for one line."""
    data = bytes(view)
    cut = data.rfind(b"\n", 0, len(data) // 2) + 1 or data.find(b"\n", len(data) // 2) + 1
    return cut if 0 < cut < len(data) else 0


def open_output(label: str, fd: int, wake: Callable[[], None]) -> Output:
    """A destination for fd 1 or 2 whose writes cannot block the loop
    (`wake`: how a ThreadOutput's thread makes the loop turn)."""
    try:
        st = os.fstat(fd)
    except OSError:
        return NullOutput(label, -1)
    mode = st.st_mode
    if stat.S_ISREG(mode) or stat.S_ISBLK(mode):
        # Writes to files never wait for a reader, and O_NONBLOCK does not
        # apply to them. A dup shares fd's offset, so pidone's own direct
        # writes to fd 1/2 (tracebacks) cannot overwrite relayed lines, as
        # they could through a second description without O_APPEND.
        return Output(label, fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3))
    if stat.S_ISSOCK(mode):
        dup = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
        try:
            sock = socket.socket(fileno=dup)  # leaves the description's flags alone
        except OSError:
            return ThreadOutput(label, dup, wake)
        if sock.type == socket.SOCK_STREAM:
            return SocketOutput(label, sock)
        sock.detach()
        return ThreadOutput(label, dup, wake)
    try:
        # A new open file description of the same pipe, FIFO or terminal:
        # O_NONBLOCK here stays ours. O_NOCTTY: PID 1 is a session leader
        # and must not acquire the terminal as its controlling tty.
        new = os.open(
            f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
        )
    except OSError:
        return ThreadOutput(label, fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3), wake)
    return Output(label, new)


def same_file(fd1: int, fd2: int) -> bool:
    try:
        a, b = os.fstat(fd1), os.fstat(fd2)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def is_tty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False
