"""Signal floods for tests/pid1/test_signal_flood.py.

flood.py send PID SIGNUM SECONDS   send SIGNUM to PID as fast as we can for
                                   SECONDS (or until PID is gone); print the
                                   count sent
flood.py child                     ignore every real-time signal, print
                                   `up <pid>`, sleep until killed
"""

from __future__ import annotations

import os
import signal
import sys
import time


def send(pid: int, signum: int, seconds: float) -> None:
    sent = 0
    deadline = time.monotonic() + seconds
    kill = os.kill
    try:
        while time.monotonic() < deadline:
            for _ in range(1000):
                kill(pid, signum)
            sent += 1000
    except ProcessLookupError:
        pass
    print(sent, flush=True)


def child() -> None:
    for signum in range(signal.SIGRTMIN, signal.SIGRTMAX + 1):
        signal.signal(signum, signal.SIG_IGN)
    print(f"up {os.getpid()}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    else:
        child()
