"""Single-command mode, run for real: pidone as PID 1 of a fresh PID namespace
(`unshare --pid --fork --mount-proc`) and as a subreaper that is not PID 1."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from pidone.system.signals import forwardable_signals
from tests.helpers.running import (
    PIDONE,
    PYTHON,
    Init,
    children_of,
    descendants,
    helper,
    proc_state,
    require_root,
    wait_for,
)

EXIT_ON = int(signal.SIGUSR2)


def start_recorder(mode: str, *extra: str, pidone_args: tuple[str, ...] = ()) -> Init:
    init = Init(mode, [*pidone_args, "--", *helper("sigrecorder.py"), *extra])
    line = init.readline()
    assert line.startswith("READY "), line
    return init


def received_n(init: Init, count: int) -> list[tuple[int, int]]:
    """The next `count` (signal, sender pid) pairs the recorder printed."""
    got = []
    for _ in range(count):
        kind, signo, sender = init.readline().split()
        assert kind == "SIG", (kind, signo, sender)
        got.append((int(signo), int(sender)))
    return got


def received(init: Init, until: int = EXIT_ON) -> list[tuple[int, int]]:
    """(signal, sender pid) pairs the recorder printed, up to the exit signal."""
    got = []
    while True:
        line = init.readline()
        kind, signo, sender = line.split()
        assert kind == "SIG", line
        got.append((int(signo), int(sender)))
        if int(signo) == until:
            return got


# --- exit status -----------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "expected"),
    [("exit 0", 0), ("exit 7", 7), ("exit 255", 255), ("kill -USR1 $$", 128 + 10)],
)
def test_exit_status_is_the_childs(mode: str, script: str, expected: int) -> None:
    with Init(mode, ["--", "sh", "-c", script]) as init:
        assert init.wait() == expected


def test_sigterm_ends_child_and_pidone_exits_143(mode: str) -> None:
    with Init(mode, ["--", "sleep", "1000"]) as init:
        wait_for(lambda: children_of(init.pid), what="sleep to start")
        init.signal(signal.SIGTERM)
        assert init.wait() == 128 + signal.SIGTERM


def test_command_not_found_exits_127_and_names_it(mode: str) -> None:
    with Init(mode, ["--", "no-such-command-xyz", "arg"]) as init:
        assert init.wait() == 127
        err = init.stderr()
    assert "no-such-command-xyz" in err
    assert "No such file or directory" in err


def test_not_executable_exits_126_and_names_it(mode: str, tmp_path: Path) -> None:
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho never\n")
    script.chmod(0o644)
    with Init(mode, ["--", str(script)]) as init:
        assert init.wait() == 126
        err = init.stderr()
    assert str(script) in err
    assert "Permission denied" in err


def test_python_dash_m_pidone_is_the_same_program() -> None:
    result = subprocess.run([PYTHON, "-m", "pidone", "--", "sh", "-c", "exit 5"], timeout=20)
    assert result.returncode == 5


def test_no_command_prints_usage_and_exits_2() -> None:
    result = subprocess.run([PIDONE], capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert "no command given" in result.stderr
    assert "usage: pidone" in result.stderr
    assert result.stdout == ""


def test_unknown_option_is_a_usage_error() -> None:
    result = subprocess.run([PIDONE, "-x", "--", "true"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown option -x" in result.stderr


# --- the child's start --------------------------------------------------------


def test_argv_environment_cwd_untouched(mode: str, tmp_path: Path) -> None:
    # LC_ALL keeps the probe (a Python) from adding LC_CTYPE to its own environment.
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8", "ODD VAR": "a=b", "EMPTY": ""}
    env["UNICODE"] = "é✓"
    argv = [
        "-c",
        "import json,os,sys; print(json.dumps([sys.argv, dict(os.environ), os.getcwd()]))",
    ]
    args = ["", "two words", "--", "-g", "$HOME"]
    with Init(mode, ["--", PYTHON, *argv, *args], env=env, cwd=str(tmp_path)) as init:
        got_argv, got_env, got_cwd = json.loads(init.readline())
        assert init.wait() == 0
    assert got_argv == ["-c", *args]
    assert got_env == env
    assert got_cwd == str(tmp_path)


def test_stdio_passes_through(mode: str) -> None:
    if mode == "pid1":
        require_root()
        prefix = ["unshare", "--pid", "--fork", "--mount-proc"]
    else:
        prefix = []
    result = subprocess.run(
        [*prefix, PIDONE, "--", "sh", "-c", "cat; echo to-stderr >&2"],
        input=b"line one\nline two\n",
        capture_output=True,
        timeout=20,
    )
    assert result.returncode == 0
    assert result.stdout == b"line one\nline two\n"
    assert result.stderr == b"to-stderr\n"


IGNORE_32 = (
    # glibc refuses signal 32 in sigaction(); a launcher can still ignore it
    # with the raw syscall, and exec passes that on.
    "import ctypes,os;"
    "nr={'x86_64':13,'aarch64':134}[os.uname().machine];"
    "act=ctypes.create_string_buffer(64);act[0]=1;"  # handler SIG_IGN (1)
    "assert ctypes.CDLL(None).syscall(nr,32,act,None,8)==0;"
)
# `python -c MESSY_LAUNCHER CMD...`: execs CMD blocking SIGUSR1 and ignoring
# SIGHUP and signal 32, a parent state that must never reach pidone's children.
MESSY_LAUNCHER = (
    "import os,signal,sys;"
    + IGNORE_32
    + "signal.pthread_sigmask(signal.SIG_BLOCK,{signal.SIGUSR1});"
    "signal.signal(signal.SIGHUP,signal.SIG_IGN);"
    "os.execvp(sys.argv[1],sys.argv[1:])"
)


def test_child_starts_with_no_blocked_or_ignored_signals(mode: str) -> None:
    # pidone's own parent blocks SIGUSR1 and ignores SIGHUP and glibc's
    # signal 32, and Python itself ignores SIGPIPE and SIGXFSZ: none of that
    # may reach the child.
    launcher = MESSY_LAUNCHER
    probe = ["grep", "^Sig[BI]", "/proc/self/status"]
    # the launcher really does ignore 32 (else this test proves nothing)
    check = subprocess.run([PYTHON, "-c", launcher, *probe], capture_output=True, text=True)
    ignored = int(check.stdout.split("SigIgn:")[1].split()[0], 16)
    assert ignored & (1 << 31) and ignored & 1, check.stdout + check.stderr
    with Init(mode, ["--", *probe], prefix=[PYTHON, "-c", launcher]) as init:
        lines = [init.readline(), init.readline()]
        assert init.wait() == 0
    assert lines == ["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"]


def test_child_leads_its_own_process_group(mode: str) -> None:
    code = "import os; print(os.getpid(), os.getpgrp(), os.getsid(0))"
    with Init(mode, ["--", PYTHON, "-c", code]) as init:
        pid, pgrp, _sid = map(int, init.readline().split())
        assert init.wait() == 0
    assert pgrp == pid
    if mode == "pid1":
        assert pid == 2  # pidone is 1, its only child is 2


# --- signals --------------------------------------------------------------


def test_every_forwardable_signal_arrives_exactly_once_from_pidone(mode: str) -> None:
    # SIGCONT and SIGTSTP cancel each other while pending (the kernel's rule,
    # for any process), so they go one at a time after the burst.
    job_control = [int(signal.SIGTSTP), int(signal.SIGCONT)]
    burst = [s for s in forwardable_signals() if s not in (EXIT_ON, *job_control)]
    with start_recorder(mode, "--exit-on", str(EXIT_ON)) as init:
        for signum in burst:  # no waiting between signals
            init.signal(signum)
        # Distinct signals may be handled in any order (handlers nest), so
        # count them: a missing one times out, an extra one shows below.
        got = received_n(init, len(burst))
        for signum in job_control:
            init.signal(signum)
            got += received(init, until=signum)
            if signum == signal.SIGTSTP and mode == "subreaper":
                # pidone stops itself after forwarding SIGTSTP (dumb-init's job
                # control); a shell sends SIGCONT only once it has seen that
                # stop, and so does this test: a SIGCONT sent before it would
                # be discarded by pidone's own SIGSTOP (the kernel's rule).
                wait_for(lambda: proc_state(init.pid) == "T", what="pidone to stop")
        init.signal(EXIT_ON)
        got += received(init)
        assert init.wait() == 0
    senders = {sender for _, sender in got}
    assert senders == {init.pid_inside}
    counts = Counter(signo for signo, _ in got)
    assert counts == Counter([*burst, *job_control, EXIT_ON])


def test_realtime_signal_burst_is_not_coalesced(mode: str) -> None:
    rt = signal.SIGRTMIN + 3
    with start_recorder(mode, "--exit-on", str(EXIT_ON)) as init:
        for _ in range(300):
            init.signal(rt)
        # Only once all 300 are through: a standard signal is taken before
        # real-time ones still queued (pidone's signalfd, the recorder's
        # sigwaitinfo), and EXIT_ON ends the recorder.
        got = received_n(init, 300)
        init.signal(EXIT_ON)
        got += received(init)
        assert init.wait() == 0
    assert Counter(s for s, _ in got) == Counter({rt: 300, EXIT_ON: 1})


def test_kill_1_from_inside_the_namespace_reaches_the_child() -> None:
    # The kernel drops signals to a namespace's init that has no handler
    # for them; pidone must have one for every signal it forwards.
    with start_recorder(
        "pid1", "--kill-init", str(int(signal.SIGHUP)), "--exit-on", str(EXIT_ON)
    ) as init:
        first = init.readline()
        init.signal(EXIT_ON)
        rest = received(init)
        assert init.wait() == 0
    assert first == f"SIG {int(signal.SIGHUP)} 1"
    assert rest == [(EXIT_ON, 1)]


def test_signals_go_to_the_child_only_by_default(mode: str) -> None:
    with start_recorder(mode, "--fork-peer", "--exit-on", str(EXIT_ON)) as init:
        init.signal(signal.SIGUSR1)
        assert init.readline() == f"SIG {int(signal.SIGUSR1)} {init.pid_inside}"
        init.signal(EXIT_ON)  # the recorder then asks its peer what it got
        assert init.readline() == f"SIG {EXIT_ON} {init.pid_inside}"
        peer = init.readline()
        assert init.wait() == 0
    assert peer == "PEER "  # the peer in the child's group got nothing


def test_group_option_signals_the_whole_process_group(mode: str) -> None:
    with start_recorder(
        mode, "--fork-peer", "--exit-on", str(EXIT_ON), pidone_args=("-g",)
    ) as init:
        init.signal(signal.SIGUSR1)
        assert init.readline() == f"SIG {int(signal.SIGUSR1)} {init.pid_inside}"
        init.signal(EXIT_ON)  # reaches both at once: their lines may come in any order
        last = sorted([init.readline(), init.readline()])
        assert init.wait() == 0
    # The peer got SIGUSR1 too; the SIGUSR2 that made it report is not listed.
    assert last == [f"PEER {int(signal.SIGUSR1)}", f"SIG {EXIT_ON} {init.pid_inside}"]


def test_sigtstp_stops_the_child_and_sigcont_resumes_it(mode: str) -> None:
    with Init(mode, ["--", "sleep", "1000"]) as init:
        wait_for(lambda: children_of(init.pid), what="sleep to start")
        (child,) = children_of(init.pid)
        init.signal(signal.SIGTSTP)
        wait_for(lambda: proc_state(child) == "T", what="child to stop")
        # pidone stops itself too, as a job does, except as a namespace's PID 1
        # (which the kernel never stops from inside): test_single_flags.py.
        expected = "S" if mode == "pid1" else "T"
        wait_for(lambda: proc_state(init.pid) == expected, what=f"pidone in state {expected}")
        init.signal(signal.SIGCONT)
        wait_for(lambda: proc_state(child) in ("S", "R"), what="child to resume")
        init.signal(signal.SIGTERM)
        assert init.wait() == 128 + signal.SIGTERM


# --- the terminal ------------------------------------------------------------


def run_on_a_terminal(argv: list[str], send: bytes | Callable[[int], None]) -> tuple[int, str]:
    """Run argv as a session leader on a new pty; once it prints its `FG` line, type
    `send` (or call it with the leader's pid). Returns (exit status, everything
    written to the terminal)."""
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the forked child execs at once
        os.execv(argv[0], argv)
    output = b""
    try:
        deadline = time.monotonic() + 20
        sent = False
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the other side is gone
                    break
                if not chunk:
                    break
                output += chunk
            if not sent and b"\n" in output.partition(b"FG")[2]:  # the whole FG line
                if callable(send):
                    send(pid)
                else:
                    os.write(master, send)
                sent = True
        ended, status = 0, 0
        while not ended and time.monotonic() < deadline + 5:
            ended, status = os.waitpid(pid, os.WNOHANG)
            time.sleep(0.01)
        if not ended:  # e.g. a shell waiting for a job that stays stopped: end it, and fail
            for doomed in [*descendants(pid), pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(doomed, signal.SIGKILL)
            os.waitpid(pid, 0)
            text = output.decode(errors="replace")
            raise AssertionError(f"the terminal session did not end in time:\n{text}")
    finally:
        os.close(master)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_ctrl_c_on_a_terminal_reaches_the_foreground_child(mode: str) -> None:
    probe = (
        "import os,time;"
        "print('FG', os.tcgetpgrp(0) == os.getpgrp() == os.getpid(), flush=True);"
        "time.sleep(60)"
    )
    argv = [PIDONE, "-vv", "--", PYTHON, "-c", probe]
    if mode == "pid1":
        require_root()
        argv = ["/usr/bin/unshare", "--pid", "--fork", "--mount-proc", *argv]
    status, output = run_on_a_terminal(argv, b"\x03")
    assert "FG True" in output
    assert status == 130
    # The terminal signalled the child's group directly; pidone forwarded nothing.
    assert "forwarded signal" not in output


# --- reaping -----------------------------------------------------------------


def test_orphan_storm_leaves_no_zombie(mode: str) -> None:
    storm = 500
    with Init(mode, ["-v", "--", *helper("orphan_storm.py"), str(storm)]) as init:
        assert init.readline(timeout=90) == "ZOMBIES 0"
        assert init.readline().startswith("PEAK ")
        assert init.wait() == 0
        err = init.stderr()
    # every orphan plus the child itself, and nothing else
    match = re.search(r"reaped (\d+)", err)
    assert match, err
    assert int(match.group(1)) == storm + 1


def test_exits_as_soon_as_the_child_exits(mode: str) -> None:
    # The child leaves a long-lived orphan behind: pidone must not wait for it.
    script = "sleep 1000 & echo $!; exit 4"
    with Init(mode, ["--", "sh", "-c", script]) as init:
        orphan = int(init.readline())
        assert init.wait(timeout=10) == 4
        if mode == "subreaper":  # as PID 1 the namespace took it down with us
            os.kill(orphan, signal.SIGKILL)


def test_metrics_in_single_command_mode(mode: str) -> None:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from tests.helpers.stack import free_port

    port = free_port()
    recorder = [*helper("sigrecorder.py"), "--exit-on", str(int(signal.SIGTERM))]
    with Init(mode, ["--metrics", f"127.0.0.1:{port}", "--", *recorder]) as init:

        def get(path: str) -> tuple[int, str]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return r.status, r.read().decode()

        def serving() -> bool:
            try:
                get("/healthz")
            except OSError:
                return False
            return True

        wait_for(serving, what="the metrics server")
        time.sleep(1.2)  # the loop has slept past "fresh": /healthz must wake it
        assert get("/healthz") == (200, "ok\n")
        assert init.readline().startswith("READY ")
        init.signal(signal.SIGUSR1)
        assert init.readline() == f"SIG {int(signal.SIGUSR1)} {init.pid_inside}"
        init.signal(signal.SIGUSR1)
        assert init.readline() == f"SIG {int(signal.SIGUSR1)} {init.pid_inside}"

        def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            out = {}
            for family in text_string_to_metric_families(get("/metrics")[1]):
                for s in family.samples:
                    out[s.name, tuple(sorted(s.labels.items()))] = s.value
            return out

        usr1 = (("signal", "SIGUSR1"),)
        wait_for(lambda: samples().get(("pidone_signals_forwarded_total", usr1)) == 2,
                 what="two SIGUSR1 forwarded")  # fmt: skip
        m = samples()
        assert m["pidone_signals_received_total", usr1] == 2
        assert m["pidone_process_up", (("process", Path(PYTHON).name),)] == 1
        assert get("/readyz")[0] == 200
        init.signal(signal.SIGTERM)
        assert init.wait() == 0
