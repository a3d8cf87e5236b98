"""`autostart = false`, `pidone run NAME...` and `stdin = true`, for real:
pidone as PID 1 of a fresh PID namespace and as a subreaper."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from tests.helpers.running import PIDONE, PYTHON, children_of, proc_state, require_root, wait_for
from tests.helpers.stack import Stack
from tests.pid1.test_control import ctl
from tests.pid1.test_single_command import run_on_a_terminal


def states(stack: Stack) -> list[tuple[str, str, int | None]]:
    rows = json.loads(ctl(stack, "status", "--json").stdout)["processes"]
    return [(r["name"], r["state"], r["pid"]) for r in rows]


def test_an_autostart_false_process_runs_only_once_ctl_starts_it(mode: str, tmp_path: Path) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[pidone]
settle_time = 0.2
[process.a]
command = "{stack.svc("a")}"
[process.b]
command = "{stack.svc("b")}"
autostart = false
ready = "file:{tmp_path / "b.ready"}"
[process.c]
command = "{stack.svc("c", "--touch", str(tmp_path / "c.ready"))}"
after = ["b"]
autostart = false
ready = "file:{tmp_path / "c.ready"}"
""")
        stack.wait_for("a up")
        # Not started: STOPPED, and left out of "everything ready"
        wait = ctl(stack, "wait-ready", "--timeout", "20")
        assert (wait.returncode, wait.stderr) == (0, "")
        rows = states(stack)
        assert [(n, s) for n, s, _ in rows] == [("a", "ready"), ("b", "stopped"), ("c", "stopped")]
        assert [pid is None for _, _, pid in rows] == [False, True, True]
        (tmp_path / "b.ready").touch()
        start = ctl(stack, "start", "c")  # starts b, what c is after, first
        assert (start.returncode, start.stdout) == (0, "c: ready\n")
        out = stack.stdout_so_far()
        assert out.index("c      | started") > out.index("b      | ready") > 0
        assert [s for _, s, _ in states(stack)] == ["ready", "ready", "ready"]
        # b was ready at once (its file was there): its own start may still be
        # under way, and the stop must not come before it has written "up"
        stack.wait_for("b up", "c up")
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
    assert stack.count("b up") == stack.count("c up") == 1


def test_run_names_starts_only_those_and_what_they_are_after(mode: str, tmp_path: Path) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(
            f"""
[pidone]
settle_time = 0.2
[process.redis]
command = "{stack.svc("redis")}"
[process.web]
command = "{stack.svc("web")}"
after = ["redis"]
autostart = false
[process.worker]
command = "{stack.svc("worker")}"
after = ["redis"]
""",
            run_args=("web",),  # named: started despite autostart = false
        )
        stack.wait_for("redis up", "web up")
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        assert [(n, s) for n, s, _ in states(stack)] == [("redis", "ready"), ("web", "ready")]
        unknown = ctl(stack, "start", "worker")  # not part of this run
        assert unknown.returncode == 1
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
    assert stack.count("worker up") == 0


def test_run_with_an_unknown_name_exits_2_and_starts_nothing(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text(f"web: touch {tmp_path / 'started'}\nworker: true\n")
    for command in ("run", "check"):
        done = subprocess.run(
            [PIDONE, command, "-f", str(tmp_path / "Procfile"), "web", "wokrer"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2
        assert done.stderr == (
            f"pidone: no process wokrer in {tmp_path / 'Procfile'}; known: web, worker;"
            ' did you mean "worker"?\n'
        )
    assert not (tmp_path / "started").exists()


def test_stdin_true_gets_pidones_stdin_the_others_dev_null(mode: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(b"line one\n" + os.urandom(4096).hex().encode() + b"\nlast\n")
    fd = os.open(data, os.O_RDONLY)
    try:
        with Stack(mode, tmp_path) as stack:
            stack.start(
                f"""
[process.reader]
command = "cat > {tmp_path / "reader.out"}"
stdin = true
restart = "never"
[process.other]
command = "cat > {tmp_path / "other.out"}"
restart = "never"
""",
                stdin=fd,
            )
            assert stack.init.wait() == 0  # both read to EOF and exited 0
    finally:
        os.close(fd)
    assert (tmp_path / "reader.out").read_bytes() == data.read_bytes()
    assert (tmp_path / "other.out").read_bytes() == b""


def test_stdin_true_on_pidones_terminal_is_said_and_the_reader_stops_on_sigttin(
    mode: str, tmp_path: Path
) -> None:
    reader = "import sys; print('FG', flush=True); sys.stdin.read()"
    (tmp_path / "pidone.toml").write_text(
        f'[pidone]\ncontrol_socket = "{tmp_path / "c.sock"}"\n'
        f'[process.reader]\ncommand = "{PYTHON} -c \\"{reader}\\""\nstdin = true\n'
    )
    argv = [PIDONE, "run", "-c", str(tmp_path / "pidone.toml")]
    if mode == "pid1":
        require_root()
        argv = ["/usr/bin/unshare", "--pid", "--fork", "--mount-proc", *argv]
    stopped: list[str] = []

    def stop_pidone(leader: int) -> None:
        pidone = leader if mode != "pid1" else children_of(leader)[0]
        (child,) = children_of(pidone)
        wait_for(lambda: proc_state(child) == "T", what="the reader to stop (SIGTTIN)")
        stopped.append(proc_state(child))
        os.kill(pidone, signal.SIGTERM)  # its stop signal, then SIGCONT: it ends

    status, output = run_on_a_terminal(argv, stop_pidone)
    assert stopped == ["T"]
    assert "stdin = true: pidone's stdin is a terminal" in output
    assert status == 0
