"""A service for the supervision benchmarks: it starts, maybe listens, and
stops when told to.

    service.py FIFO NAME [--port P] [--deps P1,P2] [--term-delay S]

Writes `EVENT NAME NS [INFO]` lines to FIFO (NS: time.monotonic_ns()):

    up NAME NS EARLY   started; EARLY is how many --deps ports did not answer
                       yet (it started before what it is after was ready)
    ready NAME NS      listening on 127.0.0.1:P (--port); if BENCH_NOTIFY_FD
                       is set, a newline went to that fd too (s6's readiness)
    term NAME NS       got SIGTERM (or SIGINT); it exits 0 --term-delay
                       seconds later (default at once), through os._exit:
                       no interpreter teardown

SIGTERM and SIGINT are blocked and taken with sigtimedwait, so the report
is written before anything else can happen. Exits after an hour anyway.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time

LIFETIME = 3600.0
STOP = {signal.SIGTERM, signal.SIGINT}


def answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def main(argv: list[str]) -> int:
    fifo, name = argv[1], argv[2]
    options = dict(zip(argv[3::2], argv[4::2], strict=True))
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP)
    report = os.open(fifo, os.O_WRONLY)

    def say(event: str, info: str = "") -> None:
        line = f"{event} {name} {time.monotonic_ns()} {info}".rstrip()
        os.write(report, line.encode() + b"\n")

    deps = [int(p) for p in options.get("--deps", "").split(",") if p]
    say("up", str(sum(not answers(p) for p in deps)))
    listener = None
    if "--port" in options:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", int(options["--port"])))
        listener.listen(16)
        say("ready")
        notify = os.environ.get("BENCH_NOTIFY_FD")
        if notify:
            os.write(int(notify), b"\n")
            os.close(int(notify))
    if signal.sigtimedwait(STOP, LIFETIME) is None:
        return 0
    time.sleep(float(options.get("--term-delay", "0")))
    say("term")
    os._exit(0)  # prompt: no interpreter teardown, which would be the child's time, not the init's


if __name__ == "__main__":
    sys.exit(main(sys.argv))
