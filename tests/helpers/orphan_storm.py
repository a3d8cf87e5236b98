"""Child program: make N orphans, then wait until the init has reaped them.

Each of N intermediate children forks a grandchild and exits at once (we reap
the intermediates ourselves); the grandchildren exit immediately too, so N
zombies are reparented to the init (PID 1, or pidone as subreaper). Prints
`ZOMBIES <count>` (zombies whose parent is the init, after at most 60 s) and
`PEAK <count>`, then exits 0.
"""

from __future__ import annotations

import os
import sys
import time


def zombies_of(parent: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if fields[0] == b"Z" and int(fields[1]) == parent:
            count += 1
    return count


def main() -> None:
    n = int(sys.argv[1])
    init = os.getppid()
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            if os.fork() == 0:
                os._exit(0)
            os._exit(0)
        os.waitpid(pid, 0)
    peak = 0
    deadline = time.monotonic() + 60
    while True:
        left = zombies_of(init)
        peak = max(peak, left)
        if left == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    print(f"ZOMBIES {left}", flush=True)
    print(f"PEAK {peak}", flush=True)


if __name__ == "__main__":
    main()
