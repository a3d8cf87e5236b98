"""OOM kills for real, as PID 1 and as a subreaper: a process in a memory
cgroup with a small limit (made by the test, removed after it) touches memory
until the kernel's OOM killer ends it. pidone says so in its exit line, in
`ctl status` and in pidone_process_oom_kills_total; a plain `kill -9` of the
same process is a SIGKILL, not an OOM kill. Both layouts: the process moves
itself into a cgroup of its own, or it shares pidone's (the container's)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from pidone.system.cgroup import parse_mounts, parse_oom_kills
from tests.helpers.running import missing_privilege, require_root, wait_for
from tests.helpers.stack import Stack, free_port
from tests.pid1.test_control import ctl, metrics

MIB = 1 << 20


@contextlib.contextmanager
def memory_cgroup(limit: int) -> Iterator[tuple[Path, str]]:
    """A memory cgroup of the test's own (cgroup v1's memory hierarchy, else
    v2) limited to `limit` bytes with no swap: (its directory, the file of its
    oom_kill counter). Removed afterwards, once its processes are gone."""
    require_root()
    memory, unified = parse_mounts(Path("/proc/self/mountinfo").read_text())
    name = f"pidone-test-oom-{os.getpid()}-{time.monotonic_ns()}"
    if memory is not None:
        cgroup, counter = Path(memory[1]) / name, "memory.oom_control"
        limits = {"memory.limit_in_bytes": limit, "memory.memsw.limit_in_bytes": limit}
    elif unified is not None:
        cgroup, counter = Path(unified[1]) / name, "memory.events"
        limits = {"memory.max": limit, "memory.swap.max": 0}
    else:
        missing_privilege("no memory cgroup is mounted here")
        raise AssertionError("unreachable")
    try:
        cgroup.mkdir()
    except OSError as exc:
        missing_privilege(f"cannot make a memory cgroup {cgroup}: {exc}")
    try:
        for key, value in limits.items():
            if key == next(iter(limits)) or (cgroup / key).exists():  # memsw: swap accounting
                (cgroup / key).write_text(str(value))
        yield cgroup, counter
    finally:

        def removed() -> bool:
            try:
                cgroup.rmdir()
            except FileNotFoundError:
                return True
            except OSError:  # EBUSY: its last processes are still exiting
                return False
            return True

        wait_for(removed, timeout=20, what=f"{cgroup} removed")


def oom_kills_of(cgroup: Path, counter: str) -> int | None:
    return parse_oom_kills((cgroup / counter).read_text())


def hog_said(stack: Stack) -> list[str]:
    """hog's lines so far in pidone's output (`hog    | ready`), pidone's and its
    own; its error lines (an exit) on stderr, after those on stdout."""
    output = stack.stdout_so_far() + stack.stderr_so_far()
    return re.findall(r"^hog +\| (.*)$", output, re.MULTILINE)


def readies(stack: Stack) -> int:
    return hog_said(stack).count("ready")


def exit_lines(stack: Stack) -> list[str]:
    return [line for line in hog_said(stack) if line.startswith("exited with ")]


def check_oom_then_kill_9(stack: Stack, port: int, go: Path) -> None:
    """hog is up and ready: let it eat until the OOM killer ends it, then
    kill -9 its next instance. What pidone says about each."""
    wait_for(lambda: readies(stack) == 1, what="hog ready")
    go.touch()
    wait_for(lambda: len(exit_lines(stack)) == 1, timeout=30, what="hog OOM-killed")
    assert exit_lines(stack) == ["exited with signal SIGKILL, killed by the OOM killer"]
    assert not any("not killed after" in e for e in stack.events())
    status = ctl(stack, "status")
    assert status.returncode == 0, status.stderr
    assert "killed by the OOM killer (SIGKILL)" in status.stdout, status.stdout
    assert metrics(port)["pidone_process_oom_kills_total", (("process", "hog"),)] == 1

    wait_for(lambda: readies(stack) == 2, what="hog ready again")
    os.kill(stack.host_pid("hog"), signal.SIGKILL)
    wait_for(lambda: len(exit_lines(stack)) == 2, what="hog's kill -9")
    assert exit_lines(stack)[1] == "exited with signal SIGKILL"
    status = ctl(stack, "status")
    assert "OOM" not in status.stdout and "SIGKILL, " in status.stdout, status.stdout
    assert metrics(port)["pidone_process_oom_kills_total", (("process", "hog"),)] == 1
    wait_for(lambda: readies(stack) == 3, what="hog ready a 3rd time")
    stack.init.signal(signal.SIGTERM)
    assert stack.init.wait() == 0


def config(stack: Stack, port: int, command: str) -> str:
    return f"""
[pidone]
metrics = "127.0.0.1:{port}"
[process.hog]
command = "{command}"
ready = "notify"
"""


def test_a_process_the_oom_killer_ends_in_its_own_cgroup_is_reported_and_a_kill_9_is_not(
    mode: str, tmp_path: Path
) -> None:
    go, port = tmp_path / "go", free_port()
    with memory_cgroup(32 * MIB) as (cgroup, counter), Stack(mode, tmp_path) as stack:
        # it moves itself into the cgroup, then execs the service: pidone
        # learns its cgroup again when it is ready
        hog = stack.svc("hog", "--notify", "--eat-memory", str(go))
        command = f"sh -c 'echo $$ > {cgroup}/cgroup.procs && exec {hog}'"
        stack.start(config(stack, port, command))
        check_oom_then_kill_9(stack, port, go)
        assert oom_kills_of(cgroup, counter) == 1  # the kernel's own count: one, hog's


def test_an_oom_kill_in_pidones_own_cgroup_is_given_to_the_process_it_killed(
    mode: str, tmp_path: Path
) -> None:
    # pidone and hog share one limited cgroup (a container's): the counter
    # rising across hog's SIGKILL death says it was the OOM killer's. The
    # limit leaves room for pidone; the killer picks the largest, hog.
    go, port = tmp_path / "go", free_port()
    with memory_cgroup(160 * MIB) as (cgroup, counter), Stack(mode, tmp_path) as stack:
        enter = ["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "sh"]
        hog = stack.svc("hog", "--notify", "--eat-memory", str(go))
        stack.start(config(stack, port, hog), prefix=enter)
        check_oom_then_kill_9(stack, port, go)
        assert oom_kills_of(cgroup, counter) == 1
