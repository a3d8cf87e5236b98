"""Orphan storm: make COUNT zombies that only the init can reap.

    orphan_storm.py timed FIFO COUNT TIMEOUT [STALL]
    orphan_storm.py held FIFO COUNT

Each of COUNT intermediate children forks a grandchild and exits at once.
We reap the intermediates ourselves, so the grandchildren, which exit at
once too, become zombies of PID 1 (the init).

timed: as soon as PID 1 sleeps, storm; count zombies by scanning this
namespace's /proc, and write one JSON line to FIFO (times in ms from the
first fork):

    storm_ms  the last fork is done
    clear_ms  no zombie is left (null: some were still there after TIMEOUT s,
              or none was reaped for STALL s: an init that does not reap)
    peak      the most zombies seen at once
    leaked    zombies left when we stopped looking
    failed    forks that failed

then wait to be killed (a supervisor would start another storm).

held: write `ready`, storm when SIGUSR1 arrives (the benchmark has stopped
the init by then, so the zombies pile up), write `done FAILED`, then wait
to be killed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

SCAN_EVERY = 100  # forks between zombie counts during a timed storm: scans cost time
WAIT_LIMIT = 120.0  # seconds held mode waits for the benchmark, at most


def count_zombies() -> int:
    zombies = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{name}/stat", os.O_RDONLY)
            try:
                data = os.read(fd, 1024)
            finally:
                os.close(fd)
        except OSError:
            continue  # reaped between the listing and the read
        state_at = data.rfind(b")") + 2  # the name may hold ')' itself
        if data[state_at : state_at + 1] == b"Z":
            zombies += 1
    return zombies


def wait_for_init_asleep(timeout: float = 5.0) -> None:
    """Start the storm only once PID 1 has settled into its loop, so its own
    start-up does not count as reaping time."""
    deadline = time.monotonic() + timeout
    asleep = 0
    while asleep < 3 and time.monotonic() < deadline:
        with open("/proc/1/stat", "rb") as f:
            data = f.read()
        asleep = asleep + 1 if data[data.rfind(b")") + 2 :].startswith(b"S") else 0
        time.sleep(0.005)


def orphan_one() -> bool:
    """Fork an intermediate that orphans one grandchild, which exits at once."""
    try:
        pid = os.fork()
    except OSError:
        return False
    if pid == 0:
        try:
            if os.fork() == 0:
                os._exit(0)
        except OSError:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return status == 0


def timed(count: int, timeout: float, stall: float) -> dict[str, float | int | None]:
    wait_for_init_asleep()
    start = time.monotonic_ns()
    peak = failed = 0
    for i in range(1, count + 1):
        failed += not orphan_one()
        if i % SCAN_EVERY == 0:
            peak = max(peak, count_zombies())
    forked = time.monotonic_ns()
    deadline = time.monotonic() + timeout
    cleared: int | None = None
    fewest, fewest_at = count + 1, time.monotonic()
    while True:
        zombies = count_zombies()
        peak = max(peak, zombies)
        now = time.monotonic()
        if zombies == 0:
            cleared = time.monotonic_ns()
            break
        if zombies < fewest:
            fewest, fewest_at = zombies, now
        if now > deadline or now - fewest_at > stall:
            break
        time.sleep(0.0002)
    return {
        "storm_ms": (forked - start) / 1e6,
        "clear_ms": None if cleared is None else (cleared - start) / 1e6,
        "peak": peak,
        "leaked": zombies,
        "failed": failed,
    }


def held(report: int, count: int) -> int:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    os.write(report, b"ready\n")
    if signal.sigtimedwait({signal.SIGUSR1}, WAIT_LIMIT) is None:
        return 1
    failed = sum(not orphan_one() for _ in range(count))
    os.write(report, f"done {failed}\n".encode())
    time.sleep(WAIT_LIMIT)
    return 0


def main(argv: list[str]) -> int:
    mode, fifo, count = argv[1], argv[2], int(argv[3])
    report = os.open(fifo, os.O_WRONLY)
    if mode == "held":
        return held(report, count)
    timeout = float(argv[4])
    result = timed(count, timeout, float(argv[5]) if len(argv) > 5 else timeout)
    os.write(report, (json.dumps(result) + "\n").encode())
    time.sleep(WAIT_LIMIT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
