"""`pidone run`, for real: pidone as PID 1 of a fresh PID namespace (and as a
subreaper) supervising real processes (tests/helpers/svc.py), with the
order of what happened read from their shared journal."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.running import PIDONE, PYTHON, helper, wait_for
from tests.helpers.stack import Stack, before, free_port, nth
from tests.pid1.test_single_command import MESSY_LAUNCHER

TERM = signal.SIGTERM


def test_chain_starts_in_order_gated_on_readiness_and_stops_in_reverse(
    mode: str, tmp_path: Path
) -> None:
    port, http = free_port(), free_port()
    sock = tmp_path / "b.sock"
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[process.a]
command = "{stack.svc("a", "--tcp", str(port), "--delay", "0.3")}"
ready = "tcp:127.0.0.1:{port}"
[process.b]
command = "{stack.svc("b", "--unix", str(sock), "--delay", "0.3")}"
after = ["a"]
ready = "unix:{sock}"
[process.c]
command = "{stack.svc("c", "--http", str(http), "--delay", "0.3")}"
after = ["b"]
ready = "http://127.0.0.1:{http}/health"
[process.d]
command = "{stack.svc("d")}"
after = ["c"]
""")
        stack.wait_for("d up")
        events = stack.events()
        assert before(events, "a listening", "b up")
        assert before(events, "b listening", "c up")
        assert before(events, "c listening", "d up")
        stack.init.signal(TERM)
        assert stack.init.wait() == 0
        events = stack.events()
    # reverse order: each stops only once everything after it has exited
    assert [e for e in events if e.endswith("term")] == ["d term", "c term", "b term", "a term"]
    assert before(events, "d exit", "c term")
    assert before(events, "c exit", "b term")
    assert before(events, "b exit", "a term")


def test_diamond_starts_the_middle_together(mode: str, tmp_path: Path) -> None:
    flag = tmp_path / "right.ready"
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[pidone]
settle_time = 0.3
[process.top]
command = "{stack.svc("top")}"
[process.left]
command = "{stack.svc("left", "--notify", "--delay", "0.2")}"
after = ["top"]
ready = "notify"
[process.right]
command = "{stack.svc("right", "--touch", str(flag), "--delay", "0.2")}"
after = ["top"]
ready = "exec:test -e {flag}"
[process.bottom]
command = "{stack.svc("bottom", "--touch", f"{flag}.bottom")}"
after = ["left", "right"]
ready = "file:{flag}.bottom"
""")
        wait_for(lambda: "bottom | ready" in stack.stdout_so_far(), what="bottom ready")
        events = stack.events()
        top_up = nth(events, "top up", 1)
        left_up, right_up = nth(events, "left up", 1), nth(events, "right up", 1)
        left_ok, right_ok = nth(events, "left listening", 1), nth(events, "right listening", 1)
        assert top_up < left_up and top_up < right_up
        # both middle ones start before either is ready: they start together
        assert max(left_up, right_up) < min(left_ok, right_ok)
        assert nth(events, "bottom up", 1) > max(left_ok, right_ok)
        stack.init.signal(TERM)
        assert stack.init.wait() == 0
        out, _ = stack.output()
    for name in ("top", "left", "right", "bottom"):
        assert re.search(rf"^{name}\s+\| ready$", out, re.M), out


def test_restart_with_backoff_then_fatal(mode: str, tmp_path: Path) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[pidone]
backoff_initial = 0.3
fatal_after = 3
fatal_window = 60
[process.flaky]
command = "{stack.svc("flaky", "--exit-after", "0.05", "--code", "3")}"
[process.steady]
command = "{stack.svc("steady")}"
""")
        wait_for(lambda: "FATAL" in stack.stderr_so_far(), what="FATAL")
        entries = [e for e in stack.journal() if e.name == "flaky" and e.event.startswith("up")]
        assert len(entries) == 3
        # The first restart is immediate ("restarting in 0 s" below: an upper
        # bound on its time would be a timed test), then backoff_initial.
        second_gap = (entries[2].ns - entries[1].ns) / 1e9
        assert second_gap >= 0.3 + 0.05  # backoff_initial, plus its run time
        time.sleep(0.5)
        assert stack.count("flaky up") == 3  # given up: no fourth start
        stack.init.signal(TERM)
        assert stack.init.wait() == 1  # a FATAL process makes the exit unclean
        out, err = stack.output()
    assert re.search(r"^flaky\s+\| restarting in 0 s$", out, re.M), out
    assert re.search(r"^flaky\s+\| restarting in 0.3 s$", out, re.M), out
    assert re.search(r"flaky\s+\| FATAL: exited 3 times within 60 s", err), err


def test_a_stable_process_kill_9d_three_times_is_restarted_at_once_each_time(
    mode: str, tmp_path: Path
) -> None:
    # Up and ready well past backoff_reset before each kill: every restart is
    # at once. Without the reset the second would wait backoff_initial (5 s)
    # and the third would make it FATAL (fatal_after = 3 within the window).
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[pidone]
settle_time = 0.3
backoff_reset = 0.5
backoff_initial = 5
fatal_after = 3
[process.steady]
command = "{stack.svc("steady")}"
""")
        ready = re.compile(r"^steady\s+\| ready$", re.M)
        pids = []
        for n in range(3):
            wait_for(lambda n=n: len(ready.findall(stack.stdout_so_far())) == n + 1, what="ready")
            time.sleep(1.0)  # twice backoff_reset
            pids.append(stack.host_pid("steady"))
            os.kill(pids[-1], signal.SIGKILL)
            # generous: "it came back", far below the 5 s a backoff would take
            wait_for(lambda n=n: stack.count("steady up") == n + 2, timeout=4.0, what="restart")
        pids.append(stack.host_pid("steady"))
        assert len(set(pids)) == 4
        stack.init.signal(TERM)
        assert stack.init.wait() == 0  # never FATAL: a clean stop
        out, err = stack.output()
    assert len(re.findall(r"^steady\s+\| exited with signal SIGKILL$", err, re.M)) == 3, err
    restarting = re.findall(r"^steady\s+\| (restarting .*)$", out, re.M)
    assert restarting == ["restarting in 0 s"] * 3, out
    assert "FATAL" not in err


def test_dependents_are_cycled_in_order_when_a_dependency_dies(mode: str, tmp_path: Path) -> None:
    port = free_port()
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[process.redis]
command = "{stack.svc("redis", "--tcp", str(port))}"
ready = "tcp:127.0.0.1:{port}"
[process.worker]
command = "{stack.svc("worker", "--term-delay", "0.3")}"
after = ["redis"]
[process.other]
command = "{stack.svc("other")}"
""")
        stack.wait_for("worker up", "other up")
        other_pid = stack.host_pid("other")
        os.kill(stack.host_pid("redis"), signal.SIGKILL)
        stack.wait_for("worker up", timeout=20)
        wait_for(lambda: stack.count("worker up") == 2, what="worker to come back")
        events = stack.events()
        assert stack.host_pid("other") == other_pid  # unrelated: untouched
        assert nth(events, "worker term", 1) < nth(events, "redis up", 2)
        assert nth(events, "worker exit", 1) < nth(events, "redis up", 2)
        assert nth(events, "redis listening", 2) < nth(events, "worker up", 2)
        stack.init.signal(TERM)
        assert stack.init.wait() == 0


def test_control_process_exit_ends_pidone_with_its_status(mode: str, tmp_path: Path) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[process.main]
command = "{stack.svc("main", "--exit-after", "0.5", "--code", "3")}"
control = true
[process.helper]
command = "{stack.svc("helper")}"
""")
        assert stack.init.wait() == 3
        assert "helper term" in stack.events()


def test_stop_timeout_ends_in_sigkill_and_an_unclean_exit(mode: str, tmp_path: Path) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[process.stubborn]
command = "{stack.svc("stubborn", "--ignore-term")}"
stop_timeout = 0.5
""")
        stack.wait_for("stubborn listening")
        started = time.monotonic()
        stack.init.signal(TERM)
        assert stack.init.wait() == 1
        assert time.monotonic() - started < 5  # bounded by the stop timeout
        _, err = stack.output()
    assert "stubborn term" in stack.events()
    assert not any(e.startswith("stubborn exit") for e in stack.events())
    assert re.search(r"stubborn\s+\| stop timeout: SIGKILL to group", err), err
    assert "unclean stop: stubborn killed after its stop timeout" in err


def test_sighup_reloads_and_other_signals_are_forwarded(mode: str, tmp_path: Path) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[process.a]
command = "{stack.svc("a")}"
[process.b]
command = "{stack.svc("b")}"
reload_signal = "SIGUSR2"
""")
        stack.wait_for("a listening", "b listening")
        stack.init.signal(signal.SIGHUP)
        stack.wait_for("a SIGHUP", "b SIGUSR2")
        stack.init.signal(signal.SIGUSR1)
        stack.wait_for("a SIGUSR1", "b SIGUSR1")
        assert stack.count("a SIG") == 2 and stack.count("b SIG") == 2
        stack.init.signal(signal.SIGINT)
        assert stack.init.wait() == 0


@pytest.mark.parametrize("log_format", ["text", "raw"])
def test_log_lines_are_intact_under_a_flood_from_two_processes(
    mode: str, tmp_path: Path, log_format: str
) -> None:
    n = 20000
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[pidone]
log_format = "{log_format}"
[process.alpha]
command = "{stack.svc("alpha", "--spam", str(n))}"
[process.beta]
command = "{stack.svc("beta", "--spam", str(n))}"
""")
        stack.wait_for("alpha spammed", "beta spammed")
        wait_for(lambda: stack.stdout_so_far().count(" out ") >= 2 * n, timeout=30, what="flood")
        stack.init.signal(TERM)
        assert stack.init.wait() == 0
        out, err = stack.output()
    width = len("pidone")  # names are padded to the longest, pidone's own included
    for name in ("alpha", "beta"):
        # text: each line after its process's name; raw: as the process wrote it
        prefix = f"{name:<{width}} | " if log_format == "text" else ""
        outs = [line for line in out.splitlines() if line.startswith(f"{prefix}{name} out ")]
        errs = [line for line in err.splitlines() if line.startswith(f"{prefix}{name} err ")]
        assert outs == [f"{prefix}{name} out {i} {'x' * (i % 97)}" for i in range(n)]
        assert errs == [f"{prefix}{name} err {i} {'y' * (i % 89)}" for i in range(n)]
    # pidone's own events keep their prefix in both formats: they say whose they are
    assert f"{'alpha':<{width}} | " in out and "pidone | " in out
    if log_format == "raw":  # and no process line got a prefix as well
        assert not any(f"| {name} " in out + err for name in ("alpha", "beta"))


def test_orphans_of_supervised_processes_are_reaped(mode: str, tmp_path: Path) -> None:
    storm = " ".join(helper("orphan_storm.py"))
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[process.storm]
command = "{storm} 300"
restart = "never"
[process.steady]
command = "{stack.svc("steady")}"
""")
        wait_for(lambda: "storm" in stack.stdout_so_far() and "PEAK" in stack.stdout_so_far(),
                 timeout=60, what="the storm to end")  # fmt: skip
        assert re.search(r"^storm\s+\| ZOMBIES 0$", stack.stdout_so_far(), re.M)
        stack.init.signal(TERM)
        assert stack.init.wait() == 0


def test_shutdown_sweeps_processes_that_escaped_their_group(mode: str, tmp_path: Path) -> None:
    pidfile = tmp_path / "escaped.pid"
    script = f"setsid sleep 1000 & echo $! > {pidfile}; exec {stack_svc(tmp_path, 'a')}"
    with Stack(mode, tmp_path) as stack:
        stack.start(f"[process.a]\ncommand = '''{script}'''\n")
        stack.wait_for("a listening")
        wait_for(pidfile.exists, what="the escaped pid")
        stack.init.signal(TERM)
        assert stack.init.wait() == 0
    if mode == "subreaper":  # as PID 1 the whole namespace is gone anyway
        escaped = int(pidfile.read_text())
        assert not Path(f"/proc/{escaped}").exists()


def stack_svc(tmp_path: Path, name: str) -> str:
    return Stack("subreaper", tmp_path).svc(name)


# --- configuration errors ------------------------------------------------------------


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PIDONE, *args], cwd=tmp_path, capture_output=True, text=True, timeout=30)


def test_check_prints_the_start_order(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text(
        "web: uwsgi --ini x.ini\nworker: celery worker\nredis: redis-server\n"
    )
    (tmp_path / "pidone.toml").write_text(
        '[process.web]\nafter = ["redis"]\n[process.worker]\nafter = ["redis"]\n'
    )
    result = run_cli(tmp_path, "check")
    assert result.returncode == 0, result.stderr
    assert "  1. redis\n  2. web, worker\n" in result.stdout


@pytest.mark.parametrize(
    ("procfile", "toml", "expected"),
    [
        ("web uwsgi\n", None, "Procfile:1:"),
        ("web: a\n", '[process.web]\nstop_signl = "TERM"\n', "pidone.toml:2:"),
        ("web: a\n", '[process.web]\nafter = ["db"]\n', "db"),
        ("a: x\nb: y\n", '[process.a]\nafter = ["b"]\n[process.b]\nafter = ["a"]\n', "cycle"),
        ("web: a\n", '[process.web]\nstop_timeout = "soon"\n', "stop_timeout"),
    ],
)
def test_config_errors_exit_2_and_start_nothing(
    tmp_path: Path, procfile: str, toml: str | None, expected: str
) -> None:
    marker = tmp_path / "started"
    (tmp_path / "Procfile").write_text(procfile.replace("a\n", f"touch {marker}\n"))
    if toml is not None:
        (tmp_path / "pidone.toml").write_text(toml)
    for command in ("check", "run"):
        result = run_cli(tmp_path, command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert expected in result.stderr
        assert not marker.exists()


def test_no_configuration_at_all_is_an_error(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "run")
    assert result.returncode == 2
    assert "Procfile" in result.stderr


def test_run_usage_error_exits_2(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "run", "--bogus")
    assert result.returncode == 2
    assert "--bogus" in result.stderr


def test_a_command_that_needs_a_shell_still_has_the_program_as_its_main_pid(
    mode: str, tmp_path: Path
) -> None:
    with Stack(mode, tmp_path) as stack:
        (tmp_path / ".env").write_text("DELAY=0\n")
        stack.start(f'[process.a]\ncommand = "{stack.svc("a")} --delay ${{DELAY}} 2>&1"\n')
        stack.wait_for("a listening")
        ns_pid = next(e for e in stack.events() if e.startswith("a up ")).split()[2]
        wait_for(lambda: f"started: pid {ns_pid}" in stack.stdout_so_far(), what="start log")
        stack.init.signal(TERM)
        assert stack.init.wait() == 0
    assert "a term" in stack.events()  # the stop signal reached the program, not a shell


def test_a_daemonizing_program_is_followed_through_its_pidfile(mode: str, tmp_path: Path) -> None:
    pidfile = tmp_path / "d.pid"
    daemonize = f"{stack_svc(tmp_path, 'd')} & echo $! > {pidfile}"
    with Stack(mode, tmp_path) as stack:
        stack.start(f"[process.d]\ncommand = '''sh -c '{daemonize}' '''\npidfile = '{pidfile}'\n")
        stack.wait_for("d listening")
        wait_for(lambda: "following pid" in stack.stdout_so_far(), what="the pidfile to be read")
        os.kill(stack.host_pid("d"), signal.SIGKILL)
        wait_for(lambda: stack.count("d up") == 2, what="the daemon to be restarted")
        wait_for(lambda: stack.stdout_so_far().count("following pid") == 2, what="its new pid")
        stack.init.signal(TERM)
        assert stack.init.wait() == 0
    assert stack.events()[-2:] == ["d term", "d exit 0"]


def test_a_supervised_child_starts_clean(mode: str, tmp_path: Path) -> None:
    # As PID 1 a child that keeps pidone's identity is started by posix_spawn,
    # as a subreaper by fork (it needs its parent-death signal): either way
    # nothing of pidone's signal state or of its open files (control socket,
    # metrics server, log pipes, epoll...) reaches the child. pidone's own
    # parent ignores SIGHUP and glibc's signal 32 and blocks SIGUSR1.
    launcher = MESSY_LAUNCHER
    with Stack(mode, tmp_path) as stack:
        stack.start(
            f"""
[pidone]
metrics = "127.0.0.1:{free_port()}"
[process.signals]
command = "grep ^Sig[BI] /proc/self/status"
restart = "never"
[process.fds]
command = "{" ".join(helper("open_fds.py"))}"
restart = "never"
""",
            prefix=[PYTHON, "-c", launcher],
        )
        assert stack.init.wait() == 0
        out, _ = stack.output()
    width = len("signals")
    assert f"{'signals':<{width}} | SigBlk:\t0000000000000000" in out.splitlines(), out
    assert f"{'signals':<{width}} | SigIgn:\t0000000000000000" in out.splitlines(), out
    assert f"{'fds':<{width}} | FDS 0 1 2" in out.splitlines(), out
