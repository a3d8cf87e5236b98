"""The one rule for pidone's runtime directory (config/rundir.py), and how
`pidone ctl` finds the control socket by it. Pure: euid and environment are
given, the directories are the test's."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pidone.config import rundir
from pidone.config.rundir import RuntimeDir, runtime_dir
from pidone.control import client as ctl
from pidone.errors import ConfigError


def owned_dir(path: Path, mode: int = 0o700) -> int:
    """`path` made a directory of a non-root uid; that uid."""
    path.mkdir(mode=mode)
    path.chmod(mode)
    if os.geteuid() == 0:
        os.chown(path, 4242, 4242)
        return 4242
    return os.geteuid()


def test_root_keeps_run_pidone_whatever_the_environment(tmp_path: Path) -> None:
    found = runtime_dir(str(tmp_path), euid=0, environ={"XDG_RUNTIME_DIR": str(tmp_path)})
    assert found == RuntimeDir("/run/pidone", private=False)
    assert found.control_socket == "/run/pidone/control.sock"
    assert found.notify_dir == "/run/pidone/notify"


def test_not_root_uses_its_xdg_runtime_dir(tmp_path: Path) -> None:
    uid = owned_dir(tmp_path / "xdg")
    found = runtime_dir("/srv/site", euid=uid, environ={"XDG_RUNTIME_DIR": str(tmp_path / "xdg")})
    assert found == RuntimeDir(str(tmp_path / "xdg" / "pidone"), private=True)
    assert found.control_socket == str(tmp_path / "xdg" / "pidone" / "control.sock")


def test_not_root_without_xdg_runtime_dir_uses_pidone_beside_the_configuration() -> None:
    found = runtime_dir("/srv/site", euid=1000, environ={})
    assert found == RuntimeDir("/srv/site/.pidone", private=True)
    assert found.notify_dir == "/srv/site/.pidone/notify"


def test_the_default_control_socket_keeps_the_notify_directory() -> None:
    found = runtime_dir("/srv/site", euid=0, environ={})
    assert rundir.notify_dir_for(found, "/run/pidone/control.sock") == "/run/pidone/notify"
    assert rundir.notify_dir_for(found, "/run/pidone/../pidone/control.sock") == (
        "/run/pidone/notify"
    )


def test_two_pidones_with_other_control_sockets_get_notify_directories_of_their_own() -> None:
    # Both root on one host: one /run/pidone, so the notify directory is the
    # control socket's (which a second live pidone is refused).
    found = runtime_dir("/srv/site", euid=0, environ={})
    first = rundir.notify_dir_for(found, "/srv/a/control.sock")
    second = rundir.notify_dir_for(found, "/srv/b/control.sock")
    assert len({first, second, found.notify_dir}) == 3
    for made in (first, second):
        assert os.path.dirname(made) == "/run/pidone"  # never beside the control socket
        assert re.fullmatch(r"notify-[0-9a-f]{16}", os.path.basename(made))
    assert rundir.notify_dir_for(found, "/srv/a/control.sock") == first  # the same each run


@pytest.mark.parametrize(
    ("make", "said"),
    [
        ("relative", "is not an absolute path"),
        ("missing", "cannot be used: No such file or directory"),
        ("file", "is not a directory"),
        ("group-writable", "is writable by others (mode 0770)"),
        ("another user's", "belongs to uid"),
    ],
)
def test_an_unsafe_xdg_runtime_dir_is_passed_over_and_said_why(
    tmp_path: Path, make: str, said: str
) -> None:
    xdg = tmp_path / "xdg"
    uid = 4242 if os.geteuid() == 0 else os.geteuid()
    if make == "relative":
        value = "run/user/1000"
    elif make == "file":
        xdg.write_text("")
        value = str(xdg)
    elif make == "group-writable":
        uid = owned_dir(xdg, 0o770)
        value = str(xdg)
    elif make == "another user's":
        owned_dir(xdg)
        uid += 1
        value = str(xdg)
    else:
        value = str(xdg)
    found = runtime_dir(str(tmp_path), euid=uid, environ={"XDG_RUNTIME_DIR": value})
    assert found.path == str(tmp_path / ".pidone")
    assert found.note is not None and said in found.note, found.note


def test_the_configurations_directory_is_pidone_tomls_else_the_procfiles(tmp_path: Path) -> None:
    assert rundir.config_dir(Path("/a/pidone.toml"), Path("/b/Procfile")) == "/a"
    assert rundir.config_dir(None, Path("/b/Procfile")) == "/b"


# --- pidone ctl finds the same socket --------------------------------------------


def test_ctl_reads_control_socket_from_pidone_toml_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIDONE_CONTROL_SOCKET", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pidone.toml").write_text('[pidone]\ncontrol_socket = "/srv/site/ctl.sock"\n')
    assert ctl.parse_args(["status"]).socket == "/srv/site/ctl.sock"
    monkeypatch.setenv("PIDONE_CONTROL_SOCKET", "/tmp/env.sock")  # the environment wins
    assert ctl.parse_args(["status"]).socket == "/tmp/env.sock"
    assert ctl.parse_args(["--socket", "/a.sock", "status"]).socket == "/a.sock"


def test_ctl_without_control_socket_follows_the_runtime_directory_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIDONE_CONTROL_SOCKET", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pidone.toml").write_text('[process.web]\ncommand = "x"\n')
    expected = runtime_dir(os.getcwd()).control_socket
    assert ctl.parse_args(["status"]).socket == expected


def test_ctl_with_a_broken_pidone_toml_here_is_a_clear_error_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PIDONE_CONTROL_SOCKET", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pidone.toml").write_text('[pidone]\n\ncontrol_socket = "ctl.sock"\n')
    with pytest.raises(ConfigError):
        ctl.parse_args(["status"])
    assert ctl.main(["status"]) == 2
    err = capsys.readouterr().err
    assert 'pidone.toml:3: [pidone] control_socket = "ctl.sock": must be an absolute path' in err
    (tmp_path / "pidone.toml").write_text("[pidone\n")
    assert ctl.main(["status"]) == 2
    assert "pidone.toml:1: not valid TOML" in capsys.readouterr().err
