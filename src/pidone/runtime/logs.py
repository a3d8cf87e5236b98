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
  each other's lines either). A partial line waits for its newline; a
  line is at most MAX_PARTIAL (64 KiB): a longer one goes out in pieces of
  64 KiB, each a line of its own, so a process cannot make us hold
  unbounded memory. At EOF, in `drain()`, when the next instance starts
  and at an event about an instance that has ended (once its pipe is read
  to the end), a trailing partial line goes out with a newline added;
  never earlier, as its rest may still be in the pipe (see `event`).
- The loop never blocks on output. O_NONBLOCK on fd 1/2's own open file
  description would leak into the shell or container runtime sharing it,
  so each destination gets its own way (see `open_output`):
  a pipe, FIFO or terminal is reopened through /proc/self/fd as a new,
  non-blocking description; a stream socket (journald) cannot be reopened
  (ENXIO) but takes MSG_DONTWAIT per send; a regular file never waits for a
  reader, so a plain dup does. On EAGAIN we wait for EVENT_WRITE. Only if
  none of these works (no /proc, a datagram socket) does a writer thread do
  blocking writes, so that only it can wait; it wakes the loop the one way
  side threads do (signals.wake_loop), and the loop looks at it each turn
  (`check_threads`).
- Nothing is dropped for speed: past HIGH_WATER queued bytes we stop reading
  the pipes that feed the destination until it falls under LOW_WATER, so a
  flooding process blocks in its own write() instead. That holds at exits
  too: the last words of an exited process are read only while they fit,
  so memory stays bounded when nobody reads our stdout. Then, and only
  then, what does not fit is dropped when the next instance starts (it must
  not block on its predecessor's output; a line whose rest is dropped goes
  whole, never cut), as are pidone's own events past
  EVENT_LIMIT; the counts are logged once the destination drains.
- Only a broken destination (EPIPE, EIO, ...) loses lines; that is reported
  once per error as a pidone event on stderr and never raised into the loop.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import selectors
import threading
import time
from collections.abc import Callable, Iterable

# Re-exported: the relay's public vocabulary lives in logformat and logoutput.
from pidone.config.specs import LOG_MATCH_MAX, LogFormat
from pidone.runtime.logformat import PIDONE_NAME, Formatter, Framer, Stream
from pidone.runtime.logoutput import (
    HIGH_WATER,
    LOW_WATER,
    Output,
    ThreadOutput,
    is_tty,
    open_output,
    same_file,
)
from pidone.system import signals

READ_SIZE = 256 * 1024
MIN_READ = 4096  # the smallest read, however much formatting grows a line
# Bigger pipes mean fewer wakeups per megabyte from a chatty process (the
# relay's throughput goes up by about half over the default 64 KiB). Pipe
# capacity counts against a per-user quota (fs.pipe-user-pages-soft, 64 MiB,
# shared by every process of that uid on the host; past it new pipes get one
# page), so only the first PIPE_BUDGET worth of pipes is enlarged.
PIPE_SIZE = 256 * 1024
PIPE_BUDGET = 16 * 1024 * 1024
_DEFAULT_PIPE_SIZE = 64 * 1024
# Past this many queued bytes (our stdout or stderr is not being read),
# pidone's own events are counted and dropped rather than queued: process
# output stops being read at HIGH_WATER, events would still pile up at each
# restart of a crash loop.
EVENT_LIMIT = 2 * HIGH_WATER
# At most this much of an exited instance's output is thrown away at once.
_DISCARD_LIMIT = 4 * PIPE_SIZE
# A bound on one drain() read pass per pipe, so a process that still writes
# cannot hold drain() in one pipe.
_DRAIN_READ_LIMIT = 4 * 1024 * 1024

# Seconds of `ready = "log:..."` searching per read of one pipe, at most
# (plus the one line under way): see LogRelay._match.
LOG_MATCH_BUDGET = 0.02

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)

# What threads other than the loop's may have waiting for it: lines beyond
# are counted and dropped, each line is cut to SIDE_LINE_MAX characters.
SIDE_LINES = 1000
SIDE_LINE_MAX = 4096


class SideLog:
    """The one way a thread other than the loop's logs (the HTTP server's,
    the metrics collector's): the relay is not thread-safe, so `put()`
    queues the line and wakes the loop, which relays it (`take()`). Bounded:
    a thread that logs in a flood costs at most SIDE_LINES lines of memory;
    the rest is counted, and the count logged."""

    def __init__(self, wake: Callable[[], None], limit: int = SIDE_LINES) -> None:
        self._wake = wake
        self._limit = limit
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._dropped = 0

    def put(self, message: str) -> None:
        """From any thread; never blocks on output, never raises."""
        with self._lock:
            if len(self._lines) >= self._limit:
                self._dropped += 1
                return
            self._lines.append(message[:SIDE_LINE_MAX])
            first = len(self._lines) == 1
        if first:  # later ones find the loop woken already
            self._wake()

    def take(self) -> tuple[list[str], int]:
        """In the loop: (the lines waiting, how many were dropped since)."""
        with self._lock:
            lines, self._lines = self._lines, []
            dropped, self._dropped = self._dropped, 0
        return lines, dropped


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
        "read_size",
        "registered",
        "stream",
        "write_fd",
    )

    def __init__(self, name: str, stream: Stream, read_fd: int, write_fd: int, output: Output):
        self.name = name
        self.stream: Stream = stream
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.output = output
        self.framer = Framer()
        self.read_size = MIN_READ  # until its lines' growth is known: see _emit
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
        wake: Callable[[], None] = signals.wake_loop,
    ) -> None:
        self._selector = selector
        self._stdout = open_output("stdout", stdout_fd, wake)
        if same_file(stdout_fd, stderr_fd):
            # One queue for both: two would cut into each other's lines on a
            # shared pipe, and one keeps stdout and stderr lines in order.
            self._stderr = self._stdout
        else:
            self._stderr = open_output("stderr", stderr_fd, wake)
        if color is None:
            no_color = bool(os.environ.get("NO_COLOR"))  # https://no-color.org
            colors = {
                "stdout": not no_color and is_tty(stdout_fd),
                "stderr": not no_color and is_tty(stderr_fd),
            }
        else:
            colors = {"stdout": color, "stderr": color}
        self._format = Formatter(fmt, names, color=lambda stream: colors[stream], clock=clock)
        self._sources: dict[tuple[str, Stream], _Source] = {}
        self._closed = False
        self._pipe_budget = PIPE_BUDGET
        self._spawning: set[str] = set()  # pipe_for() called, no event since
        # `ready = "log:REGEX"`: name -> (its pattern, called once at the first match)
        self._watches: dict[str, tuple[re.Pattern[str], Callable[[], None]]] = {}
        self._slow: set[str] = set()  # said once: its pattern passed LOG_MATCH_BUDGET

    # -- public interface --

    def add_names(self, names: Iterable[str]) -> None:
        """Processes added by ctl update: their prefixes and colours."""
        self._format.add_names(names)

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
            self._relay_leftovers(known, ended=True, boundary=True)
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
        self._add_source(name, stream, read_fd, write_fd)
        return write_fd

    def _add_source(self, name: str, stream: Stream, read_fd: int, write_fd: int) -> None:
        output = self._stdout if stream == "stdout" else self._stderr
        source = _Source(name, stream, read_fd, write_fd, output)
        source.callback = lambda mask: self._on_readable(source)
        output.sources.append(source)
        self._sources[name, stream] = source
        if not output.paused:
            self._register(source)

    def pipes(self) -> dict[tuple[str, Stream], tuple[int, int]]:
        """(name, stream) -> its pipe's (read end, write end): for ctl reexec."""
        return {key: (s.read_fd, s.write_fd) for key, s in self._sources.items()}

    def adopt_pipe(self, name: str, stream: Stream, read_fd: int, write_fd: int) -> None:
        """A pipe a re-executed pidone was handed (its process writes into it
        still): relayed as if pipe_for had made it; non-blocking reads."""
        os.set_blocking(read_fd, False)
        self._add_source(name, stream, read_fd, write_fd)

    def event(
        self,
        name: str,
        message: str,
        *,
        stream: Stream = "stdout",
        catch_up: bool = True,
        ended: bool = False,
    ) -> None:
        """Log one of pidone's own events, formatted like a process line.

        For a process's name, the whole lines it already wrote are relayed
        first (as many as fit under HIGH_WATER); except for the first event
        after pipe_for() ("started"), which comes before anything the new
        instance wrote. Its unfinished last line goes first too only if the
        event says the instance has `ended` ("exited with status 1" follows
        its last words) and the pipe was read to its end. Otherwise the rest
        of that line may still be in the pipe (a read ends wherever its size
        or HIGH_WATER falls) or on its way (a live process's write), and
        sending its start as a line cut it in two: neither half is the line
        the process wrote. `catch_up=False` is for events
        logged just after the process was spawned or signalled: about the
        previous instance (pipe_for() relayed its last words already), or a
        "stopping" that must come before the reaction to the signal. Nothing
        is relayed first, and a "started" that follows still comes first.
        """
        if self._closed:
            return
        if catch_up and name in self._spawning:
            self._spawning.discard(name)
        elif catch_up:
            for source_stream in ("stdout", "stderr"):
                source = self._sources.get((name, source_stream))
                if source is not None:
                    self._relay_leftovers(source, ended=ended)
        output = self._stdout if stream == "stdout" else self._stderr
        if output.queued > EVENT_LIMIT:
            output.dropped_events += 1  # nobody reads it: said once it drains
            return
        output.push(self._format.event(name, stream, message))
        self._after_push(output)

    def watch(self, name: str, pattern: re.Pattern[str], on_match: Callable[[], None]) -> None:
        """Until its first match (or unwatch), search the first LOG_MATCH_MAX
        bytes of each whole line NAME writes on stdout or stderr for `pattern`;
        call on_match() once then. Only a watched process's lines are searched."""
        self._watches[name] = (pattern, on_match)

    def unwatch(self, name: str) -> None:
        self._watches.pop(name, None)

    def forget(self, name: str) -> None:
        """A process ctl update removed, at rest: what its pipes hold is
        relayed (its unfinished line too, as at an exit), then both ends
        closed: a stack whose deploys add and remove new names does not
        gather two fds per name. A leftover of it still writing gets EPIPE."""
        self.unwatch(name)
        self._spawning.discard(name)
        for stream in ("stdout", "stderr"):
            source = self._sources.pop((name, stream), None)
            if source is None:
                continue
            self._relay_leftovers(source, ended=True, boundary=True)
            self._unregister(source.read_fd)
            source.output.sources.remove(source)
            with contextlib.suppress(OSError):  # an enlarged pipe gives its share back
                if fcntl.fcntl(source.read_fd, _F_GETPIPE_SZ) >= PIPE_SIZE:
                    self._pipe_budget += PIPE_SIZE - _DEFAULT_PIPE_SIZE
            for fd in (source.read_fd, source.write_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def check_threads(self) -> None:
        """In the loop, at every turn: a writer thread (ThreadOutput) that
        wrote its queue down while reading was paused, or failed, woke the
        loop for this; its sources are read again, its error reported."""
        for output in self._outputs():
            if isinstance(output, ThreadOutput) and output.take_wake():
                self._after_flush(output)

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
                got += self._read_available(source, _DRAIN_READ_LIMIT)[0]
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
                with contextlib.suppress(OSError):
                    os.close(fd)
        for output in self._outputs():
            if output.watching:
                self._unregister(output.fd)
            output.close()

    # -- reading --

    def _on_readable(self, source: _Source) -> None:
        if source.output.paused:
            return  # paused earlier in this same turn: it stays in the pipe
        try:
            data = os.read(source.read_fd, source.read_size)
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

    def _relay_leftovers(self, source: _Source, *, ended: bool, boundary: bool = False) -> None:
        """Relay what the pipe holds, but only what fits under HIGH_WATER:
        with our stdout blocked, reading it all at every exit of a
        crash-looping process grew the queue without bound. The unfinished
        last line only if the instance has `ended` and the pipe is read to
        its end (see `event`). At a `boundary` (the next instance is about
        to start) what does not fit is read and dropped, counted, and the
        count logged once the output drains: the old instance's words must
        not block the new one, nor its unfinished line continue into the
        new one's first."""
        output = source.output
        room = HIGH_WATER - output.queued
        at_end = False
        if room > 0 and not output.paused:
            at_end = self._read_available(source, room)[1]
        if boundary:
            dropped = self._read_available(source, _DISCARD_LIMIT, keep=False)[0]
            if dropped:  # the rest of the unfinished line went with them: its start too
                dropped += source.framer.discard()
            output.dropped_leftovers += dropped
        if boundary or (ended and at_end):
            self._emit(source, source.framer.flush())

    def _read_available(
        self, source: _Source, limit: int, *, keep: bool = True
    ) -> tuple[int, bool]:
        """Read without blocking until the pipe is empty (or `limit` bytes);
        relay it, or with keep=False throw it away (a dead instance's words
        that do not fit). Returns the bytes read and whether the pipe was
        read to its end (empty, or EOF) rather than stopped at `limit`."""
        total = 0
        while not source.eof:
            if total >= limit:
                return total, False
            try:
                data = os.read(source.read_fd, source.read_size)
            except BlockingIOError:
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                return total, False
            except OSError:  # pragma: no cover
                self._end_source(source)
                break
            if not data:
                self._end_source(source)
                break
            total += len(data)
            if keep:
                self._emit(source, source.framer.feed(data))
        return total, True

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
            if source.name in self._watches:
                self._match(source.name, lines)
            output = source.output
            formatted = self._format.lines(source.name, source.stream, lines)
            # Formatting can make lines several times longer (JSON around
            # short lines): the next read of this source is sized to add about
            # READ_SIZE to the queue, so that HIGH_WATER is passed by one
            # read's worth, in any format.
            grown = max(len(formatted), 1)
            source.read_size = max(MIN_READ, min(READ_SIZE, READ_SIZE * len(lines) // grown))
            output.push(formatted)
            self._after_push(output)

    def _match(self, name: str, lines: bytes) -> None:
        """Search each line for NAME's pattern: a bounded part of it, so that
        a hostile 64 KiB line costs what a 4 KiB one does (config refuses the
        patterns that backtrack exponentially: values.log_pattern). A search
        cannot be interrupted, but past LOG_MATCH_BUDGET seconds for one read
        the rest of its lines are not searched (relayed as ever, and said
        once): lines crafted against a slow pattern cannot hold the loop."""
        pattern, on_match = self._watches[name]
        started = time.monotonic()
        whole = lines.split(b"\n")[:-1]  # whole lines: each ends in a newline
        for done, line in enumerate(whole):
            if pattern.search(line[:LOG_MATCH_MAX].decode("utf-8", "replace")):
                del self._watches[name]
                on_match()
                return
            if time.monotonic() - started > LOG_MATCH_BUDGET:
                if name not in self._slow:
                    self._slow.add(name)
                    self._warn(
                        f'ready = "log:{pattern.pattern}" is slow on {name}\'s lines:'
                        f" {len(whole) - done - 1} of them not searched (and so on, not said again)"
                    )
                return

    def _after_push(self, output: Output) -> None:
        if not output.watching:
            output.flush()
            self._after_flush(output)
        if output.pause_if_over(HIGH_WATER):
            for source in output.sources:
                if source.registered:
                    self._unregister(source.read_fd)
                    source.registered = False

    def _after_flush(self, output: Output) -> None:
        self._report(output)
        blocked = output.queued > 0 and not isinstance(output, ThreadOutput)
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
            if output.dropped_events or output.dropped_leftovers:
                events, output.dropped_events = output.dropped_events, 0
                left, output.dropped_leftovers = output.dropped_leftovers, 0
                self._warn(
                    f"{output.label} was not read: dropped {left} bytes that exited processes"
                    f" left in their pipes and {events} of pidone's own events"
                )
            for source in output.sources:
                if not source.eof and not source.registered:
                    self._register(source)

    def _writer(self, output: Output) -> Callable[[int], None]:
        def on_writable(mask: int) -> None:
            output.flush()
            self._after_flush(output)

        return on_writable

    def _report(self, output: Output) -> None:
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

    def _outputs(self) -> list[Output]:
        if self._stderr is self._stdout:
            return [self._stdout]
        return [self._stdout, self._stderr]

    def _register(self, source: _Source) -> None:
        self._selector.register(source.read_fd, selectors.EVENT_READ, source.callback)
        source.registered = True

    def _unregister(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(fd)
