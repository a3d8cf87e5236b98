"""A configurable fake service for `pidone run` tests.

Appends `<monotonic ns> <name> <event> [detail]` lines to --journal (one
clock for every process, across PID namespaces) so tests can check order:
`up <pid>` at start, `listening` once ready, `term` on SIGTERM, `exit <code>`,
and `SIGHUP`/`SIGUSR1`/`SIGUSR2` when one of those arrives.

  --tcp PORT / --unix PATH / --http PORT / --touch PATH / --notify
                     become ready that way after --delay seconds
  --exit-after S --code N   exit N after S seconds
  --ignore-term      ignore SIGTERM (the stop timeout must SIGKILL us)
  --term-delay S     take S seconds to stop after SIGTERM
  --spam N           write N numbered lines to stdout and N to stderr at once
  --eat-memory GO    once ready, wait for the file GO; remove it, then touch
                     memory 1 MiB at a time until killed (past 4 GiB: exit 3)
  --watchdog N       send WATCHDOG=1 every WATCHDOG_USEC/3, N times (-1: for
                     ever), then `pings stopped`; first --flood N of them at once

A SIGTERM its launcher blocked (`env --block-signal=TERM`) is unblocked
after `up`: a stop sent before the handler was set still finds it.

Its threads (--http, --watchdog) block every signal, as pidone's own do: the
kernel gives a process-directed signal to any thread that does not block it,
and Python runs handlers only in the main thread. A SIGTERM sent while we are
SIGSTOPped is taken by whichever thread runs first after SIGCONT; taken by the
HTTP thread, it left the main thread asleep and "term" unsaid.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer

from pidone.system.process import start_thread


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("name")
    p.add_argument("--journal", required=True)
    p.add_argument("--tcp", type=int)
    p.add_argument("--unix")
    p.add_argument("--http", type=int)
    p.add_argument("--touch")
    p.add_argument("--notify", action="store_true")
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--exit-after", type=float)
    p.add_argument("--code", type=int, default=0)
    p.add_argument("--ignore-term", action="store_true")
    p.add_argument("--term-delay", type=float, default=0.0)
    p.add_argument("--spam", type=int, default=0)
    p.add_argument("--eat-memory")
    p.add_argument("--watchdog", type=int)
    p.add_argument("--flood", type=int, default=0)
    args = p.parse_args()

    def journal(event: str) -> None:
        line = f"{time.monotonic_ns()} {args.name} {event}\n".encode()
        fd = os.open(args.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        os.write(fd, line)
        os.close(fd)

    def on_term(signum: int, frame: object) -> None:
        journal("term")
        if args.ignore_term:
            return
        time.sleep(args.term_delay)
        journal("exit 0")
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    for other in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(other, lambda signum, frame: journal(signal.Signals(signum).name))
    journal(f"up {os.getpid()}")
    # A launcher may hold SIGTERM back until now (`env --block-signal=TERM`):
    # a stop that came before our handler then still finds it, after "up".
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    if args.watchdog is not None:
        start_thread(lambda: pings(args.watchdog, args.flood, journal), "pings")
    print(f"{args.name} is up", flush=True)
    if args.spam:
        for i in range(args.spam):
            sys.stdout.write(f"{args.name} out {i} {'x' * (i % 97)}\n")
            sys.stderr.write(f"{args.name} err {i} {'y' * (i % 89)}\n")
        sys.stdout.flush()
        sys.stderr.flush()
        journal("spammed")
    time.sleep(args.delay)
    keep: list[object] = []
    if args.tcp:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", args.tcp))
        s.listen(16)
        keep.append(s)
    if args.unix:
        u = socket.socket(socket.AF_UNIX)
        u.bind(args.unix)
        u.listen(16)
        keep.append(u)
    if args.http:

        class Ok(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a: object) -> None:
                pass

        server = HTTPServer(("127.0.0.1", args.http), Ok)
        start_thread(server.serve_forever, "http")
        keep.append(server)
    if args.touch:
        with open(args.touch, "w") as f:
            f.write("ready\n")
    if args.notify:
        addr = os.environ["NOTIFY_SOCKET"]
        n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        n.connect("\0" + addr[1:] if addr.startswith("@") else addr)
        n.send(b"READY=1\nSTATUS=serving\n")
        n.close()
    journal("listening")
    if args.eat_memory:
        while not os.path.exists(args.eat_memory):
            time.sleep(0.02)
        os.unlink(args.eat_memory)
        journal("eating memory")
        eaten = [b"\x01" * (1 << 20) for _ in range(4096)]  # written: resident, not lazy
        journal(f"not killed after {len(eaten)} MiB")
        sys.exit(3)
    if args.exit_after is not None:
        time.sleep(args.exit_after)
        journal(f"exit {args.code}")
        sys.exit(args.code)
    while True:
        time.sleep(3600)


def pings(count: int, flood: int, journal: Callable[[str], None]) -> None:
    """sd_notify's watchdog, as a service speaks it."""
    usec = int(os.environ["WATCHDOG_USEC"])
    journal(f"watchdog {usec} {os.environ.get('WATCHDOG_PID', '-')}")
    addr = os.environ["NOTIFY_SOCKET"]
    n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    n.connect("\0" + addr[1:] if addr.startswith("@") else addr)
    for _ in range(flood):
        n.send(b"WATCHDOG=1")  # blocks while pidone's queue is full
    if flood:
        journal("flooded")
    sent = 0
    while count < 0 or sent < count:
        n.send(b"WATCHDOG=1")
        sent += 1
        time.sleep(usec / 3e6)
    journal("pings stopped")


if __name__ == "__main__":
    main()
