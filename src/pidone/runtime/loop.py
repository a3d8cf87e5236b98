"""THE event loop of `pidone run`: one thread, one selector, no tick.

    run(config):
        catch signals (blocked; read from a signalfd)
        become a subreaper unless PID 1
        feed Boot to the supervisor core, carry out its actions
        loop:
            sleep in select() until an fd is ready or the earliest deadline
            signals: SIGCHLD -> reap every zombie, first; others -> the core
            child output -> the log relay; readiness answers -> the core
            side threads' wake-ups (a SIGCHLD to the loop's thread alone):
                their log lines, a drained log writer thread -> the relay
            ctl requests -> the core, as a Request with a ticket
            feed Tick; carry out the actions
        until the core says Exit(code)

The loop decides nothing: the core says what to spawn and signal, when to
look at a pidfile or for a socket (ReadPidfile, FixSocket: the loop looks
through system/ and feeds back what it saw) and what to answer a ctl client
(Reply, for the ticket the loop keeps with the client's connection).

Every fd in the selector carries its own callback as `data`. A failure in a
side part (a probe, the relay, a callback) is logged and the loop goes on:
PID 1 must keep reaping whatever happens.
"""

from __future__ import annotations

import functools
import os
import selectors
import signal
import socket
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pidone.config import identity, rundir
from pidone.config.specs import Config, ProcessSpec, SocketSpec
from pidone.config.values import MAX_SECONDS
from pidone.control import protocol
from pidone.control import server as control
from pidone.core import legion as leasing
from pidone.core.counters import PidoneCounters
from pidone.core.requests import Command
from pidone.core.snapshot import Snapshot
from pidone.errors import ConfigError, PidoneError, SpawnError
from pidone.runtime.logs import SIDE_LINES, LogRelay, SideLog
from pidone.runtime.probes import Prober
from pidone.signames import signal_name
from pidone.system import pidfd, privileges, proc, process, reap, sdnotify, signals, sockets, spawn
from pidone.system.cgroup import OomCounters

if TYPE_CHECKING:  # the metrics server and its threads, inotify, redis: only when enabled
    from pidone.observe.metrics import MetricsServer
    from pidone.system import inotify, redis
from pidone.core.supervisor import (
    Action,
    Adopt,
    Adopted,
    AdoptedExited,
    Alive,
    Boot,
    CancelProbe,
    CloseSocket,
    Collect,
    EventType,
    Exit,
    FixSocket,
    Forget,
    Kill,
    KillLeftovers,
    LegionAnswered,
    LegionRequest,
    Log,
    NoChildren,
    NotAdopted,
    Notify,
    OpenSocket,
    PidfileNotRead,
    PidfileRead,
    ReadPidfile,
    Ready,
    Reaped,
    Reconfigure,
    Reconfigured,
    Reply,
    Request,
    SignalReceived,
    SocketFixed,
    SocketNotFixed,
    Spawn,
    Spawned,
    SpawnFailed,
    StartLiveness,
    StartProbe,
    Supervisor,
    Sweep,
    Tick,
    Touched,
    WatchdogPing,
)

Callback = Callable[[int], None]
LEGION_CLOSE = 1.0  # seconds pidone's exit waits for a legion's release to be answered
Answer = Callable[[dict[str, Any]], None]  # sends a ctl client its reply


class Loop:
    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.monotonic,
        reload: Callable[[], Config] | None = None,
    ) -> None:
        self.config = config
        # Reads the configuration again as `pidone run` read it (the same
        # files, options and environment); raises ConfigError. None: cannot.
        self.reload = reload
        self.clock = clock
        self.selector = selectors.DefaultSelector()
        self.core = Supervisor(config, clock())
        self.relay = LogRelay(
            self.selector,
            names=list(config.processes),
            fmt=config.settings.log_format,
            wake=signals.wake_loop,  # a writer thread's, when it drained (ThreadOutput)
        )
        sources = config.sources
        self.rundir = rundir.runtime_dir(rundir.config_dir(sources.config, sources.procfile))
        # This pidone's own, by its control socket: see rundir.notify_dir_for.
        self.notify_dir = rundir.notify_dir_for(self.rundir, self.control_path())
        self.prober = Prober(
            self.selector,
            self._probe_ready,
            spawn=self._spawn_check,
            notify_dir=self.notify_dir,
            on_alive=lambda name, pid, error: self.feed(Alive(name, pid, error)),
            on_watchdog=lambda name, pid: self.feed(WatchdogPing(name, pid)),
        )
        self.events: deque[EventType] = deque()
        self.exit_code: int | None = None
        self.launchers: dict[str, proc.Launcher] = {}  # pidfile processes' launchers
        self.adopted: dict[str, tuple[int, int]] = {}  # name -> (pid, pidfd): no child of ours
        self.probed: dict[str, int] = {}  # name -> the pid its readiness check was started for
        self.trees: dict[str, dict[int, int | None]] = {}  # stopping: descendant -> start time
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.stdin = self.devnull  # fd 0 of the processes with `stdin = true`
        self.stdin_problem = ""  # logged at the start
        if any(spec.stdin for spec in config.processes.values()):
            self.stdin, self.stdin_problem = process.own_stdin(self.devnull)
        self.signal_fd = -1
        self.identities = {n: identity.resolve(spec) for n, spec in config.processes.items()}
        # As PID 1 a child that keeps pidone's identity needs no preparer, so
        # it is spawned without fork: see privileges.identity_preparer and spawn.
        pdeathsig = not process.is_pid1()
        self.preparers = {
            n: privileges.identity_preparer(
                i, pdeathsig=pdeathsig, changes=config.processes[n].runs_in_child()
            )
            for n, i in self.identities.items()
        }
        self.socket_dirs: dict[str, int] = {}  # socket name -> fd of its directory
        self.listening: dict[str, int] = {}  # socket name -> listening fd (listen = true)
        self.answers: dict[int, Answer] = {}  # ctl requests' tickets -> their client
        self.tickets = 0
        self.control: control.ControlServer | None = None
        self.watcher: inotify.Watcher | None = None  # the `touch` files' directories
        self.metrics: MetricsServer | None = None
        self.notifier: sdnotify.Notifier | None = None  # pidone's own NOTIFY_SOCKET
        self.side_log = SideLog(signals.wake_loop)  # for the metrics server's threads
        self.heartbeat = clock()
        self.published: Snapshot | None = None  # what the metrics thread reads
        self._forwarding: int | None = None  # the signal being passed on, for the counters
        self.counters = PidoneCounters()
        self.oom = OomCounters()  # the main pids' memory cgroups' oom_kill counters
        self.legions: dict[str, redis.LeaseClient] = {}  # [legion.NAME] -> its redis thread
        self.legion_token: str | None = None  # theirs (the leases' value): kept by ctl reexec
        self.leaving: dict[str, ProcessSpec] = {}  # removed by ctl update, not yet forgotten
        # ctl reexec (runtime/reexec.py): what the side parts take over, the resumed handover
        self.inherited_control: socket.socket | None = None
        self.inherited_metrics: int | None = None
        self.resumed: str | None = None  # "re-executed from ...": no Boot, the core resumed
        self.reexec_failed: str | None = None  # why the last exec failed: ctl status says it

    def control_path(self) -> str:
        """The control socket: $PIDONE_CONTROL_SOCKET, `control_socket`, else
        the runtime directory's (the same order as `pidone ctl`'s)."""
        configured = os.environ.get("PIDONE_CONTROL_SOCKET") or self.config.settings.control_socket
        return configured or self.rundir.control_socket

    def notify_path_problem(self, config: Config) -> str | None:
        """Why a notify socket of `config` could never be bound (its path is
        longer than a sockaddr holds; root's too), or None: refused at the
        start and by ctl reread/update, never a FATAL after failed spawns."""
        for name, spec in config.processes.items():
            long = os.path.join(self.notify_dir, f"{name}.sock")
            if spec.notifies() and len(os.fsencode(long)) > sockets.SUN_PATH_MAX:
                shorter = "XDG_RUNTIME_DIR, the configuration's directory or " * self.rundir.private
                return (
                    f"the notify socket path {long} is longer than the {sockets.SUN_PATH_MAX}"
                    f" bytes a socket address holds; shorten {shorter}the name {name}"
                )
        return None

    def prepare_runtime_dir(self) -> None:
        """Before anything starts: a non-root runtime directory made 0700 (or
        refused as unsafe), every socket path in it short enough for a
        sockaddr, and no other pidone already answering on the control
        socket: two would fight over it (and over every socket). Raises UnsafePath."""
        path = self.control_path()
        if sockets.socket_in_use(path):
            raise sockets.UnsafePath(
                f"another pidone is already running with the control socket {path}; stop it"
                " (pidone ctl shutdown), or give this one another control_socket"
            )
        names = [n for n, s in self.config.processes.items() if s.notifies()]
        problem = self.notify_path_problem(self.config)
        if problem is not None:
            raise sockets.UnsafePath(problem)
        if not self.rundir.private:
            return
        if self.rundir.note is not None:
            self._log_side(f"{self.rundir.note}: using {self.rundir.path}")
        if len(os.fsencode(path)) > sockets.SUN_PATH_MAX:
            raise sockets.UnsafePath(
                f"the socket path {path} is longer than the {sockets.SUN_PATH_MAX} bytes a"
                " socket address holds; set XDG_RUNTIME_DIR (or control_socket) to a"
                " shorter directory, or move the configuration"
            )
        try:
            sockets.private_directory(self.rundir.path)
        except sockets.CannotCreate as exc:
            # Only missing (a read-only configuration, as a container's): the
            # control socket is a side part, disabled and said so, as root's
            # is without /run/pidone; a notify process could never be ready.
            if names:
                raise sockets.UnsafePath(
                    f"pidone's runtime directory: {exc}; the notify sockets of {', '.join(names)}"
                    ' (ready = "notify") go there: set XDG_RUNTIME_DIR to a directory of'
                    " pidone's user"
                ) from None
        except sockets.UnsafePath as exc:
            raise sockets.UnsafePath(f"pidone's runtime directory: {exc}") from None

    def prepare_sockets(self) -> None:
        """Before anything starts: every socket directory made safe, stale
        sockets removed, `listen = true` sockets bound, then the directory
        given its owner, group and mode. Raises UnsafePath."""
        for name, sock in self.config.sockets.items():
            self._prepare_socket(name, sock)

    def _prepare_socket(self, name: str, sock: SocketSpec) -> None:
        """One [socket.NAME] as prepare_sockets says (ctl update's OpenSocket too)."""
        uid, gid = socket_owner(sock)
        directory, base = os.path.split(sock.path)
        step = "opening"
        try:
            dir_fd = sockets.secure_directory(directory)
            self.socket_dirs[name] = dir_fd
            step = "taking over"
            sockets.claim_directory(dir_fd)
            step = "removing a stale socket in"
            sockets.remove_stale_socket(base, dir_fd)
            if sock.listen:
                step = "binding the socket in"
                self.listening[name] = sockets.bind_unix_socket(
                    sock.path, dir_fd, uid=uid, gid=gid, mode=sock.mode
                )
            step = "setting the owner and mode of"
            sockets.settle_directory(dir_fd, uid=uid, gid=gid, mode=sock.directory_mode)
        except OSError as exc:
            raise sockets.UnsafePath(
                f"[socket.{name}] {step} {directory}: {exc.strerror or exc} (pidone needs"
                " root, or CAP_CHOWN in a container, to set up the socket directory)"
            ) from None

    # -- the loop --

    def run(self) -> int:
        self._catch_signals()
        if not process.is_pid1():
            reap.become_subreaper()
        self._start_side_parts()
        if self.stdin_problem:
            self._log_side(self.stdin_problem)
        if self.resumed is None:
            self.feed(Boot(adopt=not process.is_pid1()))  # as PID 1 nothing outlived us
        else:
            self._resume()
        self._publish()
        while self.exit_code is None:
            self._turn()
        self._stop_side_parts()
        self._relay_side_log()
        self.relay.drain(timeout=2.0)
        self.relay.close()
        return self.exit_code

    def _catch_signals(self) -> None:
        """Every signal blocked and read from a signalfd in the selector."""
        caught = [s for s in signals.forwardable_signals() if s != signal.SIGPIPE]
        signals.catch_signals([*caught, signal.SIGCHLD])
        try:
            self.signal_fd = signals.signal_fd()
        except (OSError, ImportError) as exc:  # before anything starts
            raise PidoneError(f"cannot read signals: {exc} (signalfd, through ctypes)") from None
        # Our own writes to a closed stdout must give EPIPE, not a signal that
        # we would then forward to every child.
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.selector.register(self.signal_fd, selectors.EVENT_READ, self._on_signals)

    # -- side parts: a failure here is logged, never fatal --

    def _start_side_parts(self) -> None:
        self.notifier = sdnotify.Notifier.from_environ(
            os.environ, log=self._log_side, clock=self.clock
        )
        self.start_control()
        touch = [path for spec in self.config.processes.values() for path in spec.touch]
        if touch:
            try:
                from pidone.system import inotify

                self.watcher = inotify.Watcher(touch)
                self.selector.register(self.watcher.fd, selectors.EVENT_READ, self._on_touched)
                for problem in self.watcher.problems:
                    self._log_side(f"touch: cannot watch {problem}")
            except Exception as exc:
                self._log_side(f"touch disabled: {exc}")
        if self.config.legions:
            self._start_legions()
        self.start_metrics()

    def start_control(self) -> None:
        settings = self.config.settings
        path = self.control_path()
        sock, self.inherited_control = self.inherited_control, None
        try:
            gid = identity.group_id(settings.control_group) if settings.control_group else None
            self.control = control.ControlServer(
                self.selector,
                path,
                group=gid,
                on_request=self._on_control,
                log=self._log_side,
                sock=sock,
            )
        except Exception as exc:
            self._log_side(f"control socket {path} disabled: {exc}")

    def start_metrics(self) -> None:
        settings = self.config.settings
        fd, self.inherited_metrics = self.inherited_metrics, None
        if settings.metrics:
            try:
                from pidone.observe.metrics import MetricsServer

                self.metrics = MetricsServer(
                    settings.metrics,
                    snapshot=lambda: self.published,
                    heartbeat=lambda: self.heartbeat,
                    counters=self.counters,
                    wake=signals.wake_loop,
                    log=self.side_log.put,
                    listener=None if fd is None else socket.socket(fileno=fd),
                )
                if fd is None:
                    self.relay.event("pidone", f"metrics on http://{settings.metrics}/metrics")
            except Exception as exc:
                self._log_side(f"metrics on {settings.metrics} disabled: {exc}")

    def _start_legions(self) -> None:
        """A redis thread per legion (the loop never waits for redis). Its
        password from pidone's environment, never from the file."""
        from pidone.system import redis

        handed = self.legion_token is not None  # by ctl reexec: the leases held with it stay ours
        token = self.legion_token or redis.make_token()
        self.legion_token = token
        for name, spec in self.config.legions.items():
            password = os.environ.get(spec.password_env) if spec.password_env else None
            address = redis.Address(spec.host, spec.port, spec.path, spec.db, password)
            standby_poll = min(leasing.STANDBY_POLL, spec.ttl / 3)
            try:
                self.legions[name] = redis.LeaseClient(
                    address,
                    spec.key,
                    token=token,
                    priority=spec.priority,
                    ttl=spec.ttl,
                    candidate_ttl=4 * standby_poll,  # a few missed asks before it is gone
                    wake=signals.wake_loop,
                )
            except Exception as exc:  # no thread: its requests fail, nobody runs it here
                self._log_side(f"legion {name} disabled: {exc}")
        kept = " (handed over)" if handed else ""
        self.relay.event("pidone", f"legions: {', '.join(self.config.legions)} as {token}{kept}")

    def _legion_answers(self) -> None:
        for name, client in self.legions.items():
            for request_id, held, holder, error in client.take():
                reply = leasing.Reply(request_id, held=held, holder=holder, error=error)
                self.feed(LegionAnswered(name, reply))

    def _stop_side_parts(self) -> None:
        for answer in self.answers.values():  # the core answers all at Exit: a safety net
            answer(protocol.error("pidone is exiting"))
        self.answers.clear()
        for client in self.legions.values():  # the release was asked before the Exit
            self._guard(lambda _, c=client: c.close(LEGION_CLOSE), 0)  # type: ignore[misc]
        for close in (
            self.metrics.close if self.metrics else None,
            self.control.close if self.control else None,
            self.notifier.close if self.notifier else None,
            self.prober.close,  # its notify sockets and their directory removed
        ):
            if close is not None:
                self._guard(lambda _, c=close: c(), 0)  # type: ignore[misc]

    def _log_side(self, message: str) -> None:
        """A side part's message, in the loop's thread (others: side_log.put)."""
        self.relay.event("pidone", message, stream="stderr")

    def _relay_side_log(self) -> None:
        lines, dropped = self.side_log.take()
        for line in lines:
            self._log_side(line)
        if dropped:
            self._log_side(
                f"{dropped} messages of side threads dropped ({SIDE_LINES} were waiting)"
            )

    def _publish(self) -> None:
        if self.metrics is not None:
            self.published = self.core.snapshot()

    def _turn(self) -> None:
        """One iteration: wait, dispatch, tick. Never raises."""
        try:
            ready = self.selector.select(self._timeout())
        except InterruptedError:  # pragma: no cover - PEP 475 retries select
            ready = []
        self.heartbeat = self.clock()
        for key, mask in ready:
            callback: Callback = key.data
            self._guard(callback, mask)
        self._guard(lambda _: self._relay_side_log(), 0)
        if self.legions:
            self._guard(lambda _: self._legion_answers(), 0)
        self._guard(lambda _: self.relay.check_threads(), 0)
        self._guard(lambda _: self.prober.run_due(self.clock()), 0)
        if self.control is not None:
            control_server = self.control
            self._guard(lambda _: control_server.run_due(self.clock()), 0)
        if self.notifier is not None:
            notifier = self.notifier
            self._guard(lambda _: notifier.run_due(self.clock()), 0)
        self.feed(Tick())
        self._publish()

    def _timeout(self) -> float | None:
        deadlines = [self.core.next_deadline(), self.prober.next_deadline()]
        if self.control is not None:
            deadlines.append(self.control.next_deadline())
        if self.notifier is not None:
            deadlines.append(self.notifier.next_deadline())
        due = [d for d in deadlines if d is not None]
        if not due:
            return None  # nothing scheduled: sleep until a signal or an fd
        # Clamped: no deadline, however far, may overflow epoll_wait's timeout.
        return min(max(0.0, min(due) - self.clock()), MAX_SECONDS)

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
            process.write_stderr(f"pidone: internal error in {where}:\n{text}\n")

    def feed(self, event: EventType) -> None:
        """Hand an event to the core and carry out what it says, including
        the events those actions produce (Spawned, NoChildren, ...)."""
        self.events.append(event)
        while self.events:
            ev = self.events.popleft()
            try:
                actions = self.core.handle(ev, self.clock())
            except Exception:  # the core is as it was before ev: its actions are dropped
                self._log_bug(f"the supervisor handling {ev}")
                if isinstance(ev, Request) and ev.ticket in self.answers:
                    self.answers.pop(ev.ticket)(protocol.error("internal error: see pidone's log"))
                continue
            # Spawn and Kill come first in a batch: see the Log case
            acted_on: set[str] = set()
            for action in actions:
                try:
                    self._execute(action, acted_on)
                except Exception:
                    self._log_bug(f"carrying out {action}")

    # -- actions --

    def _execute(self, action: Action, acted_on: set[str]) -> None:
        match action:
            case Spawn(name):
                acted_on.add(name)
                self._spawn(self.config.processes[name])
            case Kill(name, pid, signum, group):
                acted_on.add(name)
                self._warn_uncaught_stop(name, pid, signum)
                if self._send(name, pid, signum, group) and signum == self._forwarding:
                    self.counters.count(self.counters.signals_forwarded, signum)
            case StartProbe(name, pid):
                self.probed[name] = pid
                check = self.config.processes[name].ready
                self.prober.start(name, check, pid)
                if check.pattern is not None:  # log: the relay says when a line matches
                    self.relay.watch(
                        name, check.pattern, functools.partial(self._logged, name, pid)
                    )
            case CancelProbe(name):
                self.prober.cancel(name)
                self.relay.unwatch(name)
            case StartLiveness(name, pid):
                spec = self.config.processes[name]
                assert spec.alive is not None
                self.prober.start_alive(
                    name,
                    spec.alive,
                    pid,
                    spec.alive_delay,
                    spec.alive_interval,
                    spec.alive_timeout,
                )
            case ReadPidfile(name, path, taken):
                self.events.append(self._read_pidfile(name, path, taken))
            case Adopt(name, path, taken):
                self.events.append(self._adopt(name, path, taken))
            case Collect(name, pid):
                tree = self.trees.setdefault(name, {})
                for child in proc.descendants(pid):
                    tree.setdefault(child, proc.start_ticks(child))
            case KillLeftovers(name, group):
                # Still the same processes (start time) that were its
                # descendants when its stop began: nothing of it is left.
                for child, started in self.trees.pop(name, {}).items():
                    if started is not None and proc.start_ticks(child) == started:
                        signals.send_signal(child, signal.SIGKILL)
                if group is not None:
                    signals.kill_group(group, signal.SIGKILL)
            case FixSocket(name, sock):
                self.events.append(self._fix_socket(name, sock))
            case Log(name, message, error, ended):
                # About a process spawned or signalled in this batch (its
                # action went first, for speed): "exited" or "restarting" must
                # not be preceded by the new instance's output, nor "stopping:
                # SIGTERM" by the process's reaction to it ("Warm shutdown").
                # So nothing is relayed first; what it wrote before is in
                # order already, the loop relays as soon as output comes.
                self.relay.event(
                    name,
                    message,
                    stream="stderr" if error else "stdout",
                    catch_up=name not in acted_on,
                    ended=ended,
                )
            case Sweep(signum):
                signals.signal_everyone_else(signum)
                self._reap()
            case Exit(code):
                self.exit_code = code
            case Reply(ticket, outcome):
                answer = self.answers.pop(ticket, None)
                if answer is not None:
                    # The turn's own _publish comes after the reply: a client
                    # that reads /metrics or /readyz next must see what the
                    # reply says ("a: stopped", wait-ready), not the last turn.
                    self._publish()
                    wire = protocol.reply_for(outcome, self.clock())
                    if outcome.status is not None and self.reexec_failed is not None:
                        wire["reexec_failed"] = self.reexec_failed
                    answer(wire)
            case LegionRequest(name, send):
                client = self.legions.get(name)
                if client is None:
                    reply = leasing.Reply(send.id, error="no redis client (see above)")
                    self.events.append(LegionAnswered(name, reply))
                else:
                    client.submit(send.id, send.kind.value, send.deadline)
            case Notify(status, ready, stopping):
                if self.notifier is not None:
                    self.notifier.status(status, ready=ready, stopping=stopping)
            case Reconfigured(config):
                self._reconfigured(config)
            case CloseSocket(name):
                self._close_socket(name)
            case OpenSocket(name):
                try:
                    self._prepare_socket(name, self.config.sockets[name])
                except sockets.UnsafePath as exc:  # its processes' spawns fail, and say so
                    self._log_side(f"update: {exc}")
            case Forget(name):
                self._forget(name)

    # -- ctl update: the core's Reconfigured, CloseSocket, OpenSocket, Forget --

    def _reconfigured(self, config: Config) -> None:
        """From now on spawn by `config`: identities of the new and changed
        processes, the `touch` watches; a removed process's spec is kept
        until its Forget (its stop may still run a check)."""
        old = self.config
        self.leaving.update({n: s for n, s in old.processes.items() if n not in config.processes})
        for name in config.processes:  # removed, then added back before its Forget
            self.leaving.pop(name, None)
        self.config = config
        self.relay.add_names(config.processes)
        pdeathsig = not process.is_pid1()
        for name, spec in config.processes.items():
            if old.processes.get(name) != spec:
                ident = identity.resolve(spec)
                self.identities[name] = ident
                self.preparers[name] = privileges.identity_preparer(
                    ident, pdeathsig=pdeathsig, changes=spec.runs_in_child()
                )
            if spec.stdin and self.stdin == self.devnull and not self.stdin_problem:
                self.stdin, self.stdin_problem = process.own_stdin(self.devnull)
        touched = sorted({p for s in config.processes.values() for p in s.touch})
        if touched != sorted({p for s in old.processes.values() for p in s.touch}):
            self._rewatch(touched)

    def _rewatch(self, paths: list[str]) -> None:
        if self.watcher is not None:
            self.selector.unregister(self.watcher.fd)
            self.watcher.close()
            self.watcher = None
        if not paths:
            return
        try:
            from pidone.system import inotify

            self.watcher = inotify.Watcher(paths)
            self.selector.register(self.watcher.fd, selectors.EVENT_READ, self._on_touched)
            for problem in self.watcher.problems:
                self._log_side(f"touch: cannot watch {problem}")
        except Exception as exc:
            self._log_side(f"touch disabled: {exc}")

    def _close_socket(self, name: str) -> None:
        """The running processes keep their own copies of a listening fd."""
        sock = self.config.sockets.get(name)
        fd = self.listening.pop(name, None)
        if fd is not None:
            os.close(fd)
        dir_fd = self.socket_dirs.pop(name, None)
        if dir_fd is None:
            return
        try:
            if sock is not None:
                sockets.remove_stale_socket(os.path.basename(sock.path), dir_fd)
        except (OSError, sockets.UnsafePath) as exc:
            self._log_side(f"update: [socket.{name}]: {exc}")
        finally:
            os.close(dir_fd)

    def _forget(self, name: str) -> None:
        self.leaving.pop(name, None)
        for table in (self.identities, self.preparers, self.launchers, self.probed, self.trees):
            table.pop(name, None)
        self.prober.forget(name)
        self.relay.forget(name)

    def _warn_uncaught_stop(self, name: str, pid: int, signum: int) -> None:
        """A namespace's init gets no signal it has no handler for (the
        kernel's rule; SIGKILL excepted): say why its stop will take
        stop_timeout, rather than leave a silent wait."""
        spec = self.config.processes.get(name)
        if spec is None or not spec.pid_namespace or signum != spec.stop_signal:
            return
        if proc.catches(pid, signum) is False:
            self.relay.event(
                name,
                f"it is PID 1 of its namespace and has no handler for {signal_name(signum)}, "
                f"so the kernel drops it: SIGKILL after stop_timeout ({spec.stop_timeout:g} s)",
                stream="stderr",
            )

    def _spawn(self, spec: ProcessSpec) -> None:
        """Every failure to start (an exec error, EMFILE making its pipes,
        EACCES on its notify socket...) is a failed start: SpawnFailed."""
        try:
            pid, search_path = self._start(spec)
        except SpawnError as exc:
            self.events.append(SpawnFailed(spec.name, str(exc)))
        except OSError as exc:
            self.events.append(SpawnFailed(spec.name, f"OSError: {exc.strerror or exc}"))
        except Exception as exc:  # a bug of ours: its traceback too, and still a failed start
            self._log_bug(f"starting {spec.name}")
            self.events.append(SpawnFailed(spec.name, f"{type(exc).__name__}: {exc}"))
        else:
            self.events.append(Spawned(spec.name, pid))
            self._oom_sample(pid)
            if spec.pidfile:
                uid = self.identities[spec.name].uid
                self.launchers[spec.name] = proc.Launcher(
                    pid,
                    os.geteuid() if uid is None else uid,
                    spec.command.program,
                    search_path,
                    spec.directory,
                )

    def _start(self, spec: ProcessSpec) -> tuple[int, str | None]:
        """Spawn it: (its pid, the PATH its program was searched in)."""
        ident = self.identities[spec.name]
        env = _environment(spec, ident)
        if spec.notifies():
            env["NOTIFY_SOCKET"] = self.prober.notify_socket(spec.name, ident.uid, ident.gid)
        if spec.watchdog is not None:
            # No WATCHDOG_PID: its pid is known only after the spawn (posix_spawn
            # cannot set it), and sd_notify takes a missing one as "for you".
            env["WATCHDOG_USEC"] = str(max(1, round(spec.watchdog * 1_000_000)))
        fds = {
            0: self.stdin if spec.stdin else self.devnull,
            1: self.relay.pipe_for(spec.name, "stdout"),
            2: self.relay.pipe_for(spec.name, "stderr"),
        }
        listen_fds = [(self.listening[s], s) for s in spec.sockets if s in self.listening]
        for sock in spec.sockets:  # a socket it creates itself: never a stale one
            if sock not in self.listening:
                path = self.config.sockets[sock].path
                try:
                    sockets.remove_stale_socket(os.path.basename(path), self.socket_dirs[sock])
                except PermissionError:  # no DAC_OVERRIDE in its directory: its own job then
                    self.relay.event(spec.name, f"cannot remove a stale {path}", stream="stderr")
        pid = spawn.spawn(
            spec.command.argv,
            env=env,
            cwd=spec.directory,
            fds=fds,
            prepare=self.preparers[spec.name],
            listen_fds=listen_fds,
            fast=True,
            pid_namespace=spec.pid_namespace,
        )
        return pid, env.get("PATH")

    def _spawn_check(self, name: str, argv: Sequence[str]) -> int:
        """Run an `exec:` readiness check as the process it checks."""
        spec = self.config.processes.get(name) or self.leaving[name]
        env = _environment(spec, self.identities[name])
        fds = {0: self.devnull, 1: self.devnull, 2: self.relay.pipe_for(name, "stderr")}
        return spawn.spawn(
            argv, env=env, cwd=spec.directory, fds=fds, prepare=self.preparers[name], fast=True
        )

    # -- inputs --

    def _on_signals(self, mask: int) -> None:
        try:
            taken = signals.read_signals(self.signal_fd)
        except BlockingIOError:
            return
        # Reap first: an exit is not kept waiting behind a burst of signals.
        if any(signum == signal.SIGCHLD for signum, _, _ in taken):
            self._reap()
        for signum, code, sender in taken:
            if signum == signal.SIGCHLD:
                if not signals.is_wake(code, sender):  # else: wake_loop, from a side thread
                    self.counters.count(self.counters.signals_received, signum)
                continue
            self.counters.count(self.counters.signals_received, signum)
            self._forwarding = signum
            try:
                self.feed(SignalReceived(signum))
            finally:
                self._forwarding = None

    def _reap(self) -> None:
        for pid, status in reap.reap_zombies():
            self.counters.zombies_reaped += 1
            if self.prober.child_exited(pid, status):
                continue
            code, signum = reap.decode_status(status)
            self.feed(Reaped(pid, code, signum, self._oom_kills(pid, signum)))
        if self.core.sweeping and not reap.has_children():
            self.feed(NoChildren())

    # -- pidone ctl --

    def _on_control(self, request: dict[str, Any], answer: Answer) -> None:
        """A ctl request: parsed by the protocol, judged by the core, which
        answers with a Reply action for its ticket."""
        parsed = protocol.parse_request(request, self.config.processes)
        if isinstance(parsed, str):
            answer(protocol.error(parsed))
            return
        if parsed.command in (Command.REREAD, Command.UPDATE):
            self._reread(parsed, answer)
            return
        if parsed.command is Command.REEXEC:  # the core says when not; the rest is the loop's
            from pidone.runtime import reexec

            reexec.reexec(self, answer)
            return
        self.tickets += 1
        self.answers[self.tickets] = answer
        self.feed(replace(parsed, ticket=self.tickets))

    def _reread(self, request: Request, answer: Answer) -> None:
        """ctl reread and update: the configuration read again, in this
        thread: the reload's `sh -n` children are reaped by their own
        waitpid(pid), which a thread would race with this loop's
        waitpid(-1). So the loop pauses for the read, bounded: the files by
        the config's size limits, every `sh -n` together by
        SHELL_CHECK_SECONDS (5 s); what exits meanwhile is reaped right
        after. A reread prints the diff; an update hands it to the core."""
        if self.reload is None:
            answer(protocol.error(f"{request.command}: this pidone cannot read its configuration"))
            return
        began = self.clock()
        try:
            read = self.reload()
        except ConfigError as exc:
            answer({"ok": False, "config_error": True, "error": str(exc)})
            return
        finally:
            took = self.clock() - began
            if took >= 0.5:
                self._log_side(f"{request.command}: reading the configuration took {took:.1f} s")
        problem = self.notify_path_problem(read)
        if problem is not None:  # as `pidone run` refuses it at the start
            answer({"ok": False, "config_error": True, "error": problem})
            return
        if request.command is Command.REREAD:
            from pidone.config import diff as config_diff  # only a reread needs it

            changes = config_diff.lines(config_diff.diff(self.config, read))
            answer({"ok": True, "changes": changes})
            return
        self.tickets += 1
        self.answers[self.tickets] = answer
        self.feed(Reconfigure(read, request.names, request.timeout, self.tickets))

    def _on_touched(self, mask: int) -> None:
        """One bounded read of the inotify fd (inotify.READ_SIZE; more waits
        for the next turn): what it says goes to the core, which decides."""
        assert self.watcher is not None
        try:
            paths, overflow, gone = self.watcher.read()
        except BlockingIOError:
            return
        for directory in gone:
            self._log_side(f"touch: {directory} was removed or renamed: no longer watched")
        if paths or overflow:
            self.feed(Touched(frozenset(paths), overflow))

    def _logged(self, name: str, pid: int) -> None:
        """NAME's instance PID wrote its `log:` line. Queued, not fed: the
        relay may be inside a batch (a Log's catch-up); the turn's Tick
        carries it to the core, which decides."""
        self.events.append(Ready(name, pid))

    def _probe_ready(self, name: str) -> None:
        pid = self.probed[name]
        self._oom_sample(pid, again=True)  # it may have moved to a cgroup of its own meanwhile
        self.feed(Ready(name, pid))

    def _oom_sample(self, pid: int, *, again: bool = False) -> None:
        try:
            self.oom.sample(pid, again=again)
        except Exception:  # a bug of ours: the process is supervised all the same
            self._log_bug(f"reading the memory cgroup of pid {pid}")

    def _oom_kills(self, pid: int, signum: int) -> int:
        """How much pid's cgroup's oom_kill counter rose across its death (0: unknown)."""
        try:
            return self.oom.death(pid, signum == signal.SIGKILL)
        except Exception:  # a bug of ours: never the cause of an exit going unseen
            self._log_bug(f"reading the OOM kill counter of pid {pid}")
            return 0

    def _read_pidfile(self, name: str, path: str, taken: frozenset[int]) -> EventType:
        """Read a pidfile; its pid is followed only if the trust rule
        (proc.unfollowable) allows. The core logs a refusal once per
        instance and says when to look again (a stale pid of an earlier
        instance is no refusal: silently, and soon). A refused process stays
        without a main pid: it is signalled nowhere, and its stop ends at the
        stop timeout."""
        pid, problem = proc.read_pidfile(path)
        if pid is not None:
            launcher = self.launchers.get(name)
            if launcher is None:
                problem = "its launcher is unknown"
            else:
                problem = proc.unfollowable(pid, launcher, taken) or ""
        if pid is None or problem:
            refused = bool(problem) and not problem.endswith(proc.NOT_RUNNING)
            return PidfileNotRead(name, problem, refused)
        return PidfileRead(name, pid)

    def _adopt(self, name: str, path: str, taken: frozenset[int]) -> EventType:
        """Adopt the daemon NAME's pidfile names if it is NAME's: its real
        uid the configured user's (pidone's own if none), its executable the
        program its command names (system/pidfd.adopt). Its pidfd joins the
        selector: readable once it is gone."""
        spec = self.config.processes[name]
        ident = self.identities[name]
        search_path = _environment(spec, ident).get("PATH")
        program = spec.command.program  # "": only the shell knows; none found: its spawn fails
        named = proc.program_file(program, search_path, spec.directory) if program else None
        uid = os.geteuid() if ident.uid is None else ident.uid
        found = pidfd.adopt(path, uid, frozenset({named} if named else ()), taken)
        if isinstance(found, str):
            return NotAdopted(name, found)
        pid, fd = found
        self.watch_adopted(name, pid, fd)
        return Adopted(name, pid)

    def watch_adopted(self, name: str, pid: int, fd: int) -> None:
        self.adopted[name] = (pid, fd)
        self.selector.register(fd, selectors.EVENT_READ, lambda _: self._on_adopted_exit(name))

    def _resume(self) -> None:
        """After ctl reexec, in place of Boot: say so, start again the checks
        that died with the old pidone, reap what exited meanwhile."""
        assert self.resumed is not None
        self.relay.event("pidone", self.resumed)
        acted_on: set[str] = set()
        for action in self.core.resumed():
            try:
                self._execute(action, acted_on)
            except Exception:
                self._log_bug(f"carrying out {action}")
        for p in self.core.snapshot().processes:
            if p.pid is not None:
                self._oom_sample(p.pid)
        self._reap()
        self.feed(Tick())

    def _on_adopted_exit(self, name: str) -> None:
        pid, fd = self.adopted.pop(name)
        self.selector.unregister(fd)
        os.close(fd)
        self.feed(AdoptedExited(name, pid))

    def _send(self, name: str, pid: int, signum: int, group: bool) -> bool:
        """An adopted daemon through its pidfd (its pid may be reused once it
        is gone: it is no child of ours to keep it), anything else by pid."""
        adopted = self.adopted.get(name)
        if adopted is not None and adopted[0] == pid:
            return pidfd.send_signal(pid, adopted[1], signum, group=group)
        return signals.send_signal(pid, signum, group=group)

    def _fix_socket(self, name: str, sock: str) -> EventType:
        spec = self.config.sockets[sock]
        uid, gid = socket_owner(spec)
        try:
            fixed = sockets.fix_socket(
                self.socket_dirs[sock],
                os.path.basename(spec.path),
                uid=uid,
                gid=gid,
                mode=spec.mode,
            )
        except (OSError, sockets.UnsafePath) as exc:
            return SocketNotFixed(name, sock, f"socket {sock}: {exc}")
        return SocketFixed(name, sock) if fixed else SocketNotFixed(name, sock)


def _environment(spec: ProcessSpec, ident: identity.Identity) -> dict[str, str]:
    """The child's environment: HOME, USER and LOGNAME of the user it runs
    as, unless configured explicitly or `clear_env` asks for nothing extra."""
    if spec.clear_env:
        return dict(spec.env)
    return {**spec.env, **ident.environment(), **spec.environment}


def socket_owner(sock: SocketSpec) -> tuple[int, int]:
    """(uid, gid) for a socket: its owner (default pidone's user: root, or
    the one a non-root pidone runs as), its group (default the owner's
    primary group, or pidone's)."""
    uid, gid = os.geteuid(), os.getegid()
    if sock.owner is not None:
        uid, primary, _, _ = identity.user_id(sock.owner)
        gid = primary if primary is not None else uid
    if sock.group is not None:
        gid = identity.group_id(sock.group)
    return uid, gid


def run(config: Config, reload: Callable[[], Config] | None = None) -> int:
    loop = Loop(config, reload=reload)
    if os.environ.get("PIDONE_REEXEC_FD") is not None:  # ctl reexec's new pidone
        from pidone.runtime import reexec

        if reexec.resume(loop):
            return loop.run()
        loop = Loop(config, reload=reload)  # afresh: nothing of the resume that failed
    loop.prepare_runtime_dir()  # before anything starts; UnsafePath stops us here
    loop.prepare_sockets()
    return loop.run()
