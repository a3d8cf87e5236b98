"""tini's and dumb-init's flags in single-command mode, each on a real child, as PID 1
of a fresh PID namespace and as a subreaper (tests/pid1/test_single_command.py has the
rest of single-command mode)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.running import (
    PIDONE,
    PYTHON,
    Init,
    children_of,
    proc_state,
    require_root,
    wait_for,
)
from tests.pid1.test_single_command import EXIT_ON, received, run_on_a_terminal, start_recorder


def only_child(init: Init, program: str = "sleep") -> int:
    """pidone's child, as the test sees its pid, once it runs `program` (exec
    done: the process group is made before it)."""

    def started() -> bool:
        kids = children_of(init.pid)
        return len(kids) == 1 and Path(f"/proc/{kids[0]}/comm").read_text() == program + "\n"

    wait_for(started, what=f"the child to exec {program}")
    (child,) = children_of(init.pid)
    return child


def gone(pid: int) -> bool:
    """Not running: reaped, or a zombie left to whoever adopted it."""
    return proc_state(pid) in ("Z", "")


def peer_env(**variables: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8", **variables}


# --- tini: -e, -w, -p, -s, -l ---------------------------------------------------


def test_dash_e_143_turns_a_sigtermed_childs_143_into_0(mode: str) -> None:
    with Init(mode, ["-e", "143", "--", "sleep", "1000"]) as init:
        only_child(init)
        init.signal(signal.SIGTERM)
        assert init.wait() == 0


@pytest.mark.parametrize(("script", "expected"), [("exit 7", 7), ("exit 0", 0), ("exit 142", 142)])
def test_dash_e_keeps_every_other_exit_status(mode: str, script: str, expected: int) -> None:
    with Init(mode, ["-e143", "-e", "3", "--", "sh", "-c", script]) as init:
        assert init.wait() == expected


def test_dash_e_is_repeatable(mode: str) -> None:
    with Init(mode, ["-e", "143", "-e", "3", "--", "sh", "-c", "exit 3"]) as init:
        assert init.wait() == 0


# The child orphans a grandchild that exits 5 once pidone has adopted it, prints
# its pid, and exits 4 once pidone has reaped it (kill(pid, 0) works on a zombie).
ORPHAN_THEN_EXIT_4 = [
    PYTHON,
    "-c",
    "import os,time\n"
    "r,w=os.pipe()\n"
    "if os.fork()==0:\n"
    " m=os.getpid();o=os.fork()\n"
    " if o==0:\n"
    "  while os.getppid()==m: time.sleep(0.01)\n"
    "  os._exit(5)\n"
    " os.write(w,str(o).encode());os._exit(0)\n"
    "o=int(os.read(r,32));os.wait();print(o,flush=True)\n"
    "while True:\n"
    " try: os.kill(o,0)\n"
    " except ProcessLookupError: break\n"
    " time.sleep(0.01)\n"
    "raise SystemExit(4)",
]


def test_dash_w_warns_for_an_orphan_zombie_and_not_for_the_child(mode: str) -> None:
    with Init(mode, ["-w", "--", *ORPHAN_THEN_EXIT_4]) as init:
        orphan = int(init.readline())
        assert init.wait() == 4
        err = init.stderr()
    assert err == f"pidone: reaped zombie pid {orphan} (not the child), exit status 5\n"


def test_without_dash_w_an_orphan_is_reaped_silently(mode: str) -> None:
    with Init(mode, ["--", *ORPHAN_THEN_EXIT_4]) as init:
        init.readline()
        assert init.wait() == 4  # the loop ended: pidone reaped the orphan
        assert init.stderr() == ""


# Becomes a subreaper, starts argv (the parent that will die), prints its pid,
# then reports each process it reaps: the dead parent, then pidone, adopted.
ADOPTER = (
    "import ctypes,os,subprocess,sys;"
    "assert ctypes.CDLL(None).prctl(36,1,0,0,0)==0;"  # PR_SET_CHILD_SUBREAPER
    "p=subprocess.Popen(sys.argv[1:],stdin=subprocess.DEVNULL);"
    "print('PARENT',p.pid,flush=True)\n"
    "while True:\n"
    " try: pid,st=os.waitpid(-1,0)\n"
    " except ChildProcessError: break\n"
    " print('EXIT',pid,os.waitstatus_to_exitcode(st),flush=True)"
)


def test_dash_p_sigterm_when_pidones_parent_dies_stops_the_child(mode: str) -> None:
    pidone = [PIDONE, "-p", "SIGTERM", "--", "sleep", "1000"]
    if mode == "pid1":
        require_root()
        parent = ["unshare", "--pid", "--fork", "--mount-proc", *pidone]  # pidone's parent
    else:
        parent = ["sh", "-c", '"$@" & wait', "sh", *pidone]
    with subprocess.Popen(
        [PYTHON, "-c", ADOPTER, *parent], stdout=subprocess.PIPE, text=True, start_new_session=True
    ) as adopter:
        assert adopter.stdout is not None
        try:
            kind, parent_pid = adopter.stdout.readline().split()
            assert kind == "PARENT"
            wait_for(lambda: len(children_of(int(parent_pid))) == 1, what="pidone to start")
            (pid,) = children_of(int(parent_pid))
            wait_for(lambda: len(children_of(pid)) == 1, what="the child to start")
            (child,) = children_of(pid)
            os.kill(int(parent_pid), signal.SIGKILL)
            lines = [adopter.stdout.readline().strip() for _ in range(2)]
            assert adopter.wait(20) == 0
        finally:
            adopter.kill()
    # pidone got SIGTERM, passed it on, and exited with its child's 128 + 15.
    assert lines == [f"EXIT {parent_pid} -9", f"EXIT {pid} 143"]
    assert gone(child)


def test_dash_s_is_accepted_and_said_with_dash_v(mode: str) -> None:
    with Init(mode, ["-s", "-v", "--", "sh", "-c", "exit 3"]) as init:
        assert init.wait() == 3
        err = init.stderr()
    assert "-s: nothing to do, pidone reaps as PID 1 or as a subreaper on its own" in err


def test_dash_l_prints_the_license_and_exits_0() -> None:
    result = subprocess.run([PIDONE, "-l"], capture_output=True, text=True, timeout=20)
    assert (result.returncode, result.stderr) == (0, "")
    assert "License: MIT" in result.stdout


# --- dumb-init: -r, -c, -g's cleanup ---------------------------------------------


def test_dash_r_15_2_delivers_sigint_for_sigterm(mode: str) -> None:
    exit_on_int = ("--exit-on", str(int(signal.SIGINT)))
    with start_recorder(mode, *exit_on_int, pidone_args=("-r", "15:2")) as init:
        init.signal(signal.SIGTERM)
        assert received(init, until=signal.SIGINT) == [(signal.SIGINT, init.pid_inside)]
        assert init.wait() == 0


def test_dash_r_15_0_drops_sigterm(mode: str) -> None:
    with start_recorder(mode, "--exit-on", str(EXIT_ON), pidone_args=("--rewrite=15:0",)) as init:
        init.signal(signal.SIGTERM)
        # Pending together, SIGTERM (15) would be taken before SIGWINCH (28).
        init.signal(signal.SIGWINCH)
        got = received(init, until=signal.SIGWINCH)
        init.signal(EXIT_ON)
        got += received(init)
        assert init.wait() == 0
    assert got == [(signal.SIGWINCH, init.pid_inside), (EXIT_ON, init.pid_inside)]


def test_dash_r_takes_names_and_leaves_other_signals_alone(mode: str) -> None:
    args = ("--rewrite", "SIGUSR1:SIGHUP")
    with start_recorder(mode, "--exit-on", str(EXIT_ON), pidone_args=args) as init:
        init.signal(signal.SIGUSR1)
        assert received(init, until=signal.SIGHUP) == [(signal.SIGHUP, init.pid_inside)]
        init.signal(EXIT_ON)
        assert received(init) == [(EXIT_ON, init.pid_inside)]
        assert init.wait() == 0


@pytest.mark.parametrize(
    ("args", "env"),
    [(["-c"], {}), (["--single-child"], {}), ([], {"DUMB_INIT_SETSID": "0"})],
)
def test_dash_c_keeps_the_child_in_pidones_process_group_and_session(
    mode: str, args: list[str], env: dict[str, str]
) -> None:
    with Init(mode, [*args, "--", "sleep", "1000"], env=peer_env(**env)) as init:
        child = only_child(init)
        assert os.getpgid(child) == os.getpgid(init.pid) != child
        assert os.getsid(child) == os.getsid(init.pid)
        init.signal(signal.SIGTERM)
        assert init.wait() == 128 + signal.SIGTERM


def test_without_dash_c_the_child_has_its_own_group_in_pidones_session(mode: str) -> None:
    with Init(mode, ["--", "sleep", "1000"], env=peer_env(DUMB_INIT_SETSID="1")) as init:
        child = only_child(init)
        assert os.getpgid(child) == child != os.getpgid(init.pid)
        assert os.getsid(child) == os.getsid(init.pid)


def test_dash_c_signals_the_child_only(mode: str) -> None:
    with start_recorder(
        mode, "--fork-peer", "--exit-on", str(EXIT_ON), pidone_args=("-c",)
    ) as init:
        init.signal(signal.SIGUSR1)
        assert init.readline() == f"SIG {int(signal.SIGUSR1)} {init.pid_inside}"
        init.signal(EXIT_ON)
        assert init.readline() == f"SIG {EXIT_ON} {init.pid_inside}"
        peer = init.readline()
        assert init.wait() == 0
    assert peer == "PEER "


@pytest.mark.parametrize(("args", "env"), [(["-g"], {}), ([], {"TINI_KILL_PROCESS_GROUP": ""})])
def test_dash_g_child_exit_leaves_no_background_job_running(
    mode: str, args: list[str], env: dict[str, str]
) -> None:
    script = "sleep 100 & echo $!; exit 0"
    started = time.monotonic()
    with Init(mode, [*args, "--", "sh", "-c", script], env=peer_env(**env)) as init:
        inner = int(init.readline())
        sleeper = inner if mode == "subreaper" else None
        assert init.wait(timeout=10) == 0
    assert time.monotonic() - started < 10  # well under the sleep's 100 s
    if sleeper is not None:  # as PID 1 the namespace ends with pidone anyway
        wait_for(lambda: gone(sleeper), what=f"sleep {sleeper} to end")


def test_without_dash_g_a_background_job_outlives_the_child() -> None:
    # The control for the test above: without -g pidone leaves its group alone.
    with Init("subreaper", ["--", "sh", "-c", "sleep 100 & echo $!; exit 0"]) as init:
        sleeper = int(init.readline())
        assert init.wait(timeout=10) == 0
    try:
        assert not gone(sleeper)
    finally:
        os.kill(sleeper, signal.SIGKILL)


# --- job control ------------------------------------------------------------------


@pytest.mark.parametrize("stop", [signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU])
def test_job_control_signal_stops_the_child_then_pidone_and_sigcont_resumes_both(
    stop: int,
) -> None:
    # Not PID 1 only: a namespace's PID 1 cannot be stopped from inside (the
    # child still stops: test_sigtstp_stops_the_child_and_sigcont_resumes_it).
    with Init("subreaper", ["--", "sleep", "1000"]) as init:
        child = only_child(init)
        init.signal(stop)
        wait_for(lambda: proc_state(child) == "T", what="the child to stop")
        wait_for(lambda: proc_state(init.pid) == "T", what="pidone to stop")
        init.signal(signal.SIGCONT)
        wait_for(lambda: proc_state(init.pid) in ("S", "R"), what="pidone to resume")
        wait_for(lambda: proc_state(child) in ("S", "R"), what="the child to resume")
        init.signal(signal.SIGTERM)
        assert init.wait() == 128 + signal.SIGTERM


def test_a_sigtstp_rewritten_to_0_stops_neither_child_nor_pidone(mode: str) -> None:
    with start_recorder(mode, "--exit-on", str(EXIT_ON), pidone_args=("-r", "20:0")) as init:
        init.signal(signal.SIGTSTP)
        # Pending together, SIGTSTP (20) is taken before SIGWINCH (28): had pidone
        # stopped itself, SIGWINCH would never be forwarded.
        init.signal(signal.SIGWINCH)
        assert received(init, until=signal.SIGWINCH) == [(signal.SIGWINCH, init.pid_inside)]
        assert proc_state(init.pid) in ("R", "S", "D")  # running or asleep, never stopped
        init.signal(EXIT_ON)
        assert received(init) == [(EXIT_ON, init.pid_inside)]
        assert init.wait() == 0


# --- fault signals sent by kill ----------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT, signal.SIGTRAP,
     signal.SIGSYS],
)  # fmt: skip
def test_kill_segv_to_pidone_reaches_the_child_and_pidone_survives(mode: str, fault: int) -> None:
    with start_recorder(mode, "--exit-on", str(EXIT_ON)) as init:
        init.signal(fault)
        assert received(init, until=fault) == [(fault, init.pid_inside)]
        assert proc_state(init.pid) in ("R", "S")  # and it forwards the next one:
        init.signal(EXIT_ON)
        assert received(init) == [(EXIT_ON, init.pid_inside)]
        assert init.wait() == 0


def test_a_real_fault_in_pidone_still_kills_it() -> None:
    # Fault signals are caught the way pidone catches them (blocked, with a
    # handler): a real segfault must still end the process, not loop.
    code = (
        "import ctypes; from pidone.system import signals;"
        "signals.catch_signals(signals.FAULT_SIGNALS);"
        "ctypes.string_at(0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=20)
    assert result.returncode == -signal.SIGSEGV


# --- the peers' variables, and usage errors ---------------------------------------


def test_tini_verbosity_3_is_dash_vv(mode: str) -> None:
    with Init(mode, ["--", "sleep", "1000"], env=peer_env(TINI_VERBOSITY="3")) as init:
        only_child(init)
        init.signal(signal.SIGTERM)
        assert init.wait() == 128 + signal.SIGTERM
        err = init.stderr()
    assert f"forwarded signal {int(signal.SIGTERM)} to" in err


@pytest.mark.parametrize(("level", "lines"), [("0", 0), ("1", 0), ("2", 3)])
def test_tini_verbosity_levels_are_tinis(mode: str, level: str, lines: int) -> None:
    with Init(mode, ["--", "sh", "-c", "exit 0"], env=peer_env(TINI_VERBOSITY=level)) as init:
        assert init.wait() == 0
        err = init.stderr()
    if mode == "pid1" and lines:
        lines -= 1  # no "not PID 1" line
    assert len(err.splitlines()) == lines, err


def test_dumb_init_debug_is_dash_v_and_tini_subreaper_is_dash_s(mode: str) -> None:
    env = peer_env(DUMB_INIT_DEBUG="1", TINI_SUBREAPER="")
    with Init(mode, ["--", "sh", "-c", "exit 0"], env=env) as init:
        assert init.wait() == 0
        err = init.stderr()
    assert "started 'sh' as pid" in err
    assert "-s: nothing to do" in err


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["-e", "256"], {}, "-e: '256' is not an exit status; use a number from 0 to 255"),
        (["-e", "x1"], {}, "-e: 'x1' is not an exit status"),
        (["-e"], {}, "-e: '--' is not an exit status"),  # getopt's rule: the next word
        (["-r", "15"], {}, "-r '15': expected S:R"),
        (["-r", "15:99"], {}, "-r '15:99': '99' is not a signal number; use 0 to 64"),
        (["-r", "9:2"], {}, "-r '9:2': pidone never forwards signal 9"),
        (["--rewrite"], {}, "--rewrite '--': expected S:R"),
        (["-p", "SIGNOPE"], {}, "-p: 'SIGNOPE' is not a signal"),
        (["-q"], {}, "unknown option -q"),
        (["-c", "-g"], {}, "-c (or DUMB_INIT_SETSID=0) and -g (or TINI_KILL_PROCESS_GROUP)"),
        ([], {"TINI_VERBOSITY": "loud"}, "TINI_VERBOSITY='loud': use a level from 0 to 9"),
    ],
)
def test_bad_flag_or_variable_exits_2_with_a_clear_message_and_starts_nothing(
    args: list[str], env: dict[str, str], message: str, tmp_path: object
) -> None:
    marker = f"{tmp_path}/started"
    result = subprocess.run(
        [PIDONE, *args, "--", "touch", marker],
        capture_output=True,
        text=True,
        timeout=20,
        env=peer_env(**env),
    )
    assert result.returncode == 2
    assert f"pidone: {message}" in result.stderr
    assert not os.path.exists(marker)


# The child: says whether it has the terminal, stops on SIGTSTP (default), and on
# SIGCONT says again and exits.
TERMINAL_PROBE = (
    "import os,signal,time\n"
    "def cont(*_):\n"
    " print('FG2', os.tcgetpgrp(0)==os.getpgrp(), flush=True); os._exit(0)\n"
    "signal.signal(signal.SIGCONT, cont)\n"
    "print('FG1', os.tcgetpgrp(0)==os.getpgrp(), flush=True)\n"
    "while True: time.sleep(1)"
)


def test_a_shells_fg_after_sigtstp_resumes_the_child_in_the_foreground() -> None:
    # bash with job control runs pidone as a foreground job; SIGTSTP stops the
    # child and pidone (bash sees its job stop and takes the terminal), `fg`
    # continues pidone, which hands the terminal back to the child, then wakes it.
    script = f'set -m; {PIDONE} -- {PYTHON} -c "$1"; echo STOPPED $?; fg; echo DONE $?'

    def stop_pidone(bash: int) -> None:
        wait_for(lambda: len(children_of(bash)) == 1, what="bash to start pidone")
        os.kill(children_of(bash)[0], signal.SIGTSTP)

    status, output = run_on_a_terminal(
        ["/usr/bin/bash", "-c", script, "bash", TERMINAL_PROBE], stop_pidone
    )
    lines = [line for line in output.splitlines() if line.startswith(("FG", "STOPPED", "DONE"))]
    assert status == 0
    # pidone stopped itself with SIGSTOP: 128 + 19
    assert lines == ["FG1 True", f"STOPPED {128 + signal.SIGSTOP}", "FG2 True", "DONE 0"], output


def test_a_job_started_in_the_background_leaves_the_terminal_to_the_shell() -> None:
    script = f'set -m; {PIDONE} -- {PYTHON} -c "$1" & wait $!; echo DONE $?'

    def end_pidone(bash: int) -> None:
        os.kill(children_of(bash)[0], signal.SIGTERM)

    status, output = run_on_a_terminal(
        ["/usr/bin/bash", "-c", script, "bash", TERMINAL_PROBE], end_pidone
    )
    lines = [line for line in output.splitlines() if line.startswith(("FG", "DONE"))]
    assert status == 0
    assert lines == ["FG1 False", f"DONE {128 + signal.SIGTERM}"], output


def test_ctrl_z_on_a_terminal_stops_the_job_and_fg_resumes_the_child_in_the_foreground() -> None:
    # Ctrl-Z reaches the child's group only (it has the terminal): pidone sees
    # its child stop and stops too, so bash gets its terminal back; `fg` then works.
    script = f'set -m; {PIDONE} -- {PYTHON} -c "$1"; echo STOPPED $?; fg; echo DONE $?'
    status, output = run_on_a_terminal(
        ["/usr/bin/bash", "-c", script, "bash", TERMINAL_PROBE], b"\x1a"
    )
    lines = [line for line in output.splitlines() if line.startswith(("FG", "STOPPED", "DONE"))]
    assert status == 0
    assert lines == ["FG1 True", f"STOPPED {128 + signal.SIGSTOP}", "FG2 True", "DONE 0"], output


def test_a_child_stopped_by_sigstop_leaves_pidone_running(mode: str) -> None:
    # Not the terminal's stop: an operator's SIGSTOP to the child must not stop
    # pidone (nobody would continue it). SIGWINCH (28) is taken after the stop's
    # SIGCHLD (17): had pidone stopped on that, it would never forward it.
    with start_recorder(mode, "--exit-on", str(EXIT_ON)) as init:
        (child,) = children_of(init.pid)
        os.kill(child, signal.SIGSTOP)
        wait_for(lambda: proc_state(child) == "T", what="the child to stop")
        init.signal(signal.SIGWINCH)
        os.kill(child, signal.SIGCONT)  # the recorder prints this SIGCONT too
        got = received(init, until=signal.SIGWINCH)
        assert proc_state(init.pid) in ("R", "S")
        init.signal(EXIT_ON)
        got += received(init)
        assert init.wait() == 0
    assert [signo for signo, _ in got] == [signal.SIGCONT, signal.SIGWINCH, EXIT_ON]
    assert got[1:] == [(signal.SIGWINCH, init.pid_inside), (EXIT_ON, init.pid_inside)]
