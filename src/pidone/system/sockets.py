"""The socket directory shared with nginx and the sockets in it: opened
without following symlinks, claimed, settled; stale sockets removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

# --- the socket directory shared with nginx ----------------------------------------


SUN_PATH_MAX = 107  # bytes of a socket path: sockaddr_un.sun_path, less the final NUL


class UnsafePath(Exception):
    """A socket path pidone will not work on (a symlink, not a directory, ...)."""


class CannotCreate(UnsafePath):
    """A directory pidone cannot make (a read-only or foreign parent): nothing
    unsafe in it, only missing."""


def secure_directory(path: str) -> int:
    """Open (creating as needed) directory `path` without following any
    symlink on the way and return an fd for it. Parents it has to create get
    root and 0755. Raises UnsafePath."""
    if not path.startswith("/"):
        raise UnsafePath(f"{path}: not an absolute path")
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open("/", flags)
    walked = ""
    try:
        for part in [p for p in path.split("/") if p]:
            walked += "/" + part
            if part == "..":
                raise UnsafePath(f"{path}: '..' in the path")
            try:
                child = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                # made by someone else meanwhile: opened below, safely
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafePath(
                        f"{walked} is a symlink or not a directory; pidone follows no "
                        "symlink in a socket path: make it a real directory"
                    ) from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_directory(path: str) -> None:
    """Make `path` (in an existing directory) pidone's own, 0700: created, or
    an existing one of pidone's user kept (and made 0700). A symlink, a
    directory of another user or one that others may write to is refused
    (UnsafePath, saying how to fix it): a socket in it could be swapped."""
    import stat

    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise CannotCreate(f"cannot create {path}: {exc.strerror}") from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(
                f"{path} is a symlink or not a directory; remove it (pidone makes it)"
            ) from None
        raise UnsafePath(f"cannot open {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise UnsafePath(
                f"{path} belongs to uid {st.st_uid}, not to pidone's user {os.geteuid()}; "
                "remove it (pidone makes it)"
            )
        if st.st_mode & 0o022:
            raise UnsafePath(
                f"{path} is writable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
                "remove it or chmod 700 it"
            )
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def claim_directory(fd: int) -> None:
    """Make the directory ours for a moment, so that we may remove and create
    sockets in it, and set its mode, with CAP_CHOWN alone (no DAC_OVERRIDE,
    FOWNER or FSETID: a container should not need them)."""
    st = os.fstat(fd)
    me = (os.geteuid(), os.getegid())
    if (st.st_uid, st.st_gid) != me:
        os.fchown(fd, *me)


def settle_directory(fd: int, *, uid: int, gid: int, mode: int) -> None:
    """Give a claimed directory its mode, then its owner and group. In that
    order: chmod by the owner keeps the setgid bit without CAP_FSETID, and a
    directory keeps it through chown. The result is checked, not assumed."""
    import stat

    os.fchmod(fd, mode)
    os.fchown(fd, uid, gid)
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (uid, gid, mode):
        raise UnsafePath(
            f"the socket directory came out {st.st_uid}:{st.st_gid} "
            f"{stat.S_IMODE(st.st_mode):04o}, not {uid}:{gid} {mode:04o}"
        )


def remove_stale_socket(name: str, dir_fd: int | None = None) -> bool:
    """THE stale-socket rule: remove a socket file left by an earlier run
    (bind() fails on it); refuse to touch anything that is not a socket
    (UnsafePath), and follow no symlink. `name` is relative to `dir_fd`
    when given. True if one was removed."""
    import stat

    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(st.st_mode):
        raise UnsafePath(f"{name}: exists and is not a socket; pidone will not remove it")
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False  # removed meanwhile
    return True


def socket_in_use(path: str) -> bool:
    """Does a process listen on the unix stream socket `path`? (A refused
    connect means a stale socket; a full backlog means somebody listens.)"""
    import socket

    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(path)
    except (BlockingIOError, InterruptedError):
        return True  # backlog full: somebody is listening
    except OSError:
        return False  # ECONNREFUSED (or not a socket at all): nobody listens
    finally:
        probe.close()
    return True


def datagram_in_use(path: str) -> bool:
    """Is the unix datagram socket `path` bound by a live process? (connect()
    sends nothing; refused means stale, as socket_in_use's.)"""
    import socket

    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(path)
    except OSError:
        return False  # ECONNREFUSED (or not a socket at all): nobody has it
    finally:
        probe.close()
    return True


def bind_private(sock: socket.socket, path: str) -> None:
    """Bind `sock` at `path`, born 0600: never more open than intended, not
    even for an instant. The umask is process-wide: only the loop's thread
    calls this, before or between spawns, never while another thread makes
    files."""
    saved = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(saved)


def _set_up(sock: socket.socket, setup: Callable[[], None]) -> socket.socket:
    """`sock` made non-blocking after `setup` (bind, listen...), or closed
    if that raises: the one "no half-made socket is left open" rule."""
    try:
        setup()
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


UNIX_PATH_MAX = 107  # bytes of a unix socket's path (108 with its NUL)


def listen_private(path: str, *, group: int | None, backlog: int) -> socket.socket:
    """A non-blocking unix stream socket listening at `path`: 0600 at bind,
    then `group` and 0660 (root and that group may connect). Raises OSError,
    the socket closed.

    Bound under a name of its own beside `path` and renamed into place once
    it listens: a socket file that exists accepts. Bound at `path` itself,
    a client that sees the file between bind() and listen() is refused, and
    a second pidone would take it for a stale socket and remove it. (Only
    where getsockname() does not matter: a renamed socket keeps its first
    name there, which socket activation's users compare.)"""
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    head, base = os.path.split(path)
    bound = os.path.join(head, f".{base}.{os.getpid()}")
    if len(os.fsencode(bound)) > UNIX_PATH_MAX:
        bound = path  # no room for another name: the short window stays
    else:
        try:  # left by a pidone of this pid that died in between: PID 1's, say
            remove_stale_socket(bound)
        except UnsafePath:
            bound = path  # not a socket: not ours to remove

    def setup() -> None:
        bind_private(sock, bound)
        try:
            if group is not None:  # never through a symlink put in its place since the bind
                dir_fd = os.open(head or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    there = fix_socket(
                        dir_fd, os.path.basename(bound), uid=-1, gid=group, mode=0o660
                    )
                finally:
                    os.close(dir_fd)
                if not there:
                    raise FileNotFoundError(f"{bound}: gone since its bind")
            sock.listen(backlog)
            if bound != path:
                os.rename(bound, path)
        except BaseException:
            if bound != path:
                with contextlib.suppress(OSError):
                    os.unlink(bound)
            raise

    return _set_up(sock, setup)


def notify_socket(path: str) -> socket.socket:
    """A non-blocking datagram socket at `path` (0600, see bind_private) to
    which the kernel attaches each sender's real pid (SO_PASSCRED)."""
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def setup() -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        bind_private(sock, path)

    return _set_up(sock, setup)


def grant_socket(path: str, uid: int | None, gid: int | None) -> None:
    """Let the process running as uid/gid (or as us) use the socket file at
    `path`, and nobody else.

    The mode is set while the file is ours and the owner given last, so that
    CAP_CHOWN is all a container must grant (chmod of a file we no longer own
    would need CAP_FOWNER)."""
    import stat

    owner = (os.geteuid() if uid is None else uid, os.getegid() if gid is None else gid)
    st = os.lstat(path)
    if (st.st_uid, st.st_gid) == owner and stat.S_IMODE(st.st_mode) == 0o600:
        return  # as it should be: nothing to change (restarts come here)
    os.chown(path, os.geteuid(), os.getegid())
    os.chmod(path, 0o600)
    os.chown(path, *owner)


UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid (SO_PEERCRED, SCM_CREDENTIALS)


def peer_cred(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of a unix socket's peer as of connect() (SO_PEERCRED)."""
    import socket

    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, UCRED.size)
    pid, uid, gid = UCRED.unpack(raw)
    return pid, uid, gid


def tcp_listener(host: str, port: int, *, backlog: int) -> socket.socket:
    """A non-blocking TCP socket listening on host:port (IPv6 when the host
    has a colon). Raises OSError, the socket closed."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)

    def setup() -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)

    return _set_up(sock, setup)


def bind_unix_socket(path: str, dir_fd: int, *, uid: int, gid: int, mode: int) -> int:
    """Bind and listen on the unix stream socket `path`, whose directory is
    open as `dir_fd` (made safe by secure_directory), born with `mode` (the
    umask is set around bind, so it never has another) and chowned without
    following links. Returns the fd.

    It binds the absolute path, because programs that take the socket by
    socket activation (uwsgi, gunicorn) match it by the name getsockname()
    gives. A directory swapped for a symlink between secure_directory() and
    here would put the socket elsewhere: the chown through `dir_fd` then
    finds nothing, and we refuse to go on.
    """
    import socket
    import stat

    name = os.path.basename(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 & ~mode)
    try:
        sock.bind(path)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISSOCK(st.st_mode):
            raise FileNotFoundError(name)
        os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        sock.close()
        raise UnsafePath(
            f"{path}: the socket did not appear in the directory pidone made safe"
        ) from None
    sock.listen(socket.SOMAXCONN)
    return sock.detach()


def fix_socket(dir_fd: int, name: str, *, uid: int, gid: int, mode: int) -> bool:
    """Give an existing socket file owner, group and mode. False if it is not
    there yet. Works on an O_PATH fd of the file itself, so a symlink swapped
    in by the directory's owner cannot redirect the chmod."""
    import stat

    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISSOCK(st.st_mode):
            raise UnsafePath(f"{name}: is not a socket; pidone will not change it")
        os.chown(f"/proc/self/fd/{fd}", uid, gid)
        os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)
    return True
