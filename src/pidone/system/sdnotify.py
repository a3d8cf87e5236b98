"""pidone's own sd_notify: what it tells the service manager that started it
(systemd, `Type=notify`): READY=1, STATUS=..., STOPPING=1 and WATCHDOG=1.

The address is NOTIFY_SOCKET of pidone's own environment: an absolute path,
or "@name" for an abstract socket. Each message is one datagram sent without
blocking (MSG_DONTWAIT): a manager that never reads (its buffer full), a
socket that is gone or a garbage address costs one logged line per kind of
failure, never a stall and never pidone. STATUS= lines are rate-bounded
(STATUS_INTERVAL); READY=1 and STOPPING=1 go at once, with the latest status.
WATCHDOG=1 every WATCHDOG_USEC/2, when WATCHDOG_USEC is set (and
WATCHDOG_PID, if set, is pidone's pid). Only the loop's thread sends.

The manager's three variables are pidone's, never a child's (VARIABLES):
the child of a `Type=notify` service would otherwise speak for pidone.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Mapping

VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
STATUS_INTERVAL = 0.25  # seconds between two STATUS= datagrams: at most 4 a second
MAX_STATUS = 1024  # characters of one STATUS= line (systemd takes 4096 bytes a datagram)
_SUN_PATH = 108  # bytes in sockaddr_un.sun_path
# WATCHDOG_USEC outside this range is ignored (with a warning): below it the
# loop would turn for the watchdog alone; above it is past any duration
# pidone takes (one day, values.MAX_SECONDS).
WATCHDOG_MIN_USEC = 20_000
WATCHDOG_MAX_USEC = 86_400 * 1_000_000


def address_problem(value: str) -> str | None:
    """Why NOTIFY_SOCKET=value is no address pidone can send to, else None."""
    if not value.startswith(("/", "@")):
        return "not an absolute path or an @abstract name"
    if "\0" in value or len(os.fsencode(value)) >= _SUN_PATH:
        return f"not a socket address (a NUL, or longer than {_SUN_PATH - 1} bytes)"
    return None


def watchdog_usec(environ: Mapping[str, str], pid: int) -> tuple[int | None, str | None]:
    """(WATCHDOG_USEC when it is for us and in range, else None; why ignored)."""
    text = environ.get("WATCHDOG_USEC")
    if text is None:
        return None, None
    owner = environ.get("WATCHDOG_PID")
    if owner is not None and owner != str(pid):
        return None, f"WATCHDOG_PID={owner!r} is not pidone's pid {pid}: no watchdog pings"
    if not (text.isascii() and text.isdigit()) or not (
        WATCHDOG_MIN_USEC <= int(text) <= WATCHDOG_MAX_USEC
    ):
        return None, (
            f"WATCHDOG_USEC={text[:40]!r} ignored: not a number of microseconds from "
            f"{WATCHDOG_MIN_USEC} to {WATCHDOG_MAX_USEC}; no watchdog pings"
        )
    return int(text), None


class Notifier:
    """The datagrams to NOTIFY_SOCKET, and when the next is due (the loop
    sleeps until next_deadline(), None when nothing is pending)."""

    def __init__(
        self,
        address: str,
        *,
        watchdog: int | None,
        log: Callable[[str], None],
        clock: Callable[[], float],
    ) -> None:
        import socket

        self.address = address
        self._target = "\0" + address[1:] if address.startswith("@") else address
        self._log = log
        self._clock = clock
        self._sock: socket.socket = socket.socket(
            socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
        )
        self._flags = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL
        self._failing: str | None = None  # the failure logged last, until a send works
        self._pending: str | None = None  # a STATUS= waiting for its turn
        self._status_at = -STATUS_INTERVAL  # when the last STATUS= went
        self.interval = None if watchdog is None else watchdog / 2e6  # seconds
        self._ping_due = None if self.interval is None else clock()

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str],
        *,
        log: Callable[[str], None],
        clock: Callable[[], float],
    ) -> Notifier | None:
        """The notifier NOTIFY_SOCKET asks for; None (said why) without one."""
        address = environ.get("NOTIFY_SOCKET")
        if not address:
            return None
        problem = address_problem(address)
        if problem is not None:
            log(f"NOTIFY_SOCKET={address[:120]!r}: {problem}; not notifying the service manager")
            return None
        usec, why = watchdog_usec(environ, os.getpid())
        if why is not None:
            log(why)
        try:
            return cls(address, watchdog=usec, log=log, clock=clock)
        except OSError as exc:  # EMFILE
            log(f"NOTIFY_SOCKET={address!r}: no socket to send from: {exc.strerror or exc}")
            return None

    # -- what the loop says --

    def status(self, text: str, *, ready: bool = False, stopping: bool = False) -> None:
        """Tell STATUS=text; READY=1 or STOPPING=1 with it go at once."""
        text = text.replace("\n", " ")[:MAX_STATUS]
        if ready or stopping:
            head = "READY=1" if ready else "STOPPING=1"
            self._pending = None
            self._status_at = self._clock()
            self.send(f"{head}\nSTATUS={text}\n")
        else:
            self._pending = text
            self.run_due(self._clock())

    def next_deadline(self) -> float | None:
        times = [t for t in (self._ping_due, self._status_due()) if t is not None]
        return min(times, default=None)

    def run_due(self, now: float) -> None:
        """Send a pending STATUS= whose turn came, and a watchdog ping due."""
        due = self._status_due()
        if due is not None and now >= due:
            text, self._pending = self._pending, None
            self._status_at = now
            self.send(f"STATUS={text}\n")
        if self._ping_due is not None and self.interval is not None and now >= self._ping_due:
            self._ping_due = now + self.interval
            self.send("WATCHDOG=1\n")

    def _status_due(self) -> float | None:
        return None if self._pending is None else self._status_at + STATUS_INTERVAL

    # -- the datagram --

    def send(self, message: str) -> bool:
        """One datagram, without blocking; a failure is logged (once until a
        send works again) and returns False."""
        try:
            self._sock.sendto(message.encode("utf-8", "replace"), self._flags, self._target)
        except OSError as exc:
            why = exc.strerror or str(exc)
            if why != self._failing:
                self._failing = why
                first = message.partition("\n")[0]
                self._log(
                    f"NOTIFY_SOCKET {self.address}: cannot send {first}: {why} "
                    "(the service manager is not told; logged once until it works again)"
                )
            return False
        self._failing = None
        return True

    def close(self) -> None:
        self._sock.close()


def without_manager_variables(environ: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """A child's copy of pidone's environment: the manager's variables left out."""
    return {k: v for k, v in environ.items() if k.decode("latin-1") not in VARIABLES}
