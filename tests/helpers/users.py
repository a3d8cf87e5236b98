"""Real users and groups for privilege tests, created once as root.

pidone-app (its own primary group pidone-app, and a member of pidone-extra)
is the app; www-data (Debian's) plays nginx's user; nobody is the outsider.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.checkout import require_other_users
from tests.helpers.running import require_root

APP = "pidone-app"
EXTRA = "pidone-extra"


def ensure_users() -> None:
    require_root()
    require_other_users()
    subprocess.run(["groupadd", "-f", EXTRA], check=True)
    try:
        pwd.getpwnam(APP)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
             "/nonexistent", "--shell", "/usr/sbin/nologin", APP],
            check=True,
        )  # fmt: skip
    if APP not in grp.getgrnam(EXTRA).gr_mem:
        subprocess.run(["usermod", "-aG", EXTRA, APP], check=True)


def uid(name: str) -> int:
    return pwd.getpwnam(name).pw_uid


def gid(name: str) -> int:
    return grp.getgrnam(name).gr_gid


@contextmanager
def open_dir() -> Iterator[Path]:
    """A scratch directory every user can enter (pytest's tmp_path is 0700
    under /tmp/pytest-of-root, out of reach of the users we switch to)."""
    path = Path(tempfile.mkdtemp(prefix="pidone-test-", dir="/tmp"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def as_user(
    user: str,
    argv: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv as `user` (with that user's groups), capturing output."""
    require_other_users()
    entry = pwd.getpwnam(user)
    return subprocess.run(
        argv,
        user=entry.pw_uid,
        group=entry.pw_gid,
        extra_groups=os.getgrouplist(user, entry.pw_gid),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        env=env,
    )


def socket_table(path: Path, *, listen: bool = True) -> str:
    """[socket.app] as the tests use it: the app's, reachable by nginx's group."""
    return f"""
[socket.app]
path = "{path}"
owner = "{APP}"
group = "www-data"
mode = "0660"
listen = {str(listen).lower()}
"""
