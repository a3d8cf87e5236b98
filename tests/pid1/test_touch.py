"""`touch = [...]` and `touch_signal`, for real (as PID 1 of a fresh PID
namespace and as a subreaper): what `touch FILE`, an editor and a deploy's
`mv` do to a watched file, and what must not hurt pidone."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers.running import PIDONE, helper, wait_for
from tests.helpers.stack import Stack
from tests.pid1.test_control import ctl


def web_with_touch(stack: Stack, deploy: Path, extra: str = "", command: str = "") -> str:
    return f"""
[pidone]
settle_time = 0.2
[process.web]
command = "{command or stack.svc("web")}"
touch = ["{deploy / "reload"}"]
{extra}
[process.worker]
command = "{stack.svc("worker")}"
after = ["web"]
"""


def ups(stack: Stack, name: str) -> list[str]:
    return [e for e in stack.events() if e.startswith(f"{name} up ")]


def restarted(stack: Stack, times: int) -> None:
    """Wait until web has come up 1 + `times` times, and worker after it."""
    wait_for(lambda: len(ups(stack, "web")) == 1 + times, timeout=20, what=f"{times} restarts")
    wait_for(lambda: len(ups(stack, "worker")) == 1 + times, timeout=20, what="worker back")


def test_a_touch_restarts_it_once_with_a_new_pid(mode: str, tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    with Stack(mode, tmp_path) as stack:
        stack.start(web_with_touch(stack, deploy))  # reload does not exist yet: fine
        stack.wait_for("web up", "worker up")
        (deploy / "reload").touch()  # created
        restarted(stack, 1)
        os.utime(deploy / "reload")  # `touch` of an existing file: its times
        restarted(stack, 2)
        (deploy / "reload").write_text("v3\n")  # written and closed, as an editor does
        restarted(stack, 3)
        pids = [e.split()[2] for e in ups(stack, "web")]
        assert len(set(pids)) == 4
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
    assert len(ups(stack, "web")) == 4


def test_a_file_replaced_by_a_rename_restarts_it(mode: str, tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    (deploy / "reload").write_text("v1\n")
    with Stack(mode, tmp_path) as stack:
        stack.start(web_with_touch(stack, deploy))
        stack.wait_for("web up", "worker up")
        (deploy / "reload.new").write_text("v2\n")  # an unrelated name: nothing
        os.rename(deploy / "reload.new", deploy / "reload")  # the deploy's mv
        restarted(stack, 1)
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
    assert stack.stdout_so_far().count("touched: restarting") == 1


def test_a_touch_of_an_unrelated_file_in_the_same_directory_does_nothing(
    mode: str, tmp_path: Path
) -> None:
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    with Stack(mode, tmp_path) as stack:
        stack.start(web_with_touch(stack, deploy))
        stack.wait_for("web up", "worker up")
        for name in ("other", "reload.swp", "reloa", "reload~"):
            (deploy / name).write_text("x\n")
            os.utime(deploy / name)
        (deploy / "reload").touch()  # read after the others: inotify keeps the order
        restarted(stack, 1)
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
    assert stack.stdout_so_far().count("touched: restarting") == 1
    assert len(ups(stack, "web")) == 2


def test_a_burst_of_1000_touches_restarts_it_once_or_twice(mode: str, tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    (deploy / "reload").touch()
    with Stack(mode, tmp_path) as stack:
        stack.start(web_with_touch(stack, deploy))
        stack.wait_for("web up", "worker up")
        for _ in range(1000):
            os.utime(deploy / "reload")
        restarted(stack, 1)
        time.sleep(2.5)  # past the 1 s window after the restart: a second one may come
        # pidone says "touched: restarting" as it stops web: a second restart
        # said may not be through yet, so its web is waited for, not counted
        count = stack.stdout_so_far().count("touched: restarting")
        assert count in (1, 2), count
        restarted(stack, count)
        assert len(ups(stack, "web")) == 1 + count
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0


def test_touch_signal_hup_signals_the_same_pid(mode: str, tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    recorder = " ".join(helper("sigrecorder.py"))
    with Stack(mode, tmp_path) as stack:
        stack.start(web_with_touch(stack, deploy, 'touch_signal = "HUP"', command=recorder))
        wait_for(lambda: "READY" in stack.stdout_so_far(), what="the recorder")
        (deploy / "reload").touch()
        wait_for(lambda: f"SIG {int(signal.SIGHUP)} " in stack.stdout_so_far(), what="SIGHUP")
        out = stack.stdout_so_far()
        assert len(re.findall(r"web\s+\| READY ", out)) == 1  # the same process, not restarted
        sender = re.findall(rf"web\s+\| SIG {int(signal.SIGHUP)} (\d+)", out)
        assert sender == [str(stack.init.pid_inside)]  # from pidone
        assert "web    | touched: SIGHUP" in out
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0


def test_a_watched_directory_removed_does_not_kill_pidone(mode: str, tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    (deploy / "reload").touch()
    with Stack(mode, tmp_path) as stack:
        stack.start(web_with_touch(stack, deploy))
        stack.wait_for("web up", "worker up")
        (deploy / "reload").unlink()
        deploy.rmdir()
        wait_for(lambda: "no longer watched" in stack.stderr_so_far(), what="the log line")
        assert f"touch: {deploy} was removed or renamed: no longer watched" in (
            stack.stderr_so_far()
        )
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        assert stack.init.proc.poll() is None
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
    assert len(ups(stack, "web")) == 1


def test_a_touch_file_in_a_missing_directory_is_a_check_error(tmp_path: Path) -> None:
    (tmp_path / "pidone.toml").write_text(
        f'[process.web]\ncommand = "touch {tmp_path}/started"\ntouch = ["nowhere/reload"]\n'
    )
    for command in ("check", "run"):
        done = subprocess.run(
            [PIDONE, command, "-c", str(tmp_path / "pidone.toml")],
            capture_output=True,
            text=True,
            timeout=30,
            cwd="/",
        )
        assert done.returncode == 2
        assert done.stderr == (
            f"pidone: {tmp_path}/pidone.toml:3: [process.web] touch: {tmp_path}/nowhere/reload:"
            f" its directory {tmp_path}/nowhere: No such file or directory; create the"
            " directory or fix the path (a relative path is relative to the directory of"
            " pidone.toml)\n"
        )
    assert not (tmp_path / "started").exists()
