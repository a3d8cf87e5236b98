"""Starting and stopping, tried as an unlucky operator would: pidone as PID 1
of a fresh namespace (and as a subreaper) with real processes that stop
themselves, escape their group, leave children behind, cannot be started,
or give up, and the control socket and /readyz telling the truth about it."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from pidone.config.rundir import RuntimeDir, notify_dir_for
from tests.helpers.running import descendants, proc_state, wait_for
from tests.helpers.stack import Stack, free_port
from tests.helpers.users import APP, gid, socket_table, uid
from tests.pid1.test_control import _answers, ctl, http_status


def test_sigstopped_process_gets_sigcont_and_stops_by_its_own_handler(
    mode: str, tmp_path: Path
) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(f'[process.a]\ncommand = "{stack.svc("a")}"\nstop_timeout = 10\n')
        stack.wait_for("a listening")
        pid = stack.host_pid("a")
        os.kill(pid, signal.SIGSTOP)
        wait_for(lambda: proc_state(pid) == "T", what="a stopped by SIGSTOP")
        started = time.monotonic()
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0  # a clean stop: its handler ran, no SIGKILL
        assert time.monotonic() - started < 5  # not the 10 s stop timeout
        out, err = stack.output()
    assert stack.events()[-2:] == ["a term", "a exit 0"]  # the handler's marker and status
    assert re.search(r"^a\s+\| stopped \(status 0\)$", out, re.M), out
    assert "SIGKILL" not in err


def test_pidfile_daemon_outside_any_group_it_leads_that_ignores_sigterm_is_killed(
    mode: str, tmp_path: Path
) -> None:
    # `&` in sh -c: the daemon stays in its dead launcher's group, leading none,
    # so killpg(its pid) says ESRCH: the final SIGKILL must go to the pid itself.
    pidfile = tmp_path / "d.pid"
    with Stack(mode, tmp_path) as stack:
        daemon = f"{stack.svc('d', '--ignore-term')} & echo $! > {pidfile}"
        stack.start(f"""
[process.d]
command = '''sh -c '{daemon}' '''
pidfile = "{pidfile}"
stop_timeout = 0.5
""")
        stack.wait_for("d listening")
        wait_for(lambda: "following pid" in stack.stdout_so_far(), what="the pidfile read")
        host = stack.host_pid("d")
        assert os.getpgid(host) != host  # leads no group
        started = time.monotonic()
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 1  # it needed the SIGKILL: unclean
        assert time.monotonic() - started < 5  # shutdown completes: no hang
        _, err = stack.output()
    assert "d term" in stack.events()
    assert not any(e.startswith("d exit") for e in stack.events())
    assert "unclean stop: d killed after its stop timeout" in err
    assert not Path(f"/proc/{host}").exists()


def test_spawn_failing_with_emfile_is_a_failed_start_then_fatal(mode: str, tmp_path: Path) -> None:
    # pidone's own RLIMIT_NOFILE so low that the pipes for its child cannot be
    # made (EMFILE, an OSError, not a SpawnError): it used to stay "starting".
    with Stack(mode, tmp_path) as stack:
        stack.start(
            "[pidone]\nfatal_after = 3\nbackoff_initial = 0.1\n"
            '[process.a]\ncommand = "sleep 100"\n',
            prefix=["prlimit", "--nofile=10:10"],
        )
        assert stack.init.wait() == 1  # FATAL, nothing left to run: an unclean exit
        _, err = stack.output()
    assert re.search(r"^a\s+\| cannot start: OSError: Too many open files$", err, re.M), err
    assert re.search(r"^a\s+\| FATAL: exited 3 times within", err, re.M), err
    assert "unclean stop: a is FATAL" in err
    assert "internal error" not in err


def test_ctl_stop_web_while_a_one_shot_job_is_done_does_not_end_the_container(
    mode: str, tmp_path: Path
) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[pidone]
settle_time = 0.2
[process.job]
command = "{stack.svc("job", "--exit-after", "0", "--code", "0")}"
restart = "never"
[process.web]
command = "{stack.svc("web")}"
""")
        stack.wait_for("job exit 0", "web listening")
        stopped = ctl(stack, "stop", "web")
        assert stopped.returncode == 0, stopped.stderr
        time.sleep(1.0)
        assert stack.init.proc.poll() is None  # still there, for the operator
        assert "no process left to run" not in stack.stdout_so_far()
        started = ctl(stack, "start", "--timeout", "20", "web")
        assert started.returncode == 0, started.stderr
        # ready by settle_time: the new web's own "up" may come after the reply
        wait_for(lambda: stack.count("web up") == 2, what="the new web's journal line")
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0


def test_a_fatal_process_makes_readyz_503_naming_it(shared: Path) -> None:
    port = free_port()
    with Stack("pid1", shared) as stack:
        stack.start(f"""
[pidone]
settle_time = 0.2
fatal_after = 1
metrics = "127.0.0.1:{port}"
[process.web]
command = "{stack.svc("web", "--exit-after", "0", "--code", "3")}"
[process.steady]
command = "{stack.svc("steady")}"
""")
        wait_for(lambda: "FATAL" in stack.stderr_so_far(), what="web FATAL")
        wait_for(lambda: _answers(port), what="the metrics server")
        # The FATAL line is written in the middle of a loop turn, the snapshot
        # /readyz serves is published at its end: wait for that, not the line.
        readyz = f"http://127.0.0.1:{port}/readyz"
        wait_for(lambda: http_status(readyz) == (503, "not ready: web (fatal)\n"),
                 what="/readyz 503 naming web (fatal)")  # fmt: skip
        assert http_status(f"http://127.0.0.1:{port}/healthz")[0] == 200  # the loop is fine
        waited = ctl(stack, "wait-ready", "--timeout", "1")
        assert waited.returncode == 1
        assert "web (fatal)" in waited.stderr
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 1


def test_ctl_signal_while_the_process_waits_for_its_pidfile_says_not_running_yet(
    mode: str, tmp_path: Path
) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[process.d]
command = "true"
pidfile = "{tmp_path / "never.pid"}"
stop_timeout = 0.5
""")
        wait_for(lambda: "started: pid" in stack.stdout_so_far(), what="the launcher")
        time.sleep(0.3)  # it has exited 0: daemonized, no pid known yet
        result = ctl(stack, "signal", "HUP", "d")
        assert result.returncode == 1
        assert "d: not running yet: waiting for its pidfile" in result.stderr.splitlines()[0]
        assert "internal error" not in stack.stderr_so_far()  # the AssertionError
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 1


def _sleepers(init_pid: int, word: str) -> list[int]:
    found = []
    for pid in descendants(init_pid):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [
                b"sleep",
                word.encode(),
            ]:
                found.append(pid)
        except FileNotFoundError:
            pass
    return found


def test_a_child_in_a_session_of_its_own_does_not_survive_restart_or_stop(
    mode: str, tmp_path: Path
) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[pidone]
settle_time = 0.2
[process.a]
command = "setsid sleep 4242 & exec {stack.svc("a")}"
""")
        stack.wait_for("a listening")
        wait_for(lambda: len(_sleepers(stack.init.pid, "4242")) == 1, what="its session child")
        for n in range(3):
            result = ctl(stack, "restart", "--timeout", "20", "a")
            assert result.returncode == 0, result.stderr
            wait_for(lambda n=n: stack.count("a listening") == n + 2, what="the new instance")
        # one instance, one child: nothing of the three old instances is left
        wait_for(lambda: len(_sleepers(stack.init.pid, "4242")) == 1, what="no leftovers")
        assert ctl(stack, "stop", "a").returncode == 0
        wait_for(lambda: _sleepers(stack.init.pid, "4242") == [], what="nothing after the stop")
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0


def test_what_a_crashed_instance_left_in_its_group_does_not_outlive_it(
    mode: str, tmp_path: Path
) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[process.a]
command = "sleep 4243 & exec {stack.svc("a")}"
""")
        stack.wait_for("a listening")
        wait_for(lambda: len(_sleepers(stack.init.pid, "4243")) == 1, what="its child")
        for n in range(3):
            os.kill(stack.host_pid("a"), signal.SIGKILL)
            wait_for(lambda n=n: stack.count("a listening") == n + 2, what="the new instance")
        # each crash took its group along: one instance, one child
        wait_for(lambda: len(_sleepers(stack.init.pid, "4243")) == 1, what="no leftovers")
        crashes = re.findall(r"^a\s+\| exited with signal SIGKILL$", stack.stderr_so_far(), re.M)
        assert len(crashes) == 3
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0


def test_a_symlink_at_a_listen_false_socket_path_is_warned_about_once(
    mode: str, shared: Path
) -> None:
    path = shared / "own" / "app.sock"
    with Stack(mode, shared) as stack:
        stack.start(
            socket_table(path, listen=False)
            + f"""
[process.web]
command = "sh -c 'ln -s /etc/passwd {path}; exec sleep 1000'"
user = "{APP}"
sockets = ["app"]
"""
        )
        warned = re.compile(r"^web\s+\| socket app: .*not a socket", re.M)
        wait_for(lambda: warned.search(stack.stderr_so_far()) is not None, what="the warning")
        time.sleep(1.5)  # 20 warnings a second before
        assert len(warned.findall(stack.stderr_so_far())) == 1
        assert Path("/etc/passwd").stat().st_mode & 0o777 == 0o644  # not chmodded through it
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0


def test_a_notify_socket_path_taken_by_a_file_is_a_failed_start_then_fatal(shared: Path) -> None:
    # pidone as a plain user (subreaper: no namespace without root) finds a
    # file where the notify socket goes (its runtime directory .pidone beside
    # the configuration): an OSError, not a SpawnError, and never removed.
    who = [f"--reuid={uid(APP)}", f"--regid={gid(APP)}", "--clear-groups"]
    found = RuntimeDir(str(shared / ".pidone"), private=True)
    notify = Path(notify_dir_for(found, str(shared / "control.sock")))  # Stack's control socket
    notify.mkdir(parents=True)
    (notify / "web.sock").write_text("not a socket")
    for path in (notify.parent, notify, notify / "web.sock"):
        os.chown(path, uid(APP), gid(APP))
    notify.parent.chmod(0o700)
    with Stack("subreaper", shared) as stack:
        stack.start(
            f"""
[pidone]
fatal_after = 2
backoff_initial = 0.1
[process.web]
command = "{stack.svc("web", "--notify")}"
ready = "notify"
""",
            prefix=["setpriv", *who],
        )
        assert stack.init.wait() == 1  # FATAL, nothing left to run
        _, err = stack.output()
    refused = r"^web\s+\| cannot start: OSError: exists and is not a socket$"
    assert re.search(refused, err, re.M), err
    assert "unclean stop: web is FATAL" in err
    assert stack.count("web up") == 0
    assert (notify / "web.sock").read_text() == "not a socket"
