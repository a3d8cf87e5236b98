"""THE rule for pidone's runtime directory, where its control socket
(DIR/control.sock) and its processes' notify sockets (DIR/notify/, or
DIR/notify-HASH/ for another control socket: see notify_dir_for) live:

    root (euid 0)              /run/pidone
    any other user             $XDG_RUNTIME_DIR/pidone, when XDG_RUNTIME_DIR is an
                               absolute directory of that user that nobody else may
                               write to (else why not is said, and:)
                               .pidone beside the configuration (the directory of
                               pidone.toml, else of the Procfile)

`pidone run` makes a non-root DIR 0700 and refuses one that is unsafe
(system.sockets.private_directory); `pidone ctl` run by the same user in the
configuration's directory finds the same socket by the same rule. Read-only
here: it looks at the environment and stats a directory.
"""

from __future__ import annotations

import importlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT_DIR = "/run/pidone"
LOCAL_DIR = ".pidone"  # beside the configuration
CONTROL_SOCKET = "control.sock"
NOTIFY_DIR = "notify"


@dataclass(frozen=True)
class RuntimeDir:
    path: str
    private: bool  # not root's: made 0700 by pidone run, and checked
    note: str | None = None  # why XDG_RUNTIME_DIR was passed over

    @property
    def control_socket(self) -> str:
        return os.path.join(self.path, CONTROL_SOCKET)

    @property
    def notify_dir(self) -> str:
        return os.path.join(self.path, NOTIFY_DIR)


def notify_dir_for(found: RuntimeDir, control_socket: str) -> str:
    """The notify directory of the pidone whose control socket is `control_socket`.

    Per instance: two pidones of one user (root's on a host, say) share the
    runtime directory, and a shared notify directory would let the second take
    over the first one's NAME.sock and its READY=1. A live control socket is
    refused to a second pidone, so a directory named after it is one pidone's:
    DIR/notify for the default control socket, else DIR/notify-HASH (the first
    16 hex digits of the sha256 of its absolute path: short, and inside DIR,
    never beside a control socket in a directory others may write to)."""
    path = os.path.abspath(control_socket)
    if path == found.control_socket:
        return found.notify_dir
    digest = _sha256_hex(os.fsencode(path))[:16]
    return os.path.join(found.path, f"{NOTIFY_DIR}-{digest}")


def _sha256_hex(data: bytes) -> str:
    """hashlib's sha256 without hashlib: importing it loads OpenSSL's
    libcrypto, 3.6 MiB of pidone run's memory (bench/RESULTS.md); the
    interpreter's own module gives the same digest for 0.16 MiB."""
    for name in ("_sha2", "_sha256"):  # Python 3.12+, then 3.10 and 3.11
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return str(module.sha256(data).hexdigest())
    import hashlib  # an interpreter without them

    return hashlib.sha256(data).hexdigest()


def config_dir(config: Path | None, procfile: Path | None) -> str:
    """The configuration's directory: pidone.toml's, else the Procfile's, else here."""
    named = config or procfile
    return os.path.dirname(os.path.abspath(named)) if named is not None else os.getcwd()


def runtime_dir(
    beside: str, *, euid: int | None = None, environ: Mapping[str, str] | None = None
) -> RuntimeDir:
    """pidone's runtime directory for a configuration in directory `beside`."""
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        return RuntimeDir(ROOT_DIR, private=False)
    environ = os.environ if environ is None else environ
    xdg = environ.get("XDG_RUNTIME_DIR")
    local = os.path.join(os.path.abspath(beside), LOCAL_DIR)
    if not xdg:
        return RuntimeDir(local, private=True)
    problem = _xdg_problem(xdg, euid)
    if problem is None:
        return RuntimeDir(os.path.join(xdg, "pidone"), private=True)
    return RuntimeDir(local, private=True, note=f"XDG_RUNTIME_DIR={xdg!r} {problem}")


def _xdg_problem(path: str, euid: int) -> str | None:
    if not path.startswith("/"):
        return "is not an absolute path"
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot be used: {exc.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != euid:
        return f"belongs to uid {st.st_uid}, not to pidone's {euid}"
    if st.st_mode & 0o022:
        return f"is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None
