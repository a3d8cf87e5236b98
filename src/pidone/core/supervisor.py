"""The supervisor core, pure: events in, actions out, no syscalls.

    core = Supervisor(config, now)
    actions = core.handle(event, now)       # Boot, Spawned, Reaped, Ready, ...
    core.next_deadline()                     # when to call handle(Tick(), now)
    core.snapshot()                          # immutable view for ctl / metrics

The loop (loop.py) carries the actions out and feeds what happened back in
as events. Every state change goes through states.transition(), so an event
that makes no sense in a state fails loudly.

After each event, `_reconcile` walks the processes in start order and moves
each one toward what it should be doing. The rules:

* A process *should run* when it is wanted (not stopped by the operator, not
  shutting down, not being restarted on purpose) and every process it is
  `after` is up (or, for a one-shot job, has completed with status 0), except
  that a process with `restart_dependents = false` ignores its dependencies
  going down once it runs.
* A process that should not run is stopped, but only once every process that
  depends on it is down: stops go in reverse dependency order.
* A process that should run and is STOPPED gets START; a STARTING one is
  spawned as soon as everything it is `after` is ready.
* A process that exited on its own is restarted per its policy: the first
  restart at once, then after delays that double from backoff_initial to
  backoff_max; fatal_after exits within fatal_window make it FATAL. An
  instance that stayed READY for backoff_reset seconds clears the count: a
  stable process is restarted at once every time, only a crash loop backs
  off. Its dependents go down first (they no longer "should run") and come
  back once it is ready again.
* Shutdown (SIGTERM/SIGINT, ctl shutdown, a `control` process exiting, or
  nothing left to run: every process EXITED or FATAL, never one the
  operator stopped) stops everything in reverse order, each with its own
  stop signal and SIGCONT, and timeout (then SIGKILL to its group and pid),
  then sweeps whatever is left in the container: SIGTERM, then SIGKILL
  after sweep_timeout.
* A stop Collects the main pid's tree first (and again at its timeout);
  once the main pid is reaped, KillLeftovers ends what is left of it.
* A failure to spawn is an exit (status 127), counted like any other.
* In the actions one event produces, Spawn and Kill come first: the lines
  that log them follow, so that a restart or a signal never waits for them.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pidone.config import graph
from pidone.config.specs import Config, ProcessSpec
from pidone.core.snapshot import ExitInfo, ProcessStatus, Snapshot
from pidone.core.states import AT_REST, HAS_PID, Event, ProcessState, transition
from pidone.signames import signal_name
from pidone.system.reap import decode_status  # pure; see tests/unit/test_layers.py

S = ProcessState
SWEEP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL to leftover processes

# --- events (what happened) ----------------------------------------------------


@dataclass(frozen=True)
class Boot:
    """pidone is up: start everything."""


@dataclass(frozen=True)
class Tick:
    """Time passed; deadlines may be due."""


@dataclass(frozen=True)
class Spawned:
    name: str
    pid: int


@dataclass(frozen=True)
class SpawnFailed:
    name: str
    reason: str


@dataclass(frozen=True)
class Reaped:
    """waitpid() returned this child (any child: orphans are ignored here)."""

    pid: int
    status: int  # the raw wait status


@dataclass(frozen=True)
class NoChildren:
    """waitpid() says there is no child left at all."""


@dataclass(frozen=True)
class Ready:
    name: str
    pid: int


@dataclass(frozen=True)
class PidfileRead:
    """The daemonized main process of NAME wrote PID to its pidfile."""

    name: str
    pid: int


@dataclass(frozen=True)
class SocketFixed:
    """The socket NAME's process created has the configured owner and mode now."""

    name: str
    socket: str


@dataclass(frozen=True)
class SignalReceived:
    signum: int


@dataclass(frozen=True)
class Request:
    """An operator's command (pidone ctl): start, stop, restart, reload,
    signal or shutdown, for the named processes."""

    command: str
    names: tuple[str, ...] = ()
    signum: int = 0


EventType = (Boot | Tick | Spawned | SpawnFailed | Reaped | NoChildren | Ready | PidfileRead) | (
    SignalReceived | Request | SocketFixed
)

# --- actions (what the loop must do) ---------------------------------------------


@dataclass(frozen=True)
class Spawn:
    name: str


@dataclass(frozen=True)
class Kill:
    name: str
    pid: int
    signum: int
    group: bool = False  # signal the process group (pgid == pid) instead


@dataclass(frozen=True)
class StartProbe:
    name: str
    pid: int


@dataclass(frozen=True)
class CancelProbe:
    name: str


@dataclass(frozen=True)
class WatchPidfile:
    name: str
    path: str


@dataclass(frozen=True)
class WatchSocket:
    """Wait for NAME to create `socket`'s file, then fix its owner and mode."""

    name: str
    socket: str


@dataclass(frozen=True)
class Collect:
    """Remember NAME's main pid's live descendants (with their start times):
    they belong to the instance being stopped."""

    name: str
    pid: int


@dataclass(frozen=True)
class KillLeftovers:
    """NAME's instance is reaped: SIGKILL what Collect remembered and is
    still the same process (a session of its own escapes the group kill),
    and with `group` (an instance that died unplanned, its main pid the
    leader pidone made) whatever is left in that process group."""

    name: str
    group: int | None = None


@dataclass(frozen=True)
class Log:
    name: str  # a process name, or "pidone"
    message: str
    error: bool = False  # to stderr


@dataclass(frozen=True)
class Sweep:
    """Signal every process left in the container (our descendants)."""

    signum: int


@dataclass(frozen=True)
class Exit:
    code: int


Action = (
    Spawn | Kill | StartProbe | CancelProbe | WatchPidfile | WatchSocket | Collect | KillLeftovers
) | (Log | Sweep | Exit)


def spawns_and_signals_first(actions: list[Action]) -> list[Action]:
    """The batch with its Spawn and Kill actions (and the Collect and
    KillLeftovers that go with a stop) moved to the front, each
    part keeping its own order. The loop carries a batch out in order, and a
    Log costs a write to pidone's output and a look at the process's pipes:
    a restart or a forwarded signal must not wait for the lines that tell of
    it. (Sweep stays where it is: it reaps, which feeds new events at once.)"""
    urgent = (Spawn, Collect, Kill, KillLeftovers)  # Collect walks the tree before it is signalled
    first = [a for a in actions if isinstance(a, urgent)]
    if not first or len(first) == len(actions):
        return actions
    return first + [a for a in actions if not isinstance(a, urgent)]


# What ctl and metrics see (Snapshot, ProcessStatus) is in core/snapshot.py.


# --- the core ---------------------------------------------------------------------


@dataclass
class _Proc:
    spec: ProcessSpec
    state: ProcessState = S.STOPPED
    wanted: bool = True
    restart_pending: bool = False  # ctl restart: stop, then start again
    restart_reason: str = ""  # why the next spawn is a restart
    pid: int | None = None
    launcher_pid: int | None = None  # pidfile mode: the pid we spawned
    spawn_requested: bool = False
    spawned_once: bool = False
    started_at: float | None = None
    ready_at: float | None = None  # when this instance became READY
    settle_at: float | None = None
    backoff_until: float = 0.0
    stop_deadline: float | None = None
    killed: bool = False  # needed SIGKILL at its last stop
    awaiting_sockets: set[str] = field(default_factory=set)  # not fixed yet: not ready yet
    ready_deferred: bool = False  # its check passed while sockets were awaited
    failures: list[float] = field(default_factory=list)
    restarts_by_reason: dict[str, int] = field(default_factory=dict)
    exits_by_status: dict[int, int] = field(default_factory=dict)
    last_exit: ExitInfo | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def move(self, event: Event) -> None:
        self.state = transition(self.state, event)


def backoff_delay(failures: int, initial: float, cap: float) -> float:
    """The wait before restart number `failures` (1-based): none for the
    first, then initial doubling up to cap. The exponent is bounded so that
    thousands of failures cannot overflow (a float product saturates to inf,
    which min() turns into the cap)."""
    if failures <= 1:
        return 0.0
    return min(cap, initial * 2.0 ** min(failures - 2, 1000))


class Supervisor:
    def __init__(self, config: Config, now: float) -> None:
        self.config = config
        self.settings = config.settings
        self.order = [name for wave in config.start_waves for name in wave]
        self.procs = {name: _Proc(config.processes[name]) for name in self.order}
        self.deps = config.deps
        self.dependents = {
            name: {d for d in self.order if name in self.deps[d]} for name in self.order
        }
        self.all_dependents = {name: graph.dependents(self.deps, name) for name in self.order}
        self.booted = False
        self.shutting_down = False
        self.exit_code: int | None = None  # forced by a control process
        self.unclean: list[str] = []  # why the shutdown was not clean
        self.sweep_phase = ""  # "", "term", "kill", "done"
        self.sweep_deadline: float | None = None
        self.now = now
        self._memo: dict[str, bool] = {}

    # -- public API --

    def handle(self, event: EventType, now: float) -> list[Action]:
        self.now = now
        out: list[Action] = []
        match event:
            case Boot():
                self.booted = True
                out.append(Log("pidone", f"starting {len(self.order)} processes"))
            case Tick():
                pass
            case Spawned(name, pid):
                self._on_spawned(self.procs[name], pid, out)
            case SpawnFailed(name, reason):
                self._on_spawn_failed(self.procs[name], reason, out)
            case Reaped(pid, status):
                self._on_reaped(pid, status, out)
            case NoChildren():
                if self.sweep_phase in ("term", "kill"):
                    self.sweep_phase = "done"
            case Ready(name, pid):
                self._on_ready(self.procs[name], pid, out)
            case PidfileRead(name, pid):
                self._on_pidfile(self.procs[name], pid, out)
            case SignalReceived(signum):
                self._on_signal(signum, out)
            case SocketFixed(name, sock):
                self._on_socket_fixed(self.procs[name], sock, out)
            case Request():
                self._on_request(event, out)
        self._reconcile(out)
        return spawns_and_signals_first(out)

    def next_deadline(self) -> float | None:
        """The earliest time at which a Tick has something to do."""
        times: list[float] = []
        for p in self.procs.values():
            if p.state is S.BACKOFF:
                times.append(p.backoff_until)
            elif p.state is S.STOPPING and p.stop_deadline is not None:
                times.append(p.stop_deadline)
            elif p.state is S.RUNNING and p.settle_at is not None:
                times.append(p.settle_at)
        if self.sweep_deadline is not None and self.sweep_phase == "term":
            times.append(self.sweep_deadline)
        return min(times) if times else None

    def snapshot(self) -> Snapshot:
        return Snapshot(
            tuple(
                ProcessStatus(
                    name=p.name,
                    state=p.state,
                    ready=p.state is S.READY,
                    pid=p.pid,
                    started_at=p.started_at,
                    restarts=sum(p.restarts_by_reason.values()),
                    restarts_by_reason=dict(p.restarts_by_reason),
                    exits_by_status=dict(p.exits_by_status),
                    last_exit=p.last_exit,
                    has_ready_check=p.spec.ready.kind != "settle",
                    completed=self._completed(p),
                )
                for p in self.procs.values()
            ),
            self.shutting_down,
        )

    def pid_owner(self, pid: int) -> str | None:
        for p in self.procs.values():
            if pid in (p.pid, p.launcher_pid):
                return p.name
        return None

    # -- events --

    def _on_spawned(self, p: _Proc, pid: int, out: list[Action]) -> None:
        p.spawn_requested = False
        if p.state is not S.STARTING:  # stopped while the spawn was on its way
            out.append(Kill(p.name, pid, signal.SIGKILL, group=True))
            return
        p.move(Event.SPAWNED)
        if p.spawned_once:
            reason = p.restart_reason or "crash"
            p.restarts_by_reason[reason] = p.restarts_by_reason.get(reason, 0) + 1
        p.spawned_once = True
        p.restart_reason = ""
        p.started_at = self.now
        p.ready_at = None
        p.killed = False
        if p.spec.pidfile:
            p.launcher_pid, p.pid = pid, None
            out.append(WatchPidfile(p.name, p.spec.pidfile))
        else:
            p.pid = pid
        out.append(Log(p.name, f"started: pid {pid}"))
        p.ready_deferred = False
        p.awaiting_sockets = {s for s in p.spec.sockets if not self.config.sockets[s].listen}
        for sock in sorted(p.awaiting_sockets):
            out.append(WatchSocket(p.name, sock))
        ready = p.spec.ready
        if ready.kind == "settle":
            seconds = ready.seconds if ready.seconds is not None else self.settings.settle_time
            p.settle_at = self.now + seconds
        else:
            p.settle_at = None
            out.append(StartProbe(p.name, pid))

    def _on_spawn_failed(self, p: _Proc, reason: str, out: list[Action]) -> None:
        p.spawn_requested = False
        p.move(Event.SPAWN_FAILED)
        out.append(Log(p.name, f"cannot start: {reason}", error=True))
        p.last_exit = ExitInfo(127, 0, self.now, planned=False)
        self._after_unplanned_exit(p, 127, out)

    def _on_reaped(self, pid: int, wait_status: int, out: list[Action]) -> None:
        status, signum = decode_status(wait_status)
        for p in self.procs.values():
            if pid == p.launcher_pid and p.pid is None and p.state in HAS_PID:
                p.launcher_pid = None
                if status == 0:  # daemonized: the real main pid comes from the pidfile
                    return
                self._on_main_exit(p, status, signum, out)
                return
            if pid == p.pid:
                if pid == p.launcher_pid:
                    p.launcher_pid = None
                self._on_main_exit(p, status, signum, out)
                return

    def _on_main_exit(self, p: _Proc, status: int, signum: int, out: list[Action]) -> None:
        planned = p.state is S.STOPPING
        main = p.pid
        p.move(Event.EXITED)
        if p.ready_at is not None and self.now - p.ready_at >= self.settings.backoff_reset:
            p.failures.clear()  # it stayed up and ready: what came before was no crash loop
        p.ready_at = None
        p.pid = None
        p.stop_deadline = None
        p.settle_at = None
        p.awaiting_sockets.clear()
        p.ready_deferred = False
        p.exits_by_status[status] = p.exits_by_status.get(status, 0) + 1
        p.last_exit = ExitInfo(status, signum, self.now, planned)
        out.append(CancelProbe(p.name))
        how = f"signal {signal_name(signum)}" if signum else f"status {status}"
        if planned:
            out.append(KillLeftovers(p.name))
            out.append(Log(p.name, f"stopped ({how})"))
            clean = (
                status == 0 or signum == p.spec.stop_signal or status == 128 + p.spec.stop_signal
            )
            if self.shutting_down and (p.killed or not clean):
                why = "killed after its stop timeout" if p.killed else f"exited with {how}"
                self.unclean.append(f"{p.name} {why}")
            if p.restart_pending:
                p.restart_pending = False
            return
        if main is not None and not p.spec.pidfile:
            # Its group outlives a crash (celery's pool, uwsgi's workers): end
            # it, as systemd does, before any new instance. Only a group
            # pidone made, whose leader was reaped just now: a daemon's is
            # not known to be its own.
            out.append(KillLeftovers(p.name, group=main))
        out.append(Log(p.name, f"exited with {how}", error=status != 0))
        if p.spec.control and not self.shutting_down:
            out.append(Log("pidone", f"control process {p.name} exited: stopping everything"))
            self.exit_code = status
            self._begin_shutdown(out)
            return
        self._after_unplanned_exit(p, status, out)

    def _after_unplanned_exit(self, p: _Proc, status: int, out: list[Action]) -> None:
        """EXITED (or failed to spawn): restart per policy, give up, or stay."""
        if self.shutting_down or not p.wanted:
            return
        policy = p.spec.restart
        if policy == "never" or (policy == "on-failure" and status == 0):
            out.append(Log(p.name, f"not restarting (restart = {policy!r})"))
            return
        window = self.settings.fatal_window
        p.failures = [t for t in p.failures if self.now - t < window] + [self.now]
        n = len(p.failures)
        if n >= self.settings.fatal_after:
            p.move(Event.GAVE_UP)
            out.append(
                Log(p.name, f"FATAL: exited {n} times within {window:g} s; not restarting", True)
            )
            return
        delay = backoff_delay(n, self.settings.backoff_initial, self.settings.backoff_max)
        p.move(Event.RETRY)
        p.backoff_until = self.now + delay
        p.restart_reason = "crash"
        bound = [d for d in self._bound_dependents(p.name) if self.procs[d].state in HAS_PID]
        then = f"; stopping {', '.join(bound)} first" if bound else ""
        out.append(Log(p.name, f"restarting in {delay:g} s{then}"))

    def _on_ready(self, p: _Proc, pid: int, out: list[Action]) -> None:
        if p.state is not S.RUNNING or pid not in (p.pid, p.launcher_pid):
            return  # a late answer for an instance that is gone
        self._become_ready(p, out)

    def _become_ready(self, p: _Proc, out: list[Action]) -> None:
        p.settle_at = None
        if p.awaiting_sockets:  # nginx must be able to use it before we say ready
            p.ready_deferred = True
            return
        if p.spec.pidfile and p.pid is None:  # not ready before we know (and trust) its pid
            p.ready_deferred = True
            return
        p.move(Event.READY_OK)
        p.ready_at = self.now
        out.append(Log(p.name, "ready"))

    def _on_socket_fixed(self, p: _Proc, sock: str, out: list[Action]) -> None:
        if sock not in p.awaiting_sockets:
            return
        p.awaiting_sockets.discard(sock)
        out.append(Log(p.name, f"socket {sock}: owner, group and mode fixed"))
        if not p.awaiting_sockets and p.ready_deferred and p.state is S.RUNNING:
            p.ready_deferred = False
            self._become_ready(p, out)

    def _on_pidfile(self, p: _Proc, pid: int, out: list[Action]) -> None:
        if p.state not in HAS_PID or p.pid is not None:
            return
        p.pid = pid
        out.append(Log(p.name, f"following pid {pid} from {p.spec.pidfile}"))
        if p.ready_deferred and p.state is S.RUNNING and not p.awaiting_sockets:
            p.ready_deferred = False
            self._become_ready(p, out)
        if p.state is S.STOPPING:  # asked to stop before we knew whom to signal
            self._send_stop_signal(p, pid, out)

    def _on_signal(self, signum: int, out: list[Action]) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            if self.shutting_down:
                out.append(Log("pidone", "already stopping; SIGKILL pidone to force"))
                return
            out.append(Log("pidone", f"received {signal_name(signum)}: stopping"))
            self._begin_shutdown(out)
        elif signum == signal.SIGHUP:
            self._reload(self.order, out)
        else:
            for p in self._running():
                if p.pid is not None:
                    out.append(Kill(p.name, p.pid, signum))

    def _on_request(self, req: Request, out: list[Action]) -> None:
        names = self._expand(req.names)
        match req.command:
            case "shutdown":
                if not self.shutting_down:
                    out.append(Log("pidone", "shutdown requested"))
                    self._begin_shutdown(out)
            case "start":
                for n in names:
                    p = self.procs[n]
                    p.wanted = True
                    p.failures.clear()
                    if p.spawned_once and p.state not in HAS_PID:
                        p.restart_reason = "manual"
                    if p.state in (S.EXITED, S.FATAL, S.BACKOFF):
                        p.move(Event.START)
            case "stop":
                for n in names:
                    self.procs[n].wanted = False
            case "restart":
                for n in names:
                    p = self.procs[n]
                    p.wanted = True
                    p.failures.clear()
                    p.restart_reason = "manual"
                    if p.state in HAS_PID:
                        p.restart_pending = True
                    elif p.state in (S.EXITED, S.FATAL, S.BACKOFF):
                        p.move(Event.START)
            case "reload":
                self._reload(names, out)
            case "signal":  # the main pid only: not a launcher still writing its pidfile
                for p in self._running():
                    if p.name in names and p.pid is not None:
                        out.append(Kill(p.name, p.pid, req.signum))
            case _:
                raise ValueError(f"unknown request {req.command!r}")

    # -- helpers --

    def _expand(self, names: Sequence[str]) -> list[str]:
        """'all' -> every process in start order; otherwise as given (validated)."""
        if "all" in names:
            return list(self.order)
        unknown = [n for n in names if n not in self.procs]
        if unknown:
            raise KeyError(", ".join(unknown))
        return [n for n in self.order if n in names]

    def _running(self) -> Iterable[_Proc]:
        return (p for p in self.procs.values() if p.state in HAS_PID and p.pid is not None)

    def _signal_pid_or_none(self, p: _Proc) -> int | None:
        return p.pid if p.pid is not None else p.launcher_pid

    def _reload(self, names: Iterable[str], out: list[Action]) -> None:
        for n in names:
            p = self.procs[n]
            if p.state in HAS_PID and p.pid is not None:
                out.append(Log(n, f"reload: {signal_name(p.spec.reload_signal)}"))
                out.append(Kill(n, p.pid, p.spec.reload_signal))

    def _bound_dependents(self, name: str) -> list[str]:
        """Dependents (transitively) that go down when NAME goes down."""
        return [d for d in self.all_dependents[name] if self.procs[d].spec.restart_dependents]

    def _begin_shutdown(self, out: list[Action]) -> None:
        self.shutting_down = True
        for p in self.procs.values():
            p.wanted = False
            if p.state is S.FATAL:
                self.unclean.append(f"{p.name} is FATAL")

    def _completed(self, d: _Proc) -> bool:
        """A one-shot job (not restarted on success) that has exited 0."""
        clean = d.state is S.EXITED and d.last_exit is not None and d.last_exit.status == 0
        return clean and d.spec.restart != "always"

    def _satisfied(self, dep: str) -> bool:
        """Can a process that is `after` dep start now?"""
        d = self.procs[dep]
        return d.state is S.READY or self._completed(d)

    def _up(self, dep: str) -> bool:
        """Is dep still there for the processes that run after it?"""
        d = self.procs[dep]
        running = d.state in (S.RUNNING, S.READY) and self._should_run(d)
        return running or self._completed(d)

    def _should_run(self, p: _Proc) -> bool:
        # Memoized per _step: a diamond-shaped graph would otherwise be walked
        # once per path through it.
        known = self._memo.get(p.name)
        if known is None:
            known = self._memo[p.name] = self._compute_should_run(p)
        return known

    def _compute_should_run(self, p: _Proc) -> bool:
        if not p.wanted or p.restart_pending or self.shutting_down:
            return False
        if p.state in (S.RUNNING, S.READY) and not p.spec.restart_dependents:
            return True  # opted out of being cycled with its dependencies
        return all(self._up(dep) for dep in self.deps[p.name])

    def _has_pid_dependents(self, p: _Proc) -> bool:
        """Must p wait for processes after it to stop before it stops?"""
        pool = self.all_dependents[p.name] if self.shutting_down else self._bound_dependents(p.name)
        return any(self.procs[d].state in HAS_PID or self.procs[d].spawn_requested for d in pool)

    def _stop(self, p: _Proc, out: list[Action]) -> None:
        p.move(Event.STOP)
        if p.state is not S.STOPPING:
            return
        p.stop_deadline = self.now + p.spec.stop_timeout
        out.append(CancelProbe(p.name))
        pid = self._signal_pid_or_none(p)
        if pid is None:  # a daemon whose pidfile we have not read yet
            out.append(Log(p.name, "stopping: waiting for its pidfile to know whom to signal"))
            return
        group = p.spec.stop_target == "group"
        name = signal_name(p.spec.stop_signal)
        out.append(Log(p.name, f"stopping: {name} to {'group ' if group else ''}{pid}"))
        self._send_stop_signal(p, pid, out)

    def _send_stop_signal(self, p: _Proc, pid: int, out: list[Action]) -> None:
        """The stop signal, then SIGCONT to the same target (as systemd and s6
        do): a process stopped by SIGSTOP runs its handler instead of waiting
        for the SIGKILL. Its tree is remembered first, for KillLeftovers."""
        group = p.spec.stop_target == "group"
        out.append(Collect(p.name, pid))
        out.append(Kill(p.name, pid, p.spec.stop_signal, group=group))
        if p.spec.stop_signal != signal.SIGCONT:
            out.append(Kill(p.name, pid, signal.SIGCONT, group=group))

    def _reconcile(self, out: list[Action]) -> None:
        if not self.booted:
            return
        changed = True
        while changed:  # a change can unblock another process: repeat until still
            changed = False
            for name in self.order:
                changed |= self._step(self.procs[name], out)
        if self.shutting_down or self._nothing_left_to_run():
            self._finish(out)

    def _step(self, p: _Proc, out: list[Action]) -> bool:
        """Move p one step toward what it should be doing; True if it moved."""
        now = self.now
        state = p.state
        self._memo.clear()
        should_run = self._should_run(p)
        if state is S.STOPPING:
            if p.stop_deadline is not None and now >= p.stop_deadline and not p.killed:
                p.move(Event.STOP_TIMEOUT)
                p.killed = True
                pid = self._signal_pid_or_none(p)
                if pid is None:  # its pidfile never came: nothing left to wait for
                    out.append(Log(p.name, "stop timeout: no pid from its pidfile", error=True))
                    self._on_main_exit(p, 128 + signal.SIGKILL, signal.SIGKILL, out)
                    return True
                out.append(Log(p.name, f"stop timeout: SIGKILL to group {pid}", error=True))
                out.append(Collect(p.name, pid))  # what it forked since the stop began
                out.append(Kill(p.name, pid, signal.SIGKILL, group=True))
            return False
        if state in (S.RUNNING, S.READY):
            if state is S.RUNNING and p.settle_at is not None and now >= p.settle_at:
                self._become_ready(p, out)
                return True
            if not should_run and not self._has_pid_dependents(p):
                self._stop(p, out)
                return True
            return False
        if state is S.STARTING:
            if not (p.wanted and not self.shutting_down):
                p.move(Event.STOP)
                return True
            if not p.spawn_requested and all(self._satisfied(d) for d in self.deps[p.name]):
                p.spawn_requested = True
                out.append(Spawn(p.name))
            return False
        if state is S.BACKOFF:
            if not p.wanted or self.shutting_down:
                p.move(Event.STOP)
                return True
            if now >= p.backoff_until and not self._has_pid_dependents(p):
                p.move(Event.BACKOFF_ELAPSED)
                return True
            return False
        if state is S.STOPPED and p.wanted and not p.restart_pending and not self.shutting_down:
            p.move(Event.START)  # STARTING waits for its dependencies to be ready
            if p.spawned_once and not p.restart_reason:
                p.restart_reason = "dependency"
            return True
        return False

    def _nothing_left_to_run(self) -> bool:
        """Every process has exited for good (policy or FATAL): nothing to do.
        A process the operator stopped is not done: they may start it again."""
        return all(p.state in (S.EXITED, S.FATAL) for p in self.procs.values())

    def _finish(self, out: list[Action]) -> None:
        """Everything supervised is at rest: sweep the leftovers, then exit."""
        if any(p.state not in AT_REST for p in self.procs.values()):
            return
        if not self.shutting_down:  # all exited for good on their own
            out.append(Log("pidone", "no process left to run: exiting"))
            self._begin_shutdown(out)
            for p in self.procs.values():
                if p.state is S.EXITED and p.last_exit and p.last_exit.status != 0:
                    self.unclean.append(f"{p.name} exited with status {p.last_exit.status}")
        if self.sweep_phase == "":
            self.sweep_phase = "term"
            self.sweep_deadline = self.now + SWEEP_TIMEOUT
            out.append(Sweep(signal.SIGTERM))
        elif self.sweep_phase == "term" and self.sweep_deadline is not None:
            if self.now >= self.sweep_deadline:
                self.sweep_phase = "kill"
                out.append(Log("pidone", "leftover processes ignored SIGTERM: SIGKILL", True))
                out.append(Sweep(signal.SIGKILL))
        elif self.sweep_phase == "done":
            self.sweep_phase = "exited"
            code = self.exit_code
            if code is None:
                code = 1 if self.unclean else 0
            for why in self.unclean:
                out.append(Log("pidone", f"unclean stop: {why}", error=True))
            out.append(Log("pidone", f"exiting with status {code}"))
            out.append(Exit(code))
