"""The child-output relay of `pidone run`: pipes in, whole lines out.

Every (process, stream) gets one pipe, made once and kept for the relay's
lifetime, so nothing is lost across restarts or from grandchildren that
inherited it. The read ends sit in the event loop's selector; what they
yield is cut into whole lines, given a prefix (text) or wrapped in JSON, and
queued for our stdout or stderr.

Text format, names padded to the longest (pidone's own included)::

    web    | GET / 200
    pidone | web exited with status 1

JSON format, one object per line (pidone's own events carry "event" where
process lines carry "message")::

    {"time":"2024-05-01T12:00:00.123Z","process":"web","stream":"stdout","message":"GET / 200"}
    {"time":"2024-05-01T12:00:00.125Z","process":"pidone","stream":"stdout","event":"web exited"}

Guarantees:

- Lines are never interleaved: only whole lines are queued, and one queue
  per destination keeps them whole even across partial writes (stdout and
  stderr that are the same file share one queue, so they cannot cut into
  each other's lines either). A partial line waits for its newline; more
  than 64 KiB without a newline goes out as a line of its own, so a process
  cannot make us hold unbounded memory. At EOF and in `drain()` a trailing
  partial line goes out with a newline added.
- The loop never blocks on output. O_NONBLOCK on fd 1/2's own open file
  description would leak into the shell or container runtime sharing it,
  so each destination gets its own way (see `_open_output`):
  a pipe, FIFO or terminal is reopened through /proc/self/fd as a new,
  non-blocking description; a stream socket (journald) cannot be reopened
  (ENXIO) but takes MSG_DONTWAIT per send; a regular file never waits for a
  reader, so a plain dup does. On EAGAIN we wait for EVENT_WRITE. Only if
  none of these works (no /proc, a datagram socket) does a writer thread do
  blocking writes, so that only it can wait.
- Nothing is dropped for speed: past HIGH_WATER queued bytes we stop reading
  the pipes that feed the destination until it falls under LOW_WATER, so a
  flooding process blocks in its own write() instead.
- Only a broken destination (EPIPE, EIO, ...) loses lines; that is reported
  once per error as a pidone event on stderr and never raised into the loop.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import selectors
import socket
import stat
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Literal

Stream = Literal["stdout", "stderr"]
LogFormat = Literal["text", "json"]

PIDONE_NAME = "pidone"
READ_SIZE = 256 * 1024
# Bigger pipes mean fewer wakeups per megabyte from a chatty process (the
# relay's throughput goes up by about half over the default 64 KiB). Pipe
# capacity counts against a per-user quota (fs.pipe-user-pages-soft, 64 MiB,
# shared by every process of that uid on the host; past it new pipes get one
# page), so only the first PIPE_BUDGET worth of pipes is enlarged.
PIPE_SIZE = 256 * 1024
PIPE_BUDGET = 16 * 1024 * 1024
_DEFAULT_PIPE_SIZE = 64 * 1024
MAX_PARTIAL = 64 * 1024
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024
# A bound on one drain() read pass per pipe, so a process that still writes
# cannot hold drain() in one pipe.
_DRAIN_READ_LIMIT = 4 * 1024 * 1024

try:
    _IOV_MAX = os.sysconf("SC_IOV_MAX")
except (ValueError, OSError):  # pragma: no cover - every Linux has it
    _IOV_MAX = 1024
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

_RESET = b"\x1b[0m"
_PIDONE_COLOR = b"\x1b[1m"  # bold, default colour: set apart from every process
_PALETTE = [b"\x1b[%dm" % code for code in (36, 33, 32, 35, 34, 96, 93, 92, 95, 94, 31, 91)]


# --- framing (pure) -------------------------------------------------------


def _utf8_cut(data: bytes) -> int:
    """Where to cut `data` so that no UTF-8 character is split: its length,
    or the start of an incomplete multi-byte sequence at its end."""
    end = len(data)
    for back in range(1, min(4, end) + 1):
        byte = data[end - back]
        if byte & 0xC0 == 0x80:  # continuation byte: keep looking for the lead
            continue
        if byte < 0xC0:  # ASCII
            return end
        needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
        return end - back if back < needed else end
    return end


class Framer:
    """Cuts a byte stream into whole lines; keeps the partial last line."""

    __slots__ = ("partial",)

    def __init__(self) -> None:
        self.partial = b""

    def feed(self, data: bytes) -> bytes:
        """Whole lines (each ending in a newline) that `data` completes; b"" if none."""
        buf = self.partial + data if self.partial else data
        end = buf.rfind(b"\n") + 1
        if end == len(buf):
            self.partial = b""
            return buf
        rest = buf[end:]
        if len(rest) <= MAX_PARTIAL:
            self.partial = rest
            return buf[:end]
        # Over 64 KiB without a newline: emit it as a line of its own rather
        # than hold it, keeping back only a UTF-8 character cut in half.
        cut = _utf8_cut(rest)
        self.partial = rest[cut:]
        return buf[:end] + rest[:cut] + b"\n"

    def flush(self) -> bytes:
        """The partial line as a whole line (EOF, drain, an event about its process)."""
        if not self.partial:
            return b""
        line, self.partial = self.partial + b"\n", b""
        return line


# --- formatting (pure) ----------------------------------------------------

# What JSON strings cannot hold raw (the newline is our line separator).
_JSON_ESCAPES = {byte: b"\\u%04x" % byte for byte in range(32) if byte != 10}
_JSON_ESCAPES.update({8: b"\\b", 9: b"\\t", 12: b"\\f", 13: b"\\r", 34: b'\\"', 92: b"\\\\"})
_JSON_PLAIN = bytes(byte for byte in range(256) if byte not in _JSON_ESCAPES)


def _json_escape(data: bytes) -> bytes:
    """Escape valid UTF-8 for a JSON string, newlines excepted.

    One translate() lists the bytes that need escaping (usually none), then
    one replace() per distinct such byte: several times faster on big chunks
    than json's own escaper, which goes character by character. Safe on
    bytes because no byte below 0x80 occurs inside a UTF-8 sequence.
    """
    present = set(data.translate(None, _JSON_PLAIN))
    if not present:
        return data
    if 92 in present:  # first: the other escapes add backslashes
        data = data.replace(b"\\", b"\\\\")
        present.discard(92)
    for byte in present:
        data = data.replace(bytes((byte,)), _JSON_ESCAPES[byte])
    return data


class Formatter:
    """Turns whole lines of one (process, stream) into output bytes."""

    def __init__(
        self,
        fmt: LogFormat,
        names: Iterable[str],
        *,
        color: Callable[[Stream], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"unknown log format {fmt!r}: use 'text' or 'json'")
        self.fmt = fmt
        ordered = [PIDONE_NAME, *(n for n in names if n != PIDONE_NAME)]
        self._order = {name: i - 1 for i, name in enumerate(ordered)}
        self.width = max(len(n) for n in ordered)
        self._color = color
        self._clock = clock
        self._prefixes: dict[tuple[str, Stream], bytes] = {}
        self._json_heads: dict[tuple[str, Stream], bytes] = {}
        self._second = -1
        self._second_text = ""

    def _color_of(self, name: str) -> bytes:
        # Colours by position in the configuration, so that up to a dozen
        # processes all differ; names that were not configured hash to one.
        if name == PIDONE_NAME:
            return _PIDONE_COLOR
        index = self._order.get(name)
        if index is None:
            index = zlib.crc32(name.encode("utf-8", "replace"))
        return _PALETTE[index % len(_PALETTE)]

    def prefix(self, name: str, stream: Stream) -> bytes:
        key = (name, stream)
        prefix = self._prefixes.get(key)
        if prefix is None:
            text = f"{name.ljust(self.width)} | ".encode("utf-8", "replace")
            if self._color(stream):
                text = self._color_of(name) + text + _RESET
            prefix = self._prefixes[key] = text
        return prefix

    def timestamp(self) -> str:
        """ISO 8601 UTC with milliseconds; strftime only once a second."""
        now = self._clock()
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int((now - second) * 1000):03d}Z"

    def lines(self, name: str, stream: Stream, data: bytes) -> bytes:
        """`data` is whole lines, the last one ending in a newline."""
        if self.fmt == "json":
            return self._json_lines(name, stream, data)
        prefix = self.prefix(name, stream)
        # One replace per chunk instead of a loop per line: this is what
        # makes hundreds of MB/s possible in Python. (Slicing off the last
        # newline is 4x cheaper than bytes.count() to spare it.)
        return prefix + data[:-1].replace(b"\n", b"\n" + prefix) + b"\n"

    def _json_lines(self, name: str, stream: Stream, data: bytes) -> bytes:
        key = (name, stream)
        rest = self._json_heads.get(key)
        if rest is None:
            rest = self._json_heads[key] = (
                f'","process":{json.dumps(name)},"stream":"{stream}","message":"'
            ).encode()
        head = b'{"time":"' + self.timestamp().encode("ascii") + rest
        # The whole chunk at once, in bytes: make it valid UTF-8, escape it,
        # then turn each newline into "end of this object, start of the
        # next". Per-line json.dumps would be ten times slower.
        body = data[:-1]
        if not body.isascii():
            body = body.decode("utf-8", "replace").encode("utf-8")
        body = _json_escape(body)
        return head + body.replace(b"\n", b'"}\n' + head) + b'"}\n'

    def event(self, name: str, stream: Stream, message: str) -> bytes:
        text = message.encode("utf-8", "replace").decode("utf-8").rstrip("\n")
        if self.fmt == "json":
            record = {"time": self.timestamp(), "process": name, "stream": stream, "event": text}
            return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        return self.lines(name, stream, text.encode("utf-8") + b"\n")


# --- destinations ---------------------------------------------------------


class _Output:
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
        try:
            os.close(self.fd)
        except OSError:
            pass


class _SocketOutput(_Output):
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


class _NullOutput(_Output):
    """fd 1 or 2 is closed: there is nowhere to write, so nothing is kept."""

    def push(self, data: bytes) -> None:
        self.dropped += len(data)

    def close(self) -> None:
        pass


class _ThreadOutput(_Output):
    """A destination that can be neither reopened non-blocking nor sent to
    with MSG_DONTWAIT (no /proc, a datagram socket, ...): a dedicated thread
    does blocking writes, so only that thread ever waits on it. (The loop
    stays single-threaded everywhere else: a thread costs memory and GIL
    switches, and is needed only here.)

    The queue is bounded by the same backpressure as everywhere else; when
    the thread has written it down below LOW_WATER while the relay paused
    reading, it wakes the loop through a pipe (`wake_fd`, in the selector)
    so that only the loop thread touches the selector.
    """

    def __init__(self, label: str, fd: int) -> None:
        super().__init__(label, fd)
        self.cond = threading.Condition()
        self.busy = 0  # bytes the thread has taken but not yet written
        self.closing = False
        self.wake_fd, self._wake_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.thread = threading.Thread(target=self._run, name=f"pidone-{label}", daemon=True)
        self.thread.start()

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
                wake = (self.paused and self.queued < LOW_WATER) or error is not None
                self.cond.notify_all()
            if wake:
                try:
                    os.write(self._wake_write, b"\0")
                except OSError:
                    pass  # the pipe is full: a wakeup is already on its way

    def _write_all(self, batch: list[bytes | memoryview]) -> OSError | None:
        # Chunk by chunk, each whole lines: a datagram socket gets whole
        # lines in every message.
        for chunk in batch:
            view = memoryview(chunk)
            while view:
                try:
                    view = view[os.write(self.fd, view) :]
                except InterruptedError:
                    continue
                except OSError as exc:
                    return exc
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
        for fd in (self.wake_fd, self._wake_write):
            try:
                os.close(fd)
            except OSError:
                pass
        if not self.thread.is_alive():
            super().close()


def _open_output(label: str, fd: int) -> _Output:
    """A destination for fd 1 or 2 whose writes cannot block the loop."""
    try:
        st = os.fstat(fd)
    except OSError:
        return _NullOutput(label, -1)
    mode = st.st_mode
    if stat.S_ISREG(mode) or stat.S_ISBLK(mode):
        # Writes to files never wait for a reader, and O_NONBLOCK does not
        # apply to them. A dup shares fd's offset, so pidone's own direct
        # writes to fd 1/2 (tracebacks) cannot overwrite relayed lines, as
        # they could through a second description without O_APPEND.
        return _Output(label, fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3))
    if stat.S_ISSOCK(mode):
        dup = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
        try:
            sock = socket.socket(fileno=dup)  # leaves the description's flags alone
        except OSError:
            return _ThreadOutput(label, dup)
        if sock.type == socket.SOCK_STREAM:
            return _SocketOutput(label, sock)
        sock.detach()
        return _ThreadOutput(label, dup)
    try:
        # A new open file description of the same pipe, FIFO or terminal:
        # O_NONBLOCK here stays ours. O_NOCTTY: PID 1 is a session leader
        # and must not acquire the terminal as its controlling tty.
        new = os.open(
            f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
        )
    except OSError:
        return _ThreadOutput(label, fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3))
    return _Output(label, new)


def _same_file(fd1: int, fd2: int) -> bool:
    try:
        a, b = os.fstat(fd1), os.fstat(fd2)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _is_tty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


# --- the relay ------------------------------------------------------------


class _Source:
    """The pipe of one (process, stream)."""

    __slots__ = (
        "callback",
        "eof",
        "framer",
        "name",
        "output",
        "read_fd",
        "registered",
        "stream",
        "write_fd",
    )

    def __init__(self, name: str, stream: Stream, read_fd: int, write_fd: int, output: _Output):
        self.name = name
        self.stream: Stream = stream
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.output = output
        self.framer = Framer()
        self.registered = False
        self.eof = False
        self.callback: Callable[[int], None] = lambda mask: None


class LogRelay:
    """Relays every process's stdout and stderr to ours, framed and prefixed.

    Runs inside the event loop: every fd it registers carries a callback
    taking the event mask, and no callback blocks. See the module docstring
    for the formats and guarantees.
    """

    def __init__(
        self,
        selector: selectors.BaseSelector,
        *,
        names: Iterable[str],
        fmt: LogFormat = "text",
        color: bool | None = None,
        stdout_fd: int = 1,
        stderr_fd: int = 2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._selector = selector
        self._stdout = _open_output("stdout", stdout_fd)
        if _same_file(stdout_fd, stderr_fd):
            # One queue for both: two would cut into each other's lines on a
            # shared pipe, and one keeps stdout and stderr lines in order.
            self._stderr = self._stdout
        else:
            self._stderr = _open_output("stderr", stderr_fd)
        if color is None:
            no_color = bool(os.environ.get("NO_COLOR"))  # https://no-color.org
            colors = {
                "stdout": not no_color and _is_tty(stdout_fd),
                "stderr": not no_color and _is_tty(stderr_fd),
            }
        else:
            colors = {"stdout": color, "stderr": color}
        self._format = Formatter(fmt, names, color=lambda stream: colors[stream], clock=clock)
        self._sources: dict[tuple[str, Stream], _Source] = {}
        self._closed = False
        self._pipe_budget = PIPE_BUDGET
        self._spawning: set[str] = set()  # pipe_for() called, no event since
        for output in self._outputs():
            if isinstance(output, _ThreadOutput):
                selector.register(output.wake_fd, selectors.EVENT_READ, self._waker(output))

    # -- public interface --

    def pipe_for(self, name: str, stream: Stream) -> int:
        """The write end to dup2 into the child as fd 1 or 2 (non-inheritable).

        Made on first use and kept: every restart and every grandchild writes
        into the same pipe, and nothing written is lost in between.
        """
        # The spawner asks for the pipe right before each (re)start: the
        # boundary between instances. What the last one left is relayed now,
        # so that the new one's first line cannot continue its unfinished
        # last line, and the "started" event after the spawn must not pull
        # the new instance's first lines in front of itself.
        self._spawning.add(name)
        known = self._sources.get((name, stream))
        if known is not None:
            self._relay_leftovers(known)
            return known.write_fd
        if self._closed:
            raise ValueError("the log relay is closed")
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(read_fd, False)  # the write end stays blocking: backpressure
        if self._pipe_budget >= PIPE_SIZE:
            try:
                fcntl.fcntl(read_fd, _F_SETPIPE_SZ, PIPE_SIZE)
                self._pipe_budget -= PIPE_SIZE - _DEFAULT_PIPE_SIZE
            except OSError:
                pass  # near the quota already: the default works too
        output = self._stdout if stream == "stdout" else self._stderr
        source = _Source(name, stream, read_fd, write_fd, output)
        source.callback = lambda mask: self._on_readable(source)
        output.sources.append(source)
        self._sources[name, stream] = source
        if not output.paused:
            self._register(source)
        return write_fd

    def event(self, name: str, message: str, *, stream: Stream = "stdout") -> None:
        """Log one of pidone's own events, formatted like a process line.

        For a process's name, what it already wrote (an unfinished last
        line included) is relayed first, so that its last words come before
        "exited with status 1"; except for the first event after pipe_for()
        ("started"), which comes before anything the new instance wrote. (A
        live process caught halfway through writing a line in several pieces
        sees it cut in two: the lesser evil.)
        """
        if self._closed:
            return
        if name in self._spawning:
            self._spawning.discard(name)
        else:
            for source_stream in ("stdout", "stderr"):
                source = self._sources.get((name, source_stream))
                if source is not None:
                    self._relay_leftovers(source)
        output = self._stdout if stream == "stdout" else self._stderr
        output.push(self._format.event(name, stream, message))
        self._after_push(output)

    def pending(self) -> int:
        """Bytes queued for output, not yet written."""
        return sum(output.pending() for output in self._outputs())

    def drain(self, timeout: float) -> None:
        """At exit: relay what is left in every pipe, then write everything
        out, blocking for at most `timeout` seconds in all."""
        if self._closed:
            return
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            got = 0
            for source in self._sources.values():
                got += self._read_available(source, _DRAIN_READ_LIMIT)
                for output in self._outputs():
                    output.finish(deadline)
                    self._report(output)
            if not got or time.monotonic() >= deadline:
                break
        for source in self._sources.values():
            self._emit(source, source.framer.flush())
        for output in self._outputs():
            output.finish(deadline)
            self._report(output)
            self._after_flush(output)

    def close(self) -> None:
        """Unregister and close everything; queued output is dropped (drain first)."""
        if self._closed:
            return
        self._closed = True
        for source in self._sources.values():
            self._unregister(source.read_fd)
            for fd in (source.read_fd, source.write_fd):
                try:
                    os.close(fd)
                except OSError:
                    pass
        for output in self._outputs():
            if output.watching:
                self._unregister(output.fd)
            if isinstance(output, _ThreadOutput):
                self._unregister(output.wake_fd)
            output.close()

    # -- reading --

    def _on_readable(self, source: _Source) -> None:
        try:
            data = os.read(source.read_fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # pragma: no cover - a pipe read end does not fail
            self._end_source(source)
            self._warn(f"cannot read the {source.stream} of {source.name}: {exc}")
            return
        if not data:
            self._end_source(source)
            return
        self._emit(source, source.framer.feed(data))

    def _relay_leftovers(self, source: _Source) -> None:
        self._read_available(source, HIGH_WATER)
        self._emit(source, source.framer.flush())

    def _read_available(self, source: _Source, limit: int) -> int:
        """Read without blocking until the pipe is empty (or `limit` bytes)."""
        total = 0
        while not source.eof and total < limit:
            try:
                data = os.read(source.read_fd, READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # pragma: no cover
                self._end_source(source)
                break
            if not data:
                self._end_source(source)
                break
            total += len(data)
            self._emit(source, source.framer.feed(data))
        return total

    def _end_source(self, source: _Source) -> None:
        """EOF: only after close() of our write end, which pipe_for keeps."""
        source.eof = True
        self._emit(source, source.framer.flush())
        if source.registered:
            self._unregister(source.read_fd)
            source.registered = False

    # -- writing --

    def _emit(self, source: _Source, lines: bytes) -> None:
        if lines:
            output = source.output
            output.push(self._format.lines(source.name, source.stream, lines))
            self._after_push(output)

    def _after_push(self, output: _Output) -> None:
        if not output.watching:
            output.flush()
            self._after_flush(output)
        if output.pause_if_over(HIGH_WATER):
            for source in output.sources:
                if source.registered:
                    self._unregister(source.read_fd)
                    source.registered = False

    def _after_flush(self, output: _Output) -> None:
        self._report(output)
        blocked = output.queued > 0 and not isinstance(output, _ThreadOutput)
        if blocked and not output.watching:
            try:
                self._selector.register(output.fd, selectors.EVENT_WRITE, self._writer(output))
                output.watching = True
            except (ValueError, KeyError, OSError) as exc:
                # Cannot poll it (epoll refuses some files): drop rather than
                # hold the children back forever.
                output._fail(exc if isinstance(exc, OSError) else OSError(errno.EINVAL, str(exc)))
                self._report(output)
        elif not blocked and output.watching:
            self._unregister(output.fd)
            output.watching = False
        if output.resume_if_under(LOW_WATER):
            for source in output.sources:
                if not source.eof and not source.registered:
                    self._register(source)

    def _writer(self, output: _Output) -> Callable[[int], None]:
        def on_writable(mask: int) -> None:
            output.flush()
            self._after_flush(output)

        return on_writable

    def _waker(self, output: _ThreadOutput) -> Callable[[int], None]:
        def on_wake(mask: int) -> None:
            try:
                os.read(output.wake_fd, 4096)
            except OSError:
                pass
            self._after_flush(output)

        return on_wake

    def _report(self, output: _Output) -> None:
        """Report a destination's write error once per errno, as a pidone event."""
        exc = output.take_failure()
        if exc is None:
            return
        code = exc.errno or 0
        if code in output.reported:
            return
        output.reported.add(code)
        reason = os.strerror(code) if code else str(exc)
        if code == errno.EPIPE:
            reason += " (nobody reads it any more)"
        self._warn(f"cannot write to {output.label}: {reason}; its lines are dropped")

    def _warn(self, message: str) -> None:
        # Through the stderr queue, never a blocking write; if stderr is the
        # broken one the message is dropped with the rest (reported is set).
        # _report() marks the error before calling here, so this recursion
        # (a failing stderr reporting itself) ends at once.
        self._stderr.push(self._format.event(PIDONE_NAME, "stderr", message))
        self._after_push(self._stderr)

    # -- selector bookkeeping --

    def _outputs(self) -> list[_Output]:
        if self._stderr is self._stdout:
            return [self._stdout]
        return [self._stdout, self._stderr]

    def _register(self, source: _Source) -> None:
        self._selector.register(source.read_fd, selectors.EVENT_READ, source.callback)
        source.registered = True

    def _unregister(self, fd: int) -> None:
        try:
            self._selector.unregister(fd)
        except (KeyError, ValueError, OSError):
            pass
