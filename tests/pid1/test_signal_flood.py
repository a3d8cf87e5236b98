"""Signal floods: a child's exit is noticed whatever arrives meanwhile.

CPython's signal handler writes one byte per delivery to the wakeup pipe and
drops it silently when the pipe is full. A flood of real-time signals fills
it; the SIGCHLD byte of a child killed meanwhile used to be lost, and pidone
never reaped it (run) or never exited (single). pidone reaps on every
wakeup, so neither depends on that byte.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers.running import PYTHON, Init, children_of, helper, proc_state, wait_for
from tests.helpers.stack import Stack

FLOOD = helper("flood.py")
RT = int(signal.SIGRTMIN + 3)
EXIT_ON = int(signal.SIGUSR2)
FLOODERS = 2
REACT = 0.1  # seconds after the flood's end by which the exit must be noticed


def start_flood(target: int, seconds: float) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [*FLOOD, "send", str(target), str(RT), str(seconds)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(FLOODERS)
    ]


def end_of(flood: list[subprocess.Popen[str]]) -> tuple[float, int]:
    """(when the last flooder finished, signals sent in all)."""
    sent = sum(int(p.communicate(timeout=60)[0]) for p in flood)
    return time.monotonic(), sent


def when_gone(pid: int, timeout: float) -> list[float]:
    """Starts watching /proc/PID; the list gets the time it vanished (reaped)."""
    gone: list[float] = []

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        if not Path(f"/proc/{pid}").exists():
            gone.append(time.monotonic())

    threading.Thread(target=watch, daemon=True).start()
    return gone


def test_signal_flood_does_not_hide_the_childs_exit_in_single_mode(mode: str) -> None:
    with Init(mode, ["--", *FLOOD, "child"]) as init:
        assert init.readline().startswith("up ")
        (child,) = children_of(init.pid)
        exited: list[float] = []

        def wait() -> None:
            init.proc.wait()
            exited.append(time.monotonic())

        waiter = threading.Thread(target=wait)
        waiter.start()
        flood = start_flood(init.pid, 3.0)
        time.sleep(0.5)  # the pipe fills in a few milliseconds
        killed = time.monotonic()
        os.kill(child, signal.SIGKILL)
        flood_end, sent = end_of(flood)
        waiter.join(timeout=20)
        assert exited, "pidone never exited after its child was killed"
        assert init.proc.returncode == 128 + signal.SIGKILL
    print(f"\n{mode}: {sent} signals sent; exit {exited[0] - killed:.3f} s after the kill,"
          f" {exited[0] - flood_end:+.3f} s from the flood's end")  # fmt: skip
    assert exited[0] - flood_end < REACT
    # ... and not only because the flood ended: it was to go on 2.5 s more
    assert exited[0] - killed < 2.0


def test_signal_flood_does_not_leave_a_killed_process_a_zombie(mode: str, tmp_path: Path) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[process.sit]
command = "{PYTHON} {FLOOD[1]} child"
""")
        wait_for(lambda: stack.stdout_so_far().count("| up ") == 1, what="sit up")
        child = stack.host_pid_of("flood.py")
        flood = start_flood(stack.init.pid, 1.5)
        time.sleep(0.5)
        gone = when_gone(child, timeout=10)
        killed = time.monotonic()
        os.kill(child, signal.SIGKILL)
        flood_end, sent = end_of(flood)
        wait_for(lambda: bool(gone), timeout=5, what=f"{child} reaped")
        reaped = gone[0]
        # ... and restarted, as any exit would be
        wait_for(lambda: stack.stdout_so_far().count("| up ") == 2, what="sit restarted")
        zombies = [p for p in children_of(stack.init.pid) if proc_state(p) == "Z"]
        assert zombies == []
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
    print(f"\n{mode}: {sent} signals sent; reaped within {reaped - killed:.3f} s of the kill,"
          f" {reaped - flood_end:+.3f} s from the flood's end")  # fmt: skip
    assert reaped - flood_end < REACT


BURST = 70_000  # more than the 65,536 bytes of the wakeup pipe pidone used to count them in


def burst_count(stdout_so_far: Callable[[], bytes]) -> int:
    return stdout_so_far().count(f"SIG {RT} ".encode())


def test_realtime_burst_beyond_a_pipe_full_is_not_merged_in_single_mode(mode: str) -> None:
    with Init(mode, ["--", *helper("sigrecorder.py"), "--exit-on", str(EXIT_ON)]) as init:
        assert init.readline().startswith("READY ")
        out: list[bytes] = []
        assert init.proc.stdout is not None
        reader = threading.Thread(target=read_all, args=(init.proc.stdout.fileno(), out))
        reader.start()
        for _ in range(BURST):
            init.signal(RT)
        wait_for(lambda: burst_count(lambda: b"".join(out)) >= BURST, timeout=60, what="the burst")
        # only now: a standard signal overtakes queued real-time ones
        init.signal(EXIT_ON)
        assert init.wait() == 0
        reader.join(timeout=10)
    assert burst_count(lambda: b"".join(out)) == BURST


def test_realtime_burst_beyond_a_pipe_full_is_not_merged_in_run_mode(
    mode: str, tmp_path: Path
) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[process.rec]
command = "{PYTHON} {helper("sigrecorder.py")[1]} --exit-on {EXIT_ON}"
restart = "never"
""")
        wait_for(lambda: "READY" in stack.stdout_so_far(), what="the recorder")
        for _ in range(BURST):
            stack.init.signal(RT)
        got = lambda: stack.stdout_so_far().encode()  # noqa: E731
        wait_for(lambda: burst_count(got) >= BURST, timeout=60, what="the burst")
        stack.init.signal(EXIT_ON)
        assert stack.init.wait() == 0  # nothing left to run, all exited 0
        out, _ = stack.output()
    assert burst_count(lambda: out.encode()) == BURST


def read_all(fd: int, into: list[bytes]) -> None:
    while chunk := os.read(fd, 1 << 20):
        into.append(chunk)
