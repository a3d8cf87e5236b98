"""The control socket: one point of control for `pidone ctl`, inside the loop.

The server side (ControlServer) lives in the one event loop: every fd it
registers carries a callback taking the event mask, nothing ever blocks, and
no exception leaves a callback. The client side is `pidone ctl` (client.py).

Access
    A unix socket (default /run/pidone/control.sock) created mode 0600 owned
    by pidone's user, or 0660 with group `control_group`. The file mode is
    the first gate; every connection is checked again against the peer's
    credentials (SO_PEERCRED, SO_PEERGROUPS): root, pidone's own uid (a
    container running as a non-root USER), or a member of the control group
    (primary or supplementary). Anyone else gets a "permission denied" reply.

The protocol itself (requests, replies, status rows) is in protocol.py.

Limits: MAX_CONNECTIONS open at once, MAX_PER_UID of them for any one
control-group member; root and pidone's own uid have MAX_CONNECTIONS of
their own. A connection over its limit gets {"ok": false, "error": "too
many connections ..."} and is closed at once.

Timeouts: a connection must deliver its request within REQUEST_TIMEOUT and
take its reply within WRITE_TIMEOUT, or it is dropped (a client that never
reads never stalls anything). While the loop works on a request (a restart
waits until the process is ready) there is no server-side limit; a client
that hangs up meanwhile is noticed, and the late reply is dropped.
"""

from __future__ import annotations

import contextlib
import grp
import os
import selectors
import socket
import struct
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pidone.control.protocol import MAX_REQUEST, decode, encode, error
from pidone.errors import PidoneError
from pidone.system import process, sockets

if TYPE_CHECKING:
    pass

REQUEST_TIMEOUT = 10.0  # seconds from connect to a complete request line
WRITE_TIMEOUT = 10.0  # seconds to take the reply once it is ready
LINGER = 2.0  # seconds to wait for the client to close after the reply
REEXECUTING = "pidone is re-executing: ask again"  # ctl reexec's word to the others


MAX_CONNECTIONS = 256  # open at once (waiting ones included): PID 1's fds are precious
# ... of which one uid other than root (and pidone's own) may hold this many.
# Root's and pidone's own uid's connections are counted apart, MAX_CONNECTIONS
# of their own: no control-group member can lock the operator out.
MAX_PER_UID = 16
LISTEN_BACKLOG = 128  # a burst beyond it is retried by the client (EAGAIN)
_ACCEPT_BATCH = 64  # connections accepted per wakeup, so a flood cannot starve the loop
_READ_SIZE = 64 * 1024
# Linux >= 4.13: the peer's supplementary groups as of connect(). Python does
# not name it; getsockopt() caps the buffer at 1024 bytes (256 groups).
_SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
_PEERGROUPS_BUFLEN = 1024

Reply = Callable[[dict[str, Any]], None]
OnRequest = Callable[[dict[str, Any], Reply], None]


class ControlSocketError(PidoneError):
    """The control socket cannot be set up (path taken, bind refused, ...)."""


# --- the server ----------------------------------------------------------------------


class _Conn:
    """One client connection: read one line, wait for the reply, write it, close."""

    def __init__(self, sock: socket.socket, deadline: float, uid: int = -1) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.uid = uid  # the peer's (SO_PEERCRED), -1 if unknown
        self.inbuf = bytearray()
        self.outbuf = b""
        self.phase = "read"  # read -> wait (the loop has the request) -> write -> closed
        self.unread = False  # replied before reading the whole request: linger
        self.deadline: float | None = deadline
        self.events = 0


class ControlServer:
    """The listening socket and its connections, driven by the event loop.

    `on_request(request, reply)` gets each well-formed request (a dict with a
    string "command" and a dict "args"); call `reply(dict)` exactly once, now
    or later, from the loop's thread. Later calls are ignored.
    """

    def __init__(
        self,
        selector: selectors.BaseSelector,
        path: str,
        *,
        group: int | None,
        on_request: OnRequest,
        max_request: int = MAX_REQUEST,
        clock: Callable[[], float] = time.monotonic,
        request_timeout: float = REQUEST_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
        log: Callable[[str], None] | None = None,  # one message, no newline
        sock: socket.socket | None = None,  # already listening on path: ctl reexec's
    ) -> None:
        self.path = path
        self._selector = selector
        self._group = group
        self._group_label = _group_label(group)
        self._uid = os.geteuid()
        self._on_request = on_request
        self._max_request = max_request
        self._clock = clock
        self._request_timeout = request_timeout
        self._write_timeout = write_timeout
        self._log_message = log or process.log_to_stderr
        self._conns: dict[int, _Conn] = {}
        self._sock = _bind(path, group) if sock is None else sock
        self._sock.setblocking(False)
        st = os.stat(path)
        self._identity = (st.st_dev, st.st_ino)  # close() unlinks only our own socket
        selector.register(self._sock, selectors.EVENT_READ, self._guarded(self._on_accept))

    # -- the loop's interface --

    def next_deadline(self) -> float | None:
        return min(
            (c.deadline for c in self._conns.values() if c.deadline is not None), default=None
        )

    def run_due(self, now: float) -> None:
        for conn in list(self._conns.values()):
            if conn.deadline is None or now < conn.deadline:
                continue
            try:
                if conn.phase == "read":
                    # One best-effort try to say why; the socket is non-blocking.
                    message = error(f"no complete request within {self._request_timeout:g} s")
                    conn.sock.send(encode(message), socket.MSG_NOSIGNAL)
            except OSError:
                pass
            except Exception as exc:
                self._log(f"dropping a timed-out connection: {exc!r}")
            self._drop(conn)

    def close(self) -> None:
        for conn in list(self._conns.values()):
            self._drop(conn)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._sock)
        self._sock.close()
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._identity:
                os.unlink(self.path)
        except OSError:
            pass

    def fileno(self) -> int:
        """The listening socket's fd."""
        return self._sock.fileno()

    def detach(self) -> socket.socket:
        """For ctl reexec: every connection dropped, the listening socket
        returned still listening (its path kept): what connects meanwhile
        waits in its backlog for the new pidone. One whose request is not in
        yet is told so (one try: the socket is non-blocking)."""
        for conn in list(self._conns.values()):
            if conn.phase == "read":
                with contextlib.suppress(OSError):
                    conn.sock.send(encode(error(REEXECUTING)), socket.MSG_NOSIGNAL)
            self._drop(conn)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._sock)
        return self._sock

    @property
    def connections(self) -> int:
        return len(self._conns)

    # -- callbacks (each guarded: nothing escapes into the loop) --

    def _guarded(
        self, callback: Callable[[int], None], conn: _Conn | None = None
    ) -> Callable[[int], None]:
        def guarded(mask: int) -> None:
            try:
                callback(mask)
            except Exception:
                trace = traceback.format_exc().rstrip()
                self._log(f"internal error in the control socket (still running):\n{trace}")
                if conn is not None:
                    self._drop(conn)  # or a level-triggered fd would fail every turn

        return guarded

    def _on_accept(self, mask: int) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # EMFILE and friends: log, and retry at the next wakeup.
                self._log(f"accept on {self.path}: {os.strerror(exc.errno or 0)}")
                return
            try:
                pid, uid, gid = sockets.peer_cred(sock)
            except OSError as exc:
                pid, uid, gid = 0, -1, -1
                refusal: str | None = (
                    f"permission denied: cannot read the peer's credentials ({exc})"
                )
            else:
                refusal = None
            too_many = self._over_limit(uid)
            if too_many is not None:
                with contextlib.suppress(OSError):  # one try to say why; the fd must not be kept
                    sock.send(encode(error(too_many)), socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT)
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Conn(sock, self._clock() + self._request_timeout, uid)
            self._conns[conn.fd] = conn
            if refusal is None:
                try:
                    refusal = self._check_peer(sock, pid, uid, gid)
                except Exception as exc:
                    refusal = f"permission denied: cannot read the peer's credentials ({exc})"
            if refusal is not None:
                self._send(conn, error(refusal))
            else:
                self._watch(conn, selectors.EVENT_READ)

    def _on_event(self, conn: _Conn, mask: int) -> None:
        if self._conns.get(conn.fd) is not conn:
            return
        if mask & selectors.EVENT_READ:
            self._read(conn)
        if conn.phase == "write" and mask & selectors.EVENT_WRITE:
            self._flush(conn)

    # -- reading --

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # ECONNRESET: gone, like EOF
        if conn.phase in ("wait", "linger"):
            if not data:
                self._drop(conn)  # hung up (while we work on it: the reply will be dropped)
            return  # anything after the request line is ignored
        if not data:
            if conn.inbuf.strip():
                self._dispatch(conn, bytes(conn.inbuf))  # a last line without newline
            else:
                self._drop(conn)
            return
        conn.inbuf += data
        line, newline, _ = conn.inbuf.partition(b"\n")
        if len(line) > self._max_request or (not newline and len(conn.inbuf) > self._max_request):
            self._send(conn, error("request too large"))
            return
        if newline:
            self._dispatch(conn, bytes(line))

    def _dispatch(self, conn: _Conn, line: bytes) -> None:
        conn.inbuf = bytearray()
        request = decode(line)
        if isinstance(request, str):
            self._send(conn, error(request))
            return
        conn.phase = "wait"
        conn.deadline = None  # the loop takes as long as the command takes
        self._watch(conn, selectors.EVENT_READ)  # to notice a hang-up
        replied = False

        def reply(message: dict[str, Any]) -> None:
            nonlocal replied
            if replied:
                return
            replied = True
            if self._conns.get(conn.fd) is conn and conn.phase == "wait":
                self._send(conn, message)
            # else: the client left before the answer; nobody to tell

        try:
            self._on_request(request, reply)
        except Exception as exc:
            self._log(f"control request {request.get('command')!r} failed: {exc!r}")
            reply(error(f"internal error: {exc}"))

    # -- writing --

    def _send(self, conn: _Conn, message: dict[str, Any]) -> None:
        try:
            data = encode(message)
        except (TypeError, ValueError) as exc:
            self._log(f"control reply not serializable: {exc!r}")
            data = encode(error("internal error: reply not serializable"))
        conn.unread = conn.phase == "read"
        conn.phase = "write"
        conn.outbuf = data
        conn.deadline = self._clock() + self._write_timeout
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        while conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf, socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                self._watch(conn, selectors.EVENT_WRITE)
                return
            except OSError:
                self._drop(conn)  # EPIPE, ECONNRESET: the client left
                return
            conn.outbuf = conn.outbuf[sent:]
        if conn.unread:
            self._linger(conn)
        else:
            self._drop(conn)

    def _linger(self, conn: _Conn) -> None:
        """Half-close and read until the client closes: closing a socket with
        unread input (the rest of an oversized request) sends a reset, which
        can destroy the reply before the client reads it."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(conn)
            return
        conn.phase = "linger"
        conn.deadline = self._clock() + LINGER
        self._watch(conn, selectors.EVENT_READ)

    # -- bookkeeping --

    def _watch(self, conn: _Conn, events: int) -> None:
        if conn.events == events:
            return
        callback = self._guarded(lambda mask: self._on_event(conn, mask), conn)
        if conn.events:
            self._selector.modify(conn.sock, events, callback)
        else:
            self._selector.register(conn.sock, events, callback)
        conn.events = events

    def _drop(self, conn: _Conn) -> None:
        if self._conns.get(conn.fd) is conn:
            del self._conns[conn.fd]
        if conn.events:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
            conn.events = 0
        conn.phase = "closed"
        conn.deadline = None
        conn.sock.close()

    def _privileged(self, uid: int) -> bool:
        # pidone's own uid too: in a container running as `USER app`, pidone
        # and `docker exec ... pidone ctl` are both app, and nobody is root.
        return uid in (0, self._uid)

    def _over_limit(self, uid: int) -> str | None:
        """Why a new connection from `uid` is refused for its number, or None."""
        privileged = self._privileged(uid)
        same_class = [c for c in self._conns.values() if self._privileged(c.uid) == privileged]
        if len(same_class) >= MAX_CONNECTIONS:
            return f"too many connections ({MAX_CONNECTIONS} open)"
        if not privileged and sum(c.uid == uid for c in same_class) >= MAX_PER_UID:
            return f"too many connections from uid {uid} ({MAX_PER_UID} at most)"
        return None

    def _check_peer(self, sock: socket.socket, pid: int, uid: int, gid: int) -> str | None:
        """None if the peer may talk to us, else why not."""
        if self._privileged(uid):
            return None
        who = "root" if self._uid == 0 else f"root or uid {self._uid}"
        if self._group is None:
            return f"permission denied: uid {uid} is not {who}"
        if gid == self._group or self._group in _peer_groups(sock, pid):
            return None
        return f"permission denied: uid {uid} is not {who} or in group {self._group_label}"

    def _log(self, message: str) -> None:
        with contextlib.suppress(Exception):
            self._log_message(message)


def _peer_groups(sock: socket.socket, pid: int) -> list[int]:
    """The peer's supplementary groups. SO_PEERGROUPS gives them as of
    connect(), immune to the peer exiting and its pid being reused; without
    it (old kernels, more than 256 groups) /proc/PID/status is read."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, _PEERGROUPS_BUFLEN)
        return list(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Groups:"):
                    return [int(g) for g in line.split()[1:]]
    except (OSError, ValueError):
        pass
    return []


def _bind(path: str, group: int | None) -> socket.socket:
    parent = os.path.dirname(path) or "."
    old = os.umask(0o022)
    try:
        os.makedirs(parent, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise ControlSocketError(f"cannot create {parent} for the control socket: {exc}") from exc
    finally:
        os.umask(old)
    _remove_stale(path)
    try:
        # Never more open than intended, not even for an instant: this runs
        # before any child or thread that creates files (the umask is shared).
        return sockets.listen_private(path, group=group, backlog=LISTEN_BACKLOG)
    except (OSError, sockets.UnsafePath) as exc:
        raise ControlSocketError(f"cannot set up the control socket {path}: {exc}") from exc


def _remove_stale(path: str) -> None:
    """Unlink a socket left by a previous run; refuse anything else, and a
    socket another pidone still listens on."""
    if sockets.socket_in_use(path):
        raise ControlSocketError(f"{path}: another pidone is already listening on it")
    try:
        sockets.remove_stale_socket(path)
    except sockets.UnsafePath:
        raise ControlSocketError(
            f"{path} exists and is not a socket: refusing to replace it with the control"
            " socket (remove it, or set control_socket to another path)"
        ) from None
    except OSError as exc:
        raise ControlSocketError(f"cannot remove the stale socket {path}: {exc}") from exc


def _group_label(group: int | None) -> str:
    """'NAME (GID)' for messages, looked up once, at setup."""
    if group is None:
        return ""
    try:
        return f"{grp.getgrgid(group).gr_name} ({group})"
    except (KeyError, OverflowError):
        return str(group)
