"""Signal sink: timestamp every signal the init passes on.

    signal_sink.py FIFO SIGNUM...

Blocks every signal, writes `ready` to FIFO, then takes the SIGNUMs one at a
time with sigtimedwait (so none is handled asynchronously or lost on our
side) and writes `SIGNUM NS` for each, NS being time.monotonic_ns() as soon
as the wait returns. Exits after a minute without any signal.
"""

from __future__ import annotations

import os
import signal
import sys
import time

GIVE_UP_AFTER = 60.0  # seconds without a signal: the benchmark is gone


def main(argv: list[str]) -> int:
    fifo, wanted = argv[1], {signal.Signals(int(s)) for s in argv[2:]}
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    report = os.open(fifo, os.O_WRONLY)
    os.write(report, b"ready\n")
    while True:
        info = signal.sigtimedwait(wanted, GIVE_UP_AFTER)
        received = time.monotonic_ns()
        if info is None:
            return 0
        os.write(report, f"{info.si_signo} {received}\n".encode())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
