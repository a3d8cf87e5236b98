"""`pidone run` as a plain user (a site's own pidone on a server): its runtime
directory ($XDG_RUNTIME_DIR/pidone, else .pidone beside the configuration,
0700), `pidone ctl` finding the socket there by the same rule, notify
readiness, two pidones of one user, and the keys only root can honour.

These run pidone as a subreaper: a non-root user cannot make a PID namespace
(unshare --pid needs CAP_SYS_ADMIN). The same configuration as PID 1, as
root, is the last test.
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import stat
import subprocess
import time
from pathlib import Path

from tests.helpers.running import PIDONE, wait_for
from tests.helpers.stack import Stack
from tests.helpers.users import APP, EXTRA, as_user, gid, uid

NOBODY = "nobody"


def as_app() -> list[str]:
    """The launcher that makes pidone run as APP, without root's control socket."""
    return [
        "env", "-u", "PIDONE_CONTROL_SOCKET", "-u", "XDG_RUNTIME_DIR",
        "setpriv", f"--reuid={uid(APP)}", f"--regid={gid(APP)}", "--init-groups", "--",
    ]  # fmt: skip


def site(stack: Stack) -> str:
    """A notify web process and a worker that names pidone's own user (accepted)."""
    return f"""
[process.web]
command = "{stack.svc("web", "--notify")}"
ready = "notify"
[process.worker]
command = "{stack.svc("worker")}"
user = "{APP}"
after = ["web"]
"""


def ctl(
    user: str, cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return as_user(user, [PIDONE, "ctl", *args], cwd=cwd, env={**base, **(env or {})})


def assert_private(path: Path) -> None:
    st = path.lstat()
    assert stat.S_ISDIR(st.st_mode)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (uid(APP), 0o700)


def test_without_xdg_runtime_dir_the_sockets_are_in_pidone_beside_the_config(
    shared: Path,
) -> None:
    with Stack("subreaper", shared) as stack:
        stack.start(site(stack), prefix=as_app())
        sock = shared / ".pidone" / "control.sock"
        wait_for(sock.exists, what="the control socket in .pidone")
        assert_private(shared / ".pidone")
        assert sock.stat().st_uid == uid(APP)
        # ready = "notify" works without root: web becomes ready, worker follows it
        stack.wait_for("web listening", "worker up")
        waited = ctl(APP, shared, "wait-ready", "--timeout", "20")
        assert waited.returncode == 0, waited.stderr
        status = ctl(APP, shared, "status")
        assert status.returncode == 0, status.stderr
        assert re.search(r"^web\s+READY\s+yes", status.stdout, re.M), status.stdout
        assert re.search(r"^worker\s+READY\s+yes", status.stdout, re.M), status.stdout
        # the deploy step, by the site's user, no sudo
        old = stack.host_pid("web")
        restarted = ctl(APP, shared, "restart", "web")
        assert restarted.returncode == 0, restarted.stderr
        assert stack.count("web up") == 2 and stack.host_pid("web") != old
        # another user: the directory is 0700, so not even the socket is reachable
        refused = ctl(NOBODY, shared, "--socket", str(sock), "status")
        assert refused.returncode == 1
        assert "Permission denied" in refused.stderr
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
    assert not sock.exists()  # removed at exit


def test_with_xdg_runtime_dir_the_sockets_are_in_its_pidone_directory(shared: Path) -> None:
    xdg = shared / "xdg"
    xdg.mkdir(mode=0o700)
    os.chown(xdg, uid(APP), gid(APP))
    launcher = [*as_app()[:5], f"XDG_RUNTIME_DIR={xdg}", *as_app()[5:]]
    with Stack("subreaper", shared) as stack:
        stack.start(site(stack), prefix=launcher)
        sock = xdg / "pidone" / "control.sock"
        wait_for(sock.exists, what="the control socket in $XDG_RUNTIME_DIR/pidone")
        assert_private(xdg / "pidone")
        # web's notify socket is bound when web is spawned, after the control socket
        notify = xdg / "pidone" / "notify" / "web.sock"
        wait_for(notify.exists, what="web's notify socket in $XDG_RUNTIME_DIR/pidone/notify")
        assert not (shared / ".pidone").exists()
        env = {"XDG_RUNTIME_DIR": str(xdg)}
        assert ctl(APP, shared, "wait-ready", "--timeout", "20", env=env).returncode == 0
        status = ctl(APP, shared, "status", env=env)
        assert status.returncode == 0 and "web" in status.stdout, status.stderr
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0


def test_an_xdg_runtime_dir_of_another_user_is_passed_over_with_a_reason(shared: Path) -> None:
    xdg = shared / "xdg-root"
    xdg.mkdir(mode=0o700)  # root's
    launcher = [*as_app()[:5], f"XDG_RUNTIME_DIR={xdg}", *as_app()[5:]]
    with Stack("subreaper", shared) as stack:
        stack.start(site(stack), prefix=launcher)
        wait_for((shared / ".pidone" / "control.sock").exists, what="the control socket")
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
        _, err = stack.output()
    assert f"XDG_RUNTIME_DIR='{xdg}' belongs to uid 0, not to pidone's {uid(APP)}" in err
    assert f"using {shared / '.pidone'}" in err


def test_a_second_pidone_of_the_same_user_fails_at_once_and_starts_nothing(
    shared: Path,
) -> None:
    with Stack("subreaper", shared) as stack:
        stack.start(site(stack), prefix=as_app())
        stack.wait_for("web listening")
        wait_for((shared / ".pidone" / "control.sock").exists, what="the control socket")
        began = time.monotonic()
        second = subprocess.run(
            [*as_app(), PIDONE, "run", "-c", str(shared / "pidone.toml")],
            cwd=shared, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert second.returncode == 2, second.stderr
        assert time.monotonic() - began < 10
        assert "another pidone is already running with the control socket" in second.stderr
        assert second.stdout == ""
        assert stack.count("web up") == 1  # nothing started twice
        # the first one is untouched: its socket still answers
        assert ctl(APP, shared, "status").returncode == 0
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0


def test_a_stale_control_socket_of_a_killed_pidone_is_replaced(shared: Path) -> None:
    with Stack("subreaper", shared) as stack:
        stack.start(site(stack), prefix=as_app())
        sock = shared / ".pidone" / "control.sock"
        wait_for(sock.exists, what="the control socket")
        stack.init.kill()  # SIGKILL: the socket file stays, nobody listens
    assert sock.exists()
    with Stack("subreaper", shared) as stack:
        stack.start(site(stack), prefix=as_app())
        stack.wait_for("web listening")
        assert ctl(APP, shared, "wait-ready", "--timeout", "20").returncode == 0
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0


def test_a_symlink_planted_as_the_runtime_directory_is_refused(shared: Path) -> None:
    elsewhere = shared / "elsewhere"
    elsewhere.mkdir()
    os.chown(elsewhere, uid(APP), gid(APP))
    (shared / ".pidone").symlink_to(elsewhere)
    (shared / "pidone.toml").write_text('[process.web]\ncommand = "sleep 100"\n')
    result = subprocess.run(
        [*as_app(), PIDONE, "run"], cwd=shared, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert f"{shared / '.pidone'} is a symlink or not a directory" in result.stderr
    assert list(elsewhere.iterdir()) == []


def test_a_runtime_directory_others_may_write_to_is_refused(shared: Path) -> None:
    (shared / ".pidone").mkdir()
    os.chown(shared / ".pidone", uid(APP), gid(APP))
    (shared / ".pidone").chmod(0o777)
    (shared / "pidone.toml").write_text('[process.web]\ncommand = "sleep 100"\n')
    result = subprocess.run(
        [*as_app(), PIDONE, "run"], cwd=shared, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "is writable by others (mode 0777); remove it or chmod 700 it" in result.stderr
    assert result.stdout == ""


def test_user_root_as_non_root_is_a_config_error_naming_the_key(shared: Path) -> None:
    marker = shared / "started"
    (shared / "pidone.toml").write_text(
        f"""[process.web]
command = "touch {marker}"
user = "root"
capabilities = ["NET_BIND_SERVICE"]

[process.worker]
command = "touch {marker}"
group = "root"

[socket.app]
path = "{shared}/run/app.sock"
owner = "www-data"
"""
    )
    me = f"pidone runs as uid {uid(APP)}, not root"
    expected = [
        f"pidone.toml:3: [process.web] user: {me}: it cannot run a process as 'root'; "
        "run pidone as root, or remove the key",
        f"pidone.toml:4: [process.web] capabilities: {me}: it has no capabilities to give; "
        "run pidone as root, or remove the key",
        f"pidone.toml:8: [process.worker] group: {me}: it cannot switch to group 'root'; "
        "run pidone as root, or remove the key",
        f"pidone.toml:12: [socket.app] owner: {me}: it cannot give a socket to 'www-data'; "
        "run pidone as root, or remove the key",
    ]
    for command in ("check", "run"):
        result = subprocess.run(
            [*as_app(), PIDONE, command], cwd=shared, capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 2, result.stderr
        for line in expected:
            assert line in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not marker.exists()
    # as root the same file is fine for check (root can do all of it)
    as_root = subprocess.run([PIDONE, "check"], cwd=shared, capture_output=True, text=True)
    assert as_root.returncode == 0, as_root.stderr


def test_the_same_site_as_pid1_under_root(shared: Path) -> None:
    """As root the runtime directory stays /run/pidone (the Stack points the
    control socket elsewhere), and `user` is a real switch."""
    with Stack("pid1", shared) as stack:
        stack.start(site(stack))
        stack.wait_for("web listening", "worker up")
        wait_for(stack.control_socket.exists, what="the control socket")
        waited = subprocess.run(
            [PIDONE, "ctl", "--socket", str(stack.control_socket), "wait-ready"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert waited.returncode == 0, waited.stderr
        worker = Path(f"/proc/{stack.host_pid('worker')}/status").read_text()
        assert re.search(rf"^Uid:\s+{uid(APP)}\s", worker, re.M)
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
    assert not (shared / ".pidone").exists()


def test_a_read_only_configuration_directory_only_disables_the_control_socket(
    shared: Path,
) -> None:
    """As in a container run as an arbitrary uid with its config mounted
    read-only: .pidone cannot be made. The processes run; the control socket
    is off, and said so (root's without /run/pidone is the same)."""
    config = shared / "ro"
    config.mkdir(mode=0o755)  # root's: pidone-app cannot write here
    (config / "pidone.toml").write_text(
        "[process.hello]\ncommand = \"sh -c 'echo hello from $(id -u)'\"\n"
        'restart = "never"\ncontrol = true\n'
    )
    result = subprocess.run(
        [*as_app(), PIDONE, "run"], cwd=config, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert f"hello from {uid(APP)}" in result.stdout
    assert f"control socket {config / '.pidone' / 'control.sock'} disabled" in result.stderr
    assert not (config / ".pidone").exists()


def test_a_read_only_configuration_directory_with_a_notify_process_is_refused(
    shared: Path,
) -> None:
    config = shared / "ro"
    config.mkdir(mode=0o755)
    marker = shared / "started"
    (config / "pidone.toml").write_text(
        f'[process.web]\ncommand = "touch {marker}"\nready = "notify"\n'
    )
    result = subprocess.run(
        [*as_app(), PIDONE, "run"], cwd=config, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2, result.stderr
    assert (
        f"pidone's runtime directory: cannot create {config / '.pidone'}: Permission denied; "
        'the notify sockets of web (ready = "notify") go there: set XDG_RUNTIME_DIR'
    ) in result.stderr
    assert not marker.exists()


def test_a_deploy_group_member_finds_the_socket_through_control_socket(shared: Path) -> None:
    """The site's pidone (pidone-app, in group pidone-extra) with
    control_group: a member of that group, another uid with another
    XDG_RUNTIME_DIR, runs `pidone ctl` in the site's directory with no option;
    the same uid without the group is refused."""
    sock = shared / "ctl" / "control.sock"
    with Stack("subreaper", shared) as stack:
        stack.start(
            f'[pidone]\ncontrol_socket = "{sock}"\ncontrol_group = "{EXTRA}"\n' + site(stack),
            prefix=as_app(),
        )
        wait_for(sock.exists, what="the control socket")
        assert (sock.stat().st_gid, stat.S_IMODE(sock.stat().st_mode)) == (gid(EXTRA), 0o660)
        nobody = pwd.getpwnam(NOBODY)

        def ctl_as_nobody(*groups: int) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [PIDONE, "ctl", "wait-ready", "--timeout", "20"],
                user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=list(groups),
                cwd=shared, capture_output=True, text=True, timeout=30,
                env={"PATH": os.environ.get("PATH", ""), "XDG_RUNTIME_DIR": "/run/user/65534"},
            )  # fmt: skip

        member = ctl_as_nobody(gid(EXTRA))
        assert member.returncode == 0, member.stderr
        outsider = ctl_as_nobody()
        assert outsider.returncode == 1
        assert "Permission denied" in outsider.stderr or "permission denied" in outsider.stderr
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0


def test_a_control_group_pidone_is_not_in_is_a_config_error_without_root(shared: Path) -> None:
    (shared / "pidone.toml").write_text(
        '[pidone]\ncontrol_group = "www-data"\n[process.web]\ncommand = "true"\n'
    )
    result = subprocess.run(
        [*as_app(), PIDONE, "check"], cwd=shared, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert (
        f"pidone.toml:2: [pidone] control_group: pidone runs as uid {uid(APP)}, not root and "
        "not in group 'www-data'; run pidone as root, or remove the key"
    ) in result.stderr
