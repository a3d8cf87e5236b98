"""Least privilege per process, checked in /proc of the running child, with
real users and groups (created as root), and the socket directory shared
with nginx, checked with real connections as www-data and as nobody."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from tests.helpers.running import PIDONE, PYTHON, descendants, helper, wait_for
from tests.helpers.stack import Stack, whoami_report
from tests.helpers.users import APP, EXTRA, as_user, gid, socket_table, uid

NET_BIND_SERVICE = 1 << 10
WHOAMI = " ".join(helper("whoami.py"))


def whoami(stack: Stack, name: str) -> dict[str, object]:
    return whoami_report(stack, name)


def caps(report: dict[str, object]) -> dict[str, int]:
    status = report["status"]
    assert isinstance(status, dict)
    return {k: int(status[k][0], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}


def test_user_group_groups_umask_rlimits_directory(mode: str, shared: Path) -> None:
    workdir = shared / "work"
    workdir.mkdir()
    with Stack(mode, shared) as stack:
        stack.start(f"""
[process.app]
command = "{WHOAMI}"
user = "{APP}"
group = "{EXTRA}"
groups = ["www-data"]
umask = "0027"
directory = "{workdir}"
rlimits = {{ nofile = 4096 }}
[process.plain]
command = "{WHOAMI}"
user = "{APP}"
""")
        app, plain = whoami(stack, "app"), whoami(stack, "plain")
    status = app["status"]
    assert isinstance(status, dict)
    assert status["Uid"] == [str(uid(APP))] * 4
    assert status["Gid"] == [str(gid(EXTRA))] * 4
    assert status["Groups"] == [str(gid("www-data"))]  # `groups` replaces the user's own
    assert status["Umask"] == ["0027"]
    assert status["NoNewPrivs"] == ["1"]
    assert app["nofile"] == [4096, 4096]
    assert app["cwd"] == str(workdir)
    env = app["env"]
    assert isinstance(env, dict)
    assert (env["USER"], env["LOGNAME"], env["HOME"]) == (APP, APP, "/nonexistent")
    assert caps(app) == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0, "CapAmb": 0}
    assert app["privileged_bind"] == "Permission denied"
    # no `group`/`groups`: the user's primary group and its groups from /etc/group,
    # never root's
    plain_status = plain["status"]
    assert isinstance(plain_status, dict)
    assert plain_status["Gid"] == [str(gid(APP))] * 4
    assert sorted(plain_status["Groups"]) == sorted([str(gid(APP)), str(gid(EXTRA))])
    assert "0" not in plain_status["Groups"]


def test_kept_capability_is_really_usable_after_the_user_switch(mode: str, shared: Path) -> None:
    with Stack(mode, shared) as stack:
        stack.start(f"""
[process.binder]
command = "{WHOAMI}"
user = "{APP}"
capabilities = ["NET_BIND_SERVICE"]
""")
        report = whoami(stack, "binder")
    assert caps(report) == {
        k: NET_BIND_SERVICE for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
    }
    assert report["privileged_bind"] == "ok"


def test_capabilities_on_a_process_that_stays_root_are_applied_not_ignored(
    mode: str, shared: Path
) -> None:
    with Stack(mode, shared) as stack:
        stack.start(f"""
[process.rootcaps]
command = "{WHOAMI}"
capabilities = ["NET_BIND_SERVICE", "CHOWN"]
[process.rootuser]
command = "{WHOAMI}"
user = "root"
capabilities = ["NET_BIND_SERVICE"]
""")
        report, named = whoami(stack, "rootcaps"), whoami(stack, "rootuser")
    listed = NET_BIND_SERVICE | 1 << 0  # CAP_CHOWN is 0
    status = report["status"]
    assert isinstance(status, dict)
    assert status["Uid"] == ["0"] * 4
    assert caps(report) == {
        "CapInh": 0, "CapPrm": listed, "CapEff": listed, "CapBnd": listed, "CapAmb": 0
    }  # fmt: skip
    assert report["privileged_bind"] == "ok"
    assert caps(named) == {
        "CapInh": 0, "CapPrm": NET_BIND_SERVICE, "CapEff": NET_BIND_SERVICE,
        "CapBnd": NET_BIND_SERVICE, "CapAmb": 0,
    }  # fmt: skip


def test_clear_env_starts_from_an_empty_environment(mode: str, shared: Path) -> None:
    with Stack(mode, shared) as stack:
        (shared / ".env").write_text("FROM_DOTENV=1\n")
        stack.start(f"""
[process.bare]
command = "{WHOAMI}"
user = "{APP}"
clear_env = true
environment = {{ ONLY = "this", LC_ALL = "C.UTF-8" }}
""")
        report = whoami(stack, "bare")
    # PORT is pidone's to give each process, as foreman does (clear_env or not).
    assert report["env"] == {
        "FROM_DOTENV": "1",
        "PORT": "5000",
        "ONLY": "this",
        "LC_ALL": "C.UTF-8",
    }


def test_root_process_keeps_root_and_nothing_is_hardened(mode: str, shared: Path) -> None:
    with Stack(mode, shared) as stack:
        stack.start(f'[process.root]\ncommand = "{WHOAMI}"\n')
        report = whoami(stack, "root")
    status = report["status"]
    assert isinstance(status, dict)
    assert status["Uid"] == ["0"] * 4
    assert status["NoNewPrivs"] == ["0"]


def test_a_setuid_binary_does_not_give_root_back(mode: str, shared: Path) -> None:
    suid_id = shared / "id-suid"
    shutil.copy("/usr/bin/id", suid_id)
    os.chmod(suid_id, 0o4755)
    # control: without pidone's hardening the copy really does make a user root
    control = as_user(APP, [str(suid_id), "-u"])
    assert control.stdout.strip() == "0", "setuid does not work here: the test proves nothing"
    with Stack(mode, shared) as stack:
        stack.start(
            f'[process.climber]\ncommand = "{suid_id} -u"\nuser = "{APP}"\nrestart = "never"\n'
        )
        wait_for(lambda: re.search(r"climber\s+\| \d+", stack.stdout_so_far()) is not None,
                 what="id's output")  # fmt: skip
        out = stack.stdout_so_far()
    assert re.search(rf"^climber\s+\| {uid(APP)}$", out, re.M), out


def test_unknown_user_group_and_missing_directory_are_config_errors(shared: Path) -> None:
    (shared / "pidone.toml").write_text(
        '[process.a]\ncommand = "true"\nuser = "no-such-user-x"\n'
        '[process.b]\ncommand = "true"\ngroup = "no-such-group-x"\ndirectory = "/no/such/dir"\n'
    )
    for command in ("check", "run"):
        result = subprocess.run([PIDONE, command], cwd=shared, capture_output=True, text=True)
        assert result.returncode == 2
        assert "pidone.toml:3: [process.a] user: no user 'no-such-user-x'" in result.stderr
        assert "pidone.toml:6: [process.b] group: no group 'no-such-group-x'" in result.stderr
        assert (
            "pidone.toml:7: [process.b] directory: '/no/such/dir' is not a directory"
            in result.stderr
        )


def test_sigkill_to_pidone_leaves_no_child_running(shared: Path) -> None:
    # As a subreaper (as PID 1 the kernel would end the namespace anyway):
    # the parent-death signal takes the children down with pidone.
    with Stack("subreaper", shared) as stack:
        stack.start(f"""
[process.a]
command = "{stack.svc("a")}"
user = "{APP}"
[process.b]
command = "{stack.svc("b")}"
""")
        stack.wait_for("a listening", "b listening")
        children = descendants(stack.init.pid)
        assert len(children) == 2
        os.kill(stack.init.pid, signal.SIGKILL)
        wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in children),
                 what="the children to die with pidone")  # fmt: skip


# --- the socket directory shared with nginx --------------------------------------


def connect_as(user: str, path: Path) -> str:
    code = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_UNIX)\n"
        "try:\n s.connect(sys.argv[1]); print('connected')\n"
        "except OSError as e: print(e.strerror)\n"
    )
    return as_user(user, [PYTHON, "-c", code, str(path)]).stdout.strip()


def check_socket(path: Path) -> None:
    d = path.parent.stat()
    assert (d.st_uid, d.st_gid, stat.S_IMODE(d.st_mode)) == (uid(APP), gid("www-data"), 0o2750)
    s = path.stat()
    assert stat.S_ISSOCK(s.st_mode)
    assert (s.st_uid, s.st_gid, stat.S_IMODE(s.st_mode)) == (uid(APP), gid("www-data"), 0o660)
    assert connect_as("www-data", path) == "connected"
    assert connect_as("nobody", path) == "Permission denied"


@pytest.mark.parametrize("volume", ["fresh", "wrong-owner", "stale-socket"])
def test_prebound_socket_gets_its_owner_group_and_mode(
    mode: str, shared: Path, volume: str
) -> None:
    path = shared / "volume" / "run" / "uwsgi.sock"
    if volume != "fresh":
        path.parent.mkdir(parents=True)
        os.chown(path.parent, uid("nobody"), gid("nogroup"))
        path.parent.chmod(0o777)
    if volume == "stale-socket":
        with socket.socket(socket.AF_UNIX) as old:
            old.bind(str(path))  # closed at once: a socket file nobody listens on
        assert connect_as("root", path) == "Connection refused"
    with Stack(mode, shared) as stack:
        stack.start(
            socket_table(path)
            + f"""
[process.web]
command = "{stack.svc("web")}"
sockets = ["app"]
"""
        )
        stack.wait_for("web listening")
        check_socket(path)  # connects: a live socket in place of the stale one


def test_socket_activation_environment(mode: str, shared: Path) -> None:
    path = shared / "sock" / "app.sock"
    with Stack(mode, shared) as stack:
        stack.start(
            socket_table(path)
            + f"""
[process.web]
command = "{WHOAMI}"
user = "{APP}"
sockets = ["app"]
"""
        )
        report = whoami(stack, "web")
        env = report["env"]
        assert isinstance(env, dict)
        assert env["LISTEN_FDS"] == "1"
        assert env["LISTEN_FDNAMES"] == "app"
        # LISTEN_PID is the process's own pid (as it sees it)
        status_pid = env["LISTEN_PID"]
        web = [
            p
            for p in descendants(stack.init.pid)
            if "whoami" in Path(f"/proc/{p}/cmdline").read_text()
        ]
        assert len(web) == 1
        nspid = [ln for ln in Path(f"/proc/{web[0]}/status").read_text().splitlines()
                 if ln.startswith("NSpid:")]  # fmt: skip
        assert status_pid == nspid[0].split()[-1]
        fd3 = os.readlink(f"/proc/{web[0]}/fd/3")
        assert fd3.startswith("socket:")


def test_socket_created_by_the_process_is_fixed_before_it_is_ready(mode: str, shared: Path) -> None:
    path = shared / "own" / "app.sock"
    with Stack(mode, shared) as stack:
        stack.start(
            socket_table(path, listen=False)
            + f"""
[process.web]
command = "{stack.svc("web", "--unix", str(path), "--delay", "0.3")}"
user = "{APP}"
sockets = ["app"]
ready = "unix:{path}"
"""
        )
        wait_for(lambda: re.search(r"^web\s+\| ready$", stack.stdout_so_far(), re.M) is not None,
                 what="web ready")  # fmt: skip
        check_socket(path)
        out = stack.stdout_so_far()
    assert out.index("socket app: owner, group and mode fixed") < out.index("| ready")


def test_a_symlink_planted_in_the_socket_path_is_refused(shared: Path) -> None:
    target = shared / "elsewhere"
    target.mkdir()
    (shared / "volume").symlink_to(target)
    (shared / "pidone.toml").write_text(
        socket_table(shared / "volume" / "app.sock") + '[process.web]\ncommand = "true"\n'
    )
    env = {**os.environ, "PIDONE_CONTROL_SOCKET": str(shared / "control.sock")}  # not the host's
    result = subprocess.run(
        [PIDONE, "run"], cwd=shared, capture_output=True, text=True, timeout=30, env=env
    )
    assert result.returncode == 2
    assert f"{shared / 'volume'} is a symlink or not a directory" in result.stderr
    assert list(target.iterdir()) == []
    assert stat.S_IMODE(target.stat().st_mode) != 0o2750
    assert result.stdout == ""


def test_socket_without_owner_under_a_non_root_pidone_is_pidones_own(shared: Path) -> None:
    """pidone run by a plain user (a site's systemd unit with User=) binds a
    `[socket]` without `owner`: the socket and its directory are that user's
    (the default owner was root: the chown failed, pidone refused to start)."""
    sock = shared / "run" / "web.sock"
    who = [f"--reuid={uid(APP)}", f"--regid={gid(APP)}", "--clear-groups"]
    with Stack("subreaper", shared) as stack:
        stack.start(
            f"""
[socket.web]
path = "{sock}"
listen = true
[process.web]
command = "{stack.svc("web")}"
sockets = ["web"]
""",
            prefix=["setpriv", *who],
        )
        stack.wait_for("web up")
        seen = {p: os.stat(p) for p in (sock.parent, sock)}
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
    mine = (uid(APP), gid(APP))
    assert (seen[sock.parent].st_uid, seen[sock.parent].st_gid) == mine
    assert stat.S_IMODE(seen[sock.parent].st_mode) == 0o2750
    assert (seen[sock].st_uid, seen[sock].st_gid) == mine
    assert stat.S_IMODE(seen[sock].st_mode) == 0o660
    assert stat.S_ISSOCK(seen[sock].st_mode)
