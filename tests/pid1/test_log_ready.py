"""ready = "log:REGEX", for real: pidone (PID 1, and a subreaper) reads a
process's output and calls it ready on its line, in whichever write the
line ends; a process that never writes it (whatever else it writes: 64 KiB
hostile lines) stays starting, and pidone stays responsive."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from tests.helpers.running import PYTHON, wait_for
from tests.helpers.stack import Stack, before

WRITER = r"""
import os, sys, time
journal, how = sys.argv[1], sys.argv[2]
def note(event):
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND)
    os.write(fd, f"{time.monotonic_ns()} logw {event}\n".encode())
    os.close(fd)
note(f"up {os.getpid()}")
if how == "split":  # the ready line in two writes, half a second apart
    os.write(2, b"booting\nworker@ho")
    time.sleep(0.5)
    note("rest")
    os.write(2, b"st ready.\n")
else:  # hostile: 64 KiB lines that backtrack, and a line that almost matches
    for _ in range(64):
        os.write(1, b"@" * 65535 + b"\n")
    os.write(1, b"worker@host ready!\n")
    note("wrote")
time.sleep(1000)
"""


def config(stack: Stack, tmp_path: Path, how: str) -> str:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return f"""
[process.logw]
command = "{PYTHON} {script} {stack.journal_path} {how}"
ready = 'log:@\\S+ ready\\.$'
[process.dep]
command = "{stack.svc("dep")}"
after = ["logw"]
"""


def ready_lines(stack: Stack) -> list[str]:
    return re.findall(r"^logw +\| ready$", stack.stdout_so_far(), re.M)


def test_a_ready_line_split_across_writes_makes_it_ready_once(mode: str, tmp_path: Path) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(config(stack, tmp_path, "split"))
        events = stack.wait_for("dep up")
        assert before(events, "logw rest", "dep up")  # not on the line's first half
        assert len(ready_lines(stack)) == 1
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0


def test_a_process_that_never_prints_its_line_stays_starting_through_64_kib_lines(
    mode: str, tmp_path: Path
) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(config(stack, tmp_path, "never"))
        stack.wait_for("logw wrote")
        time.sleep(1.5)  # well past the 1 s settle time it would have had without a check
        assert not any(e.startswith("dep ") for e in stack.events())
        assert ready_lines(stack) == []
        # relayed as ever, not matched: "wrote" says it is in the pipe, not relayed yet
        line = re.compile(r"^logw +\| worker@host ready!$", re.M)
        wait_for(lambda: len(line.findall(stack.stdout_so_far())) == 1, what="the line relayed")
        assert ready_lines(stack) == []
        started = time.monotonic()
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
        assert time.monotonic() - started < 10  # it reacted: the loop was not stalled
