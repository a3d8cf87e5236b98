"""A supervised program running as its own user writes what it likes into its
pidfile: pidone (root, as PID 1 of a fresh namespace or as a subreaper)
must follow only a pid that really is that program's (system.unfollowable),
read the file without blocking and bounded, refuse anything else once, and
still stop everything when asked."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from tests.helpers.running import PYTHON, descendants, helper, proc_state, wait_for
from tests.helpers.stack import Stack
from tests.helpers.users import APP
from tests.pid1.test_control import ctl

RECORDER = " ".join(helper("sigrecorder.py"))


def liar(stack: Stack, script: str, *, extra: str = "") -> str:
    """A process running as APP whose launcher runs `script` (sh) and exits:
    what it leaves in its pidfile is all pidone has to go on."""
    pidfile = stack.dir / "liar.pid"
    pidfile.unlink(missing_ok=True)  # what an earlier test left would be read first
    return f"""
[pidone]
settle_time = 0.2
{extra}
[process.liar]
command = '''sh -c '{script.format(pidfile=pidfile)}' '''
user = "{APP}"
pidfile = "{pidfile}"
stop_timeout = 1
"""


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, USER_HZ


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def refusals(stack: Stack) -> list[str]:
    return re.findall(r"^liar\s+\| pidfile .* refused: (.*)$", stack.stderr_so_far(), re.M)


def refused_once(stack: Stack, reason: str) -> None:
    """Refused, with `reason`, and logged once though it is looked at again
    (once a second: loop.PIDFILE_RETRY)."""
    wait_for(lambda: refusals(stack), what="the pidfile to be refused")
    time.sleep(1.3)
    found = refusals(stack)
    assert len(found) == 1, found
    assert reason in found[0], found


def stops_in_time(stack: Stack) -> None:
    """SIGTERM ends pidone: the pid-less liar is given up at its stop timeout."""
    started = time.monotonic()
    stack.init.signal(signal.SIGTERM)
    assert stack.init.wait(timeout=15) == 1  # liar was never stopped cleanly
    assert time.monotonic() - started < 8  # stop_timeout 1 s, no hang
    _, err = stack.output()
    assert re.search(r"^liar\s+\| stop timeout: no pid from its pidfile$", err, re.M), err


def zombies(pid: int) -> list[int]:
    return [child for child in descendants(pid) if proc_state(child) == "Z"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("1", "pid 1 is the init of the PID namespace"),
        ("$PPID", "is pidone itself"),  # the shell expands it: its parent, pidone
        ("2147483648", "pid 2147483648 is out of range"),
    ],
    ids=["pid_1", "pidones_own_pid", "pid_2147483648"],
)
def test_pidfile_naming_pid_1_pidone_or_an_impossible_pid_is_refused(
    mode: str, shared: Path, content: str, reason: str
) -> None:
    if mode == "pid1" and content == "$PPID":
        reason = "pid 1 is the init"  # pidone is pid 1 there
    with Stack(mode, shared) as stack:
        stack.start(liar(stack, f"echo {content} > {{pidfile}}"))
        refused_once(stack, reason)
        spent = cpu_seconds(stack.init.pid)
        stack.init.signal(signal.SIGHUP)  # a reload goes to main pids: it has none
        signalled = ctl(stack, "signal", "HUP", "liar")
        assert signalled.returncode == 1
        assert "liar: not running yet: waiting for its pidfile" in signalled.stderr
        time.sleep(1.0)
        # No reload storm (pidone signalling itself), no OverflowError at each turn
        assert cpu_seconds(stack.init.pid) - spent < 0.5
        assert "internal error" not in stack.stderr_so_far()
        assert not re.search(r"^liar\s+\| reload", stack.stdout_so_far(), re.M)
        status = ctl(stack, "status", "--json")
        assert status.returncode == 0 and '"pid": null' in status.stdout, status.stdout
        stops_in_time(stack)


def test_pidfile_naming_another_users_process_is_refused_and_it_is_not_signalled(
    mode: str, shared: Path
) -> None:
    victim_pid = shared / "victim.pid"
    script = f"while [ ! -s {victim_pid} ]; do sleep 0.05; done; cat {victim_pid} > {{pidfile}}"
    with Stack(mode, shared) as stack:
        stack.start(
            liar(stack, script)
            + f"""
[process.victim]
command = '''sh -c "{RECORDER} & echo \\$! > {victim_pid}; wait" '''
user = "nobody"
"""
        )
        refused_once(stack, "is neither a descendant of pid")
        # the victim's recorder is up before anything is sent: else a signal
        # that did reach it would not be recorded, and "never signalled" lies
        ready = re.compile(r"^victim\s+\| READY \d+", re.M)
        wait_for(lambda: ready.search(stack.stdout_so_far()), what="the victim's recorder")
        for command in (["signal", "USR1", "liar"], ["reload", "liar"]):
            result = ctl(stack, *command)
            assert result.returncode == 1, result
            assert "not running yet" in result.stderr
        time.sleep(0.3)
        out = stack.stdout_so_far()
        assert not re.search(r"^victim\s+\| SIG ", out, re.M), out  # never signalled
        recorder = int(victim_pid.read_text())
        assert f"following pid {recorder}" not in out
        stops_in_time(stack)


def test_pidfile_that_is_a_fifo_does_not_block_the_loop(mode: str, shared: Path) -> None:
    with Stack(mode, shared) as stack:
        stack.start(liar(stack, "mkfifo {pidfile}"))
        refused_once(stack, "is not a regular file")
        started = time.monotonic()
        status = ctl(stack, "status")  # the loop answers
        assert status.returncode == 0 and time.monotonic() - started < 5
        assert zombies(stack.init.pid) == []  # and it reaped the launcher
        stops_in_time(stack)


def test_pidfile_that_is_a_symlink_to_dev_zero_is_not_read(mode: str, shared: Path) -> None:
    with Stack(mode, shared) as stack:
        stack.start(liar(stack, "ln -s /dev/zero {pidfile}"))
        refused_once(stack, "is a symlink")
        assert rss_kib(stack.init.pid) < 64 * 1024  # 18 MiB measured; read until OOM before
        stops_in_time(stack)


def test_pidfile_longer_than_64_bytes_or_not_digits_is_refused(mode: str, shared: Path) -> None:
    # "¹⁵" passes str.isdigit(); a long file is not a pidfile, whatever it holds
    with Stack(mode, shared) as stack:
        stack.start(liar(stack, "printf %070d 7 > {pidfile}"))
        refused_once(stack, "is longer than 64 bytes")
        stops_in_time(stack)
    with Stack(mode, shared) as stack:
        stack.start(liar(stack, "printf \\\\302\\\\271\\\\342\\\\201\\\\265 > {pidfile}"))
        refused_once(stack, "not a pid")
        stops_in_time(stack)


DOUBLE_FORK = """
import os, sys, time
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
with open(sys.argv[1], "w") as f:
    f.write(f"{os.getpid()}\\n")
print("daemon up", flush=True)
time.sleep(1000)
"""


@pytest.mark.parametrize("through", ["exec", "shell"])
def test_a_double_forking_daemon_of_its_own_user_is_adopted_and_stopped(
    mode: str, shared: Path, through: str
) -> None:
    # The daemon left its launcher's group and session: it is followed because
    # it is pidone's child now, runs the launcher's program, as the same user.
    # Through the shell (a `$` in the command), the launcher is /bin/sh until
    # it execs the program: the program is still the one the daemon must run.
    script = shared / "daemon.py"
    script.write_text(DOUBLE_FORK)
    pidfile = shared / "d.pid"
    argument = str(pidfile) if through == "exec" else "$DAEMON_PIDFILE"
    with Stack(mode, shared) as stack:
        stack.start(f"""
[process.d]
command = "{PYTHON} {script} {argument}"
environment = {{ DAEMON_PIDFILE = "{pidfile}" }}
user = "{APP}"
pidfile = "{pidfile}"
stop_timeout = 5
""")
        wait_for(lambda: "following pid" in stack.stdout_so_far(), what="the daemon followed")
        ns_pid = int(pidfile.read_text())
        following = rf"^d\s+\| following pid {ns_pid} from {re.escape(str(pidfile))}$"
        assert re.search(following, stack.stdout_so_far(), re.M)
        started = time.monotonic()
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0  # its SIGTERM reached it: a clean stop
        assert time.monotonic() - started < 5
        _, err = stack.output()
    assert "refused" not in err


def test_a_refused_pidfile_is_looked_at_again_and_followed_once_it_is_right(
    mode: str, tmp_path: Path
) -> None:
    pidfile = tmp_path / "d.pid"
    with Stack(mode, tmp_path) as stack:
        script = f"{stack.svc('d')} & echo 1 > {pidfile}; sleep 1.5; echo $! > {pidfile}"
        stack.start(f"[process.d]\ncommand = '''sh -c '{script}' '''\npidfile = '{pidfile}'\n")
        wait_for(lambda: "refused" in stack.stderr_so_far(), what="the first refusal")
        wait_for(lambda: "following pid" in stack.stdout_so_far(), what="the right pid followed")
        assert "following pid 1 " not in stack.stdout_so_far()
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0  # its stop signal reached the daemon
    assert stack.events()[-2:] == ["d term", "d exit 0"]
