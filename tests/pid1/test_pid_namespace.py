"""`pid_namespace = true`: the process is PID 1 of a PID namespace of its
own and sees only its own processes (its own /proc); pidone, as PID 1 and
as a subreaper, still reaps it, restarts it and stops it, and its own
mounts are what they were."""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers.running import PIDONE, children_of, descendants, wait_for
from tests.helpers.stack import Stack
from tests.helpers.users import APP, as_user
from tests.pid1.test_control import ctl

# `echo` and the glob are the shell's own: what /proc lists is the shell alone
LOOK = "echo NS $$ /proc/[0-9]*"


def ns_pids(pid: int) -> list[int]:
    """NSpid of pid: its pid in each namespace, outermost first."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError("no NSpid")


def proc_mounts(mountinfo: str) -> list[str]:
    """The lines of a mountinfo that are proc mounts."""
    return [line for line in mountinfo.splitlines() if " - proc " in line]


def status_pid(stack: Stack, name: str) -> int:
    result = ctl(stack, "status", "--json")
    assert result.returncode == 0, result
    (proc,) = [p for p in json.loads(result.stdout)["processes"] if p["name"] == name]
    assert isinstance(proc["pid"], int)
    return proc["pid"]


def host_pid(stack: Stack, pidone_view: int) -> int:
    """Our pid of the process pidone calls `pidone_view`."""
    if stack.mode != "pid1":
        return pidone_view
    for pid in descendants(stack.init.pid):
        pids = ns_pids(pid)
        if len(pids) >= 2 and pids[1] == pidone_view:
            return pid
    raise AssertionError(f"no process pidone calls {pidone_view}")


def test_pid_namespace_process_is_pid_1_sees_only_itself_and_is_restarted_after_a_crash(
    mode: str, shared: Path
) -> None:
    before, marker = shared / "mounts.before", shared / "crashed"
    marker.unlink(missing_ok=True)
    # Once it crashes (status 3), then stays: a shell with a handler for
    # SIGTERM, so that, as its namespace's init, it gets the stop signal.
    script = f"{LOOK}; [ -e {marker} ] || {{ : > {marker}; exit 3; }}; "
    script += 'trap "exit 0" TERM; sleep 1000 & wait'
    with Stack(mode, shared) as stack:
        stack.start(f"""
[pidone]
settle_time = 0.2
[process.mounts]
command = "cat /proc/self/mountinfo > {before}"
restart = "never"
[process.ns]
command = '''sh -c '{script}' '''
pid_namespace = true
after = ["mounts"]
[process.plain]
command = "sleep 1000"
after = ["ns"]
""")
        wait_for(lambda: stack.stdout_so_far().count("NS 1 /proc/1\n") == 2, what="two runs")
        out = stack.stdout_so_far()
        assert re.search(r"^ns\s+\| exited with status 3$", stack.stderr_so_far(), re.M)
        assert re.findall(r"^ns\s+\| NS (.*)$", out, re.M) == ["1 /proc/1", "1 /proc/1"], out
        wait_for(lambda: re.search(r"^ns\s+\| ready$", stack.stdout_so_far(), re.M) is not None)
        pid = status_pid(stack, "ns")
        outer = host_pid(stack, pid)
        assert ns_pids(outer)[-1] == 1  # PID 1 inside, `pid` to pidone: its direct child
        assert outer in children_of(stack.init.pid)
        # its own mount namespace; pidone's mounts untouched (nothing leaked)
        assert os.readlink(f"/proc/{outer}/ns/mnt") != os.readlink(f"/proc/{stack.init.pid}/ns/mnt")
        # (proc mounts only: other tests' containers mount and unmount overlays meanwhile)
        now = proc_mounts(Path(f"/proc/{stack.init.pid}/mountinfo").read_text())
        assert now == proc_mounts(before.read_text()) and now, now
        # pidone's next forks are in its own namespace again (setns back after the fork)
        wait_for(lambda: re.search(r"^plain\s+\| ready$", stack.stdout_so_far(), re.M) is not None)
        plain = host_pid(stack, status_pid(stack, "plain"))
        assert os.readlink(f"/proc/{plain}/ns/pid") == os.readlink(f"/proc/{stack.init.pid}/ns/pid")
        assert os.readlink(f"/proc/{outer}/ns/pid") != os.readlink(f"/proc/{stack.init.pid}/ns/pid")
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait(timeout=15) == 0
        _, err = stack.output()
        assert "internal error" not in err


def test_pid_namespace_init_ignoring_the_stop_signal_is_killed_with_every_process_of_it(
    mode: str, shared: Path
) -> None:
    # sh has no handler for SIGTERM: as its namespace's init the kernel drops
    # it, so the stop ends in SIGKILL at stop_timeout, and that ends the
    # whole namespace, a child in a session of its own (setsid) included.
    script = "setsid sleep 1000 & sleep 1000 & echo NS $$ /proc/[0-9]*; wait"
    with Stack(mode, shared) as stack:
        stack.start(f"""
[pidone]
settle_time = 0.2
[process.ns]
command = '''sh -c '{script}' '''
pid_namespace = true
stop_timeout = 1
user = "{APP}"
""")
        wait_for(lambda: re.search(r"^ns\s+\| ready$", stack.stdout_so_far(), re.M) is not None)
        outer = host_pid(stack, status_pid(stack, "ns"))
        wait_for(lambda: len([outer, *descendants(outer)]) == 3, what="both sleeps")
        members = [outer, *descendants(outer)]
        assert ns_pids(outer)[-1] == 1
        # the mounts were made before the user switch: it runs as APP all the same
        assert all(Path(f"/proc/{p}").stat().st_uid == pwd.getpwnam(APP).pw_uid for p in members)
        started = time.monotonic()
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait(timeout=15) == 1  # killed after its stop timeout: unclean
        assert time.monotonic() - started >= 1.0
        _, err = stack.output()
        assert re.search(r"^ns\s+\| stop timeout: SIGKILL to group \d+$", err, re.M), err
        assert re.search(
            r"^ns\s+\| it is PID 1 of its namespace and has no handler for SIGTERM, so the "
            r"kernel drops it: SIGKILL after stop_timeout \(1 s\)$",
            err,
            re.M,
        ), err
        assert not [p for p in members if Path(f"/proc/{p}").exists()]


def test_pid_namespace_without_root_is_a_config_error(shared: Path) -> None:
    (shared / "pidone.toml").write_text(
        '[pidone]\ncontrol_socket = "/nonexistent/c.sock"\n'
        '[process.a]\ncommand = "sleep 1"\npid_namespace = true\n'
    )
    result = as_user(APP, [PIDONE, "check", "-c", str(shared / "pidone.toml")])
    assert result.returncode == 2, result
    assert "pidone.toml:5: [process.a] pid_namespace: a PID namespace needs root" in result.stderr
    as_root = subprocess.run(
        [PIDONE, "check", "-c", str(shared / "pidone.toml")], capture_output=True, text=True
    )
    assert as_root.returncode == 0, as_root
