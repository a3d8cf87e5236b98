"""pidone as a systemd service (Type=notify): what it sends to the NOTIFY_SOCKET
of its own environment, against a real AF_UNIX datagram socket the test binds
(a path, or an abstract name), as PID 1 and as a subreaper, in both modes.
And the attacks: a NOTIFY_SOCKET that does not exist, that is garbage, or
that nobody reads (its buffer full) neither stalls nor kills pidone."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.running import PYTHON, Init, wait_for
from tests.helpers.stack import Stack
from tests.pid1.test_control import ctl


class Manager:
    """The service manager's end: a datagram socket, every datagram kept with
    the time (monotonic ns) it was read."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.got: list[tuple[int, str]] = []

    def read(self, seconds: float) -> None:
        """Read what comes for `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return
            self.got.append((time.monotonic_ns(), data.decode()))

    def until(self, wanted: str, timeout: float = 20.0) -> tuple[int, str]:
        """Read until a datagram holds the line `wanted`; that datagram."""
        deadline = time.monotonic() + timeout
        while True:
            for entry in self.got:
                if wanted in entry[1].splitlines():
                    return entry
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {wanted!r} within {timeout}s; got {self.texts()}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.got.append((time.monotonic_ns(), data.decode()))

    def texts(self) -> list[str]:
        return [text for _, text in self.got]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def manager(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Manager]:
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
    else:
        address = f"@pidone-test-{os.getpid()}-{time.monotonic_ns()}"
    made = Manager(address)
    yield made
    made.close()


# Written whole, then renamed into place: a reader waiting for the file
# never reads it half-written (it read "" under load once).
ENV_DUMP = (
    "import json, os, sys, time; part = sys.argv[1] + '.part';"
    " open(part, 'w').write(json.dumps(dict(os.environ))); os.rename(part, sys.argv[1])"
)


def three(stack: Stack, tmp_path: Path, *, c_by_test: bool = False) -> str:
    """sdn_a (settles), sdn_b (notify, after sdn_a), sdn_c (file:): ready as
    soon as it makes its file, or, `c_by_test`, once the test makes it."""
    dump = tmp_path / "env.json"
    touch = () if c_by_test else ("--touch", str(tmp_path / "c-ready"))
    return f"""
[pidone]
settle_time = 0.2
[process.sdn_a]
command = "{PYTHON} -c \\"{ENV_DUMP}; time.sleep(1000)\\" {dump}"
[process.sdn_b]
command = "{stack.svc("sdn_b", "--notify")}"
ready = "notify"
after = ["sdn_a"]
[process.sdn_c]
command = "{stack.svc("sdn_c", *touch)}"
ready = "file:{tmp_path / "c-ready"}"
"""


def test_status_then_ready_after_the_last_process_then_stopping_at_sigterm(
    mode: str, manager: Manager, tmp_path: Path
) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(
            three(stack, tmp_path, c_by_test=True),
            prefix=["env", f"NOTIFY_SOCKET={manager.address}"],
        )
        # sdn_c is ready only once the test says so, after the other two: the
        # order does not hang on how fast each one starts.
        manager.until("STATUS=2 of 3 ready, waiting for sdn_c")
        stack.wait_for("sdn_c listening")
        assert not any("READY=1" in t for t in manager.texts())  # not before the last one
        (tmp_path / "c-ready").touch()
        _, ready = manager.until("READY=1")
        assert ready == "READY=1\nSTATUS=3 of 3 ready\n"
        before = manager.texts()[: manager.texts().index(ready)]
        assert before and all(t.startswith("STATUS=") and "READY=1" not in t for t in before)
        assert before[0].startswith("STATUS=0 of 3 ready, waiting for ")
        assert "STATUS=2 of 3 ready, waiting for sdn_c\n" in before
        # The children never saw pidone's own NOTIFY_SOCKET: sdn_b spoke on its
        # own socket (its STATUS=serving never came here), sdn_a had none.
        assert not any("serving" in t for t in manager.texts())
        wait_for((tmp_path / "env.json").exists, what="sdn_a's environment")  # it settles: no word
        env = json.loads((tmp_path / "env.json").read_text())
        assert {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} & set(env) == set()
        stack.init.signal(signal.SIGTERM)
        manager.until("STOPPING=1")
        assert stack.init.wait() == 0
        manager.read(0.3)
    texts = manager.texts()
    assert texts.count(ready) == 1  # READY=1 once
    assert [t for t in texts if "STOPPING=1" in t] == ["STOPPING=1\nSTATUS=stopping\n"]
    assert texts.index(ready) < texts.index("STOPPING=1\nSTATUS=stopping\n")
    assert not any("WATCHDOG" in t for t in texts)  # no WATCHDOG_USEC: no pings


def test_watchdog_pings_every_half_watchdog_usec_and_the_children_do_not_see_it(
    mode: str, tmp_path: Path
) -> None:
    manager = Manager(str(tmp_path / "notify.sock"))
    env = ["env", f"NOTIFY_SOCKET={manager.address}", "WATCHDOG_USEC=200000"]
    with Stack(mode, tmp_path) as stack:
        stack.start(three(stack, tmp_path), prefix=env)
        manager.until("READY=1")
        manager.got.clear()
        manager.read(2.0)
        pings = [ns for ns, text in manager.got if text == "WATCHDOG=1\n"]
        # every 0.1 s: 20 in 2 s, never faster; generous bounds for a loaded machine
        assert 12 <= len(pings) <= 22, pings
        wait_for((tmp_path / "env.json").exists, what="sdn_a's environment")
        env_seen = json.loads((tmp_path / "env.json").read_text())
        assert "WATCHDOG_USEC" not in env_seen and "NOTIFY_SOCKET" not in env_seen
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
    manager.close()


def test_watchdog_pid_of_another_process_means_no_pings(tmp_path: Path) -> None:
    manager = Manager(str(tmp_path / "notify.sock"))
    env = ["env", f"NOTIFY_SOCKET={manager.address}", "WATCHDOG_USEC=200000", "WATCHDOG_PID=1"]
    with Stack("subreaper", tmp_path) as stack:
        stack.start(three(stack, tmp_path), prefix=env)
        manager.until("READY=1")
        manager.read(0.6)
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
        _, err = stack.output()
    assert not any("WATCHDOG" in t for t in manager.texts())
    assert "WATCHDOG_PID='1' is not pidone's pid" in err
    manager.close()


def idle_switches(pid: int, seconds: float) -> int:
    def switches() -> int:
        text = Path(f"/proc/{pid}/status").read_text()
        return int(text.split("voluntary_ctxt_switches:")[1].split()[0])

    before = switches()
    time.sleep(seconds)
    return switches() - before


def gone_idle(pid: int) -> None:
    """Wait until pid sleeps through half a second untouched: its start (and
    a last rate-bounded STATUS) over, however long that took here. A tick of
    its own would still show in the longer look that follows."""
    wait_for(lambda: idle_switches(pid, 0.5) == 0, what=f"{pid} to go idle")


def test_a_notify_socket_nobody_reads_does_not_stall_pidone(mode: str, tmp_path: Path) -> None:
    """The attack: a manager that never reads, its buffer full before pidone
    starts. Every send fails at once (EAGAIN), logged once; pidone runs,
    answers ctl, and stops in time."""
    address = str(tmp_path / "full.sock")
    full = Manager(address)
    full.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as filler:
        filler.setblocking(False)
        with pytest.raises(BlockingIOError):
            for _ in range(100_000):
                filler.sendto(b"x" * 512, address)
    env = ["env", f"NOTIFY_SOCKET={address}", "WATCHDOG_USEC=40000"]
    with Stack(mode, tmp_path) as stack:
        stack.start(three(stack, tmp_path), prefix=env)
        stack.wait_for("sdn_b listening", "sdn_c listening")
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        time.sleep(0.5)  # a dozen watchdog pings, each refused
        began = time.monotonic()
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
        assert time.monotonic() - began < 5
        _, err = stack.output()
    refused = re.findall(r"NOTIFY_SOCKET .*: cannot send .*: Resource temporarily unavailable", err)
    assert len(refused) == 1, err  # logged once, not once per datagram
    full.close()


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (
            "/nonexistent/pidone-notify.sock",
            ": No such file or directory (the service manager is not",
        ),
        ("localhost:9999", "not an absolute path or an @abstract name"),
        ("@" + "x" * 200, "longer than 107 bytes"),
    ],
)
def test_a_notify_socket_that_is_missing_or_garbage_does_not_kill_pidone(
    tmp_path: Path, value: str, said: str
) -> None:
    env = ["env", f"NOTIFY_SOCKET={value}", "WATCHDOG_USEC=banana"]
    with Stack("subreaper", tmp_path) as stack:
        stack.start(three(stack, tmp_path), prefix=env)
        stack.wait_for("sdn_b listening", "sdn_c listening")
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
        _, err = stack.output()
    assert said in err, err
    assert err.count("NOTIFY_SOCKET") == 1, err


# --- single-command mode ---------------------------------------------------------------


def test_single_mode_ready_once_cmd_started_and_stopping_on_the_forwarded_stop(
    mode: str, manager: Manager, tmp_path: Path
) -> None:
    dump = tmp_path / "env.json"
    child = [PYTHON, "-c", f"{ENV_DUMP}; time.sleep(1000)", str(dump)]
    env = {**os.environ, "NOTIFY_SOCKET": manager.address, "WATCHDOG_USEC": "200000"}
    with Init(mode, ["--", *child], env=env) as init:
        _, ready = manager.until("READY=1")
        assert ready.startswith("READY=1\nSTATUS=running ")
        wait_for(dump.exists, what="the child's environment")
        seen = json.loads(dump.read_text())
        assert {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} & set(seen) == set()
        manager.read(1.0)
        pings = [t for t in manager.texts() if t == "WATCHDOG=1\n"]
        assert 6 <= len(pings) <= 12, manager.texts()
        init.signal(signal.SIGTERM)
        assert init.wait() == 128 + signal.SIGTERM
    manager.read(0.2)
    texts = manager.texts()
    assert [t for t in texts if "READY=1" in t] == [ready]
    assert [t for t in texts if "STOPPING" in t] == ["STOPPING=1\nSTATUS=stopping\n"]


def test_single_mode_without_a_notify_socket_still_sleeps_without_waking(mode: str) -> None:
    with Init(mode, ["--", "sleep", "1000"]) as init:
        gone_idle(init.pid)
        assert idle_switches(init.pid, 1.5) == 0
        init.signal(signal.SIGTERM)
        assert init.wait() == 128 + signal.SIGTERM


def test_pidone_run_without_watchdog_usec_still_sleeps_without_waking(
    mode: str, manager: Manager, tmp_path: Path
) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(three(stack, tmp_path), prefix=["env", f"NOTIFY_SOCKET={manager.address}"])
        manager.until("READY=1")
        gone_idle(stack.init.pid)  # the last rate-bounded STATUS, if any, has gone
        assert idle_switches(stack.init.pid, 1.5) == 0
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0


def test_the_ready_datagram_has_the_lines_systemd_notify_sends(
    manager: Manager, tmp_path: Path
) -> None:
    """systemd's own sender, as a reference for the wire format: the same
    lines (systemd's parser splits on newlines and drops empty ones)."""
    if shutil.which("systemd-notify") is None:
        pytest.skip("no systemd-notify here")
    env = {"NOTIFY_SOCKET": manager.address, "PATH": os.environ.get("PATH", "")}
    sent = ["systemd-notify", "--no-block", "--ready", "--status=3 of 3 ready"]
    subprocess.run(sent, env=env, timeout=30, capture_output=True)
    _, reference = manager.until("READY=1")
    manager.got.clear()
    with Stack("subreaper", tmp_path) as stack:
        stack.start(three(stack, tmp_path), prefix=["env", f"NOTIFY_SOCKET={manager.address}"])
        _, ours = manager.until("READY=1")
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
    assert ours.splitlines() == reference.splitlines() == ["READY=1", "STATUS=3 of 3 ready"]


def notify_socket_of(stack: Stack, name: str) -> str:
    """The NOTIFY_SOCKET in the environment of process `name` (as started)."""
    environ = Path(f"/proc/{stack.host_pid(name)}/environ").read_bytes().split(b"\0")
    return next(v[14:].decode() for v in environ if v.startswith(b"NOTIFY_SOCKET="))


def web_ready(stack: Stack) -> int:
    return len(re.findall(r"^web\s+\| ready$", stack.stdout_so_far(), re.M))


def test_a_second_root_pidone_with_a_notify_process_of_the_same_name_takes_nothing_over(
    tmp_path: Path,
) -> None:
    # Two root pidones on one host (subreapers: one /run/pidone), each with its
    # own control socket and a `ready = "notify"` web. The first one's web
    # sends READY=1 only after the second has made its own socket for "web":
    # a shared /run/pidone/notify/web.sock would have been taken over.
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    config = """
[process.web]
command = "{}"
ready = "notify"
"""
    with Stack("subreaper", first_dir) as first, Stack("subreaper", second_dir) as second:
        first.start(config.format(first.svc("web", "--notify", "--delay", "3")))
        first.wait_for("web up")
        first_socket = notify_socket_of(first, "web")
        made = os.stat(first_socket)
        second.start(config.format(second.svc("web", "--notify")))
        wait_for(lambda: web_ready(second), timeout=20, what="the second one's web ready")
        second_socket = notify_socket_of(second, "web")
        assert second_socket != first_socket
        assert os.stat(first_socket).st_ino == made.st_ino  # the second left it alone
        wait_for(lambda: web_ready(first), timeout=20, what="the first one's web ready")
        assert ctl(first, "wait-ready", "--timeout", "5").returncode == 0
        assert ctl(second, "wait-ready", "--timeout", "5").returncode == 0
        for stack, socket_path in ((first, first_socket), (second, second_socket)):
            assert os.path.dirname(os.path.dirname(socket_path)) == "/run/pidone"
            assert web_ready(stack) == 1
            stack.init.signal(signal.SIGTERM)
            assert stack.init.wait() == 0
            assert not os.path.exists(os.path.dirname(socket_path))  # its directory removed


def test_a_notify_process_name_too_long_for_a_socket_address_is_refused_before_it_starts(
    mode: str, tmp_path: Path
) -> None:
    # Root's notify socket is /run/pidone/notify-HASH/NAME.sock: 90 letters
    # of name make it 130 bytes, which no bind() takes. Refused at the start
    # (exit 2, nothing run), not a failed spawn after failed spawn.
    name = "n" * 90
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[process.{name}]
command = "{stack.svc("web", "--notify")}"
ready = "notify"
""")
        assert stack.init.wait() == 2
        _, err = stack.output()
    assert "pidone: refusing to start: the notify socket path /run/pidone/notify-" in err
    assert f"/{name}.sock is longer than the 107 bytes a socket address holds; shorten the" in err
    assert stack.count("web up") == 0
