"""`pidone ctl reread` and `pidone ctl update [NAME...]` against a real
`pidone run`, as PID 1 and as a subreaper: the configuration changed on
disk, then applied; what is not changed keeps its pid and gets no signal."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from tests.helpers.running import PYTHON, helper, wait_for
from tests.helpers.stack import Stack
from tests.pid1.test_control import ctl

RECORDER = " ".join(helper("sigrecorder.py"))


def status(stack: Stack) -> dict[str, dict[str, object]]:
    import json

    done = ctl(stack, "status", "--json")
    assert done.returncode == 0, done.stderr
    return {p["name"]: p for p in json.loads(done.stdout)["processes"]}


def pids(stack: Stack) -> dict[str, object]:
    return {name: p["pid"] for name, p in status(stack).items()}


def rewrite(stack: Stack, toml: str) -> None:
    (stack.dir / "pidone.toml").write_text(toml)


def ready(stack: Stack, *names: str) -> None:
    wait_for(
        lambda: all(status(stack).get(n, {}).get("ready") for n in names),
        timeout=30,
        what=f"{', '.join(names)} ready",
    )


def signals_recorded(stack: Stack, name: str) -> list[str]:
    return re.findall(rf"^{name}\s+\| (SIG \d+ \d+)$", stack.stdout_so_far(), re.M)


def base(stack: Stack, *, extra_b: str = "", extra: str = "") -> str:
    return f"""
[pidone]
settle_time = 0.2
[process.rec]
command = "{RECORDER}"
[process.a]
command = "{stack.svc("a")}"
[process.b]
command = "{stack.svc("b")}"
after = ["a"]
environment = {{ X = "1" }}
{extra_b}
[process.c]
command = "{stack.svc("c")}"
{extra}
"""


def test_an_update_that_changes_nothing_signals_nobody(mode: str, tmp_path: Path) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(base(stack))
        ready(stack, "rec", "a", "b", "c")
        before = pids(stack)
        reread = ctl(stack, "reread")
        assert (reread.returncode, reread.stdout) == (0, "unchanged: rec, a, b, c\nnothing to do\n")
        done = ctl(stack, "update")
        assert (done.returncode, done.stdout) == (0, "unchanged: rec, a, b, c\nnothing to do\n")
        time.sleep(0.5)
        assert pids(stack) == before
        assert signals_recorded(stack, "rec") == []
        assert stack.count("a term") == stack.count("b term") == stack.count("c term") == 0


def test_update_adds_removes_and_restarts_the_changed_with_its_new_environment(
    mode: str, tmp_path: Path
) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(base(stack))
        ready(stack, "rec", "a", "b", "c")
        stack.wait_for("c up")  # ready by settle_time; the SIGTERM handler comes before "up"
        before = pids(stack)
        new = base(stack).replace('X = "1"', 'X = "2"')
        new = new.split("[process.c]")[0] + f'[process.d]\ncommand = "{stack.svc("d")}"\n'
        new += 'after = ["b"]\n'
        rewrite(stack, new)
        reread = ctl(stack, "reread")
        assert reread.returncode == 0, reread.stderr
        assert reread.stdout.splitlines() == [
            "added: d",
            "removed: c",
            "changed: b: environment (restarted)",
            "unchanged: rec, a",
        ]
        assert pids(stack) == before  # a reread applies nothing
        done = ctl(stack, "update", "--timeout", "30")
        assert done.returncode == 0, done.stderr
        assert "b: ready" in done.stdout and "d: ready" in done.stdout
        assert "c: stopped" in done.stdout
        after = pids(stack)
        assert sorted(after) == ["a", "b", "d", "rec"]  # c gone from status
        assert after["a"] == before["a"] and after["rec"] == before["rec"]
        assert after["b"] != before["b"]
        environ = Path(f"/proc/{stack.host_pid('b')}/environ").read_bytes().split(b"\0")
        assert b"X=2" in environ
        assert stack.count("c term") == 1 and stack.count("a term") == 0
        assert signals_recorded(stack, "rec") == []


def test_an_in_place_change_keeps_the_pid_and_its_new_stop_timeout_is_honoured(
    mode: str, tmp_path: Path
) -> None:
    with Stack(mode, tmp_path) as stack:
        slow = f'[process.slow]\ncommand = "{stack.svc("slow", "--ignore-term")}"\n'
        stack.start(base(stack, extra=slow + "stop_timeout = 60\n"))
        ready(stack, "slow", "rec")
        stack.wait_for("slow up")  # ignoring SIGTERM from now on, not only ready by settle_time
        before = pids(stack)
        rewrite(stack, base(stack, extra=slow + "stop_timeout = 1\n"))
        done = ctl(stack, "update")
        assert done.returncode == 0, done.stderr
        assert "changed: slow: stop_timeout (applied in place)" in done.stdout
        assert pids(stack) == before
        began = time.monotonic()
        stopped = ctl(stack, "stop", "slow")
        took = time.monotonic() - began
        assert stopped.returncode == 0, stopped.stderr
        assert took < 15, f"the stop took {took:.1f} s: the old stop_timeout (60 s)?"
        assert status(stack)["slow"]["last_exit"]["signal"] == 9  # type: ignore[index]
        assert signals_recorded(stack, "rec") == []


def test_a_config_error_changes_nothing_and_exits_2(mode: str, tmp_path: Path) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(base(stack))
        ready(stack, "rec", "a", "b", "c")
        before = pids(stack)
        rewrite(stack, base(stack) + '[process.bad]\ncommand = "x"\nrestart = "sometimes"\n')
        for verb in ("reread", "update"):
            done = ctl(stack, verb)
            assert done.returncode == 2, done
            assert done.stdout == ""
            assert done.stderr.startswith("pidone: ") and "restart" in done.stderr
        assert pids(stack) == before
        assert signals_recorded(stack, "rec") == []


def test_an_added_notify_process_whose_socket_path_no_bind_takes_is_refused(
    mode: str, tmp_path: Path
) -> None:
    # 90 letters of name: its notify socket path is longer than a sockaddr
    # holds. Refused as `pidone run` refuses it at the start (exit 2), not
    # spawned into failure after failure.
    name = "n" * 90
    with Stack(mode, tmp_path) as stack:
        stack.start(base(stack))
        ready(stack, "rec", "a", "b", "c")
        before = pids(stack)
        rewrite(stack, base(stack) + f'[process.{name}]\ncommand = "x"\nready = "notify"\n')
        for verb in ("reread", "update"):
            done = ctl(stack, verb)
            assert done.returncode == 2, done
            assert done.stderr.startswith("pidone: the notify socket path "), done.stderr
            assert f"/{name}.sock is longer than the 107 bytes a socket address holds" in (
                done.stderr
            )
        assert pids(stack) == before
        assert signals_recorded(stack, "rec") == []


def test_update_of_named_processes_applies_only_theirs(mode: str, tmp_path: Path) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(base(stack))
        ready(stack, "rec", "a", "b", "c")
        before = pids(stack)
        changed = base(stack).replace('X = "1"', 'X = "2"')
        rewrite(stack, changed.replace(stack.svc("c"), stack.svc("c2")))
        unknown = ctl(stack, "update", "nope")
        assert unknown.returncode == 1
        assert "no such process: nope (known: rec, a, b, c)" in unknown.stderr
        done = ctl(stack, "update", "c")
        assert done.returncode == 0, done.stderr
        after = pids(stack)
        assert after["b"] == before["b"] and after["c"] != before["c"]
        wait_for(lambda: stack.count("c2 up") == 1, what="c2 up")


def test_sockets_added_and_removed_by_update(mode: str, tmp_path: Path) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(base(stack))
        ready(stack, "a")
        path = tmp_path / "sock" / "api.sock"
        sock = f'[socket.api]\npath = "{path}"\nlisten = true\n'
        user = f"[process.api]\ncommand = \"{PYTHON} -c 'import time; time.sleep(600)'\"\n"
        user += 'sockets = ["api"]\n'
        rewrite(stack, sock + base(stack) + user)
        done = ctl(stack, "update")
        assert done.returncode == 0, done.stderr
        assert "socket added: api" in done.stdout
        assert path.is_socket()
        api = stack.host_pid_of("time.sleep(600)")
        environ = Path(f"/proc/{api}/environ").read_bytes().split(b"\0")
        assert b"LISTEN_FDS=1" in environ and b"LISTEN_FDNAMES=api" in environ
        rewrite(stack, base(stack))
        done = ctl(stack, "update")
        assert done.returncode == 0, done.stderr
        assert "socket removed: api" in done.stdout and "removed: api" in done.stdout
        assert not path.exists()
        assert "api" not in status(stack)


def test_an_update_during_the_shutdown_is_refused(mode: str, tmp_path: Path) -> None:
    with Stack(mode, tmp_path) as stack:
        slow = f'[process.slow]\ncommand = "{stack.svc("slow", "--term-delay", "3")}"\n'
        stack.start(base(stack, extra=slow))
        ready(stack, "slow")
        stack.wait_for("slow up")  # its SIGTERM handler (and "term") set, not only settled
        os.kill(stack.init.pid, 15)
        wait_for(lambda: stack.count("slow term") == 1, what="the shutdown")
        done = ctl(stack, "update")
        assert done.returncode == 1
        assert "pidone is shutting down: update refused" in done.stderr


def test_a_reread_of_thousands_of_shell_commands_is_bounded_and_reaping_goes_on(
    mode: str, tmp_path: Path
) -> None:
    """Each `sh -n` is a fork and exec: 3000 of them would take longer than
    the 5 s all of one load's get (SHELL_CHECK_SECONDS). A process that
    exits during the read is restarted right after."""
    with Stack(mode, tmp_path) as stack:
        flapper = f'[process.flap]\ncommand = "{stack.svc("flap", "--exit-after", "0.5")}"\n'
        stack.start(base(stack, extra=flapper))
        ready(stack, "a")
        many = "".join(
            f'[process.p{i}]\ncommand = "sleep 600 && echo {i}"\nport = {10000 + i}\n'
            "autostart = false\n"
            for i in range(3000)
        )
        rewrite(stack, base(stack, extra=flapper) + many)
        ups = stack.count("flap up")
        began = time.monotonic()
        done = ctl(stack, "reread")
        took = time.monotonic() - began
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("added: p0\n")
        assert took < 20, f"reread took {took:.1f} s"
        wait_for(lambda: stack.count("flap up") > ups + 1, timeout=10, what="flap restarted")
        print(f"reread of 3000 shell commands: {took:.2f} s")


def test_a_removed_notify_process_leaves_no_notify_socket_behind(mode: str, tmp_path: Path) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(base(stack))
        ready(stack, "a")
        notify = f'[process.n]\ncommand = "{stack.svc("n", "--notify")}"\nready = "notify"\n'
        rewrite(stack, base(stack) + notify)
        done = ctl(stack, "update")
        assert done.returncode == 0, done.stderr
        assert "n: ready" in done.stdout
        environ = Path(f"/proc/{stack.host_pid('n')}/environ").read_bytes().split(b"\0")
        (line,) = [v for v in environ if v.startswith(b"NOTIFY_SOCKET=")]
        path = Path(os.fsdecode(line.partition(b"=")[2]))
        assert path.is_socket()
        rewrite(stack, base(stack))
        done = ctl(stack, "update")
        assert done.returncode == 0, done.stderr
        assert not path.exists()
        assert "n" not in status(stack)


def test_deploys_adding_and_removing_new_names_leave_pidone_no_fd_behind(
    mode: str, tmp_path: Path
) -> None:
    # Each deploy names its worker anew (worker-1, worker-2...): a removed
    # name's log pipes must go with it, or pidone gathers two fds a deploy.
    with Stack(mode, tmp_path) as stack:
        stack.start(base(stack))
        ready(stack, "rec", "a", "b", "c")
        before = pids(stack)
        fds = len(os.listdir(f"/proc/{stack.init.pid}/fd"))
        for n in range(1, 6):
            worker = f'[process.worker-{n}]\ncommand = "{stack.svc(f"worker-{n}")}"\n'
            rewrite(stack, base(stack) + worker)
            done = ctl(stack, "update")
            assert done.returncode == 0, done.stderr
            # ready by settle_time: wait for its own start (its SIGTERM handler,
            # for the "term" the next update's stop makes it write)
            stack.wait_for(f"worker-{n} up")
        rewrite(stack, base(stack))
        assert ctl(stack, "update").returncode == 0
        assert set(status(stack)) == set(before) and pids(stack) == before
        assert len(os.listdir(f"/proc/{stack.init.pid}/fd")) == fds
        assert stack.count("worker-4 up") == 1 and stack.count("worker-4 term") == 1


def test_a_touch_file_added_by_update_is_watched(mode: str, tmp_path: Path) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(base(stack))
        ready(stack, "a", "c")
        stack.wait_for("c up")  # the touch's stop must find its SIGTERM handler
        flag = tmp_path / "restart.txt"
        rewrite(stack, base(stack, extra=f'touch = ["{flag}"]\n'))
        done = ctl(stack, "update")
        assert done.returncode == 0, done.stderr
        assert "changed: c: touch (applied in place)" in done.stdout
        assert stack.count("c term") == 0
        flag.write_text("deploy\n")
        wait_for(lambda: stack.count("c up") == 2, timeout=15, what="c restarted by its touch")
        assert stack.count("c term") == 1
