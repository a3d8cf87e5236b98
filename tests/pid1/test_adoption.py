"""A pidfile daemon outlives a pidone that is not PID 1 and is SIGKILLed;
the next pidone adopts it (the same pid, no second one) when it really is
that daemon (its user, its program), watches it through a pidfd and stops
it cleanly. Anything else the pidfile names is left alone: a fresh start."""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pidone.system import pidfd
from tests.helpers.running import descendants, proc_state, wait_for
from tests.helpers.stack import Stack
from tests.helpers.users import APP
from tests.pid1.test_control import ctl

REDIS = "/usr/bin/redis-server"
REDIS_FILE = os.path.realpath(REDIS)  # Debian: a link to redis-check-rdb, as /proc/PID/exe says


def work_dir(directory: Path, name: str) -> Path:
    """Where redis NAME runs (--dir: its cwd, which tells it apart in /proc:
    redis rewrites its command line)."""
    path = directory / f"{name}.d"
    path.mkdir(exist_ok=True)
    path.chmod(0o777)
    return path


def redis_command(directory: Path, name: str = "redis", daemonize: bool = True) -> str:
    return (
        f"{REDIS} --daemonize {'yes' if daemonize else 'no'} --pidfile {directory}/{name}.pid "
        f"--port 0 --unixsocket {directory}/{name}.sock --save '' --appendonly no "
        f"--dir {work_dir(directory, name)} --logfile ''"
    )


def redis_toml(directory: Path) -> str:
    return f"""
[pidone]
settle_time = 0.2
[process.redis]
command = "{redis_command(directory)}"
pidfile = "{directory}/redis.pid"
ready = "unix:{directory}/redis.sock"
user = "{APP}"
stop_timeout = 5
"""


def redises(directory: Path, name: str = "redis") -> list[int]:
    """Live (not zombie) redis-servers NAME, counted in /proc."""
    cwd = str(work_dir(directory, name))
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/exe") != REDIS_FILE or proc_state(int(entry)) == "Z":
                continue
            if os.readlink(f"/proc/{entry}/cwd") == cwd:
                found.append(int(entry))
        except OSError:
            continue
    return sorted(found)


@contextmanager
def cleanup(directory: Path) -> Iterator[None]:
    """Whatever redis of ours a failed test leaves, ended by its pid."""
    try:
        yield
    finally:
        for pid in redises(directory):
            os.kill(pid, signal.SIGKILL)


def write_pidfile(directory: Path, content: str) -> None:
    """A pidfile as the daemon left it: APP's, so that its new redis can
    write its own pid over it."""
    path = directory / "redis.pid"
    path.write_text(content)
    entry = pwd.getpwnam(APP)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def ping(directory: Path) -> str:
    result = subprocess.run(
        ["redis-cli", "-s", f"{directory}/redis.sock", "ping"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return result.stdout.strip()


def line(stack: Stack, pattern: str, stream: str = "stdout") -> re.Match[str]:
    found: list[re.Match[str]] = []

    def seen() -> bool:
        text = stack.stdout_so_far() if stream == "stdout" else stack.stderr_so_far()
        match = re.search(pattern, text, re.M)
        found[:] = [match] if match else []
        return bool(match)

    wait_for(seen, timeout=20, what=pattern)
    return found[0]


def started_redis(shared: Path) -> tuple[Stack, int]:
    (shared / "redis.pid").unlink(missing_ok=True)
    stack = Stack("subreaper", shared)
    stack.start(redis_toml(shared))
    pid = int(line(stack, r"^redis\s+\| following pid (\d+) from ").group(1))
    line(stack, r"^redis\s+\| ready$")
    assert "adopted" not in stack.stdout_so_far() + stack.stderr_so_far()  # no pidfile: quiet
    return stack, pid


def test_redis_daemon_survives_sigkill_of_pidone_and_is_adopted_then_stopped_cleanly(
    shared: Path,
) -> None:
    with cleanup(shared):
        first, pid = started_redis(shared)
        with first:
            assert redises(shared) == [pid]
            first.init.signal(signal.SIGKILL)
            first.init.wait(timeout=10)
        # the daemon forked away from its launcher: no parent-death signal, it lives on
        assert redises(shared) == [pid]
        assert ping(shared) == "PONG"
        with Stack("subreaper", shared) as second:
            second.start(redis_toml(shared))
            line(second, rf"^redis\s+\| adopted: pid {pid} from {shared}/redis.pid, left ")
            line(second, r"^redis\s+\| ready$")
            assert redises(shared) == [pid]  # the same redis, no second one
            assert ping(shared) == "PONG"
            status = ctl(second, "status")
            assert re.search(rf"^redis\s+READY\s+yes\s+{pid}\b", status.stdout, re.M), status.stdout
            second.init.signal(signal.SIGTERM)
            assert second.init.wait(timeout=15) == 0
            _, err = second.output()
            assert re.search(
                r"^redis\s+\| stopped \(status unknown: adopted, pidone is not its parent\)$",
                second.stdout_so_far(),
                re.M,
            ), second.stdout_so_far()
            assert "internal error" not in err
        wait_for(lambda: redises(shared) == [], what="redis to be gone")
        assert not Path(f"/proc/{pid}").exists() or proc_state(pid) == "Z"


def test_an_adopted_daemon_that_dies_is_restarted_fresh(shared: Path) -> None:
    with cleanup(shared):
        first, pid = started_redis(shared)
        with first:
            first.init.signal(signal.SIGKILL)
            first.init.wait(timeout=10)
        with Stack("subreaper", shared) as second:
            second.start(redis_toml(shared))
            line(second, rf"^redis\s+\| adopted: pid {pid} ")
            os.kill(pid, signal.SIGKILL)  # not pidone's child: only its pidfd tells
            line(
                second,
                r"^redis\s+\| exited with status unknown: adopted, pidone is not its",
                "stderr",
            )
            new = int(line(second, r"^redis\s+\| following pid (\d+) from ").group(1))
            assert new != pid
            wait_for(lambda: redises(shared) == [new], what="one new redis")
            second.init.signal(signal.SIGTERM)
            assert second.init.wait(timeout=15) == 0


def spawn_as(user: str, argv: list[str]) -> subprocess.Popen[bytes]:
    entry = pwd.getpwnam(user)
    return subprocess.Popen(
        argv,
        user=entry.pw_uid,
        group=entry.pw_gid,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def refused_adoption(shared: Path, bait: subprocess.Popen[bytes], reason: str) -> None:
    """The pidfile names `bait`: not adopted (warned, with `reason`), a new
    redis started and stopped, and `bait` never signalled (still running)."""
    write_pidfile(shared, f"{bait.pid}\n")
    with Stack("subreaper", shared) as stack:
        stack.start(redis_toml(shared))
        warning = line(stack, r"^redis\s+\| pidfile .* not adopted: (.*); starting a new one$",
                       "stderr")  # fmt: skip
        assert reason in warning.group(1), warning.group(1)
        new = int(line(stack, r"^redis\s+\| following pid (\d+) from ").group(1))
        assert new != bait.pid
        line(stack, r"^redis\s+\| ready$")
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait(timeout=15) == 0
        assert "adopted: pid" not in stack.stdout_so_far()
    assert bait.poll() is None  # left alone: not stopped, not killed
    assert proc_state(bait.pid) in ("S", "R")


def test_pidfile_naming_a_live_process_of_another_program_of_the_same_user_is_not_adopted(
    shared: Path,
) -> None:
    bait = spawn_as(APP, ["sleep", "1000"])
    try:
        with cleanup(shared):
            refused_adoption(shared, bait, f"pid {bait.pid} runs another program than its")
    finally:
        bait.kill()
        bait.wait()


def test_pidfile_naming_another_users_redis_is_not_adopted(shared: Path) -> None:
    # The same program, run by root: not the configured user's daemon.
    bait = subprocess.Popen(
        [
            REDIS,
            "--port",
            "0",
            "--unixsocket",
            f"{shared}/bait.sock",
            "--save",
            "",
            "--dir",
            str(shared),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: (shared / "bait.sock").exists(), what="root's redis")
        with cleanup(shared):
            uid = pwd.getpwnam(APP).pw_uid
            refused_adoption(shared, bait, f"pid {bait.pid} belongs to uid 0, not to uid {uid}")
    finally:
        bait.kill()
        bait.wait()


def test_a_twin_redis_under_pidone_is_not_adopted_in_either_mode(mode: str, shared: Path) -> None:
    # As PID 1 nothing can outlive pidone (the namespace dies with it), and a
    # pidfile from an earlier container names a pid of this one: a live
    # process of the same user and program here (the twin, which another
    # process of ours runs) is never taken for the daemon.
    pidfile = shared / "redis.pid"
    pidfile.unlink(missing_ok=True)
    twin = redis_command(shared, "twin", daemonize=False).replace("''", '\\"\\"')
    with cleanup(shared), Stack(mode, shared) as stack:
        stack.start(
            redis_toml(shared).replace('ready = "unix', 'after = ["twin"]\nready = "unix')
            + f"""
[process.twin]
command = '''sh -c "{twin} & echo \\$! > {pidfile}; wait"'''
user = "{APP}"
ready = "unix:{shared}/twin.sock"
"""
        )
        line(stack, r"^redis\s+\| following pid \d+ from ")
        line(stack, r"^redis\s+\| ready$")
        assert "adopted: pid" not in stack.stdout_so_far()
        if mode == "subreaper":  # looked at, and refused
            warning = line(stack, r"^redis\s+\| pidfile .* not adopted: (.*);", "stderr")
            assert "is a descendant of this pidone" in warning.group(1)
        twin_pid = [p for p in redises(shared, "twin")]
        assert len(twin_pid) == 1 and twin_pid[0] in descendants(stack.init.pid)
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait(timeout=15) == 0


def test_a_pid_reused_after_pidfd_open_is_not_adopted(shared: Path) -> None:
    # The identity read through /proc/PID counts only if the pidfd is still
    # alive after it: then the pid was its all along. A pidfd whose process
    # is gone (its pid free for another) is refused, whoever has the pid now.
    # Not our child either, as an adopted daemon is not: its launcher exits.
    command = redis_command(shared, "x", daemonize=False)
    launcher = spawn_as(APP, ["sh", "-c", f"{command} >/dev/null 2>&1 &"])
    uid = pwd.getpwnam(APP).pw_uid
    st = os.stat(REDIS)
    exes = frozenset({(st.st_dev, st.st_ino)})
    with cleanup(shared):
        launcher.wait()
        wait_for(lambda: len(redises(shared, "x")) == 1, what="redis to run")
        (pid,) = redises(shared, "x")
        fd = os.pidfd_open(pid)
        try:
            assert pidfd.verify(pid, fd, uid, exes, ()) is None  # alive, and the daemon
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not pidfd.send(fd, 0), what="redis to be gone")
            # gone (its reaper may have freed the pid for anyone): refused
            assert pidfd.verify(pid, fd, uid, exes, ()) is not None
            assert pidfd.send_signal(pid, fd, signal.SIGKILL, group=True) is False
        finally:
            os.close(fd)


@pytest.mark.parametrize("content", ["1", "0", "99999999"])
def test_pidfile_naming_pid_1_or_an_impossible_pid_is_not_adopted(
    shared: Path, content: str
) -> None:
    write_pidfile(shared, content)
    with cleanup(shared), Stack("subreaper", shared) as stack:
        stack.start(redis_toml(shared))
        line(stack, r"^redis\s+\| following pid \d+ from ")
        assert "adopted: pid" not in stack.stdout_so_far()
        time.sleep(0.2)
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait(timeout=15) == 0


def test_a_daemon_whose_command_only_the_shell_knows_is_not_adopted(shared: Path) -> None:
    # A list: /bin/sh runs it, and which program ends up running is the
    # shell's to say: there is no program to hold the pidfile's process to.
    with cleanup(shared):
        first, pid = started_redis(shared)
        with first:
            first.init.signal(signal.SIGKILL)
            first.init.wait(timeout=10)
        toml = redis_toml(shared).replace(
            f'command = "{REDIS} ', 'command = "true; exec redis-server '
        )
        with Stack("subreaper", shared) as second:
            second.start(toml)
            warning = line(second, r"^redis\s+\| pidfile .* not adopted: (.*); starting", "stderr")
            assert (
                warning.group(1) == "its command names no program pidone can check the pid against"
            )
            assert "adopted: pid" not in second.stdout_so_far()
            second.init.signal(signal.SIGTERM)
            second.init.wait(timeout=15)
        assert pid in redises(shared)  # left alone, never signalled
