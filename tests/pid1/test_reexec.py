"""`pidone ctl reexec` for real, as PID 1 and as a subreaper: pidone execs
itself again and every child, socket and count is as it was."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from pidone import __version__
from tests.helpers import running
from tests.helpers.load import UnixLoad
from tests.helpers.running import PIDONE, children_of, helper, proc_state, wait_for
from tests.helpers.stack import Stack, free_port
from tests.pid1.test_control import ctl, metrics, two_processes
from tests.pid1.test_prebound_servers import ready_count, start_web, uwsgi_command

CHANGED = (
    "the configuration changed since it was read (changed: a: stop_timeout (applied in"
    " place); changed: b: stop_timeout (applied in place); setting changed: stop_timeout"
    " (applied)): pidone ctl update first (a setting that needs a restart of pidone: put"
    " it back, or restart pidone)"
)


def two(stack: Stack, port: int, extra: str = "") -> str:
    """test_control's two processes, with metrics on `port`."""
    return two_processes(stack, f'metrics = "127.0.0.1:{port}"\n{extra}')


def rows(stack: Stack) -> list[tuple[str, str, int | None, int]]:
    status = json.loads(ctl(stack, "status", "--json").stdout)
    return [(r["name"], r["state"], r["pid"], r["restarts"]) for r in status["processes"]]


def reexec(stack: Stack) -> subprocess.CompletedProcess[str]:
    done = ctl(stack, "reexec", "--timeout", "30")
    assert done.returncode == 0, done.stderr
    return done


def zombies(pid: int) -> list[int]:
    return [c for c in children_of(pid) if proc_state(c) == "Z"]


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_reexec_keeps_every_child_its_state_and_the_metrics(mode: str, shared: Path) -> None:
    port = free_port()
    with Stack(mode, shared) as stack:
        stack.start(two(stack, port))
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        os.kill(stack.host_pid("a"), signal.SIGKILL)  # a crash: restarts{reason=crash} 1
        wait_for(lambda: stack.count("a up") == 2 and stack.count("b up") == 2, what="a, b back")
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        before = rows(stack)
        pids = (stack.host_pid("a"), stack.host_pid("b"))
        scraped: Counter[str] = Counter()
        stop = threading.Event()

        def scrape() -> None:  # Prometheus and a kubelet all along: no refused connection
            while not stop.is_set():
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10):
                        scraped["ok"] += 1
                except Exception as exc:
                    scraped[type(exc).__name__] += 1

        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()
        try:
            done = reexec(stack)
        finally:
            stop.set()
            scraper.join(timeout=20)
        assert done.stdout.splitlines() == [
            f"re-executing: pid {stack.init.pid if mode == 'subreaper' else 1}, version "
            f"{__version__}",
            f"re-executed: pidone {__version__}",
        ]
        assert set(scraped) == {"ok"}, scraped
        assert rows(stack) == before
        assert before[0][3] == 1 and before[0][1] == "ready"
        assert (stack.host_pid("a"), stack.host_pid("b")) == pids
        assert stack.count("a up") == 2 and stack.count("b up") == 2  # nothing spawned
        samples = metrics(port)
        assert (
            samples["pidone_process_restarts_total", (("process", "a"), ("reason", "crash"))] == 1
        )
        assert samples["pidone_build_info", (("version", __version__),)] == 1
        assert samples["pidone_zombies_reaped_total", ()] >= 1  # counted before the exec
        assert re.search(
            rf"^pidone\s+\| re-executed from version {re.escape(__version__)} \(pid \d+\)$",
            stack.stdout_so_far(),
            re.M,
        )
        assert zombies(stack.init.pid) == []


def test_a_child_that_exits_during_the_exec_is_reaped_and_restarted(
    mode: str, shared: Path
) -> None:
    with Stack(mode, shared) as stack:
        stack.start(two(stack, free_port()))
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        a = stack.host_pid("a")
        client = subprocess.Popen(
            [PIDONE, "ctl", "--socket", str(stack.control_socket), "reexec"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None
        assert client.stdout.readline().startswith("re-executing: pid ")
        os.kill(a, signal.SIGKILL)  # while the new pidone starts: its SIGCHLD waits, blocked
        assert client.wait(timeout=30) == 0
        wait_for(lambda: stack.count("a up") == 2, what="a restarted after the exec")
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        got = {name: restarts for name, _, _, restarts in rows(stack)}
        assert got == {"a": 1, "b": 1}  # b cycled with a, as after any crash of a
        assert zombies(stack.init.pid) == []


def test_the_listening_socket_and_control_socket_keep_working_under_load(shared: Path) -> None:
    sock = shared / "run" / "app.sock"
    with Stack("pid1", shared) as stack:
        start_web(stack, sock, uwsgi_command())
        master = stack.host_pid_of("uwsgi")
        with UnixLoad(str(sock), retry_reset=True) as load:
            load.wait_for_ok(100)
            reexec(stack)
            load.wait_for_ok(100)
            assert stack.host_pid_of("uwsgi") == master
            # the new pidone hands the socket it was given to a new instance
            restart = ctl(stack, "restart", "web", "--timeout", "30")
            assert (restart.returncode, restart.stdout) == (0, "web: ready\n"), restart.stderr
            wait_for(lambda: ready_count(stack, "web") == 2, timeout=30, what="uwsgi back")
            load.wait_for_ok(100)
        assert set(load.results) == {"ok"}, load.results
        assert stack.host_pid_of("uwsgi") != master


def test_a_broken_new_code_is_refused_by_the_preflight_and_nothing_changes(
    mode: str, shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade = shared / "upgrade"
    upgrade.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(upgrade))  # what pidone's next exec would import
    with Stack(mode, shared) as stack:
        stack.start(two(stack, free_port()))
        monkeypatch.delenv("PYTHONPATH")  # pidone's alone, not our ctl's
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        before = rows(stack)
        (upgrade / "pidone").mkdir()
        (upgrade / "pidone" / "__init__.py").write_text('raise SystemExit("a broken upgrade")\n')
        refused = ctl(stack, "reexec")
        assert refused.returncode == 1
        assert refused.stderr == (
            "pidone ctl: not re-executing: the new code's `pidone check` exited with status 1:"
            " a broken upgrade\n"
        )
        assert rows(stack) == before
        assert "re-executing" not in stack.stdout_so_far()
        (upgrade / "pidone" / "__init__.py").unlink()
        (upgrade / "pidone").rmdir()
        reexec(stack)  # fixed: it goes
        assert rows(stack) == before


def venv_of_its_own(root: Path) -> Path:
    """A venv with the tests' Python and site-packages whose interpreter a
    test may take away: its `pidone` script."""
    ours = Path(sys.prefix)
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python3").symlink_to(Path(sys.executable).resolve())
    shutil.copy(ours / "pyvenv.cfg", root / "pyvenv.cfg")
    site = Path(sysconfig.get_path("purelib"))
    (root / site.relative_to(ours)).parent.mkdir(parents=True)
    (root / site.relative_to(ours)).symlink_to(site)
    script = root / "bin" / "pidone"
    script.write_text(
        f"#!{root}/bin/python3\nimport sys\nfrom pidone.cli import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    return script


# Run by every Python of the stack (PYTHONPATH); in the new code's `pidone
# check` alone (the preflight), it takes the interpreter away: an upgrade
# half done when pidone execs, so that its exec fails for real.
HALF_DONE_UPGRADE = """
import os, sys
if os.environ.get("PIDONE_REEXEC_FD") and "check" in sys.orig_argv:
    os.unlink({python!r})
    with open({python!r}, "w") as f:
        f.write("not a program\\n")
"""


def test_an_exec_that_fails_after_the_preflight_leaves_pidone_going_on_as_before(
    mode: str, shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pidone = venv_of_its_own(shared / "venv")
    python = pidone.parent / "python3"
    hook = shared / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HALF_DONE_UPGRADE.format(python=str(python)))
    monkeypatch.setattr(running, "PIDONE", str(pidone))  # pidone's own, not our ctl's
    monkeypatch.setenv("PYTHONPATH", str(hook))
    port = free_port()
    with Stack(mode, shared) as stack:
        stack.start(two(stack, port))
        monkeypatch.delenv("PYTHONPATH")
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        before, pids = rows(stack), (stack.host_pid("a"), stack.host_pid("b"))
        fds = fd_count(stack.init.pid)
        failed = ctl(stack, "reexec", "--timeout", "30")
        assert python.is_file() and not python.is_symlink()  # the preflight passed, then this
        why = f"[Errno 13] Permission denied: '{python}'"
        assert (failed.returncode, failed.stderr) == (
            1,
            f"pidone ctl: re-executing failed: {why}; pidone goes on as before"
            f" (version {__version__})\n",
        ), failed.stdout
        assert f"pidone | re-executing failed: {why}; going on as before" in (stack.stderr_so_far())
        # the same pidone, everything as it was and working: control, /metrics, the loop
        assert rows(stack) == before
        assert (stack.host_pid("a"), stack.host_pid("b")) == pids
        status = ctl(stack, "status")
        assert f"pidone's last re-exec failed: {why}" in status.stdout, status.stdout
        assert metrics(port)["pidone_build_info", (("version", __version__),)] == 1
        os.kill(pids[0], signal.SIGKILL)
        wait_for(lambda: stack.count("a up") == 2, what="a restarted by the same pidone")
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        assert fd_count(stack.init.pid) == fds  # the handover's memfd closed, nothing kept
        assert zombies(stack.init.pid) == []
        # the upgrade finished: the next reexec goes
        python.unlink()
        python.symlink_to(Path(sys.executable).resolve())
        (hook / "sitecustomize.py").unlink()
        reexec(stack)
        assert "pidone's last re-exec failed" not in ctl(stack, "status").stdout
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0


def test_a_reexec_after_the_configuration_changed_is_refused(mode: str, shared: Path) -> None:
    port = free_port()
    with Stack(mode, shared) as stack:
        stack.start(two(stack, port))
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        before = rows(stack)
        (stack.dir / "pidone.toml").write_text(two(stack, port, "stop_timeout = 3"))
        refused = ctl(stack, "reexec")
        assert (refused.returncode, refused.stderr) == (1, f"pidone ctl: {CHANGED}\n")
        assert rows(stack) == before
        (stack.dir / "pidone.toml").write_text("[process.a\n")  # broken: refused too
        refused = ctl(stack, "reexec")
        assert refused.returncode == 1
        assert refused.stderr.startswith(
            "pidone ctl: the configuration does not load now, fix it first:"
        )
        assert rows(stack) == before
        # once ctl update applied the change, the reexec goes: the same pids
        (stack.dir / "pidone.toml").write_text(two(stack, port, "stop_timeout = 3"))
        assert ctl(stack, "update").returncode == 0
        assert rows(stack) == before
        done = ctl(stack, "reexec")
        assert done.returncode == 0, done.stderr
        assert rows(stack) == before


def test_no_fd_of_pidone_reaches_a_child_after_reexec(mode: str, shared: Path) -> None:
    with Stack(mode, shared) as stack:
        stack.start(
            f"""
[pidone]
metrics = "127.0.0.1:{free_port()}"
[socket.app]
path = "{shared / "run" / "app.sock"}"
listen = true
[process.a]
command = "{stack.svc("a", "--notify")}"
ready = "notify"
[process.fds]
command = "{" ".join(helper("open_fds.py"))}"
restart = "never"
[process.env]
command = "sh -c 'echo REEXEC_FD=${{PIDONE_REEXEC_FD:-none}}'"
restart = "never"
"""
        )
        wait_for(lambda: "FDS" in stack.stdout_so_far(), what="the first fds report")
        wait_for(lambda: "REEXEC_FD=" in stack.stdout_so_far(), what="the first env report")
        reexec(stack)
        start = ctl(stack, "start", "fds", "--timeout", "20")
        assert start.returncode == 0, start.stderr
        wait_for(lambda: stack.stdout_so_far().count("FDS") == 2, what="the second report")
        reports = re.findall(r"^fds\s+\| (FDS.*)$", stack.stdout_so_far(), re.M)
        assert reports == ["FDS 0 1 2", "FDS 0 1 2"]
        assert ctl(stack, "start", "env", "--timeout", "20").returncode == 0
        wait_for(lambda: stack.stdout_so_far().count("REEXEC_FD=") == 2, what="env twice")
        # pidone's PIDONE_REEXEC_FD is its own: no child's environment has it
        assert re.findall(r"^env\s+\| (REEXEC_FD=.*)$", stack.stdout_so_far(), re.M) == [
            "REEXEC_FD=none",
            "REEXEC_FD=none",
        ]


def test_reexec_ten_times_in_a_row_keeps_the_pids_and_no_fd_grows(mode: str, shared: Path) -> None:
    with Stack(mode, shared) as stack:
        stack.start(two(stack, free_port()))
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        reexec(stack)  # the first may settle what a fresh start opened lazily
        before, fds = rows(stack), fd_count(stack.init.pid)
        for _ in range(10):
            reexec(stack)
        assert rows(stack) == before
        assert fd_count(stack.init.pid) == fds
        assert stack.stdout_so_far().count("re-executed from version") == 11


def test_a_handover_fd_that_is_not_open_starts_pidone_afresh(
    mode: str, shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIDONE_REEXEC_FD", "77")
    with Stack(mode, shared) as stack:
        stack.start(two(stack, free_port()))
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        assert rows(stack)[0][1] == "ready"
        assert (
            "pidone | re-exec: the handover cannot be used (PIDONE_REEXEC_FD=77: Bad file"
            " descriptor): stopping every process left (SIGTERM, SIGKILL after 5 s), then"
            " starting afresh"
        ) in stack.stderr_so_far()


# Execs pidone as a re-executed one would be: a process of the old pidone's
# still running (its pid in argv[1]'s file), a handover that is garbage.
GARBAGE_LAUNCHER = """
import os, sys
left = os.fork()
if left == 0:
    os.execvp("sleep", ["sleep", "1000"])
open(sys.argv[1], "w").write(str(left))
fd = os.memfd_create("handover", 0)
os.write(fd, b"{not json")
os.lseek(fd, 0, os.SEEK_SET)
os.environ["PIDONE_REEXEC_FD"] = str(fd)
os.execv(sys.argv[2], sys.argv[2:])
"""


def test_a_garbage_handover_stops_what_was_left_and_starts_afresh(shared: Path) -> None:
    left_file = shared / "left.pid"
    with Stack("subreaper", shared) as stack:
        stack.start(
            two(stack, free_port()),
            prefix=[sys.executable, "-c", GARBAGE_LAUNCHER, str(left_file)],
        )
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        left = int(left_file.read_text())
        wait_for(lambda: proc_state(left) == "", what="the process left to be ended and reaped")
        assert [(name, state) for name, state, _, _ in rows(stack)] == [
            ("a", "ready"),
            ("b", "ready"),
        ]
        assert (
            "pidone | re-exec: the handover cannot be used (not JSON: Expecting property name"
            " enclosed in double quotes: line 1 column 2 (char 1)): stopping every process left"
        ) in stack.stderr_so_far()
        assert zombies(stack.init.pid) == []
