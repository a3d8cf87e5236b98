"""The socket directory shared with nginx and the sockets in it: opened
without following symlinks, claimed, settled; stale sockets removed.
"""

from __future__ import annotations

import errno
import os

# --- the socket directory shared with nginx ----------------------------------------


class UnsafePath(Exception):
    """A socket path pidone will not work on (a symlink, not a directory, ...)."""


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
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass  # made by someone else meanwhile: opened below, safely
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


def remove_stale_socket(dir_fd: int, name: str) -> bool:
    """Remove a socket file left by an earlier run; refuse to touch anything
    that is not a socket. True if one was removed."""
    import stat

    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(st.st_mode):
        raise UnsafePath(f"{name}: exists and is not a socket; pidone will not remove it")
    os.unlink(name, dir_fd=dir_fd)
    return True


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
