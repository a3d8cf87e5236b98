"""Log writer: numbered lines to stdout, as fast as the pipe takes them.

    log_writer.py CHANNEL GO ID MIB CHUNK

Makes MIB MiB of lines, says `ready ID` on the CHANNEL fifo, waits until
the GO fifo's writer closes it (the bench starts every writer at once),
then writes them in CHUNK-byte writes, then `#END ID COUNT#` on a line of
its own (COUNT: how many lines it wrote), and stays
(a supervisor would restart it, honcho would stop everything) until SIGTERM.

A line is `W<ID> <SEQ:08d> <FILLER>`, FILLER being 8 to 167 of [a-z0-9]
whose length depends on ID and SEQ: pidbench/measures/logs.py checks each
line it gets back against the one written.
"""

from __future__ import annotations

import os
import select
import signal
import sys

FILLER = "abcdefghijklmnopqrstuvwxyz0123456789" * 5
LINGER = 600.0


def line(writer: int, seq: int) -> bytes:
    return f"W{writer} {seq:08d} {FILLER[: (seq * 37 + writer * 11) % 160 + 8]}\n".encode()


def payload(writer: int, mib: int) -> tuple[bytes, int]:
    """At least MIB MiB of whole lines, and how many."""
    lines = []
    size = seq = 0
    while size < mib * 1024 * 1024:
        lines.append(line(writer, seq))
        size += len(lines[-1])
        seq += 1
    return b"".join(lines), seq


def main(argv: list[str]) -> int:
    channel, go, writer, mib, chunk = argv[1], argv[2], int(argv[3]), int(argv[4]), int(argv[5])
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    data, count = payload(writer, mib)  # made before the start: only writing is timed
    go_fd = os.open(go, os.O_RDONLY | os.O_NONBLOCK)
    report = os.open(channel, os.O_WRONLY)
    os.write(report, f"ready {writer}\n".encode())
    poller = select.poll()
    poller.register(go_fd, select.POLLIN | select.POLLHUP)
    poller.poll()  # the bench opened GO for writing and closed it: everyone goes
    view = memoryview(data)
    done = 0
    while done < len(data):
        done += os.write(1, view[done : done + chunk])
    # One small write, which a pipe never splits: found even where other
    # writers' lines were cut into each other (no relay).
    os.write(1, f"#END {writer} {count}#\n".encode())
    signal.sigtimedwait({signal.SIGTERM}, LINGER)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
