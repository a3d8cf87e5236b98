"""Child program for signal tests: records every signal it receives.

Prints `READY <pid> <pgid>` once, then `SIG <signo> <sender pid>` for each
signal (taken with sigwaitinfo, so nothing is coalesced or lost on our side),
and exits 0 after receiving the signal given by --exit-on.

  --kill-init SIG   after READY, send SIG to pid 1 (from inside the namespace)
  --fork-peer       fork a grandchild in our process group that records too;
                    on SIGUSR2 we ask it (SIGUSR2) to print what it got
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

CATCHABLE = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}


def emit(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def peer_loop() -> None:
    got: list[int] = []
    while True:
        info = signal.sigwaitinfo(CATCHABLE)
        if info.si_signo == signal.SIGUSR2:
            emit("PEER " + ",".join(str(s) for s in got))
            os._exit(0)
        got.append(info.si_signo)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exit-on", type=int, default=int(signal.SIGTERM))
    parser.add_argument("--kill-init", type=int, default=0)
    parser.add_argument("--fork-peer", action="store_true")
    args = parser.parse_args()
    signal.pthread_sigmask(signal.SIG_BLOCK, CATCHABLE)
    peer = 0
    if args.fork_peer:
        peer = os.fork()
        if peer == 0:
            peer_loop()
    emit(f"READY {os.getpid()} {os.getpgrp()}")
    if args.kill_init:
        os.kill(1, args.kill_init)
    while True:
        info = signal.sigwaitinfo(CATCHABLE)
        if info.si_signo == signal.SIGCHLD and info.si_pid == peer:
            continue
        emit(f"SIG {info.si_signo} {info.si_pid}")
        if peer and info.si_signo == signal.SIGUSR2:
            os.kill(peer, signal.SIGUSR2)
            os.waitpid(peer, 0)
            peer = 0
        if info.si_signo == args.exit_on:
            return


if __name__ == "__main__":
    main()
