"""Readiness checks, run inside the one event loop without ever blocking it.

    unix:PATH        a SOCK_STREAM connect to PATH succeeds ("@NAME": abstract)
    tcp:HOST:PORT    a non-blocking TCP connect completes with SO_ERROR 0
    http(s)://...    a GET is answered with a 2xx or 3xx status line
    file:PATH        PATH exists
    exec:COMMAND     COMMAND (spawned through the caller) exits 0
    notify           the process sends READY=1 on its NOTIFY_SOCKET (sd_notify)
    log:REGEX        not here: the log relay matches its lines (runtime/logs.py)

Every socket is non-blocking and registered in the loop's selector with a
callback taking the event mask. Each `start()` makes its first attempt as soon
as the loop runs `run_due()` (never from inside `start()`, so the caller is not
re-entered), then retries after 10 ms, 20 ms, ... up to 250 ms between
attempts. An attempt that has not finished after ATTEMPT_TIMEOUT (EXEC_TIMEOUT
for exec:) is abandoned, so a server that accepts and never answers costs one
timeout per attempt and nothing else. `on_ready(name)` is called exactly once
per `start()`, after which that check is gone; `next_deadline()` is None once
nothing is pending, so an idle loop sleeps.

Liveness (`start_alive()`) uses the same checks but never ends: one attempt
`delay` after the start, then one every `interval` (from the start of the
last), each abandoned after `timeout` (exec: too); `on_alive(name, pid,
error)` reports each (error None: it passed). Between attempts nothing is
open and the only deadline is the next attempt's, so an idle pidone wakes
only for its probes. An answer is read up to its status line, at most
_STATUS_LINE_MAX bytes: a huge or trickling one costs no more than that
and the timeout.

WATCHDOG=1 on a notify socket, from the instance or below it, calls
`on_watchdog(name, pid)`: once per batch of datagrams read, so a flood of
pings costs the core one event per _NOTIFY_BATCH datagrams.

Host names in tcp:/http: checks are resolved once per `start()`. Numeric
addresses never touch the resolver; a name is looked up with getaddrinfo,
which for names in /etc/hosts (like localhost) only reads that file. A name
that needs DNS would block the loop for the resolver's timeout, once per
start: write an address or an /etc/hosts name in `ready`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pidone.config.specs import READY_KINDS, ReadyCheck
from pidone.errors import PidoneError
from pidone.system import proc, reap, signals, sockets

if TYPE_CHECKING:
    import ssl

ATTEMPT_TIMEOUT = 1.0  # seconds one socket/file attempt may take
# An exec: check is a program (redis-cli ping, pg_isready, a script starting
# an interpreter): it runs outside the loop, so it may take longer than a
# socket attempt without stalling anything; it is still bounded so that a
# hung check (curl without --max-time) cannot keep a process unready forever.
EXEC_TIMEOUT = 10.0
FIRST_INTERVAL = 0.010
MAX_INTERVAL = 0.250
NOTIFY_DIR = "/run/pidone/notify"

_STATUS_LINE_MAX = 8192  # bytes we read looking for the HTTP status line
_NOTIFY_MAX = 4096  # systemd's own limit for one notification datagram
_NOTIFY_BATCH = 64  # datagrams read per wakeup, so a flood cannot starve other fds
_NOTIFY_ANCILLARY = socket.CMSG_SPACE(sockets.UCRED.size) + socket.CMSG_SPACE(16 * 4)
_MAX_ANCESTRY = 256  # hops up the ppid chain before giving up

Address = tuple[socket.AddressFamily, Any]  # (family, sockaddr) from getaddrinfo
Callback = Callable[[int], None]


@dataclass(frozen=True)
class Progress:
    """How an active check is doing, for status displays and logs."""

    attempts: int
    last_error: str | None  # why the latest attempt (or notification) did not count


class _Check:
    """One start() of one process's check, and its attempt in flight."""

    def __init__(self, name: str, check: ReadyCheck, pid: int, now: float) -> None:
        self.name = name
        self.check = check
        self.pid = pid
        self.interval = FIRST_INTERVAL  # wait after the next failure
        self.due: float | None = now  # next attempt; None while one runs
        self.deadline: float | None = None  # when the attempt in flight gives up
        self.attempts = 0
        self.last_error: str | None = None
        self.addresses: list[Address] = []
        self.resolve_error: str | None = None
        self.first_address = 0  # rotated after a timeout, so one dead address cannot hide the rest
        # The attempt in flight.
        self.sock: socket.socket | None = None
        self.callback: Callback | None = None  # registered in the selector with sock
        self.events = 0
        self.address = 0  # index into addresses
        self.phase = "connect"  # connect, handshake, send, receive
        self.out = b""
        self.received = b""
        self.child: int | None = None
        # Liveness: (interval, timeout) and when the attempt in flight began.
        self.live: tuple[float, float] | None = None
        self.began = now


class Prober:
    """Every readiness check of every process, driven by the one event loop."""

    def __init__(
        self,
        selector: selectors.BaseSelector,
        on_ready: Callable[[str], None],
        *,
        spawn: Callable[[str, Sequence[str]], int],
        clock: Callable[[], float] = time.monotonic,
        notify_dir: str = NOTIFY_DIR,
        attempt_timeout: float = ATTEMPT_TIMEOUT,
        exec_timeout: float = EXEC_TIMEOUT,
        on_alive: Callable[[str, int, str | None], None] | None = None,
        on_watchdog: Callable[[str, int], None] | None = None,
    ) -> None:
        self._selector = selector
        self._on_ready = on_ready
        self._spawn = spawn
        self._clock = clock
        self._notify_dir = notify_dir
        self._attempt_timeout = attempt_timeout
        self._exec_timeout = exec_timeout
        self._checks: dict[str, _Check] = {}
        self._alive: dict[str, _Check] = {}  # liveness checks, beside readiness ones
        self._on_alive = on_alive
        self._on_watchdog = on_watchdog
        self._children: dict[int, _Check] = {}  # running exec: checks by pid
        self._killed: set[int] = set()  # abandoned exec: children not reaped yet
        self._notify: dict[str, tuple[socket.socket, str]] = {}
        self._main_pids: dict[str, int] = {}  # whose notifications count, per name
        self._status: dict[str, str] = {}
        self._own_pid = os.getpid()
        self._tls: ssl.SSLContext | None = None

    # --- the interface the loop and the supervisor use --------------------------------

    def start(self, name: str, check: ReadyCheck, pid: int) -> None:
        """Check process `name`, instance `pid` (any earlier check is dropped).

        Call it for every new instance, even a "settle" one (which the
        supervisor times itself): it also decides whose notifications count.
        """
        kind = check.kind
        if kind not in READY_KINDS:
            raise ValueError(f"{name}: unknown readiness check {kind!r}")
        if kind == "notify" and name not in self._notify:
            raise ValueError(f"{name}: call notify_socket() before spawning a notify process")
        if kind == "exec" and check.command is None:
            raise ValueError(f"{name}: exec check without a command")
        self._drop(name)
        self._main_pids[name] = pid
        self._status.pop(name, None)  # a status from the previous instance is stale
        if kind in ("settle", "log"):  # timed by the supervisor; matched by the log relay
            return
        chk = _Check(name, check, pid, self._clock())
        if kind == "notify":
            chk.due = None  # nothing to attempt: READY=1 arrives on the socket
        elif kind in ("tcp", "http"):
            self._resolve(chk)
        self._checks[name] = chk

    def start_alive(
        self, name: str, check: ReadyCheck, pid: int, delay: float, interval: float, timeout: float
    ) -> None:
        """Check that instance `pid` of `name` still answers, until cancel()."""
        if check.kind in ("notify", "settle"):
            raise ValueError(f"{name}: {check.kind} cannot be a liveness check")
        if check.kind == "exec" and check.command is None:
            raise ValueError(f"{name}: exec check without a command")
        old = self._alive.pop(name, None)
        if old is not None:
            self._end_attempt(old)
        chk = _Check(name, check, pid, self._clock() + delay)
        chk.live = (interval, timeout)
        if check.kind in ("tcp", "http"):
            self._resolve(chk)
        self._alive[name] = chk

    def cancel(self, name: str) -> None:
        """The process stopped or exited: stop checking, kill an exec: child."""
        self._drop(name)
        old = self._alive.pop(name, None)
        if old is not None:
            self._end_attempt(old)
        self._main_pids.pop(name, None)

    def forget(self, name: str) -> None:
        """NAME was removed (ctl update): its checks, status and notify socket go."""
        self.cancel(name)
        self._status.pop(name, None)
        known = self._notify.pop(name, None)
        if known is not None:
            sock, path = known
            self._selector.unregister(sock)
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(path)

    def child_exited(self, pid: int, wait_status: int) -> bool:
        """True if `pid` was an exec: check's child (ours to account for)."""
        if pid in self._killed:
            self._killed.discard(pid)
            return True
        chk = self._children.pop(pid, None)
        if chk is None:
            return False
        chk.child = None
        status = reap.exit_status(wait_status)
        if status == 0:
            self._succeed(chk)
        else:
            self._fail(chk, f"exited with status {status}")
        return True

    def next_deadline(self) -> float | None:
        times = [t for chk in self._all() for t in (chk.deadline, chk.due) if t is not None]
        return min(times, default=None)

    def run_due(self, now: float) -> None:
        for chk in list(self._all()):
            if not self._current(chk):
                continue  # an on_ready callback cancelled or restarted it
            if chk.deadline is not None and now >= chk.deadline:
                limit = self._limit(chk)
                chk.first_address = (chk.address + 1) % max(len(chk.addresses), 1)
                self._fail(chk, f"no answer within {limit:g} s", now)
            elif chk.due is not None and now >= chk.due:
                self._attempt(chk, now)

    def progress(self, name: str) -> Progress | None:
        """How the active check of `name` is doing; None if none is active."""
        chk = self._checks.get(name)
        return None if chk is None else Progress(chk.attempts, chk.last_error)

    def status(self, name: str) -> str | None:
        """The latest STATUS= the current instance of `name` sent."""
        return self._status.get(name)

    def close(self) -> None:
        for name in [*self._checks, *self._alive]:
            self.cancel(name)
        for sock, path in self._notify.values():
            self._selector.unregister(sock)
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
        if self._notify:  # ours (one per control socket): none piles up in /run/pidone
            with contextlib.suppress(OSError):
                os.rmdir(self._notify_dir)  # only if empty
        self._notify.clear()

    # --- sd_notify --------------------------------------------------------------------

    def notify_socket(self, name: str, uid: int | None = None, gid: int | None = None) -> str:
        """The NOTIFY_SOCKET value for `name`; the socket is made once and kept
        across restarts. Only `uid` (the process's user) and root may send."""
        if name in self._notify:
            sock, path = self._notify[name]
            try:
                sockets.grant_socket(path, uid, gid)  # the user may differ from the last start
                return path
            except FileNotFoundError:  # someone removed it: make a new one
                self._selector.unregister(sock)
                sock.close()
                del self._notify[name]
        if not os.path.isdir(self._notify_dir):
            os.makedirs(self._notify_dir, exist_ok=True)
            # Anyone may traverse, nobody may list; each socket file guards itself.
            os.chmod(self._notify_dir, 0o711)
        path = os.path.join(self._notify_dir, f"{name}.sock")
        if sockets.datagram_in_use(path):  # another pidone's: taking it would take its READY=1
            raise OSError(errno.EADDRINUSE, f"{path} is live (another pidone's?): not taken over")
        try:
            sockets.remove_stale_socket(path)
        except sockets.UnsafePath:
            raise FileExistsError(errno.EEXIST, "exists and is not a socket", path) from None
        # Each datagram comes with its sender's real pid; born 0600, then granted.
        sock = sockets.notify_socket(path)
        try:
            sockets.grant_socket(path, uid, gid)
        except BaseException:
            sock.close()
            raise
        self._selector.register(sock, selectors.EVENT_READ, lambda mask: self._receive(name, sock))
        self._notify[name] = (sock, path)
        return path

    def notify_fds(self) -> dict[str, int]:
        """name -> its notify socket's fd: for ctl reexec."""
        return {name: sock.fileno() for name, (sock, _) in self._notify.items()}

    def adopt_notify(self, name: str, fd: int) -> None:
        """The notify socket a re-executed pidone was handed for `name`."""
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        path = os.path.join(self._notify_dir, f"{name}.sock")
        self._selector.register(sock, selectors.EVENT_READ, lambda mask: self._receive(name, sock))
        self._notify[name] = (sock, path)

    def _receive(self, name: str, sock: socket.socket) -> None:
        pinged = False
        for _ in range(_NOTIFY_BATCH):
            try:
                data, ancillary, flags, _ = sock.recvmsg(_NOTIFY_MAX, _NOTIFY_ANCILLARY)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break  # closed under us by an on_ready callback (close())
            pid = 0
            for level, kind, payload in ancillary:
                if level != socket.SOL_SOCKET:
                    continue
                if kind == socket.SCM_CREDENTIALS and len(payload) >= sockets.UCRED.size:
                    pid = sockets.UCRED.unpack_from(payload)[0]
                elif kind == socket.SCM_RIGHTS:  # FDSTORE=1: not supported, do not leak them
                    for (fd,) in struct.iter_unpack("i", payload[: len(payload) // 4 * 4]):
                        os.close(fd)
            if not flags & socket.MSG_TRUNC:
                pinged |= self._notification(name, pid, data)
        main = self._main_pids.get(name)
        if pinged and main is not None and self._on_watchdog is not None:
            self._on_watchdog(name, main)  # once per batch: a flood is one event per batch

    def _notification(self, name: str, pid: int, data: bytes) -> bool:
        """Act on one datagram; True if it was a WATCHDOG=1 that counts."""
        # The socket outlives instances and any process of the user may write
        # to it: a READY=1 must come from this instance's main pid or one of
        # its descendants (the kernel-checked SO_PASSCRED pid, not a MAINPID=
        # in the payload), or a leftover of the previous instance, a helper
        # of another process or a stray tool could mark it ready too early.
        main = self._main_pids.get(name)
        if main is None or not self._descends_from(pid, main):
            chk = self._checks.get(name)
            if chk is not None:
                chk.last_error = f"ignored a notification from pid {pid}: not {main} or below it"
            return False
        ready = pinged = False
        for line in data.decode("utf-8", "replace").split("\n"):
            key, _, value = line.partition("=")
            if key == "READY":
                ready = ready or value == "1"
            elif key == "STATUS":
                self._status[name] = value
            elif key == "WATCHDOG":
                pinged = pinged or value == "1"
            # STOPPING and RELOADING are ignored: the supervisor's own
            # states cover them. MAINPID is not followed: it is the sender's
            # word, and daemonizing programs are followed through `pidfile`.
        chk = self._checks.get(name)
        if ready and chk is not None and chk.check.kind == "notify":
            self._succeed(chk)
        return pinged

    def _descends_from(self, pid: int, ancestor: int) -> bool:
        """pid is `ancestor` or below it, by the /proc ppid chain. A sender
        that has already exited (and been reaped) cannot be placed: refused."""
        for _ in range(_MAX_ANCESTRY):
            if pid == ancestor:
                return True
            if pid <= 1 or pid == self._own_pid:
                return False
            parent = proc.parent_of(pid)
            if parent is None:
                return False
            pid = parent
        return False

    # --- attempts ---------------------------------------------------------------------

    def _attempt(self, chk: _Check, now: float) -> None:
        chk.attempts += 1
        chk.due = None
        chk.began = now
        kind = chk.check.kind
        if kind == "file":
            path = chk.check.path or ""
            if os.path.exists(path):
                self._succeed(chk)
            else:
                self._fail(chk, f"{path}: does not exist", now)
        elif kind == "unix":
            self._try_unix(chk, now)
        elif kind == "exec":
            assert chk.check.command is not None
            try:
                pid = self._spawn(chk.name, chk.check.command.argv)
            except (PidoneError, OSError) as exc:
                self._fail(chk, f"could not start: {exc}", now)
                return
            chk.child = pid
            self._children[pid] = chk
            chk.deadline = now + self._limit(chk)
        elif chk.resolve_error is not None:
            self._fail(chk, chk.resolve_error, now)
        else:
            chk.deadline = now + self._limit(chk)
            chk.address = chk.first_address
            self._connect(chk)

    def _try_unix(self, chk: _Check, now: float) -> None:
        path = chk.check.path or ""
        target = "\0" + path[1:] if path.startswith("@") else path
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            try:
                err = sock.connect_ex(target)
            except OSError as exc:  # a path too long for sun_path
                err = exc.errno or errno.EINVAL
        # EAGAIN: the server listens but its backlog is full. It is up; it is
        # just busy, which is no reason to hold back what depends on it.
        if err in (0, errno.EAGAIN):
            self._succeed(chk)
        else:
            self._fail(chk, f"connect {path}: {os.strerror(err)}", now)

    def _resolve(self, chk: _Check) -> None:
        check = chk.check
        host = check.host or ""
        port = check.port
        if port is None:
            port = 443 if (check.url or "").startswith("https:") else 80
        try:
            try:
                infos = socket.getaddrinfo(
                    host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
                )
            except socket.gaierror:
                # A name: see the module docstring for why this may block.
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            chk.resolve_error = f"cannot resolve {host}: {exc}"
            return
        for family, _, _, _, sockaddr in infos:
            if (family, sockaddr) not in chk.addresses:
                chk.addresses.append((family, sockaddr))
        if not chk.addresses:
            chk.resolve_error = f"cannot resolve {host}: no address"

    def _connect(self, chk: _Check) -> None:
        """Try the addresses from chk.address on until one connects or is pending."""
        errors = []
        while chk.address < len(chk.addresses) + chk.first_address:
            family, sockaddr = chk.addresses[chk.address % len(chk.addresses)]
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            err = sock.connect_ex(sockaddr)
            if err in (0, errno.EINPROGRESS):
                chk.sock = sock
                chk.phase = "connect"
                if err == 0:
                    self._connected(chk)
                else:
                    self._watch(chk, selectors.EVENT_WRITE)
                return
            sock.close()
            errors.append(f"connect {_show(sockaddr)}: {os.strerror(err)}")
            chk.address += 1
        self._fail(chk, "; ".join(errors))

    def _on_socket(self, chk: _Check, sock: socket.socket) -> None:
        if not self._current(chk) or chk.sock is not sock:
            return  # stale event: the attempt ended earlier in this loop iteration
        if chk.phase != "connect":
            self._exchange(chk)
            return
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == 0:
            self._connected(chk)
            return
        self._close_socket(chk)
        sockaddr = chk.addresses[chk.address % len(chk.addresses)][1]
        chk.last_error = f"connect {_show(sockaddr)}: {os.strerror(err)}"
        chk.address += 1
        if chk.address < len(chk.addresses) + chk.first_address:
            self._connect(chk)
        else:
            self._fail(chk, chk.last_error)

    def _connected(self, chk: _Check) -> None:
        if chk.check.kind == "tcp":
            self._succeed(chk)
            return
        assert chk.sock is not None and chk.check.url is not None
        url = urlsplit(chk.check.url)
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        host = url.netloc.rpartition("@")[2]  # without any user:password@
        chk.out = (
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: pidone\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n"
        ).encode("ascii", "replace")
        chk.received = b""
        chk.phase = "send"
        if url.scheme == "https":
            self._unwatch(chk)  # the fd moves into the TLS socket object
            try:
                chk.sock = self._tls_context().wrap_socket(
                    chk.sock, server_hostname=url.hostname, do_handshake_on_connect=False
                )
            except OSError as exc:
                self._fail(chk, f"GET {chk.check.url}: {exc}")
                return
            chk.phase = "handshake"
        self._exchange(chk)

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            import ssl  # only https checks pay for it

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            # A liveness check of a local server, not a trust decision: its
            # certificate is often self-signed or names a public host rather
            # than 127.0.0.1, and failing verification says nothing about
            # whether it is ready.
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            self._tls = context
        return self._tls

    def _exchange(self, chk: _Check) -> None:
        """Take an HTTP attempt as far as it goes without blocking."""
        sock = chk.sock
        assert sock is not None
        try:
            if chk.phase == "handshake":
                sock.do_handshake()  # type: ignore[attr-defined]
                chk.phase = "send"
            while chk.phase == "send":
                chk.out = chk.out[sock.send(chk.out) :]
                if not chk.out:
                    chk.phase = "receive"
            while True:
                data = sock.recv(4096)
                if not data:
                    self._fail(chk, f"GET {chk.check.url}: closed without a status line")
                    return
                chk.received += data
                line, newline, _ = chk.received.partition(b"\n")
                if newline:
                    self._judge(chk, line)
                    return
                if len(chk.received) > _STATUS_LINE_MAX:
                    self._fail(chk, f"GET {chk.check.url}: no HTTP status line")
                    return
        except OSError as exc:
            events = _wanted_events(exc, chk.phase)
            if events:
                self._watch(chk, events)
            else:
                self._fail(chk, f"GET {chk.check.url}: {exc.strerror or exc}")

    def _judge(self, chk: _Check, line: bytes) -> None:
        words = line.split()
        if len(words) < 2 or not words[0].startswith(b"HTTP/") or not words[1].isdigit():
            self._fail(chk, f"GET {chk.check.url}: not an HTTP response")
        elif 200 <= int(words[1]) < 400:
            self._succeed(chk)
        else:
            self._fail(chk, f"GET {chk.check.url}: HTTP {words[1].decode()}")

    # --- bookkeeping ------------------------------------------------------------------

    def _all(self) -> list[_Check]:
        return [*self._checks.values(), *self._alive.values()]

    def _current(self, chk: _Check) -> bool:
        """Is chk still the check of its kind for its process (not dropped by a callback)?"""
        table = self._checks if chk.live is None else self._alive
        return table.get(chk.name) is chk

    def _limit(self, chk: _Check) -> float:
        """How long the attempt in flight may take."""
        if chk.live is not None:
            return chk.live[1]
        return self._exec_timeout if chk.check.kind == "exec" else self._attempt_timeout

    def _succeed(self, chk: _Check) -> None:
        self._end_attempt(chk)
        if chk.live is not None:
            self._alive_result(chk, None, self._clock())
            return
        del self._checks[chk.name]  # before on_ready, which may start() it again
        self._on_ready(chk.name)

    def _fail(self, chk: _Check, error: str, now: float | None = None) -> None:
        self._end_attempt(chk)
        chk.last_error = error
        if chk.live is not None:
            self._alive_result(chk, error, self._clock() if now is None else now)
            return
        chk.due = (self._clock() if now is None else now) + chk.interval
        chk.interval = min(chk.interval * 2, MAX_INTERVAL)

    def _alive_result(self, chk: _Check, error: str | None, now: float) -> None:
        # The next attempt is scheduled before the report, which may cancel it.
        chk.due = max(now, chk.began + chk.live[0]) if chk.live is not None else now
        if self._on_alive is not None:
            self._on_alive(chk.name, chk.pid, error)

    def _drop(self, name: str) -> None:
        chk = self._checks.pop(name, None)
        if chk is not None:
            self._end_attempt(chk)

    def _end_attempt(self, chk: _Check) -> None:
        chk.deadline = None
        self._close_socket(chk)
        if chk.child is not None:
            del self._children[chk.child]
            signals.send_signal(chk.child, signals.SIGKILL, group=True)
            self._killed.add(chk.child)  # the loop still reaps it: child_exited says it is ours
            chk.child = None

    def _watch(self, chk: _Check, events: int) -> None:
        assert chk.sock is not None
        if chk.callback is None:
            sock = chk.sock
            chk.callback = lambda mask: self._on_socket(chk, sock)
            self._selector.register(sock, events, chk.callback)
        elif events != chk.events:
            self._selector.modify(chk.sock, events, chk.callback)
        chk.events = events

    def _unwatch(self, chk: _Check) -> None:
        if chk.callback is not None and chk.sock is not None:
            self._selector.unregister(chk.sock)
        chk.callback = None
        chk.events = 0

    def _close_socket(self, chk: _Check) -> None:
        self._unwatch(chk)
        if chk.sock is not None:
            chk.sock.close()
            chk.sock = None


def _wanted_events(exc: OSError, phase: str) -> int:
    """The selector events that let a non-blocking operation go on, or 0 if
    `exc` is a real failure."""
    if isinstance(exc, BlockingIOError):
        return selectors.EVENT_READ if phase == "receive" else selectors.EVENT_WRITE
    if type(exc).__name__ == "SSLWantReadError":  # ssl is imported only for https
        return selectors.EVENT_READ
    if type(exc).__name__ == "SSLWantWriteError":
        return selectors.EVENT_WRITE
    return 0


def _show(sockaddr: Any) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
