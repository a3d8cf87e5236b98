"""The control socket over a real unix socket, driven by a small select loop
like pidone's (every fd carries a callback taking the event mask; the loop
sleeps until the server's next deadline), with a fake `on_request`.

Permission tests run `pidone ctl` as other users (made here if missing):
a member of the control group (supplementary, and primary), and an outsider.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import queue
import selectors
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pidone.control import client as ctl
from pidone.control import server as control
from pidone.control.protocol import status_reply
from pidone.control.server import ControlServer, ControlSocketError, Reply
from pidone.core.snapshot import ExitInfo, ProcessStatus, Snapshot
from pidone.core.states import ProcessState
from tests.helpers import checkout
from tests.helpers.running import require_root, wait_for

GROUP = "pidone-ctl"
MEMBER = "pidone-ctl-member"  # in GROUP as a supplementary group
PRIMARY = "pidone-ctl-primary"  # GROUP is its primary group
OUTSIDER = "pidone-ctl-outsider"

SNAPSHOT = Snapshot(
    (
        ProcessStatus("redis", ProcessState.READY, True, 4242, 10.0, 0, {}, {}, None, True),
        ProcessStatus(
            "web",
            ProcessState.BACKOFF,
            False,
            None,
            None,
            2,
            {"crash": 2},
            {1: 2},
            ExitInfo(1, 0, 95.0, planned=False),
            True,
        ),
    ),
    shutting_down=False,
)


# --- the loop ----------------------------------------------------------------------------


class Harness:
    """A ControlServer in a select loop on its own thread; `call(fn)` runs fn
    on that thread (the server, like pidone's loop, is single-threaded)."""

    def __init__(self, path: str, group: int | None = None, **kw: Any) -> None:
        self.selector = selectors.DefaultSelector()
        self.requests: list[dict[str, Any]] = []
        self.pending: list[Reply] = []  # replies the test sends later
        self.logs: list[str] = []
        self.crashes: list[BaseException] = []
        self._calls: queue.Queue[tuple[Callable[[], Any], queue.Queue[Any]]] = queue.Queue()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector.register(self._wake_r, selectors.EVENT_READ, self._drain)
        self.server = ControlServer(
            self.selector, path, group=group, on_request=self.on_request, log=self.logs.append, **kw
        )
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def on_request(self, request: dict[str, Any], reply: Reply) -> None:
        self.requests.append(request)
        match request["command"]:
            case "status":
                reply(status_reply(SNAPSHOT, 100.0))
            case "big":
                reply({"ok": True, "blob": "x" * (8 << 20)})
            case "slow":
                self.pending.append(reply)
            case "boom":
                raise RuntimeError("boom")
            case "unserializable":
                reply({"ok": True, "value": {1, 2}})
            case "twice":
                reply({"ok": True, "n": 1})
                reply({"ok": True, "n": 2})
            case _:
                reply({"ok": True, "echo": request})

    def _drain(self, mask: int) -> None:
        os.read(self._wake_r, 4096)

    def _run(self) -> None:
        while not self._stop:
            try:
                deadline = self.server.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                for key, mask in self.selector.select(timeout):
                    key.data(mask)
                while not self._calls.empty():
                    fn, result = self._calls.get()
                    result.put(fn())
                self.server.run_due(time.monotonic())
            except BaseException as exc:  # the test fails on any escape
                self.crashes.append(exc)
                return

    def call(self, fn: Callable[[], Any]) -> Any:
        result: queue.Queue[Any] = queue.Queue()
        self._calls.put((fn, result))
        os.write(self._wake_w, b"x")
        return result.get(timeout=5)

    def connections(self) -> int:
        return int(self.call(lambda: self.server.connections))

    def close(self) -> None:
        self.call(self.server.close)
        self._stop = True
        os.write(self._wake_w, b"x")
        self.thread.join(timeout=5)
        self.selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        assert not self.crashes, self.crashes


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """Short (sun_path holds 107 bytes) and enterable by other users."""
    path = Path(tempfile.mkdtemp(prefix="ctl-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


@pytest.fixture
def path(sockdir: Path) -> str:
    return str(sockdir / "run" / "control.sock")


@pytest.fixture
def harness(path: str) -> Iterator[Harness]:
    h = Harness(path, request_timeout=0.5, write_timeout=0.5)
    yield h
    h.close()


def talk(path: str, data: bytes, timeout: float = 5.0) -> dict[str, Any]:
    """Send raw bytes, read to EOF, decode the one reply line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        # the server answered and closed before taking it all
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        received = b""
        try:
            while chunk := s.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # closed with our excess unread: the kernel says so after the reply
    assert received.endswith(b"\n") and received.count(b"\n") == 1, received[:200]
    reply = json.loads(received)
    assert isinstance(reply, dict)
    return reply


def ask(path: str, command: str, **args: Any) -> dict[str, Any]:
    return talk(path, json.dumps({"command": command, "args": args}).encode() + b"\n")


# --- the socket file ---------------------------------------------------------------------


def test_socket_is_0600_in_a_0755_directory_it_creates(harness: Harness, path: str) -> None:
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o755
    assert ask(path, "status")["ok"] is True


def test_close_unlinks_the_socket_but_only_its_own(sockdir: Path) -> None:
    path = str(sockdir / "c.sock")
    h = Harness(path)
    h.close()
    assert not os.path.exists(path)

    h = Harness(path)
    os.unlink(path)  # someone replaced it (another pidone, say)
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(path)
        h.close()
        assert os.path.exists(path)


def test_a_stale_socket_is_replaced(sockdir: Path) -> None:
    path = str(sockdir / "stale.sock")
    with socket.socket(socket.AF_UNIX) as old:
        old.bind(path)  # a crashed pidone's socket: nobody listens
    h = Harness(path)
    try:
        assert ask(path, "ping")["ok"] is True
    finally:
        h.close()


def test_the_name_it_binds_under_left_by_a_dead_pidone_of_the_same_pid_is_replaced(
    sockdir: Path,
) -> None:
    """The socket is bound as .NAME.PID and renamed once it listens; PID 1
    has the same pid every time, so a crash in between leaves that name."""
    path = sockdir / "c.sock"
    left = sockdir / f".c.sock.{os.getpid()}"
    with socket.socket(socket.AF_UNIX) as old:
        old.bind(str(left))
    h = Harness(str(path))
    try:
        assert ask(str(path), "ping")["ok"] is True
        assert sorted(p.name for p in sockdir.iterdir()) == ["c.sock"]
    finally:
        h.close()


def test_a_file_under_the_name_it_binds_under_is_left_alone(sockdir: Path) -> None:
    path = sockdir / "c.sock"
    planted = sockdir / f".c.sock.{os.getpid()}"
    planted.write_text("not ours")
    h = Harness(str(path))  # bound at its own path then, as it always was
    try:
        assert ask(str(path), "ping")["ok"] is True
        assert planted.read_text() == "not ours"
    finally:
        h.close()


def test_anything_but_a_socket_is_refused(sockdir: Path) -> None:
    path = sockdir / "file.sock"
    path.write_text("precious")
    with pytest.raises(ControlSocketError, match="exists and is not a socket: refusing"):
        ControlServer(selectors.DefaultSelector(), str(path), group=None, on_request=print)
    assert path.read_text() == "precious"


def test_a_live_socket_is_not_stolen(harness: Harness, path: str) -> None:
    with pytest.raises(ControlSocketError, match="another pidone is already listening"):
        ControlServer(selectors.DefaultSelector(), path, group=None, on_request=print)
    assert ask(path, "status")["ok"] is True


# --- protocol ----------------------------------------------------------------------------


def test_status_through_pidone_ctl(harness: Harness, path: str, capsys: Any) -> None:
    assert ctl.main(["--socket", path, "status"]) == 0
    assert capsys.readouterr().out == (
        "NAME   STATE    READY  PID   UPTIME  RESTARTS  LAST EXIT\n"
        "redis  READY    yes    4242  1m 30s  0         -\n"
        "web    BACKOFF  no     -     -       2         exit 1, 5s ago\n"
    )
    assert ctl.main(["--socket", path, "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == status_reply(SNAPSHOT, 100.0)
    assert harness.requests == [{"command": "status", "args": {}}] * 2


def test_requests_reach_on_request_with_their_args(harness: Harness, path: str) -> None:
    reply = ask(path, "restart", names=["web"], timeout=3)
    expected = {"command": "restart", "args": {"names": ["web"], "timeout": 3}}
    assert reply == {"ok": True, "echo": expected}
    # A request without "args" gets an empty one; CRLF is fine.
    assert talk(path, b'{"command": "ping"}\r\n')["echo"] == {"command": "ping", "args": {}}


def test_a_last_line_without_newline_before_shutdown_of_writes(harness: Harness, path: str) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(b'{"command": "ping"}')
        s.shutdown(socket.SHUT_WR)
        assert json.loads(s.recv(65536))["ok"] is True


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"hello\n", "bad request: not JSON"),
        (b"\xff\xfe{}\n", "bad request: not JSON"),
        (b"[1, 2]\n", "bad request: not a JSON object"),
        (b'"status"\n', "bad request: not a JSON object"),
        (b'{"args": {}}\n', 'bad request: no "command" string'),
        (b'{"command": 5}\n', 'bad request: no "command" string'),
        (b'{"command": "status", "args": [1]}\n', 'bad request: "args" must be an object'),
        (b"\n", "empty request: send one JSON object per line"),
        (b"[" * 50_000 + b"\n", "bad request: not JSON"),  # deep nesting: RecursionError
    ],
)
def test_garbage_gets_an_error_and_the_server_keeps_working(
    harness: Harness, path: str, data: bytes, error: str
) -> None:
    reply = talk(path, data)
    assert reply["ok"] is False
    assert reply["error"].startswith(error)
    assert harness.requests == []
    assert ask(path, "status")["ok"] is True
    assert harness.logs == []


def test_oversized_requests_get_an_error_and_the_server_keeps_working(sockdir: Path) -> None:
    path = str(sockdir / "small.sock")
    h = Harness(path, max_request=1024)
    try:
        too_large = {"ok": False, "error": "request too large"}
        assert talk(path, b"x" * 5000) == too_large  # no newline, ever
        assert talk(path, b'{"command": "' + b"y" * 2000 + b'"}\n') == too_large
        assert talk(path, b"z" * 300_000 + b"\n") == too_large  # the client gets EPIPE
        line = json.dumps({"command": "ping", "args": {"pad": "p" * 900}}).encode()
        assert len(line) <= 1024
        assert talk(path, line + b"\n")["ok"] is True  # just under the limit
        assert h.requests == [json.loads(line)]
    finally:
        h.close()


def test_the_default_limit_is_64_KiB(harness: Harness, path: str) -> None:
    assert talk(path, b" " * (64 * 1024 + 1)) == {"ok": False, "error": "request too large"}
    padded = b" " * (60 * 1024) + b'{"command": "ping"}\n'
    assert talk(path, padded)["ok"] is True


def test_an_exception_in_on_request_becomes_an_error_reply(harness: Harness, path: str) -> None:
    assert ask(path, "boom") == {"ok": False, "error": "internal error: boom"}
    assert len(harness.logs) == 1 and "RuntimeError('boom')" in harness.logs[0]
    assert ask(path, "status")["ok"] is True


def test_only_the_first_reply_counts(harness: Harness, path: str) -> None:
    assert ask(path, "twice") == {"ok": True, "n": 1}


def test_a_reply_that_is_not_json_becomes_an_error(harness: Harness, path: str) -> None:
    assert ask(path, "unserializable") == {
        "ok": False,
        "error": "internal error: reply not serializable",
    }
    assert "not serializable" in harness.logs[0]


def test_connections_are_capped(
    harness: Harness, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "MAX_CONNECTIONS", 3)
    waiting = []
    for _ in range(3):
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.sendall(b'{"command": "slow"}\n')
        waiting.append(s)
    wait_for(lambda: harness.call(lambda: len(harness.pending)) == 3, what="3 waiting")
    assert ask(path, "status") == {"ok": False, "error": "too many connections (3 open)"}
    for s in waiting:
        s.close()
    wait_for(lambda: harness.connections() == 0, what="the hang-ups noticed")
    assert ask(path, "status")["ok"] is True


# --- timing: late replies, idle and stuck clients ----------------------------------------------


def test_a_late_reply_arrives_and_waiting_has_no_deadline(harness: Harness, path: str) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(b'{"command": "slow"}\n')
        wait_for(lambda: harness.call(lambda: len(harness.pending)) == 1, what="the request")
        # A restart may take minutes: no server-side timeout while the loop works.
        assert harness.call(harness.server.next_deadline) is None
        time.sleep(0.7)  # longer than request_timeout and write_timeout
        assert harness.connections() == 1
        assert ask(path, "status")["ok"] is True  # others are served meanwhile
        harness.call(lambda: harness.pending.pop()({"ok": True, "state": "ready"}))
        assert json.loads(s.recv(65536)) == {"ok": True, "state": "ready"}
        assert s.recv(10) == b""  # closed after the reply
    assert harness.connections() == 0
    assert harness.call(harness.server.next_deadline) is None


def test_a_late_reply_to_a_client_that_left_is_dropped_silently(
    harness: Harness, path: str
) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(b'{"command": "slow"}\n')
        wait_for(lambda: harness.call(lambda: len(harness.pending)) == 1, what="the request")
    # The hang-up is noticed at once, not at reply time.
    wait_for(lambda: harness.connections() == 0, timeout=2, what="the hang-up noticed")
    harness.call(lambda: harness.pending.pop()({"ok": True}))
    assert harness.logs == []
    assert ask(path, "status")["ok"] is True


def test_an_idle_client_is_dropped_and_stalls_nothing(harness: Harness, path: str) -> None:
    with socket.socket(socket.AF_UNIX) as idle:
        idle.settimeout(5)
        idle.connect(path)
        idle.sendall(b'{"command": ')  # and then nothing
        started = time.monotonic()
        assert ask(path, "status")["ok"] is True
        assert time.monotonic() - started < 0.3
        deadline = harness.call(harness.server.next_deadline)
        assert deadline is not None  # the loop knows when to wake up for it
        reply = json.loads(idle.recv(65536))
        took = time.monotonic() - started
        assert reply == {"ok": False, "error": "no complete request within 0.5 s"}
        assert 0.3 < took < 2.0
        assert idle.recv(10) == b""
    assert harness.connections() == 0
    assert harness.call(harness.server.next_deadline) is None


def test_a_client_that_never_reads_stalls_nothing(harness: Harness, path: str) -> None:
    with socket.socket(socket.AF_UNIX) as stuck:
        stuck.connect(path)
        stuck.sendall(b'{"command": "big"}\n')  # an 8 MiB reply it never reads
        wait_for(lambda: harness.requests != [], what="the big request")
        for _ in range(20):
            started = time.monotonic()
            assert ask(path, "status")["ok"] is True
            assert time.monotonic() - started < 0.3
        # Dropped after write_timeout (0.5 s) without a byte more being taken.
        wait_for(lambda: harness.connections() == 0, timeout=3, what="the stuck client dropped")
    assert harness.logs == []


def test_a_burst_of_clients_is_served(harness: Harness, path: str) -> None:
    clients = []
    for i in range(300):  # more than the listen backlog: ctl retries EAGAIN
        s = ctl.connect(path, time.monotonic() + 5)
        s.sendall(json.dumps({"command": "ping", "args": {"i": i}}).encode() + b"\n")
        clients.append(s)
    for i, s in enumerate(clients):
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        assert json.loads(data)["echo"]["args"] == {"i": i}
        s.close()
    assert harness.connections() == 0


def test_ctl_retries_a_full_backlog_until_its_deadline(sockdir: Path) -> None:
    path = str(sockdir / "full.sock")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(0)
        queued = [ctl.connect(path, time.monotonic() + 1)]  # fills the backlog
        with pytest.raises(ctl.CtlError, match="too many clients at once"):
            ctl.connect(path, time.monotonic() + 0.2)
        threading.Timer(0.2, lambda: queued.append(listener.accept()[0])).start()
        started = time.monotonic()
        ctl.connect(path, started + 5).close()
        assert 0.15 < time.monotonic() - started < 2
        for s in queued:
            s.close()


# --- permissions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    groups: list[int]


def _ensure_group(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        subprocess.run(["groupadd", "--system", name], check=True)
        return grp.getgrnam(name).gr_gid


def _ensure_user(name: str, *options: str) -> User:
    try:
        pwd.getpwnam(name)
    except KeyError:
        command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        subprocess.run([*command, *options, name], check=True)
    entry = pwd.getpwnam(name)
    return User(name, entry.pw_uid, entry.pw_gid, os.getgrouplist(name, entry.pw_gid))


@pytest.fixture(scope="module")
def users() -> dict[str, User]:
    require_root()
    checkout.require_other_users()  # they run pidone's interpreter from the checkout
    _ensure_group(GROUP)
    return {
        MEMBER: _ensure_user(MEMBER, "--user-group", "--groups", GROUP),
        PRIMARY: _ensure_user(PRIMARY, "--gid", GROUP),
        OUTSIDER: _ensure_user(OUTSIDER, "--user-group"),
    }


def run_as(user: User, *argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m pidone.control.client ARGV` as `user`, with exactly the user's groups."""
    return subprocess.run(
        [sys.executable, "-m", "pidone.control.client", *argv],
        user=user.uid,
        group=user.gid,
        extra_groups=user.groups,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def group_harness(users: dict[str, User], path: str) -> Iterator[Harness]:
    h = Harness(path, group=grp.getgrnam(GROUP).gr_gid)
    yield h
    h.close()


def test_with_a_group_the_socket_is_0660_and_group_owned(group_harness: Harness, path: str) -> None:
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert (st.st_uid, st.st_gid) == (0, grp.getgrnam(GROUP).gr_gid)


def test_root_is_allowed(group_harness: Harness, path: str) -> None:
    assert ask(path, "status")["ok"] is True


@pytest.mark.parametrize("who", [MEMBER, PRIMARY])
def test_members_of_the_group_are_allowed(
    group_harness: Harness, path: str, users: dict[str, User], who: str
) -> None:
    user = users[who]
    gid = grp.getgrnam(GROUP).gr_gid
    assert (user.gid == gid) == (who == PRIMARY)  # each path of the check is exercised
    done = run_as(user, "--socket", path, "status")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[1].split()[:4] == ["redis", "READY", "yes", "4242"]
    done = run_as(user, "--socket", path, "restart", "--timeout", "5", "web")
    assert (done.returncode, done.stderr) == (0, "")
    assert group_harness.requests[-1] == {
        "command": "restart",
        "args": {"names": ["web"], "timeout": 5.0},
    }


def test_an_outsider_cannot_even_connect(
    group_harness: Harness, path: str, users: dict[str, User]
) -> None:
    done = run_as(users[OUTSIDER], "--socket", path, "status")
    assert done.returncode == 1
    assert done.stderr == (
        f"pidone ctl: cannot connect to {path}: Permission denied"
        " (root or a member of control_group only)\n"
    )
    assert group_harness.requests == []


def test_an_outsider_is_refused_by_credentials_even_on_an_open_socket(
    group_harness: Harness, path: str, users: dict[str, User]
) -> None:
    os.chmod(path, 0o666)  # a mistake elsewhere must not open the door
    outsider = users[OUTSIDER]
    gid = grp.getgrnam(GROUP).gr_gid
    done = run_as(outsider, "--socket", path, "shutdown")
    assert done.returncode == 1
    assert done.stderr == (
        f"pidone ctl: permission denied: uid {outsider.uid} is not root"
        f" or in group {GROUP} ({gid})\n"
    )
    assert group_harness.requests == []
    assert ask(path, "status")["ok"] is True  # and the server carries on


def test_without_a_group_only_root_is_allowed(
    harness: Harness, path: str, users: dict[str, User]
) -> None:
    os.chmod(path, 0o666)
    member = users[MEMBER]
    done = run_as(member, "--socket", path, "status")
    assert done.returncode == 1
    assert done.stderr == f"pidone ctl: permission denied: uid {member.uid} is not root\n"
    assert harness.requests == []
