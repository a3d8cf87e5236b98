"""THE event loop of `pidone run`: one thread, one selector, no tick.

    run(config):
        catch signals (one byte each on a wakeup pipe)
        become a subreaper unless PID 1
        feed Boot to the supervisor core, carry out its actions
        loop:
            sleep in select() until an fd is ready or the earliest deadline
            signals: SIGCHLD -> reap every zombie; others -> the core
            child output -> the log relay; readiness answers -> the core
            feed Tick; carry out the actions
        until the core says Exit(code)

Every fd in the selector carries its own callback as `data`. A failure in a
side part (a probe, the relay, a callback) is logged and the loop goes on:
PID 1 must keep reaping whatever happens.
"""

from __future__ import annotations

import os
import selectors
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence

from pidone import identity, system
from pidone.config import Config, ProcessSpec, SocketSpec
from pidone.errors import SpawnError
from pidone.logs import LogRelay
from pidone.probes import Prober
from pidone.states import HAS_PID
from pidone.supervisor import (
    Action,
    CancelProbe,
    EventType,
    Exit,
    Kill,
    Log,
    NoChildren,
    PidfileRead,
    Ready,
    Reaped,
    SignalReceived,
    SocketFixed,
    Spawn,
    Spawned,
    SpawnFailed,
    StartProbe,
    Supervisor,
    Sweep,
    Tick,
    WatchPidfile,
    WatchSocket,
)

PIDFILE_POLL = 0.1  # seconds between looks at a pidfile that is not there yet
SOCKET_POLL = 0.05  # seconds between looks for a socket its process has yet to create
Callback = Callable[[int], None]


class Loop:
    def __init__(self, config: Config, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.selector = selectors.DefaultSelector()
        self.core = Supervisor(config, clock())
        self.relay = LogRelay(
            self.selector, names=list(config.processes), fmt=config.settings.log_format
        )
        self.prober = Prober(self.selector, self._probe_ready, spawn=self._spawn_check)
        self.events: deque[EventType] = deque()
        self.exit_code: int | None = None
        self.pidfiles: dict[str, tuple[str, float]] = {}  # name -> (path, next look)
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.wakeup_fd = -1
        self.identities = {n: identity.resolve(spec) for n, spec in config.processes.items()}
        self.preparers = {n: system.identity_preparer(i) for n, i in self.identities.items()}
        self.socket_dirs: dict[str, int] = {}  # socket name -> fd of its directory
        self.listening: dict[str, int] = {}  # socket name -> listening fd (listen = true)
        self.socket_watch: dict[tuple[str, str], float] = {}  # (process, socket) -> next look

    def prepare_sockets(self) -> None:
        """Before anything starts: every socket directory made safe, stale
        sockets removed, `listen = true` sockets bound. Raises UnsafePath."""
        for name, sock in self.config.sockets.items():
            uid, gid = socket_owner(sock)
            directory, base = os.path.split(sock.path)
            dir_fd = system.secure_directory(directory, uid=uid, gid=gid, mode=sock.directory_mode)
            self.socket_dirs[name] = dir_fd
            system.remove_stale_socket(dir_fd, base)
            if sock.listen:
                self.listening[name] = system.bind_unix_socket(
                    sock.path, dir_fd, uid=uid, gid=gid, mode=sock.mode
                )

    # -- the loop --

    def run(self) -> int:
        signals = [s for s in system.forwardable_signals() if s != signal.SIGPIPE]
        self.wakeup_fd = system.install_signal_wakeup([*signals, signal.SIGCHLD])
        # Our own writes to a closed stdout must give EPIPE, not a signal that
        # we would then forward to every child.
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        os.set_blocking(self.wakeup_fd, False)
        self.selector.register(self.wakeup_fd, selectors.EVENT_READ, self._on_signals)
        if not system.is_pid1():
            system.become_subreaper()
        from pidone.supervisor import Boot

        self.feed(Boot())
        while self.exit_code is None:
            self._turn()
        self.relay.drain(timeout=2.0)
        self.relay.close()
        return self.exit_code

    def _turn(self) -> None:
        """One iteration: wait, dispatch, tick. Never raises."""
        try:
            ready = self.selector.select(self._timeout())
        except InterruptedError:  # pragma: no cover - PEP 475 retries select
            ready = []
        for key, mask in ready:
            callback: Callback = key.data
            self._guard(callback, mask)
        self._guard(lambda _: self.prober.run_due(self.clock()), 0)
        self._guard(lambda _: self._look_at_pidfiles(), 0)
        self._guard(lambda _: self._look_at_sockets(), 0)
        self.feed(Tick())

    def _timeout(self) -> float | None:
        deadlines = [self.core.next_deadline(), self.prober.next_deadline()]
        deadlines += [when for _, when in self.pidfiles.values()]
        deadlines += list(self.socket_watch.values())
        due = [d for d in deadlines if d is not None]
        if not due:
            return None  # nothing scheduled: sleep until a signal or an fd
        return max(0.0, min(due) - self.clock())

    def _guard(self, callback: Callback, mask: int) -> None:
        try:
            callback(mask)
        except Exception:
            self._log_bug("a callback")

    def _log_bug(self, where: str) -> None:
        text = traceback.format_exc().rstrip()
        try:
            self.relay.event(
                "pidone", f"internal error in {where} (still running):", stream="stderr"
            )
            for line in text.splitlines():
                self.relay.event("pidone", line, stream="stderr")
        except Exception:
            system.write_stderr(f"pidone: internal error in {where}:\n{text}\n")

    def feed(self, event: EventType) -> None:
        """Hand an event to the core and carry out what it says, including
        the events those actions produce (Spawned, NoChildren, ...)."""
        self.events.append(event)
        while self.events:
            ev = self.events.popleft()
            try:
                actions = self.core.handle(ev, self.clock())
            except Exception:
                self._log_bug(f"the supervisor handling {ev}")
                continue
            for action in actions:
                try:
                    self._execute(action)
                except Exception:
                    self._log_bug(f"carrying out {action}")

    # -- actions --

    def _execute(self, action: Action) -> None:
        match action:
            case Spawn(name):
                self._spawn(self.config.processes[name])
            case Kill(_, pid, signum, group):
                system.send_signal(pid, signum, group=group)
            case StartProbe(name, pid):
                self.prober.start(name, self.config.processes[name].ready, pid)
            case CancelProbe(name):
                self.prober.cancel(name)
            case WatchPidfile(name, path):
                self.pidfiles[name] = (path, self.clock())
            case WatchSocket(name, sock):
                self.socket_watch[name, sock] = self.clock()
            case Log(name, message, error):
                self.relay.event(name, message, stream="stderr" if error else "stdout")
            case Sweep(signum):
                system.signal_everyone_else(signum)
                self._reap()
            case Exit(code):
                self.exit_code = code

    def _spawn(self, spec: ProcessSpec) -> None:
        ident = self.identities[spec.name]
        env = _environment(spec, ident)
        if spec.ready.kind == "notify":
            env["NOTIFY_SOCKET"] = self.prober.notify_socket(spec.name, ident.uid, ident.gid)
        fds = {
            0: self.devnull,
            1: self.relay.pipe_for(spec.name, "stdout"),
            2: self.relay.pipe_for(spec.name, "stderr"),
        }
        listen_fds = [(self.listening[s], s) for s in spec.sockets if s in self.listening]
        for sock in spec.sockets:  # a socket it creates itself: never a stale one
            if sock not in self.listening:
                self.socket_watch.pop((spec.name, sock), None)
                path = self.config.sockets[sock].path
                system.remove_stale_socket(self.socket_dirs[sock], os.path.basename(path))
        try:
            pid = system.spawn(
                spec.command.argv,
                env=env,
                cwd=spec.directory,
                fds=fds,
                prepare=self.preparers[spec.name],
                listen_fds=listen_fds,
            )
        except SpawnError as exc:
            self.events.append(SpawnFailed(spec.name, str(exc)))
        else:
            self.events.append(Spawned(spec.name, pid))

    def _spawn_check(self, name: str, argv: Sequence[str]) -> int:
        """Run an `exec:` readiness check as the process it checks."""
        spec = self.config.processes[name]
        env = _environment(spec, self.identities[name])
        fds = {0: self.devnull, 1: self.devnull, 2: self.relay.pipe_for(name, "stderr")}
        return system.spawn(
            argv, env=env, cwd=spec.directory, fds=fds, prepare=self.preparers[name]
        )

    # -- inputs --

    def _on_signals(self, mask: int) -> None:
        try:
            delivered = os.read(self.wakeup_fd, 4096)
        except BlockingIOError:
            return
        reap = False
        for signum in delivered:
            if signum == signal.SIGCHLD:
                reap = True
            else:
                self.feed(SignalReceived(signum))
        if reap:
            self._reap()

    def _reap(self) -> None:
        for pid, status in system.reap_zombies():
            if self.prober.child_exited(pid, status):
                continue
            self.feed(Reaped(pid, status))
        if self.core.sweep_phase in ("term", "kill") and not system.has_children():
            self.feed(NoChildren())

    def _probe_ready(self, name: str) -> None:
        pid = self.core.procs[name].pid or self.core.procs[name].launcher_pid
        if pid is not None:
            self.feed(Ready(name, pid))

    def _look_at_pidfiles(self) -> None:
        now = self.clock()
        for name, (path, when) in list(self.pidfiles.items()):
            proc = self.core.procs[name]
            if proc.state not in HAS_PID or proc.pid is not None:
                del self.pidfiles[name]
                continue
            if now < when:
                continue
            pid = _read_pid(path)
            if pid is None:
                self.pidfiles[name] = (path, now + PIDFILE_POLL)
                continue
            del self.pidfiles[name]
            self.feed(PidfileRead(name, pid))

    def _look_at_sockets(self) -> None:
        now = self.clock()
        for (name, sock), when in list(self.socket_watch.items()):
            if now < when:
                continue
            spec = self.config.sockets[sock]
            uid, gid = socket_owner(spec)
            base = os.path.basename(spec.path)
            try:
                fixed = system.fix_socket(
                    self.socket_dirs[sock], base, uid=uid, gid=gid, mode=spec.mode
                )
            except (OSError, system.UnsafePath) as exc:
                self.relay.event(name, f"socket {sock}: {exc}", stream="stderr")
                fixed = False
            if fixed:
                del self.socket_watch[name, sock]
                self.feed(SocketFixed(name, sock))
            else:
                self.socket_watch[name, sock] = now + SOCKET_POLL


def _environment(spec: ProcessSpec, ident: identity.Identity) -> dict[str, str]:
    """The child's environment: HOME, USER and LOGNAME of the user it runs
    as, unless configured explicitly or `clear_env` asks for nothing extra."""
    if spec.clear_env:
        return dict(spec.env)
    return {**spec.env, **ident.environment(), **spec.environment}


def socket_owner(sock: SocketSpec) -> tuple[int, int]:
    """(uid, gid) for a socket: its owner (default root), its group (default
    the owner's primary group)."""
    uid, gid = 0, 0
    if sock.owner is not None:
        uid, primary, _, _ = identity.user_id(sock.owner)
        gid = primary if primary is not None else uid
    if sock.group is not None:
        gid = identity.group_id(sock.group)
    return uid, gid


def _read_pid(path: str) -> int | None:
    """The live pid in a pidfile, or None (missing, partial, or stale)."""
    try:
        with open(path, "rb") as f:
            text = f.read().strip()
        pid = int(text)
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid if pid > 0 else None


def run(config: Config) -> int:
    loop = Loop(config)
    loop.prepare_sockets()  # before anything starts; UnsafePath stops us here
    return loop.run()
