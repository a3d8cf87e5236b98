"""The log relay with real pipes, real children and a real selector loop."""

from __future__ import annotations

import errno
import fcntl
import itertools
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pidone.config.specs import LogFormat
from pidone.runtime import logs
from pidone.runtime.logformat import MAX_PARTIAL
from pidone.runtime.logoutput import HIGH_WATER, ThreadOutput, open_output
from pidone.runtime.logs import LogRelay

PY = sys.executable
# Bound on what the relay may hold: the high-water mark plus what one more
# read can add (a 256 KiB read of short lines roughly doubles with prefixes).
QUEUE_BOUND = HIGH_WATER + 4 * logs.READ_SIZE

# Writes `count` numbered lines of varied length in writes of varied size
# that cut lines anywhere; to fd 1, or alternately to fds 1 and 2.
FLOOD = r"""
import os, sys
tag, count, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
both = len(sys.argv) > 4
streams = {1: [], 2: []}
for i in range(count):
    fd = 2 if both and i % 3 == 0 else 1
    streams[fd].append(f"{tag} {fd} {i:06d} " + "x" * ((i * step) % 97) + "\n")
for fd, lines in streams.items():
    data = memoryview("".join(lines).encode())
    size = 1
    while data:
        size = (size * 7919 + 13) % 65000 + 1
        n = os.write(fd, data[:size])
        data = data[n:]
"""
FLOOD_LINE = re.compile(rb"(\w+) +\| (\w+) ([12]) (\d{6}) (x*)")


def flood_payload(tag: str, i: int, step: int, fd: int = 1) -> bytes:
    return f"{tag} {fd} {i:06d} ".encode() + b"x" * ((i * step) % 97)


class Sink:
    """A pipe standing for pidone's stdout or stderr, read by a thread,
    slowly if asked (`chunk` bytes per read, `delay` seconds between reads)."""

    def __init__(self, chunk: int = 1 << 16, delay: float = 0.0, start: bool = True) -> None:
        self.read_fd, self.fd = os.pipe()
        self.chunk = chunk
        self.delay = delay
        self.data = bytearray()
        self.thread = threading.Thread(target=self._run, daemon=True)
        if start:
            self.thread.start()

    def _run(self) -> None:
        while chunk := os.read(self.read_fd, self.chunk):
            self.data += chunk
            if self.delay:
                time.sleep(self.delay)

    @property
    def received(self) -> int:
        return len(self.data)

    def close_writer(self) -> None:
        os.close(self.fd)

    def collect(self) -> bytes:
        """After the relay is closed: everything it wrote."""
        if not self.thread.is_alive() and self.thread.ident is None:
            self.thread.start()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the sink never saw EOF"
        os.close(self.read_fd)
        return bytes(self.data)


def finish(relay: LogRelay, *sinks: Sink) -> list[bytes]:
    relay.drain(30)
    assert relay.pending() == 0
    relay.close()
    for sink in sinks:
        sink.close_writer()
    return [sink.collect() for sink in sinks]


def run_loop(
    selector: selectors.BaseSelector,
    until: Callable[[], bool],
    timeout: float = 60.0,
    each: Callable[[], None] | None = None,
) -> int:
    """Dispatch like pidone's loop until `until()`; returns the iterations."""
    deadline = time.monotonic() + timeout
    rounds = 0
    while not until():
        assert time.monotonic() < deadline, "timed out"
        for key, mask in selector.select(0.02):
            key.data(mask)
        rounds += 1
        if each is not None:
            each()
    return rounds


def spawn(relay: LogRelay, name: str, code: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PY, "-c", code, *args],
        stdout=relay.pipe_for(name, "stdout"),
        stderr=relay.pipe_for(name, "stderr"),
    )


def exited(*procs: subprocess.Popen[bytes]) -> Callable[[], bool]:
    return lambda: all(p.poll() is not None for p in procs)


@pytest.fixture
def selector() -> Iterator[selectors.BaseSelector]:
    sel = selectors.DefaultSelector()
    yield sel
    sel.close()


def source_keys(selector: selectors.BaseSelector, write_fd: int) -> list[selectors.SelectorKey]:
    """Registrations of the read end of the pipe whose write end is write_fd."""
    ino = os.fstat(write_fd).st_ino
    return [
        key
        for key in selector.get_map().values()
        if key.events == selectors.EVENT_READ and os.fstat(key.fd).st_ino == ino
    ]


# --- routing and format ----------------------------------------------------


def test_stdout_and_stderr_lines_go_to_ours_prefixed(selector: selectors.BaseSelector) -> None:
    out, err = Sink(), Sink()
    relay = LogRelay(selector, names=["web", "worker"], stdout_fd=out.fd, stderr_fd=err.fd)
    code = "import sys; print('to out'); print('to err', file=sys.stderr)"
    procs = [spawn(relay, "web", code), spawn(relay, "worker", code)]
    run_loop(selector, exited(*procs))
    stdout, stderr = finish(relay, out, err)
    assert sorted(stdout.splitlines()) == [b"web    | to out", b"worker | to out"]
    assert sorted(stderr.splitlines()) == [b"web    | to err", b"worker | to err"]


def test_json_from_a_real_child_with_invalid_utf8(selector: selectors.BaseSelector) -> None:
    out = Sink()
    relay = LogRelay(
        selector, names=["web"], fmt="json", stdout_fd=out.fd, stderr_fd=out.fd, clock=lambda: 0.5
    )
    code = r"import os; os.write(1, b'ok \"q\"\n\xff\xfe bad\n\ttab\x01\n')"
    proc = spawn(relay, "web", code)
    run_loop(selector, exited(proc))
    relay.event("pidone", "web exited with status 0")
    (data,) = finish(relay, out)
    records = [json.loads(line) for line in data.splitlines()]
    assert records == [
        {"time": "1970-01-01T00:00:00.500Z", "process": "web", "stream": "stdout", "message": m}
        for m in ('ok "q"', "\ufffd\ufffd bad", "\ttab\x01")
    ] + [
        {
            "time": "1970-01-01T00:00:00.500Z",
            "process": "pidone",
            "stream": "stdout",
            "event": "web exited with status 0",
        }
    ]


def test_colour_only_on_a_terminal(
    selector: selectors.BaseSelector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    master, slave = os.openpty()
    plain = Sink()
    relay = LogRelay(selector, names=["web"], stdout_fd=slave, stderr_fd=plain.fd)
    relay.event("web", "on the terminal")
    relay.event("web", "in the pipe", stream="stderr")
    relay.drain(5)
    assert os.read(master, 4096).startswith(b"\x1b[36mweb    | \x1b[0mon the terminal")
    (piped,) = finish(relay, plain)
    assert piped == b"web    | in the pipe\n"
    monkeypatch.setenv("NO_COLOR", "1")
    relay = LogRelay(selector, names=["web"], stdout_fd=slave, stderr_fd=slave)
    relay.event("web", "no colour")
    relay.drain(5)
    relay.close()
    assert os.read(master, 4096) == b"web    | no colour\r\n"  # the tty adds the \r
    os.close(master)
    os.close(slave)


# --- framing through real pipes -------------------------------------------


def test_partial_lines_are_joined_across_writes(selector: selectors.BaseSelector) -> None:
    out = Sink()
    relay = LogRelay(selector, names=["web"], stdout_fd=out.fd, stderr_fd=out.fd)
    code = (
        "import os, time\n"
        "for piece in (b'hel', b'lo wor', b'ld\\nsec', b'ond\\n'):\n"
        "    os.write(1, piece); time.sleep(0.05)\n"
    )
    proc = spawn(relay, "web", code)
    run_loop(selector, exited(proc))
    (data,) = finish(relay, out)
    assert data == b"web    | hello world\nweb    | second\n"


def test_line_of_300_kib_comes_out_in_pieces_of_exactly_64_kib_that_join_back(
    selector: selectors.BaseSelector,
) -> None:
    out = Sink()
    relay = LogRelay(selector, names=["web"], stdout_fd=out.fd, stderr_fd=out.fd)
    code = (
        "import os, time\n"
        "line = bytes(48 + i % 10 for i in range(300 * 1024))\n"
        "for i in range(0, len(line), 16384):\n"
        "    os.write(1, line[i:i + 16384]); time.sleep(0.002)\n"
        "os.write(1, b'\\nnext\\n')\n"
    )
    proc = spawn(relay, "web", code)
    run_loop(selector, exited(proc))
    (data,) = finish(relay, out)
    pieces = data.split(b"\n")[:-1]
    assert all(piece.startswith(b"web    | ") for piece in pieces)
    payloads = [piece[9:] for piece in pieces]
    assert payloads[-1] == b"next"
    assert b"".join(payloads[:-1]) == bytes(48 + i % 10 for i in range(300 * 1024))
    # cut at exactly MAX_PARTIAL bytes, whatever the size of each read
    assert [len(p) for p in payloads[:-1]] == [MAX_PARTIAL] * (300 * 1024 // MAX_PARTIAL) + [
        300 * 1024 % MAX_PARTIAL
    ]


def test_drain_relays_what_is_left_with_the_last_partial_line(
    selector: selectors.BaseSelector,
) -> None:
    out, err = Sink(), Sink()
    relay = LogRelay(selector, names=["web"], stdout_fd=out.fd, stderr_fd=err.fd)
    code = "import os; os.write(1, b'a\\nb\\nno newline'); os.write(2, b'err tail')"
    proc = spawn(relay, "web", code)
    proc.wait()  # the loop never ran: everything is still in the pipes
    stdout, stderr = finish(relay, out, err)
    assert stdout == b"web    | a\nweb    | b\nweb    | no newline\n"
    assert stderr == b"web    | err tail\n"


# --- pipes: lifetime, restarts, grandchildren -------------------------------


def test_pipe_for_gives_one_lasting_non_inheritable_write_end(
    selector: selectors.BaseSelector,
) -> None:
    out = Sink()
    relay = LogRelay(selector, names=["web"], stdout_fd=out.fd, stderr_fd=out.fd)
    fd = relay.pipe_for("web", "stdout")
    assert relay.pipe_for("web", "stdout") == fd
    assert relay.pipe_for("web", "stderr") != fd
    assert not os.get_inheritable(fd)
    assert os.get_blocking(fd)  # the child's writes block when the pipe is full
    (key,) = source_keys(selector, fd)
    assert not os.get_blocking(key.fd)  # the loop's reads never block
    assert callable(key.data)
    finish(relay, out)
    assert len(selector.get_map()) == 0  # close() unregistered everything


def test_output_survives_restarts_and_comes_from_grandchildren(
    selector: selectors.BaseSelector,
) -> None:
    out = Sink()
    relay = LogRelay(selector, names=["web"], stdout_fd=out.fd, stderr_fd=out.fd)
    first = spawn(relay, "web", "print('first run')")
    run_loop(selector, exited(first))
    # The grandchild outlives its parent and writes after the parent is gone.
    orphaning = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    time.sleep(0.3); print('from the grandchild', flush=True); os._exit(0)\n"
        "print('second run', flush=True)\n"
    )
    second = spawn(relay, "web", orphaning)
    run_loop(selector, lambda: b"grandchild" in out.data and second.poll() is not None)
    (data,) = finish(relay, out)
    assert data == b"web    | first run\nweb    | second run\nweb    | from the grandchild\n"


def test_events_and_instances_keep_their_order_across_a_restart(
    selector: selectors.BaseSelector,
) -> None:
    out = Sink()
    relay = LogRelay(selector, names=["web"], stdout_fd=out.fd, stderr_fd=out.fd)
    proc = spawn(relay, "web", "import os; os.write(1, b'last words\\nunfinished')")
    relay.event("web", "started")
    proc.wait()  # not relayed yet: still in the pipe when pidone reaps it
    relay.event("web", "exited with status 0", ended=True)
    restarted = spawn(relay, "web", "print('new instance', flush=True)")
    restarted.wait()  # it has written before pidone logs "started"
    relay.event("web", "started again")
    run_loop(selector, lambda: out.data.endswith(b"new instance\n"))
    relay.event("web", "stopping")
    (data,) = finish(relay, out)
    assert data == (
        b"web    | started\n"
        b"web    | last words\n"
        b"web    | unfinished\n"
        b"web    | exited with status 0\n"
        b"web    | started again\n"
        b"web    | new instance\n"
        b"web    | stopping\n"
    )


def test_events_about_the_last_instance_may_follow_the_restart(
    selector: selectors.BaseSelector,
) -> None:
    # The loop spawns the new instance first and then logs the old one's
    # exit (catch_up=False): its last words still come before the exit, and
    # the new instance's first line after "started".
    out = Sink()
    relay = LogRelay(selector, names=["web"], stdout_fd=out.fd, stderr_fd=out.fd)
    proc = spawn(relay, "web", "import os; os.write(1, b'last words\\nunfinished')")
    relay.event("web", "started")
    proc.wait()
    restarted = spawn(relay, "web", "print('new instance', flush=True)")
    restarted.wait()  # it has written before pidone logs anything
    relay.event("web", "exited with signal SIGKILL", catch_up=False)
    relay.event("web", "restarting in 0 s", catch_up=False)
    relay.event("web", "started again")
    run_loop(selector, lambda: out.data.endswith(b"new instance\n"))
    (data,) = finish(relay, out)
    assert data == (
        b"web    | started\n"
        b"web    | last words\n"
        b"web    | unfinished\n"
        b"web    | exited with signal SIGKILL\n"
        b"web    | restarting in 0 s\n"
        b"web    | started again\n"
        b"web    | new instance\n"
    )


def test_a_new_instance_never_continues_the_last_ones_line(
    selector: selectors.BaseSelector,
) -> None:
    out = Sink()
    relay = LogRelay(selector, names=["web"], stdout_fd=out.fd, stderr_fd=out.fd)
    first = spawn(relay, "web", "import os; os.write(1, b'unfinished')")
    run_loop(selector, exited(first))
    second = spawn(relay, "web", "print('new instance')")  # no event in between
    run_loop(selector, exited(second))
    (data,) = finish(relay, out)
    assert data == b"web    | unfinished\nweb    | new instance\n"


def test_ready_while_a_process_is_halfway_through_a_line_never_cuts_it(
    selector: selectors.BaseSelector,
) -> None:
    out = Sink()
    relay = LogRelay(selector, names=["web"], stdout_fd=out.fd, stderr_fd=out.fd)
    write_fd = relay.pipe_for("web", "stdout")  # we are the process: a real pipe
    relay.event("web", "started")
    os.write(write_fd, b"first\nhalf of a li")
    run_loop(selector, lambda: b"first" in out.data)
    relay.event("web", "ready")  # it is alive: the rest of its line is still to come
    os.write(write_fd, b"ne\n")
    run_loop(selector, lambda: out.data.endswith(b"ne\n"))
    (data,) = finish(relay, out)
    assert data == b"web    | started\nweb    | first\nweb    | ready\nweb    | half of a line\n"


# 63-byte lines, handed over whole in one write (as a stdio buffer is
# flushed), far more than the pipe, our queue and our stdout's pipe hold.
WHOLE_LINES = [b"line %06d " % i + b"x" * 50 + b"\n" for i in range(40_000)]


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@pytest.mark.parametrize("ended", [False, True], ids=["ready", "exited"])
def test_an_event_while_reading_is_paused_mid_line_never_cuts_that_line(
    selector: selectors.BaseSelector, ended: bool
) -> None:
    # tests/pid1/test_side_floods.py's datagram flood lost its line 14670
    # under load: "ready" came while the relay had stopped reading (nobody
    # read our stdout) after a read that ended mid-line, and sent the line's
    # start as a line; its rest came later as another, and neither matched.
    out = Sink(start=False)
    relay = LogRelay(selector, names=["web"], stdout_fd=out.fd, stderr_fd=out.fd)
    write_fd = relay.pipe_for("web", "stdout")
    relay.event("web", "started")
    writer = threading.Thread(target=write_all, args=(write_fd, b"".join(WHOLE_LINES)))
    writer.start()
    run_loop(selector, lambda: not source_keys(selector, write_fd))  # HIGH_WATER: paused
    assert writer.is_alive(), "the writer should be held back in write()"
    assert relay._sources["web", "stdout"].framer.partial, "the last read ended mid-line"
    message = "exited with status 0" if ended else "ready"
    relay.event("web", message, ended=ended)  # what it wrote is still in the pipe
    out.thread.start()
    run_loop(selector, lambda: not writer.is_alive(), each=relay.check_threads)
    writer.join()
    (data,) = finish(relay, out)
    got = data.split(b"\n")[:-1]
    event = b"web    | " + message.encode()
    assert got[0] == b"web    | started" and got.count(event) == 1
    at = got.index(event)
    assert 1 < at < len(WHOLE_LINES)  # while the flood was held back
    assert got[1:at] + got[at + 1 :] == [b"web    | " + line[:-1] for line in WHOLE_LINES]


def test_a_restart_dropping_what_did_not_fit_drops_the_start_of_its_line_too(
    selector: selectors.BaseSelector,
) -> None:
    out = Sink(start=False)
    relay = LogRelay(selector, names=["web"], stdout_fd=out.fd, stderr_fd=out.fd)
    write_fd = relay.pipe_for("web", "stdout")
    relay.event("web", "started")
    os.write(write_fd, b"".join(WHOLE_LINES[:100]))  # 6,300 bytes: the pipe takes them
    for key, mask in selector.select(5):
        key.data(mask)  # one read: MIN_READ bytes
    source = relay._sources["web", "stdout"]
    assert source.framer.partial == b"l", "the read ended one byte into line 65"
    # Nobody reads our stdout and the queue is past HIGH_WATER: reading paused.
    relay.event("pidone", "y" * (HIGH_WATER + 2 * 65536))
    assert not source_keys(selector, write_fd)
    relay.pipe_for("web", "stdout")  # its next instance: the rest is dropped, counted
    out.thread.start()
    (data,) = finish(relay, out)
    got = data.split(b"\n")[:-1]
    relayed = [b"web    | " + line[:-1] for line in WHOLE_LINES[:65]]
    assert got[:66] == [b"web    | started", *relayed]
    assert got[66:] == [  # no "web    | l": a line the process never wrote
        b"pidone | " + b"y" * (HIGH_WATER + 2 * 65536),
        b"pidone | stdout was not read: dropped 2205 bytes that exited processes left in"
        b" their pipes and 0 of pidone's own events",
    ]


# --- floods and backpressure ------------------------------------------------


def check_flood(data: bytes, tags: dict[str, int], count: int, fds: tuple[int, ...] = (1,)) -> None:
    """Every line exactly once, intact, in order per child and stream."""
    seen: dict[tuple[str, int], list[int]] = {(tag, fd): [] for tag in tags for fd in fds}
    for line in data.split(b"\n")[:-1]:
        match = FLOOD_LINE.fullmatch(line)
        assert match, f"damaged or interleaved line: {line[:200]!r}"
        name, tag, fd, number = (match.group(i).decode() for i in range(1, 5))
        assert name == tag, f"line of {tag} under the prefix of {name}"
        i = int(number)
        assert match.group(5) == b"x" * ((i * tags[tag]) % 97), f"damaged line {line[:200]!r}"
        seen[(tag, int(fd))].append(i)
    for (tag, fd), numbers in seen.items():
        expected = [i for i in range(count) if (fd == 2) == (len(fds) > 1 and i % 3 == 0)]
        assert numbers == expected, f"{tag} on fd {fd}: lines lost, repeated or out of order"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_two_floods_into_a_slow_reader_lose_and_mix_nothing(
    selector: selectors.BaseSelector, fmt: LogFormat
) -> None:
    count = 50_000
    tags = {"a": 7, "bb": 13}  # different line-length patterns
    out = Sink(chunk=16384, delay=0.001)  # at most ~16 MB/s: far slower than the children
    sink_pipe = fcntl.fcntl(out.read_fd, fcntl.F_GETPIPE_SZ)
    relay = LogRelay(selector, names=list(tags), fmt=fmt, stdout_fd=out.fd, stderr_fd=out.fd)
    procs = {tag: spawn(relay, tag, FLOOD, tag, str(count), str(s)) for tag, s in tags.items()}
    write_ends = [relay.pipe_for(tag, "stdout") for tag in tags]
    peak = 0
    paused_rounds = 0
    received_at_exit: dict[str, int] = {}  # what the sink had when the child was seen gone

    def watch() -> None:
        nonlocal peak, paused_rounds
        peak = max(peak, relay.pending())
        if not any(source_keys(selector, fd) for fd in write_ends):
            paused_rounds += 1
        for tag, proc in procs.items():
            if proc.poll() is not None:
                received_at_exit.setdefault(tag, out.received)

    # Until watch() has seen each exit: a child that exits after the last
    # watch() would end an `exited()` loop with no received_at_exit entry.
    run_loop(selector, lambda: len(received_at_exit) == len(procs), each=watch)
    (relayed,) = finish(relay, out)
    lines = relayed.splitlines(keepends=True)
    if fmt == "json":
        records = [json.loads(line) for line in lines]
        assert all(r["stream"] == "stdout" for r in records)
        data = b"".join(f"{r['process']} | {r['message']}\n".encode() for r in records)
        owners = [str(r["process"]) for r in records]
    else:
        data = relayed
        owners = [line.split(b" ", 1)[0].decode() for line in lines]
    check_flood(data, tags, count)
    # Backpressure: the relay stopped reading and kept its queue bounded...
    assert paused_rounds > 0
    assert HIGH_WATER < peak <= QUEUE_BOUND
    # ...so each child could only finish once the reader had nearly caught
    # up with it. What of its lines may still sit unread once it has exited:
    # our queue, the framer's partial line, the sink's pipe and the chunk its
    # thread holds, and the child's own pipe, grown by formatting. Nothing
    # bounds how far the other child is behind (under load it may start
    # writing much later; the relay promises no fair share), so each is
    # measured against its own lines only, in the bytes the sink received.
    ends = list(itertools.accumulate(map(len, lines)))  # where each line ends in the sink
    for tag, step in tags.items():
        mine = [
            (end, len(line))
            for end, line, who in zip(ends, lines, owners, strict=True)
            if who == tag
        ]
        total = sum(size for _, size in mine)
        received = sum(size for end, size in mine if end <= received_at_exit[tag])
        wrote = sum(len(flood_payload(tag, i, step)) + 1 for i in range(count))
        grown = total / wrote  # a pipe holds thousands of lines: their mean growth
        slack = QUEUE_BOUND + MAX_PARTIAL + sink_pipe + out.chunk + grown * logs.PIPE_SIZE
        assert received >= total - slack, f"{tag}: {received} of {total} bytes at its exit"


def test_stdout_and_stderr_into_one_pipe_never_cut_each_other(
    selector: selectors.BaseSelector,
) -> None:
    count = 30_000
    tags = {"a": 5, "b": 11}
    out = Sink(chunk=8192, delay=0.0005)
    relay = LogRelay(selector, names=list(tags), stdout_fd=out.fd, stderr_fd=out.fd)
    procs = [
        spawn(relay, tag, FLOOD, tag, str(count), str(step), "both") for tag, step in tags.items()
    ]
    run_loop(selector, exited(*procs))
    (data,) = finish(relay, out)
    check_flood(data, tags, count, fds=(1, 2))


def test_a_stuck_reader_blocks_the_writer_never_the_loop(
    selector: selectors.BaseSelector,
) -> None:
    out = Sink(start=False)  # nobody reads our stdout for now
    relay = LogRelay(selector, names=["a"], stdout_fd=out.fd, stderr_fd=out.fd)
    proc = spawn(relay, "a", FLOOD, "a", "100000", "3")
    began = last = time.monotonic()
    slowest = 0.0

    def watch() -> None:
        nonlocal slowest, last
        now = time.monotonic()
        slowest = max(slowest, now - last)
        last = now

    rounds = run_loop(selector, lambda: time.monotonic() - began > 1.0, each=watch)
    # The whole second went by in short rounds: nothing waited on the full pipe.
    assert rounds > 10
    assert slowest < 0.5
    assert proc.poll() is None, "the flooding child should be blocked in write()"
    assert HIGH_WATER < relay.pending() <= QUEUE_BOUND
    out.thread.start()
    run_loop(selector, exited(proc))
    (data,) = finish(relay, out)
    check_flood(data, {"a": 3}, 100000)


# --- destinations ------------------------------------------------------------


def test_our_stdout_description_stays_blocking(selector: selectors.BaseSelector) -> None:
    out = Sink()
    relay = LogRelay(selector, names=["web"], stdout_fd=out.fd, stderr_fd=out.fd)
    relay.event("web", "hello")
    assert os.get_blocking(out.fd)  # shared with the shell or docker: untouched
    (data,) = finish(relay, out)
    assert data == b"web    | hello\n"


def test_a_regular_file_is_appended_to_at_our_own_offset(
    selector: selectors.BaseSelector, tmp_path: Path
) -> None:
    path = tmp_path / "out.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)  # like `> out.log`, no O_APPEND
    relay = LogRelay(selector, names=["web"], stdout_fd=fd, stderr_fd=fd)
    relay.event("web", "relayed")
    relay.drain(5)
    os.write(fd, b"written directly\n")  # a traceback, say: must not overwrite
    relay.event("web", "relayed again")
    relay.drain(5)
    relay.close()
    os.close(fd)
    assert path.read_bytes() == b"web    | relayed\nwritten directly\nweb    | relayed again\n"


def test_a_reader_that_went_away_costs_one_message(selector: selectors.BaseSelector) -> None:
    out, err = Sink(start=False), Sink()
    relay = LogRelay(selector, names=["web"], stdout_fd=out.fd, stderr_fd=err.fd)
    os.close(out.read_fd)  # docker's log reader is gone: EPIPE from now on
    out.thread = threading.Thread(target=lambda: None)  # nothing left to read
    proc = spawn(relay, "web", "for i in range(20000): print(i, 'x' * 100)")
    run_loop(selector, exited(proc))  # does not raise, and the child is not held back
    relay.event("web", "exited with status 0")
    relay.drain(5)
    relay.close()
    out.close_writer()
    err.close_writer()
    err.thread.join(10)
    messages = bytes(err.data).splitlines()
    assert len(messages) == 1
    assert messages[0].startswith(b"pidone | cannot write to stdout: Broken pipe")


def test_a_stream_socket_is_written_without_blocking_it(selector: selectors.BaseSelector) -> None:
    ours, theirs = socket.socketpair()  # journald's stdout stream is a socket like this
    relay = LogRelay(selector, names=["a"], stdout_fd=ours.fileno(), stderr_fd=ours.fileno())
    received = bytearray()

    def read_slowly() -> None:
        while chunk := theirs.recv(8192):
            received.extend(chunk)
            time.sleep(0.0005)

    reader = threading.Thread(target=read_slowly, daemon=True)
    reader.start()
    proc = spawn(relay, "a", FLOOD, "a", "30000", "5")
    run_loop(selector, exited(proc))
    relay.drain(30)
    relay.close()
    assert ours.getblocking()
    ours.close()
    reader.join(30)
    theirs.close()
    check_flood(bytes(received), {"a": 5}, 30000)


def no_proc(path: str, flags: int, mode: int = 0o777) -> int:
    """os.open without /proc (or of a file that refuses a reopen): a ThreadOutput then."""
    raise OSError(errno.ENXIO, "No such device or address", path)


def test_writer_thread_when_the_fd_cannot_be_reopened(
    selector: selectors.BaseSelector, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = Sink(chunk=8192, delay=0.0005)
    with monkeypatch.context() as patch:
        patch.setattr(os, "open", no_proc)
        relay = LogRelay(selector, names=["a", "b"], stdout_fd=out.fd, stderr_fd=out.fd)
    tags = {"a": 3, "b": 17}
    procs = [spawn(relay, tag, FLOOD, tag, "30000", str(step)) for tag, step in tags.items()]
    write_ends = [relay.pipe_for(tag, "stdout") for tag in tags]
    paused = 0

    def watch() -> None:
        nonlocal paused
        assert relay.pending() <= QUEUE_BOUND
        paused += not any(source_keys(selector, fd) for fd in write_ends)
        relay.check_threads()  # as pidone's loop does at every turn

    run_loop(selector, exited(*procs), each=watch)
    (data,) = finish(relay, out)
    assert paused > 0  # backpressure worked through the thread's wakeups too
    check_flood(data, tags, 30000)


def test_writer_thread_paused_by_a_stuck_reader_wakes_the_loop_once_to_resume_reading(
    selector: selectors.BaseSelector, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = Sink(start=False)  # a real blocking pipe that nobody reads for now
    wakes: list[int] = []
    woken = threading.Event()

    def wake() -> None:  # stands for signals.wake_loop: who woke the loop, and when
        wakes.append(threading.get_ident())
        woken.set()

    with monkeypatch.context() as patch:
        patch.setattr(os, "open", no_proc)
        relay = LogRelay(selector, names=["a"], stdout_fd=out.fd, stderr_fd=out.fd, wake=wake)
    (output,) = relay._outputs()
    assert isinstance(output, ThreadOutput)
    write_end = relay.pipe_for("a", "stdout")
    proc = spawn(relay, "a", FLOOD, "a", "100000", "3")
    run_loop(selector, lambda: not source_keys(selector, write_end))  # HIGH_WATER: paused
    assert proc.poll() is None, "the flooding child should be blocked in write()"
    assert output.paused and wakes == []  # the thread is stuck in write(): nothing to say
    relay.check_threads()  # a turn that no wake caused changes nothing
    assert not source_keys(selector, write_end)
    out.thread.start()
    assert woken.wait(30), "the writer thread drained the queue but never woke the loop"
    assert wakes == [output.thread.ident]  # once, from the writer thread
    assert output.paused  # only the loop's thread resumes, in its turn:
    relay.check_threads()
    assert len(source_keys(selector, write_end)) == 1 and not output.paused
    run_loop(selector, exited(proc), each=relay.check_threads)
    (data,) = finish(relay, out)
    check_flood(data, {"a": 3}, 100000)


def test_a_chunk_too_big_for_one_datagram_goes_out_in_whole_lines_none_lost() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    limit = ours.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    lines = [f"a | line {i:06d} ".encode() + b"x" * (i % 97) + b"\n" for i in range(8000)]
    chunk = b"".join(lines)
    assert len(chunk) > limit  # EMSGSIZE in one message: every line was dropped
    output = open_output("stdout", ours.fileno(), lambda: None)
    assert isinstance(output, ThreadOutput)
    output.push(chunk)
    messages: list[bytes] = []
    theirs.settimeout(10)
    while sum(map(len, messages)) < len(chunk):
        messages.append(theirs.recv(1 << 20))
    output.finish(time.monotonic() + 10)
    assert output.take_failure() is None and output.pending() == 0
    assert b"".join(messages) == chunk and len(messages) > 1
    assert all(m.endswith(b"\n") and len(m) <= limit for m in messages)  # whole lines each
    output.close()
    ours.close()
    theirs.close()


def test_side_threads_logging_in_a_flood_cost_bounded_memory_and_are_counted() -> None:
    wakes = []
    side = logs.SideLog(lambda: wakes.append(threading.get_ident()), limit=100)

    def flood() -> None:
        for i in range(1000):
            side.put(f"line {i} " + "x" * 10_000)

    threads = [threading.Thread(target=flood) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines, dropped = side.take()
    assert (len(lines), dropped) == (100, 8 * 1000 - 100)
    assert all(len(line) == logs.SIDE_LINE_MAX for line in lines)
    assert len(wakes) == 1  # the loop is woken once per batch, not per line
    assert side.take() == ([], 0)
    side.put("again")
    assert side.take() == (["again"], 0) and len(wakes) == 2


SHORT_LINES = r"""
import os, sys
block = b"\n" * 65536  # empty lines: JSON makes each of them some 80 bytes
for _ in range(int(sys.argv[1])):
    os.write(1, block)
"""


def test_one_byte_lines_in_json_keep_the_queue_within_its_bound(
    selector: selectors.BaseSelector,
) -> None:
    # A program that writes empty lines makes JSON formatting grow what one
    # read takes from its pipe some 80 times: reads are sized by what the
    # lines grew to, so the queue passes HIGH_WATER by one read's worth, not
    # by 80 pipe-fulls of it.
    blocks = 64  # 4 MiB of newlines: about 300 MiB of JSON
    out = Sink(chunk=65536, delay=0.001)
    relay = LogRelay(selector, names=["a"], fmt="json", stdout_fd=out.fd, stderr_fd=out.fd)
    proc = spawn(relay, "a", SHORT_LINES, str(blocks))
    peak = 0

    def watch() -> None:
        nonlocal peak
        peak = max(peak, relay.pending())
        if peak > QUEUE_BOUND:
            proc.kill()  # the bound is broken: no need to format the rest

    run_loop(selector, exited(proc), each=watch, timeout=120)
    (data,) = finish(relay, out)
    assert HIGH_WATER < peak <= QUEUE_BOUND, peak
    assert data.count(b"\n") == blocks * 65536  # every empty line, once


def test_a_process_removed_by_update_has_its_last_words_relayed_and_its_pipes_closed(
    selector: selectors.BaseSelector,
) -> None:
    out = Sink()
    relay = LogRelay(selector, names=["gone", "kept"], stdout_fd=out.fd, stderr_fd=out.fd)
    proc = spawn(relay, "gone", "import sys; print('said'); sys.stdout.write('unfinished')")
    ends = [relay.pipe_for("gone", stream) for stream in ("stdout", "stderr")]
    reads = [relay.pipes()["gone", stream][0] for stream in ("stdout", "stderr")]
    run_loop(selector, exited(proc))
    relay.forget("gone")  # ctl update removed it, and it is at rest
    for fd in ends + reads:  # pidone holds neither end any more: no fd per removed name
        with pytest.raises(OSError):
            os.fstat(fd)
    assert not set(reads) & set(selector.get_map()) and set(relay.pipes()) == set()
    again = relay.pipe_for("gone", "stdout")  # the name added back: a pipe of its own
    os.write(again, b"back\n")
    run_loop(selector, lambda: b"back" in out.data, timeout=10)
    (data,) = finish(relay, out)
    assert data.splitlines() == [b"gone   | said", b"gone   | unfinished", b"gone   | back"]
