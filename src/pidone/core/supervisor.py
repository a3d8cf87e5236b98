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

* A process *should run* when its goal is UP (not DOWN: stopped by the
  operator or shutting down; not CYCLE: a ctl restart under way, which
  becomes UP once the old instance is reaped) and every process it is
  `after` is up (or, for a one-shot job, has completed with status 0), except
  that a process with `restart_dependents = false` ignores its dependencies
  going down once it runs.
* A process that should not run is stopped, but only once every process that
  depends on it is down: stops go in reverse dependency order.
* A process that should run and is STOPPED gets START; a STARTING one is
  spawned as soon as everything it is `after` is ready.
* A process that exited on its own is restarted per its policy: the first
  restart at once, then after delays that double from backoff_initial to
  backoff_max; fatal_after exits within fatal_window make it FATAL (each
  its own, [pidone]'s by default; with on_fatal = "exit", FATAL stops
  everything and pidone exits ON_FATAL_STATUS). An exit with one of its
  success_exit_codes is a success ("on-failure", a one-shot's completion). An
  instance that stayed READY for backoff_reset seconds clears the count: a
  stable process is restarted at once every time, only a crash loop backs
  off. Its dependents go down first (they no longer "should run") and come
  back once it is ready again.
* Shutdown (SIGTERM/SIGINT, ctl shutdown, a `control` process exiting, or
  nothing left to run: every process EXITED or FATAL, never one the
  operator stopped) stops everything in reverse order, each with its own
  stop signal and SIGCONT, and timeout (then SIGKILL to its group and pid),
  then sweeps whatever is left in the container: SIGTERM, then SIGKILL
  after sweep_timeout. With a shutdown_delay, a SIGTERM drains first
  (Phase.DRAINING: everything runs, /readyz 503) and the stop begins when
  the delay is over; a second SIGTERM or a SIGINT stops at once.
* A stop Collects the main pid's tree first (and again at its timeout);
  once the main pid is reaped, KillLeftovers ends what is left of it.
* A failure to spawn is an exit (status 127), counted like any other.
* Not READY within its ready_timeout of its spawn: stopped as by ctl stop
  (stop signal, SIGKILL after stop_timeout), and once reaped a failed start
  (EXITED_UNREADY: the policy acts as at an exit; restart reason
  "ready_timeout"), whatever its status.
* Beside its state, each instance's way up has its own small table
  (states.LAUNCHES): a Spawn on its way (sent once; SIGKILLed on arrival if
  the process was stopped meanwhile), a check passed while its sockets or
  its pid are still awaited.
* In the actions one event produces, Spawn and Kill come first: the lines
  that log them follow, so that a restart or a signal never waits for them.
* A process with `autostart = false` begins with its goal DOWN (STOPPED,
  not `started`: left out of "everything ready") until a ctl start or
  restart, which also starts what it is `after` that is down on purpose.
* Touched (a `touch` file, from the loop's inotify): the process is
  restarted as by ctl restart, or gets its touch_signal; at most once per
  TOUCH_WINDOW, the touches within it making one more at its end.
* Liveness and watchdog: a READY process with `alive` gets StartLiveness;
  alive_failures Alive errors in a row restart it as ctl restart does
  (reason "liveness"). One with `watchdog` must send WATCHDOG=1
  (WatchdogPing) within that many seconds of its spawn and of each ping,
  or it is restarted so too (reason "watchdog"). Neither counts as a crash.
* A ctl Request with a ticket is answered by one Reply: status, reload,
  signal and shutdown at once; start, stop, restart and wait-ready once
  requests.judge() says done, failed or late (at its deadline, a Tick), or
  "pidone is exiting" at the Exit.
* Reconfigure (ctl update): the configuration read again, merged
  (core/reconfig.py) and diffed (config/diff.py). What was added is started
  as at the boot (autostart honoured, after what it is after); what was
  removed is stopped (dependents first, each with its own stop signal and
  timeout) and, once at rest, forgotten (Forget: gone from status and
  metrics); what changed a key that defines the instance (or uses a changed
  socket) is restarted as by ctl restart, its old instance stopped with its
  old spec, the new one spawned with the new; a change of keys only the
  supervisor reads is applied in place, no signal. Nothing else is touched.
  Sockets: CloseSocket for the removed and changed, Reconfigured (the loop
  takes the new config), OpenSocket for the added and changed. Refused
  during the shutdown; "nothing to do" when nothing differs.
* A daemon's pidfile and a socket its process creates are looked at when
  the core says (ReadPidfile, FixSocket at next_deadline()); the answers
  (PidfileRead/PidfileNotRead, SocketFixed/SocketNotFixed) schedule the
  next look, slower after a refusal or a problem, which is logged once.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import ClassVar

from pidone.config import graph
from pidone.config.specs import Config, ProcessSpec
from pidone.core import legion as leasing
from pidone.core.requests import (
    DEFAULT_WAIT,
    STOP_GRACE,
    WAITED,
    Command,
    Outcome,
    Wait,
    combine,
    judge,
    signalled,
)
from pidone.core.snapshot import ExitInfo, LegionStatus, ProcessStatus, Snapshot
from pidone.core.states import (
    AT_REST,
    HAS_PID,
    SWEEPING,
    Event,
    Goal,
    Launch,
    LaunchEvent,
    Phase,
    PhaseEvent,
    ProcessState,
    RestartReason,
    next_launch,
    next_phase,
    transition,
)
from pidone.signames import signal_name

S = ProcessState
# The Supervisor's attributes that change (besides procs), saved by handle().
_CORE_STATE: tuple[str, ...] = ("booted", "phase", "exit_code", "unclean", "sweep_deadline")
_CORE_STATE += ("waits", "now", "adopting", "leases", "lease_changes", "legion_told")
_CORE_STATE += ("drain_until",)
# replaced (never changed in place) by a Reconfigure: saved by reference
_CORE_STATE += ("config", "settings", "order", "deps", "dependents", "all_dependents")
_CORE_STATE += ("legion_procs", "touchers")
_NOTIFY_STATE = ("told", "told_ready")  # what Notify said last, and whether READY went
SWEEP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL to leftover processes
PIDFILE_POLL = 0.1  # seconds between looks at a pidfile that is not there yet
PIDFILE_RETRY = 1.0  # seconds between looks at a refused pidfile (its program may fix it)
SOCKET_POLL = 0.05  # seconds between looks for a socket its process has yet to create
SOCKET_RETRY = 1.0  # seconds between looks at a socket path that is wrong (warned once)
NOTIFY_NAMES = 5  # processes a Notify status names as not ready, at most


# After a touch acts (restart, or touch_signal), touches for this long are
# one more action at its end: a burst (a deploy touching 1000 times) is
# one or two restarts, as uWSGI's once-a-second look at the file; the last
# touch is never lost.
TOUCH_WINDOW = 1.0


# The exit status of an adopted daemon, which only its parent can learn:
# not a success for `restart = "on-failure"`; after a stop pidone asked
# for (and no SIGKILL), a clean stop.
UNKNOWN_STATUS = -1

# pidone's exit status when a process with on_fatal = "exit" became FATAL:
# a failure even if its last exit was 0 (an orchestrator must replace the
# container), and not 128+N, which would say pidone was killed by signal N.
ON_FATAL_STATUS = 1

# --- events (what happened) ----------------------------------------------------


@dataclass(frozen=True)
class Boot:
    """pidone is up: start everything. `adopt`: pidone is not PID 1, so a
    pidfile daemon an earlier pidone left running may be there to adopt."""

    adopt: bool = False


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
    """waitpid() returned this child (any child: orphans are ignored here),
    its wait status decoded by the loop (system.reap.decode_status)."""

    pid: int
    status: int  # shell convention: the exit code, or 128+N when killed by signal N
    signal: int = 0  # the signal that killed it, 0 if it exited
    # How much its memory cgroup's oom_kill counter rose across this death
    # (system.cgroup.OomCounters; 0: not at all, or not known).
    oom_kills: int = 0


@dataclass(frozen=True)
class NoChildren:
    """waitpid() says there is no child left at all."""


@dataclass(frozen=True)
class Ready:
    name: str
    pid: int


@dataclass(frozen=True)
class PidfileRead:
    """The daemonized main process of NAME wrote PID to its pidfile, and
    the trust rule (system.proc.unfollowable) lets pidone follow it."""

    name: str
    pid: int


@dataclass(frozen=True)
class PidfileNotRead:
    """ReadPidfile found no pid to follow yet: `problem` is empty while the
    file is missing or empty (or names a pid gone already: `refused` False),
    else why its pid is refused."""

    name: str
    problem: str = ""
    refused: bool = False


@dataclass(frozen=True)
class Adopted:
    """The Adopt for NAME found its daemon alive (system/pidfd.adopt): PID,
    watched through a pidfd, not a child of ours."""

    name: str
    pid: int


@dataclass(frozen=True)
class NotAdopted:
    """The Adopt for NAME found nothing to adopt: `problem` says why a
    pidfile's live pid is not the daemon's (empty: no file, or a pid gone)."""

    name: str
    problem: str = ""


@dataclass(frozen=True)
class AdoptedExited:
    """NAME's adopted daemon PID is gone (its pidfd said so); status unknown."""

    name: str
    pid: int


@dataclass(frozen=True)
class SocketFixed:
    """The socket NAME's process created has the configured owner and mode now."""

    name: str
    socket: str


@dataclass(frozen=True)
class SocketNotFixed:
    """FixSocket found the socket not there yet (`problem` empty) or could
    not fix it (`problem` says why)."""

    name: str
    socket: str
    problem: str = ""


@dataclass(frozen=True)
class SignalReceived:
    signum: int


@dataclass(frozen=True)
class Request:
    """An operator's command (pidone ctl) for the named processes. With a
    ticket it is answered by one Reply(ticket, ...): at once, or for start,
    stop, restart and wait-ready once done, failed or past its timeout."""

    command: Command
    names: tuple[str, ...] = ()  # ("all",) means every process
    signum: int = 0
    timeout: float | None = None  # a waited request's; None: the default
    ticket: int | None = None


@dataclass(frozen=True)
class Touched:
    """Files of `touch` lists were touched (the loop's inotify): `paths`, or
    with `overflow` (the kernel's queue overflowed) maybe any of them."""

    paths: frozenset[str] = frozenset()
    overflow: bool = False


@dataclass(frozen=True)
class LegionAnswered:
    """Redis's answer (or its absence: reply.error) to a LegionRequest."""

    legion: str
    reply: leasing.Reply


@dataclass(frozen=True)
class Alive:
    """One attempt of NAME's liveness check (for instance PID) ended:
    `error` None if it passed, else why not."""

    name: str
    pid: int
    error: str | None = None


@dataclass(frozen=True)
class WatchdogPing:
    """NAME's instance PID (or a process below it) sent WATCHDOG=1."""

    name: str
    pid: int


@dataclass(frozen=True)
class Reconfigure:
    """ctl update: `config` is the configuration read again (the loop's
    reload); only the processes `names` change, every one if empty. Answered
    by one Reply(ticket) once what it started is ready and what it removed
    is gone (or `timeout`)."""

    config: Config
    names: tuple[str, ...] = ()
    timeout: float | None = None
    ticket: int | None = None


EventType = (
    (Boot | Tick | Spawned | SpawnFailed | Reaped | NoChildren | Ready | PidfileRead)
    | (PidfileNotRead | SignalReceived | Request | SocketFixed | SocketNotFixed | Touched)
    | (Adopted | NotAdopted | AdoptedExited | LegionAnswered | Alive | WatchdogPing)
    | Reconfigure
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
class StartLiveness:
    """NAME is READY: try its `alive` check (alive_delay from now, then every
    alive_interval) on instance PID until CancelProbe."""

    name: str
    pid: int


@dataclass(frozen=True)
class CancelProbe:
    """Both of NAME's checks: readiness and liveness."""

    name: str


@dataclass(frozen=True)
class ReadPidfile:
    """Look at NAME's pidfile once: PidfileRead, or PidfileNotRead. `taken`:
    the pids of the other processes, which it may not name."""

    name: str
    path: str
    taken: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Adopt:
    """Before NAME's first spawn (not PID 1): adopt the live daemon its
    pidfile names, if it is NAME's (Adopted), else NotAdopted, and NAME is
    spawned. `taken`: as ReadPidfile's."""

    name: str
    path: str
    taken: frozenset[int] = frozenset()


@dataclass(frozen=True)
class FixSocket:
    """Look once for `socket`'s file, which NAME creates, and give it its
    owner and mode: SocketFixed, or SocketNotFixed."""

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
    # About an instance that has just ended (exited, stopped): its unfinished
    # last line may be relayed before this one. Of a live one it is not, as
    # the rest of the line may still come.
    ended: bool = False


@dataclass(frozen=True)
class Sweep:
    """Signal every process left in the container (our descendants)."""

    signum: int


@dataclass(frozen=True)
class Exit:
    code: int


@dataclass(frozen=True)
class Reply:
    """The answer to the Request with this ticket."""

    ticket: int
    outcome: Outcome


@dataclass(frozen=True)
class Notify:
    """Tell pidone's own service manager (sd_notify, when it has one) the
    status: "2 of 3 ready, waiting for web (starting)". `ready` (READY=1)
    once, when every process that was started is ready or done; `stopping`
    (STOPPING=1) once, when the shutdown begins."""

    status: str
    ready: bool = False
    stopping: bool = False


@dataclass(frozen=True)
class LegionRequest:
    """Ask the legion's redis (system/redis.py): answered by LegionAnswered
    with send.id, by send.deadline at the latest (else it counts as failed)."""

    legion: str
    send: leasing.Send


@dataclass(frozen=True)
class Reconfigured:
    """ctl update: from now on the loop spawns, probes and fixes sockets
    by `config` (the merged one the core runs too)."""

    config: Config


@dataclass(frozen=True)
class CloseSocket:
    """[socket.NAME] removed or changed: close its listening fd, remove its
    file and let its directory go (before Reconfigured: the old spec's)."""

    name: str


@dataclass(frozen=True)
class OpenSocket:
    """[socket.NAME] added or changed: its directory made safe, bound if
    `listen` (as at the start; after Reconfigured: the new spec's)."""

    name: str


@dataclass(frozen=True)
class Forget:
    """NAME was removed by ctl update and is at rest: drop what the loop
    keeps for it."""

    name: str


Action = (
    (Spawn | Kill | StartProbe | CancelProbe | ReadPidfile | FixSocket | Collect | KillLeftovers)
    | (Log | Sweep | Exit | Reply | Notify | Adopt | LegionRequest | StartLiveness)
    | (Reconfigured | CloseSocket | OpenSocket | Forget)
)


def spawns_and_signals_first(actions: list[Action]) -> list[Action]:
    """The batch with its Spawn and Kill actions (and the Collect and
    KillLeftovers that go with a stop) moved to the front, each
    part keeping its own order. The loop carries a batch out in order, and a
    Log costs a write to pidone's output and a look at the process's pipes:
    a restart or a forwarded signal must not wait for the lines that tell of
    it. (Sweep stays where it is: it reaps, which feeds new events at once.)"""
    # Collect walks the tree before it is signalled; ctl update's config
    # and sockets come before any Spawn that needs them.
    urgent = (CloseSocket, Reconfigured, OpenSocket, Spawn, Collect, Kill, KillLeftovers)
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
    goal: Goal = Goal.UP
    # Asked to run since boot (autostart, or a ctl start or restart): a
    # process with autostart = false does not count for "everything ready"
    # before that.
    started: bool = True
    launch: Launch = Launch.IDLE  # a spawn on its way, a check passed: states.LAUNCHES
    restart_reason: RestartReason | None = None  # why the next spawn is a restart
    pid: int | None = None
    launcher_pid: int | None = None  # pidfile mode: the pid we spawned
    started_at: float | None = None  # of the last instance spawned; None: never spawned
    ready_at: float | None = None  # when this instance became READY
    settle_at: float | None = None
    backoff_until: float = 0.0
    stop_deadline: float | None = None  # STOPPING: when SIGKILL is due; None once sent
    ready_deadline: float | None = None  # RUNNING with a ready_timeout: when it is stopped
    ready_timed_out: bool = False  # this instance is being stopped for its ready_timeout
    spawned_pid: int | None = None  # this instance's: what its readiness check was given
    pidfile_due: float | None = None  # the next ReadPidfile, while its main pid is unknown
    pidfile_refused: bool = False  # a refusal is logged once per instance
    adopted: bool = False  # this instance's pid was adopted: no child of ours
    # socket -> the next FixSocket: not fixed yet, so not ready yet
    awaiting_sockets: dict[str, float] = field(default_factory=dict)
    socket_problems: dict[str, str] = field(default_factory=dict)  # logged once, until it changes
    failures: list[float] = field(default_factory=list)
    restarts_by_reason: dict[str, int] = field(default_factory=dict)
    exits_by_status: dict[int, int] = field(default_factory=dict)
    last_exit: ExitInfo | None = None
    oom_kills: int = 0  # deaths the kernel's OOM killer caused
    touch_quiet_until: float = 0.0  # a touch before then waits for it (TOUCH_WINDOW)
    touch_pending: bool = False  # touched during the window: act at its end
    alive_failed: int = 0  # liveness attempts failed in a row, this instance
    watchdog_due: float | None = None  # restarted then unless a WATCHDOG=1 comes first
    # ctl update: the spec of its next instance, taken once this one is gone
    pending: ProcessSpec | None = None
    leaving: bool = False  # removed by ctl update: forgotten once at rest

    @property
    def name(self) -> str:
        return self.spec.name

    def move(self, event: Event) -> None:
        self.state = transition(self.state, event)

    def advance(self, event: LaunchEvent) -> None:
        self.launch = next_launch(self.launch, event)

    def release(self) -> None:
        """Its instance is READY, stopping or gone: a check it passed is spent."""
        if self.launch is Launch.CHECKED:
            self.advance(LaunchEvent.RELEASE)

    @property
    def spawned_once(self) -> bool:
        """Has it ever been spawned? (Its next spawn is then a restart.)"""
        return self.started_at is not None

    @property
    def killed(self) -> bool:
        """STOPPING, and its stop timeout's SIGKILL was sent."""
        return self.state is S.STOPPING and self.stop_deadline is None

    def copy(self) -> _Proc:
        """A copy that shares no list, set or dict with this one (for
        handle's undo; the spec is frozen, ExitInfo too). Through __dict__:
        dataclasses.replace costs five times as much, on every event."""
        copied = object.__new__(_Proc)
        values = self.__dict__.copy()
        for key in _CONTAINERS:
            values[key] = values[key].copy()
        copied.__dict__.update(values)
        return copied


# _Proc's lists, sets and dicts: the fields with a default_factory (a
# dataclass refuses a mutable plain default, so none is missed).
_CONTAINERS = tuple(f.name for f in fields(_Proc) if f.default_factory is not MISSING)


def _verdict(status: int, signum: int, success: bool) -> str:
    """What an exit line adds when success_exit_codes decide otherwise than 0 does."""
    if success and status != 0:
        return " (a success exit code)"
    if not success and status == 0 and signum == 0:
        return " (not a success exit code)"
    return ""


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
        for p in self.procs.values():
            if not p.spec.autostart:  # STOPPED until a ctl start
                p.goal, p.started = Goal.DOWN, False
        self.deps = config.deps
        self.dependents = {
            name: {d for d in self.order if name in self.deps[d]} for name in self.order
        }
        self.all_dependents = {name: graph.dependents(self.deps, name) for name in self.order}
        self.booted = False
        self.adopting = False  # Boot(adopt): pidfile daemons may be adopted
        self.phase = Phase.UP  # pidone's own shutdown: see states.PHASES
        self.exit_code: int | None = None  # forced by a control process
        self.unclean: list[str] = []  # why the shutdown was not clean
        self.sweep_deadline: float | None = None
        self.drain_until: float | None = None  # DRAINING: when the stop begins
        self.waits: list[Wait] = []  # ctl requests waiting for their goal
        self.now = now
        self.told = ""  # the status Notify said last
        self.told_ready = False
        self._memo: dict[str, bool] = {}
        # [legion.NAME]: its lease, its processes' stop timeouts, what was said of it
        self.leases = {n: leasing.Lease(n, spec.ttl) for n, spec in config.legions.items()}
        self.legion_procs = {
            n: [p for p in self.order if config.processes[p].legion == n] for n in self.leases
        }
        self.lease_changes: dict[tuple[str, str], int] = {}
        self.legion_told: dict[str, str] = {}
        self.touchers: dict[str, list[str]] = {}  # a `touch` path -> the processes it acts on
        for name in self.order:
            for path in config.processes[name].touch:
                self.touchers.setdefault(path, []).append(name)

    # -- public API --

    @property
    def shutting_down(self) -> bool:
        return self.phase not in (Phase.UP, Phase.DRAINING)

    @property
    def draining(self) -> bool:
        """SIGTERM came with a shutdown_delay: everything still runs (and is
        restarted), /readyz says 503, the stop begins at drain_until."""
        return self.phase is Phase.DRAINING

    @property
    def sweeping(self) -> bool:
        """Is the core waiting for the last child to go (NoChildren)?"""
        return self.phase in SWEEPING

    def handle(self, event: EventType, now: float) -> list[Action]:
        """The actions for `event`, atomically: if handling it raises, the
        core is left as it was before (and the exception propagates, for the
        loop to log as a bug; the actions of that event are dropped)."""
        saved = self._save()
        try:
            return self._handle(event, now)
        except BaseException:
            self._restore(saved)
            raise

    def _save(self) -> tuple[dict[str, _Proc], dict[str, object]]:
        procs = {name: p.copy() for name, p in self.procs.items()}
        scalars = {k: getattr(self, k) for k in _CORE_STATE + _NOTIFY_STATE}
        scalars["unclean"] = list(self.unclean)
        scalars["waits"] = list(self.waits)
        for key in ("leases", "lease_changes", "legion_told"):  # their values are frozen
            scalars[key] = dict(getattr(self, key))
        return procs, scalars

    def _restore(self, saved: tuple[dict[str, _Proc], dict[str, object]]) -> None:
        self.procs, scalars = saved
        for key, value in scalars.items():
            setattr(self, key, value)
        self._memo.clear()

    def _handle(self, event: EventType, now: float) -> list[Action]:
        self.now = now
        out: list[Action] = []
        match event:
            case Boot(adopt):
                self.booted = True
                self.adopting = adopt
                manual = [p.name for p in self.procs.values() if not p.started]
                held = f" ({', '.join(manual)}: autostart = false, not started)" if manual else ""
                out.append(
                    Log("pidone", f"starting {len(self.order) - len(manual)} processes{held}")
                )
            case Tick():
                pass
            case Spawned(name, pid):
                self._on_spawned(self.procs[name], pid, out)
            case SpawnFailed(name, reason):
                self._on_spawn_failed(self.procs[name], reason, out)
            case Reaped():
                self._on_reaped(event, out)
            case NoChildren():
                if self.sweeping:
                    self.phase = next_phase(self.phase, PhaseEvent.NO_CHILDREN)
            case Ready(name, pid):
                self._on_ready(self.procs[name], pid, out)
            case PidfileRead(name, pid):
                self._on_pidfile(self.procs[name], pid, out)
            case PidfileNotRead(name):
                self._on_pidfile_not_read(self.procs[name], event, out)
            case SignalReceived(signum):
                self._on_signal(signum, out)
            case SocketFixed(name, sock):
                self._on_socket_fixed(self.procs[name], sock, out)
            case SocketNotFixed(name, sock, problem):
                self._on_socket_not_fixed(self.procs[name], sock, problem, out)
            case Request():
                self._on_request(event, out)
            case Touched(paths, overflow):
                self._on_touched(paths, overflow, out)
            case Adopted(name, pid):
                self._on_adopted(self.procs[name], pid, out)
            case NotAdopted(name, problem):
                self._on_not_adopted(self.procs[name], problem, out)
            case AdoptedExited(name, pid):
                p = self.procs[name]
                if p.adopted and p.pid == pid and p.state in HAS_PID:
                    self._on_main_exit(p, UNKNOWN_STATUS, 0, out)
            case LegionAnswered(name, reply):
                lease, changes = leasing.answered(self.leases[name], reply, now)
                self.leases[name] = lease
                self._lease_changed(lease, changes, out)
            case Alive(name, pid, error):
                self._on_alive(self.procs[name], pid, error, out)
            case WatchdogPing(name, pid):
                p = self.procs[name]
                if p.watchdog_due is not None and pid == p.spawned_pid and p.spec.watchdog:
                    p.watchdog_due = now + p.spec.watchdog
            case Reconfigure():
                self._on_reconfigure(event, out)
        self._drain_due(out)
        self._touches_due(out)
        self._watchdogs_due(out)
        self._leases_due(out)
        self._reconcile(out)
        self._leases_due(out)  # the reconcile may have brought the last legion process down
        self._forget_left(out)
        self._looks_due(out)
        self._judge_waits(out)
        self._tell(out)
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
            if p.state is S.RUNNING and p.ready_deadline is not None:
                times.append(p.ready_deadline)
            if p.pidfile_due is not None and self._awaits_pidfile(p):
                times.append(p.pidfile_due)
            times += p.awaiting_sockets.values()
            if p.touch_pending:
                times.append(p.touch_quiet_until)
            if p.watchdog_due is not None:
                times.append(p.watchdog_due)
        if self.sweep_deadline is not None and self.phase is Phase.SWEEP_TERM:
            times.append(self.sweep_deadline)
        if self.drain_until is not None and self.draining:
            times.append(self.drain_until)
        times += [w.deadline for w in self.waits]
        if self.booted:
            for name, lease in self.leases.items():
                stops = tuple(self.procs[p].spec.stop_timeout for p in self.legion_procs[name])
                times += lease.deadlines(stops)
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
                    oom_kills=p.oom_kills,
                    has_ready_check=p.spec.ready.kind != "settle",
                    completed=self._completed(p),
                    started=p.started,
                    standby=self._standby(p),
                    required=p.spec.required,
                )
                for p in self.procs.values()
            ),
            self.shutting_down,
            tuple(
                LegionStatus(
                    name=lease.name,
                    lord=lease.lord,
                    holder=lease.holder,
                    problem=lease.problem,
                    changes={
                        c.value: self.lease_changes.get((lease.name, c.value), 0)
                        for c in leasing.Change
                    },
                )
                for lease in self.leases.values()
            ),
            draining=self.draining,
        )

    # -- pidone ctl reexec (core/handover.py) --

    def reexec_refusal(self) -> str | None:
        """Why a `ctl reexec` is refused now, or None: not while shutting
        down or draining (the exec would race the stop, and a lease's
        release with it). Legions are handed over (core/handover.py)."""
        if self.shutting_down or self.draining:
            return "pidone is shutting down: nothing to re-execute"
        updating = [p.name for p in self.procs.values() if p.pending is not None or p.leaving]
        if updating:  # its new spec or its removal lives only in this core
            return f"a ctl update is under way ({', '.join(updating)}): reexec once it is done"
        return None

    def handover(self) -> dict[str, object]:
        """The state a re-executed pidone resumes from (handover.resume)."""
        from pidone.core import handover

        return handover.handover(self)

    def resumed(self) -> list[Action]:
        """What the loop must start again after a re-exec: the readiness
        check of each RUNNING instance (from scratch: the old pidone's
        attempt died with it), the liveness check of each READY one."""
        out: list[Action] = []
        for p in self.procs.values():
            pid = p.pid if p.pid is not None else p.spawned_pid
            if pid is None or p.spawned_pid is None:
                continue
            # As _await_ready: a settle time is the core's, no probe unless a
            # watchdog's pings must count (from the pid the prober knows).
            probed = p.spec.ready.kind != "settle" or p.spec.watchdog is not None
            checking = p.state is S.RUNNING and p.launch is not Launch.CHECKED
            if probed and (checking or (p.state is S.READY and p.spec.watchdog is not None)):
                out.append(StartProbe(p.name, p.spawned_pid))
            if p.state is S.READY and p.spec.alive is not None:
                out.append(StartLiveness(p.name, pid))
        return out

    def pid_owner(self, pid: int) -> str | None:
        for p in self.procs.values():
            if pid in (p.pid, p.launcher_pid):
                return p.name
        return None

    # -- events --

    def _on_spawned(self, p: _Proc, pid: int, out: list[Action]) -> None:
        self._answered(p)
        if p.state is not S.STARTING:  # stopped while the spawn was on its way
            out.append(Kill(p.name, pid, signal.SIGKILL, group=True))
            return
        p.move(Event.SPAWNED)
        p.spawned_pid = pid
        if p.spawned_once:
            reason = p.restart_reason or "crash"
            p.restarts_by_reason[reason] = p.restarts_by_reason.get(reason, 0) + 1
        p.restart_reason = None
        p.started_at = self.now
        p.ready_at = None
        if p.spec.pidfile:
            p.launcher_pid, p.pid = pid, None
            p.pidfile_due, p.pidfile_refused = self.now, False
        else:
            p.pid = pid
        out.append(Log(p.name, f"started: pid {pid}"))
        self._await_ready(p, pid, out)

    def _await_ready(self, p: _Proc, pid: int, out: list[Action]) -> None:
        """A new instance: its sockets to fix, its settle time or check."""
        created = sorted(s for s in p.spec.sockets if not self.config.sockets[s].listen)
        p.awaiting_sockets = dict.fromkeys(created, self.now)
        p.socket_problems = {}
        timeout = p.spec.ready_timeout
        p.ready_deadline = None if timeout is None else self.now + timeout
        p.ready_timed_out = False
        p.alive_failed = 0
        watchdog = p.spec.watchdog
        p.watchdog_due = None if watchdog is None else self.now + watchdog
        ready = p.spec.ready
        if ready.kind == "settle":
            seconds = ready.seconds if ready.seconds is not None else self.settings.settle_time
            p.settle_at = self.now + seconds
            if watchdog is not None:  # no check, but the prober learns whose pings count
                out.append(StartProbe(p.name, pid))
        else:
            p.settle_at = None
            out.append(StartProbe(p.name, pid))

    def _on_adopted(self, p: _Proc, pid: int, out: list[Action]) -> None:
        """Its daemon, left running by an earlier pidone: RUNNING, as if
        spawned, its pid known at once; ready by its check as usual."""
        self._answered(p)
        if p.state is not S.STARTING:  # stopped while the Adopt was on its way
            out.append(Kill(p.name, pid, signal.SIGKILL, group=True))
            return
        p.move(Event.SPAWNED)
        p.spawned_pid = pid
        p.restart_reason = None
        p.started_at = self.now
        p.ready_at = None
        p.launcher_pid, p.pid, p.adopted = None, pid, True
        p.pidfile_due = None
        line = f"adopted: pid {pid} from {p.spec.pidfile}, left running by an earlier pidone"
        out.append(Log(p.name, line))
        self._await_ready(p, pid, out)

    def _on_not_adopted(self, p: _Proc, problem: str, out: list[Action]) -> None:
        """Nothing to adopt: the Spawn the Adopt stood for (a Spawn on its way still)."""
        if problem:
            line = f"pidfile {p.spec.pidfile} not adopted: {problem}; starting a new one"
            out.append(Log(p.name, line, error=True))
        if p.state is S.STARTING and p.launch is Launch.SPAWNING:
            out.append(Spawn(p.name))
        else:
            self._answered(p)

    def _answered(self, p: _Proc) -> None:
        # The loop answers every Spawn, and only a Spawn. One that came
        # otherwise is still taken for what it says (a process exists, or
        # not): refusing it would leave a process nobody supervises.
        if p.launch is Launch.SPAWNING:
            p.advance(LaunchEvent.ANSWER)

    def _on_spawn_failed(self, p: _Proc, reason: str, out: list[Action]) -> None:
        self._answered(p)
        p.move(Event.SPAWN_FAILED)
        out.append(Log(p.name, f"cannot start: {reason}", error=True))
        p.last_exit = ExitInfo(127, 0, self.now, planned=False)
        self._after_unplanned_exit(p, False, out)

    def _on_reaped(self, ev: Reaped, out: list[Action]) -> None:
        pid, status, signum = ev.pid, ev.status, ev.signal
        for p in self.procs.values():
            if pid == p.launcher_pid and p.pid is None and p.state in HAS_PID:
                p.launcher_pid = None
                if status == 0:  # daemonized: the real main pid comes from the pidfile
                    return
                self._on_main_exit(p, status, signum, out, ev.oom_kills)
                return
            if pid == p.pid:
                if pid == p.launcher_pid:
                    p.launcher_pid = None
                self._on_main_exit(p, status, signum, out, ev.oom_kills)
                return

    def _on_main_exit(
        self, p: _Proc, status: int, signum: int, out: list[Action], oom_kills: int = 0
    ) -> None:
        planned = p.state is S.STOPPING
        killed = p.killed  # read before the move: the fact for its exit line
        # The OOM killer's: a SIGKILL pidone did not send, across which its
        # cgroup's oom_kill counter rose.
        oom = signum == signal.SIGKILL and oom_kills > 0 and not killed
        main = p.pid
        timed_out, p.ready_timed_out, p.ready_deadline = p.ready_timed_out, False, None
        # Stopped for its ready_timeout and still wanted up: a failed start.
        unready = planned and timed_out and p.goal is Goal.UP and not self.shutting_down
        p.adopted = False
        p.move(Event.EXITED_UNREADY if unready else Event.EXITED)
        if p.ready_at is not None and self.now - p.ready_at >= self.settings.backoff_reset:
            p.failures.clear()  # it stayed up and ready: what came before was no crash loop
        p.ready_at = None
        p.pid = None
        p.stop_deadline = None
        p.settle_at = None
        p.watchdog_due = None
        p.awaiting_sockets.clear()
        p.release()
        p.exits_by_status[status] = p.exits_by_status.get(status, 0) + 1
        success = not timed_out and p.spec.succeeded(status, signum)
        p.last_exit = ExitInfo(status, signum, self.now, planned, success, oom)
        out.append(CancelProbe(p.name))
        how = f"signal {signal_name(signum)}" if signum else f"status {status}"
        if oom:
            p.oom_kills += 1
            how += ", killed by the OOM killer"
        if status == UNKNOWN_STATUS:
            how = "status unknown: adopted, pidone is not its parent"
        if planned and not unready:
            out.append(KillLeftovers(p.name))
            out.append(Log(p.name, f"stopped ({how})", ended=True))
            clean = (
                success
                or status in (0, UNKNOWN_STATUS, 128 + p.spec.stop_signal)
                or (signum == p.spec.stop_signal)
            )
            if self.shutting_down and (killed or not clean):
                why = "killed after its stop timeout" if killed else f"exited with {how}"
                self.unclean.append(f"{p.name} {why}")
            if p.goal is Goal.CYCLE:
                p.goal = Goal.UP
            return
        if main is not None and not p.spec.pidfile:
            # Its group outlives a crash (celery's pool, uwsgi's workers): end
            # it, as systemd does, before any new instance. Only a group
            # pidone made, whose leader was reaped just now: a daemon's is
            # not known to be its own.
            out.append(KillLeftovers(p.name, group=main))
        elif unready:  # what its stop's Collect found
            out.append(KillLeftovers(p.name))
        if unready:
            line = f"stopped ({how}): not ready within {p.spec.ready_timeout:g} s"
        else:
            line = f"exited with {how}{_verdict(status, signum, success)}"
        out.append(Log(p.name, line, error=not success, ended=True))
        if p.spec.control and not self.shutting_down:
            out.append(Log("pidone", f"control process {p.name} exited: stopping everything"))
            self.exit_code = status
            self._begin_shutdown(out)
            return
        self._after_unplanned_exit(p, success, out, "ready_timeout" if unready else "crash")

    def _after_unplanned_exit(
        self, p: _Proc, success: bool, out: list[Action], reason: RestartReason = "crash"
    ) -> None:
        """EXITED (or failed to spawn, or not ready in time): restart per
        policy, give up, or stay; the policy's numbers are the process's."""
        if self.shutting_down or p.goal is Goal.DOWN:
            return
        spec = p.spec
        policy = spec.restart
        if policy == "never" or (policy == "on-failure" and success):
            out.append(Log(p.name, f"not restarting (restart = {policy!r})"))
            return
        window = spec.fatal_window
        p.failures = [t for t in p.failures if self.now - t < window] + [self.now]
        n = len(p.failures)
        if n >= spec.fatal_after:
            p.move(Event.GAVE_UP)
            out.append(
                Log(p.name, f"FATAL: exited {n} times within {window:g} s; not restarting", True)
            )
            if spec.on_fatal == "exit":
                line = f'{p.name} is FATAL (on_fatal = "exit"): stopping everything'
                out.append(Log("pidone", line, error=True))
                self.exit_code = ON_FATAL_STATUS
                self._begin_shutdown(out)
            return
        delay = backoff_delay(n, spec.backoff_initial, spec.backoff_max)
        p.move(Event.RETRY)
        p.backoff_until = self.now + delay
        p.restart_reason = reason
        bound = [d for d in self._bound_dependents(p.name) if self.procs[d].state in HAS_PID]
        then = f"; stopping {', '.join(bound)} first" if bound else ""
        out.append(Log(p.name, f"restarting in {delay:g} s{then}"))

    def _on_ready(self, p: _Proc, pid: int, out: list[Action]) -> None:
        if p.state is not S.RUNNING or pid not in (p.pid, p.launcher_pid, p.spawned_pid):
            return  # a late answer for an instance that is gone
        self._become_ready(p, out)

    def _become_ready(self, p: _Proc, out: list[Action]) -> None:
        """Its check passed (or it settled): READY, unless its created sockets
        are not fixed yet (nginx must be able to use them before we say
        ready) or its pidfile's pid is unknown (not ready before we know, and
        trust, its pid): then CHECKED, and _ready_if_checked when they are."""
        p.settle_at = None
        if p.awaiting_sockets or (p.spec.pidfile and p.pid is None):
            p.advance(LaunchEvent.CHECK_PASSED)
            return
        p.release()
        p.move(Event.READY_OK)
        p.ready_at = self.now
        p.ready_deadline = None
        out.append(Log(p.name, "ready"))
        pid = p.pid if p.pid is not None else p.spawned_pid
        if p.spec.alive is not None and pid is not None:
            out.append(StartLiveness(p.name, pid))

    def _on_alive(self, p: _Proc, pid: int, error: str | None, out: list[Action]) -> None:
        """A liveness attempt ended: alive_failures failed in a row restart it
        (as ctl restart does: its stop signal and timeout, dependents cycled)."""
        if p.state is not S.READY or p.goal is not Goal.UP or self.shutting_down:
            return  # a late answer, or a restart already under way
        if pid not in (p.pid, p.spawned_pid):
            return
        if error is None:
            p.alive_failed = 0
            return
        p.alive_failed += 1
        n, limit = p.alive_failed, p.spec.alive_failures
        if n < limit:
            out.append(Log(p.name, f"liveness check failed ({n} of {limit}): {error}", True))
            return
        p.alive_failed = 0
        line = f"liveness check failed {n} times in a row ({error}): restarting"
        out.append(Log(p.name, line, True))
        self._restart([p.name], "liveness")

    def _watchdogs_due(self, out: list[Action]) -> None:
        """No WATCHDOG=1 within `watchdog` seconds: restarted (as ctl restart)."""
        for p in self.procs.values():
            due = p.watchdog_due
            if due is None or self.now < due:
                continue
            p.watchdog_due = None
            if p.state not in (S.RUNNING, S.READY) or p.goal is not Goal.UP:
                continue
            if self.shutting_down:
                continue
            line = f"watchdog: no WATCHDOG=1 within {p.spec.watchdog:g} s: restarting"
            out.append(Log(p.name, line, True))
            self._restart([p.name], "watchdog")

    def _on_socket_fixed(self, p: _Proc, sock: str, out: list[Action]) -> None:
        if sock not in p.awaiting_sockets:
            return
        del p.awaiting_sockets[sock]
        p.socket_problems.pop(sock, None)
        out.append(Log(p.name, f"socket {sock}: owner, group and mode fixed"))
        self._ready_if_checked(p, out)

    def _ready_if_checked(self, p: _Proc, out: list[Action]) -> None:
        """A socket fixed or a pid known: a check that passed before counts now."""
        if p.launch is Launch.CHECKED and p.state is S.RUNNING:
            self._become_ready(p, out)

    def _on_socket_not_fixed(self, p: _Proc, sock: str, problem: str, out: list[Action]) -> None:
        if sock not in p.awaiting_sockets:
            return
        if problem and p.socket_problems.get(sock) != problem:
            p.socket_problems[sock] = problem
            out.append(Log(p.name, problem, error=True))
        p.awaiting_sockets[sock] = self.now + (SOCKET_RETRY if problem else SOCKET_POLL)

    def _on_pidfile_not_read(self, p: _Proc, ev: PidfileNotRead, out: list[Action]) -> None:
        if not self._awaits_pidfile(p):
            return
        if ev.refused and not p.pidfile_refused:
            p.pidfile_refused = True
            line = f"pidfile {p.spec.pidfile} refused: {ev.problem} (logged once; still looking)"
            out.append(Log(p.name, line, error=True))
        p.pidfile_due = self.now + (PIDFILE_RETRY if ev.refused else PIDFILE_POLL)

    def _awaits_pidfile(self, p: _Proc) -> bool:
        return bool(p.spec.pidfile) and p.state in HAS_PID and p.pid is None

    def _looks_due(self, out: list[Action]) -> None:
        """ReadPidfile and FixSocket for the looks that are due. Each is
        rescheduled at once (a lost answer only delays the next look); its
        answer reschedules it from the result."""
        now = self.now
        for p in self.procs.values():
            if not self._awaits_pidfile(p):
                p.pidfile_due = None
            elif p.pidfile_due is not None and now >= p.pidfile_due:
                assert p.spec.pidfile is not None
                p.pidfile_due = now + PIDFILE_POLL
                out.append(ReadPidfile(p.name, p.spec.pidfile, self._taken(p)))
            for sock, due in p.awaiting_sockets.items():
                if now >= due:
                    p.awaiting_sockets[sock] = now + SOCKET_POLL
                    out.append(FixSocket(p.name, sock))

    def _taken(self, p: _Proc) -> frozenset[int]:
        """The pids of the other processes, which p's pidfile may not name."""
        return frozenset(
            q
            for other in self.procs.values()
            if other is not p
            for q in (other.pid, other.launcher_pid)
            if q is not None
        )

    def _on_pidfile(self, p: _Proc, pid: int, out: list[Action]) -> None:
        if p.state not in HAS_PID or p.pid is not None:
            return
        p.pid = pid
        p.pidfile_due = None
        out.append(Log(p.name, f"following pid {pid} from {p.spec.pidfile}"))
        self._ready_if_checked(p, out)
        if p.state is S.STOPPING:  # asked to stop before we knew whom to signal
            self._send_stop_signal(p, pid, out)

    def _on_signal(self, signum: int, out: list[Action]) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            if self.shutting_down:
                out.append(Log("pidone", "already stopping; SIGKILL pidone to force"))
                return
            delay = self.settings.shutdown_delay
            if self.draining:  # asked again: the sender wants it stopped now
                out.append(
                    Log("pidone", f"received {signal_name(signum)} while draining: stopping")
                )
            elif signum == signal.SIGTERM and delay > 0:
                self.phase = next_phase(self.phase, PhaseEvent.DRAIN)
                self.drain_until = self.now + delay
                out.append(
                    Log(
                        "pidone",
                        f"received SIGTERM: draining (/readyz 503) for {delay:g} s, then stopping"
                        " (SIGTERM or SIGINT again: at once)",
                    )
                )
                return
            else:
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
        if req.ticket is not None and req.command in WAITED:
            self._add_wait(req, names)
        match req.command:
            case Command.STATUS | Command.WAIT_READY:
                pass  # they change nothing: only answered
            case Command.SHUTDOWN:
                if not self.shutting_down:
                    out.append(Log("pidone", "shutdown requested"))
                    self._begin_shutdown(out)
            case Command.START:
                for n in self._with_stopped_needs(names):
                    self._start(self.procs[n])
            case Command.STOP:
                for n in names:
                    self.procs[n].goal = Goal.DOWN
            case Command.RESTART:
                self._restart(names, "manual")
            case Command.RELOAD:
                self._reload(names, out)
            case Command.SIGNAL:  # the main pid only: not a launcher still writing its pidfile
                for p in self._running():
                    if p.name in names and p.pid is not None:
                        out.append(Kill(p.name, p.pid, req.signum))
            case Command.REREAD | Command.UPDATE:  # the loop reads the files: Reconfigure
                raise ValueError(f"{req.command} comes as Reconfigure, not as a Request")
        if req.ticket is not None and req.command not in WAITED:
            out.append(Reply(req.ticket, self._answer(req.command, names)))

    def _restart(self, names: list[str], reason: RestartReason) -> None:
        """A ctl restart of `names` (or a touch): each cycled, or started."""
        for n in self._with_stopped_needs(names):
            if n not in names:  # something it is after, stopped: started, not cycled
                self._start(self.procs[n])
                continue
            p = self.procs[n]
            p.started = True
            if p.goal is Goal.DOWN:
                p.goal = Goal.UP
            p.failures.clear()
            p.restart_reason = reason
            if p.state in HAS_PID:
                p.goal = Goal.CYCLE
            elif p.state in (S.EXITED, S.FATAL, S.BACKOFF):
                p.move(Event.START)

    def _on_touched(self, paths: frozenset[str], overflow: bool, out: list[Action]) -> None:
        if overflow:
            out.append(
                Log("pidone", "inotify queue overflowed: every touch file counts as touched")
            )
            names = {n for n in self.order if self.procs[n].spec.touch}
        else:
            names = {n for path in paths for n in self.touchers.get(path, ())}
        for n in self.order:
            if n in names:
                self._touch(self.procs[n], out)

    def _touch(self, p: _Proc, out: list[Action]) -> None:
        """Restart p (with its dependents, as ctl restart) or send it its
        touch_signal: at once, or at the end of the window of the last one.
        A process down on purpose (ctl stop, autostart = false) or shutting
        down is left alone."""
        if p.goal is Goal.DOWN or self.shutting_down:
            p.touch_pending = False
            return
        if self.now < p.touch_quiet_until:
            p.touch_pending = True
            return
        p.touch_pending = False
        p.touch_quiet_until = self.now + TOUCH_WINDOW
        signum = p.spec.touch_signal
        if signum is None:
            out.append(Log(p.name, "touched: restarting"))
            self._restart([p.name], "touch")
        elif p.state in HAS_PID and p.pid is not None:
            out.append(Log(p.name, f"touched: {signal_name(signum)}"))
            out.append(Kill(p.name, p.pid, signum))

    def _touches_due(self, out: list[Action]) -> None:
        for p in self.procs.values():
            if p.touch_pending and self.now >= p.touch_quiet_until:
                self._touch(p, out)

    def _start(self, p: _Proc) -> None:
        """A ctl start of p (or of a process after it)."""
        if p.goal is Goal.DOWN:  # a restart under way stays one
            p.goal = Goal.UP
        p.started = True
        p.failures.clear()
        if p.spawned_once and p.state not in HAS_PID:
            p.restart_reason = "manual"
        if p.state in (S.EXITED, S.FATAL, S.BACKOFF):
            p.move(Event.START)

    def _with_stopped_needs(self, names: list[str]) -> list[str]:
        """`names` and every process they are after (transitively) that is
        down on purpose (autostart = false, or ctl stop), in start order: a
        ctl start or restart would otherwise wait for them forever."""
        wanted = set(names)
        todo = list(names)
        while todo:
            for dep in self.deps[todo.pop()]:
                if dep not in wanted and self.procs[dep].goal is Goal.DOWN:
                    wanted.add(dep)
                    todo.append(dep)
        return [n for n in self.order if n in wanted]

    def _answer(self, command: Command, names: list[str]) -> Outcome:
        """The immediate answer to status, shutdown, reload and signal."""
        snap = self.snapshot()
        if command is Command.STATUS:
            return Outcome(True, status=snap)
        if command is Command.SHUTDOWN:
            return Outcome(True)
        procs = {p.name: p for p in snap.processes}
        return combine([signalled(procs[n]) for n in names])

    def _add_wait(self, req: Request, names: list[str]) -> None:
        """Remember what a start, stop, restart or wait-ready waits for, with
        the restart counts from before the request (a restart is done once
        a new instance is ready)."""
        assert req.ticket is not None
        timeout = req.timeout
        if timeout is None:
            if req.command is Command.STOP:
                timeout = max(self.procs[n].spec.stop_timeout for n in names) + STOP_GRACE
            else:
                timeout = DEFAULT_WAIT
        before = {n: sum(self.procs[n].restarts_by_reason.values()) for n in names}
        wanted = () if req.command is Command.WAIT_READY else tuple(names)
        self.waits.append(Wait(req.ticket, req.command, wanted, self.now + timeout, before))

    def _tell(self, out: list[Action]) -> None:
        """Notify when the status changed: the processes wanted up (goal not
        DOWN: what was started, and not stopped since) that are ready or done."""
        if not self.booted or self.phase is Phase.EXITED:
            return
        waiting: list[str] = []
        if self.shutting_down:
            status = "stopping"
        elif self.draining:
            status = "draining"
        else:
            wanted = [
                p for p in self.procs.values() if p.goal is not Goal.DOWN and not self._standby(p)
            ]
            waiting = [p.name for p in wanted if p.state is not S.READY and not self._completed(p)]
            status = f"{len(wanted) - len(waiting)} of {len(wanted)} ready"
            if waiting:
                shown = waiting[:NOTIFY_NAMES]
                more = f" and {len(waiting) - len(shown)} more" if len(waiting) > len(shown) else ""
                status += f", waiting for {', '.join(shown)}{more}"
        if status == self.told:
            return
        stopping = status in ("draining", "stopping") and self.told != "draining"  # once
        self.told = status
        ready = self.phase is Phase.UP and not waiting and not self.told_ready
        self.told_ready |= ready
        out.append(Notify(status, ready=ready, stopping=stopping))

    def _judge_waits(self, out: list[Action]) -> None:
        """Answer every waiting request that is done, failed or late; at the
        exit, every other one too."""
        if not self.waits:
            return
        snap = self.snapshot()
        exiting = self.phase is Phase.EXITED
        for wait in list(self.waits):
            outcome = judge(wait, snap, self.now)
            if outcome is None and exiting:
                outcome = Outcome(False, "pidone is exiting")
            if outcome is not None:
                self.waits.remove(wait)
                out.append(Reply(wait.ticket, outcome))

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

    def _drain_due(self, out: list[Action]) -> None:
        """The shutdown_delay is over: the stop begins."""
        if self.draining and self.drain_until is not None and self.now >= self.drain_until:
            out.append(Log("pidone", "drained: stopping"))
            self._begin_shutdown(out)

    def _begin_shutdown(self, out: list[Action]) -> None:
        self.phase = next_phase(self.phase, PhaseEvent.SHUTDOWN)
        for p in self.procs.values():
            p.goal = Goal.DOWN
            if p.state is S.FATAL:
                self.unclean.append(f"{p.name} is FATAL")

    def _completed(self, d: _Proc) -> bool:
        """A one-shot job (not restarted on success) that has exited with
        one of its success_exit_codes."""
        clean = d.state is S.EXITED and d.last_exit is not None and d.last_exit.success
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
        if p.goal is not Goal.UP or self.shutting_down or not self._legion_allows(p):
            return False
        if p.state in (S.RUNNING, S.READY) and not p.spec.restart_dependents:
            return True  # opted out of being cycled with its dependencies
        return all(self._up(dep) for dep in self.deps[p.name])

    def _has_pid_dependents(self, p: _Proc) -> bool:
        """Must p wait for processes after it to stop before it stops?"""
        pool = self.all_dependents[p.name] if self.shutting_down else self._bound_dependents(p.name)
        return any(
            self.procs[d].state in HAS_PID or self.procs[d].launch is Launch.SPAWNING for d in pool
        )

    def _stop(self, p: _Proc, out: list[Action]) -> None:
        p.move(Event.STOP)
        if p.state is not S.STOPPING:
            return
        p.release()
        p.watchdog_due = None
        p.stop_deadline = self.now + p.spec.stop_timeout
        if p.spec.legion is not None:  # never past the lease it runs under
            by = self.leases[p.spec.legion].must_stop_by()
            if by is not None:
                p.stop_deadline = min(p.stop_deadline, by)
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
        """Move p one step toward what it should be doing; True if it moved.
        One decision per state: _STEPS (at the end of the class)."""
        self._memo.clear()
        if p.pending is not None and p.state not in HAS_PID and p.launch is Launch.IDLE:
            p.spec, p.pending = p.pending, None  # ctl update: the old instance is gone
        step = self._STEPS.get(p.state)
        return step(self, p, out) if step is not None else False

    def _step_stopping(self, p: _Proc, out: list[Action]) -> bool:
        """Past its stop timeout: SIGKILL to its group, once."""
        if p.stop_deadline is None or self.now < p.stop_deadline:
            return False  # sent already (p.killed), or not due
        p.move(Event.STOP_TIMEOUT)
        p.stop_deadline = None  # spent: no second SIGKILL, and no deadline past due
        pid = self._signal_pid_or_none(p)
        if pid is None:  # its pidfile never came: nothing left to wait for
            out.append(Log(p.name, "stop timeout: no pid from its pidfile", error=True))
            self._on_main_exit(p, 128 + signal.SIGKILL, signal.SIGKILL, out)
            return True
        out.append(Log(p.name, f"stop timeout: SIGKILL to group {pid}", error=True))
        out.append(Collect(p.name, pid))  # what it forked since the stop began
        out.append(Kill(p.name, pid, signal.SIGKILL, group=True))
        return False

    def _step_up(self, p: _Proc, out: list[Action]) -> bool:
        """RUNNING or READY: settled, not ready in time (stopped as a failed
        start), or stopped once its dependents are down."""
        if p.state is S.RUNNING and p.settle_at is not None and self.now >= p.settle_at:
            self._become_ready(p, out)
            return True
        due = p.ready_deadline
        if p.state is S.RUNNING and due is not None and self.now >= due and self._should_run(p):
            p.ready_timed_out, p.ready_deadline = True, None
            line = f"not ready within {p.spec.ready_timeout:g} s: stopping it (a failed start)"
            out.append(Log(p.name, line, error=True))
            self._stop(p, out)
            return True
        if not self._should_run(p) and not self._has_pid_dependents(p):
            self._stop(p, out)
            return True
        return False

    def _step_starting(self, p: _Proc, out: list[Action]) -> bool:
        """Spawned (once) as soon as everything it is `after` is ready."""
        if p.goal is Goal.DOWN or self.shutting_down or not self._legion_allows(p):
            p.move(Event.STOP)
            return True
        if p.launch is Launch.IDLE and all(self._satisfied(d) for d in self.deps[p.name]):
            p.advance(LaunchEvent.SPAWN)
            if self.adopting and p.spec.pidfile and not p.spawned_once:
                out.append(Adopt(p.name, p.spec.pidfile, self._taken(p)))  # then Spawn, or not
            else:
                out.append(Spawn(p.name))
        return False

    def _step_backoff(self, p: _Proc, out: list[Action]) -> bool:
        """Restarted once its delay is over and its bound dependents are down."""
        if p.goal is Goal.DOWN or self.shutting_down or not self._legion_allows(p):
            p.move(Event.STOP)
            return True
        if self.now >= p.backoff_until and not self._has_pid_dependents(p):
            p.move(Event.BACKOFF_ELAPSED)
            return True
        return False

    def _step_stopped(self, p: _Proc, out: list[Action]) -> bool:
        """Wanted up: START (STARTING waits for its dependencies to be ready)."""
        if p.goal is not Goal.UP or self.shutting_down or not self._legion_allows(p):
            return False
        p.move(Event.START)
        if p.spawned_once and not p.restart_reason:
            p.restart_reason = "dependency"
        return True

    # EXITED and FATAL move only by events (RETRY, GAVE_UP, START): no step.
    _STEPS: ClassVar[dict[ProcessState, Callable[[Supervisor, _Proc, list[Action]], bool]]] = {
        S.STOPPING: _step_stopping,
        S.RUNNING: _step_up,
        S.READY: _step_up,
        S.STARTING: _step_starting,
        S.BACKOFF: _step_backoff,
        S.STOPPED: _step_stopped,
    }

    # -- legions --

    def _legion_allows(self, p: _Proc) -> bool:
        """May p run as far as its legion goes? (Always, if in none.)"""
        if p.spec.legion is None:
            return True
        return self.leases[p.spec.legion].allows(self.now, p.spec.stop_timeout)

    def _standby(self, p: _Proc) -> str:
        """Why a legion process wanted up is not running here: not the lord."""
        name = p.spec.legion
        if name is None or p.goal is Goal.DOWN or self.shutting_down or p.state in HAS_PID:
            return ""
        lease = self.leases[name]
        return "" if lease.lord else lease.standing()

    def _leases_due(self, out: list[Action]) -> None:
        """Each lease's next request; released at the shutdown once its
        processes are down (after that, no more requests)."""
        if not self.booted:
            return
        for name, lease in self.leases.items():
            down = all(self.procs[p].state in AT_REST for p in self.legion_procs[name])
            lease, send, changes = leasing.due(lease, self.now, release=self.shutting_down and down)
            self.leases[name] = lease
            self._lease_changed(lease, changes, out)
            if send is not None:
                out.append(LegionRequest(name, send))

    def _lease_changed(
        self, lease: leasing.Lease, changes: list[leasing.Change], out: list[Action]
    ) -> None:
        """Count and log each change once; and each new standing of a standby."""
        name = lease.name
        for change in changes:
            key = (name, change.value)
            self.lease_changes[key] = self.lease_changes.get(key, 0) + 1
        procs = ", ".join(self.legion_procs[name]) or "no process"
        if lease.lord:
            then = "releasing it once stopped" if self.shutting_down else f"starting {procs}"
            said = f"legion {name}: lord (lease acquired): {then}"
        elif lease.done:  # said once, with the release's answer (or its absence)
            released = leasing.Change.RELEASED in changes
            said = f"legion {name}: {'lease released' if released else 'no longer a candidate'}"
            said = self.legion_told.get(name, said) if not changes else said
        elif leasing.Change.LOST in changes:
            why = lease.problem or (f"held by {lease.holder}" if lease.holder else "not renewed")
            said = f"legion {name}: lease lost ({why}): {procs} stopped"
        else:
            said = f"legion {name}: {lease.standing()}"
        if self.legion_told.get(name) != said and not (
            said.endswith(": standby: legion " + name + " has no lord yet")
            and name not in self.legion_told
        ):
            self.legion_told[name] = said
            out.append(Log("pidone", said, error=bool(lease.problem)))

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
                if p.state is S.EXITED and p.last_exit and not p.last_exit.success:
                    self.unclean.append(f"{p.name} exited with status {p.last_exit.status}")
        if self.phase is Phase.STOPPING:
            self.phase = next_phase(self.phase, PhaseEvent.AT_REST)
            self.sweep_deadline = self.now + SWEEP_TIMEOUT
            out.append(Sweep(signal.SIGTERM))
        elif self.phase is Phase.SWEEP_TERM and self.sweep_deadline is not None:
            if self.now >= self.sweep_deadline:
                self.phase = next_phase(self.phase, PhaseEvent.SWEEP_TIMEOUT)
                out.append(Log("pidone", "leftover processes ignored SIGTERM: SIGKILL", True))
                out.append(Sweep(signal.SIGKILL))
        elif self.phase is Phase.SWEPT:
            if any(lease.releasing and not lease.done for lease in self.leases.values()):
                return  # a release on its way: answered, or late (its deadline, a Tick)
            self.phase = next_phase(self.phase, PhaseEvent.AT_REST)
            code = self.exit_code
            if code is None:
                code = 1 if self.unclean else 0
            for why in self.unclean:
                out.append(Log("pidone", f"unclean stop: {why}", error=True))
            out.append(Log("pidone", f"exiting with status {code}"))
            out.append(Exit(code))

    # -- ctl update --

    def _on_reconfigure(self, ev: Reconfigure, out: list[Action]) -> None:
        """Apply the configuration read again: see the module's docstring."""

        def answer(outcome: Outcome) -> None:
            if ev.ticket is not None:
                out.append(Reply(ev.ticket, outcome))

        if self.shutting_down or self.draining:
            answer(Outcome(False, "pidone is shutting down: update refused"))
            return
        # imported here: only an update needs them (pidone run's memory)
        from pidone.config import diff as config_diff
        from pidone.core import reconfig

        try:
            effective = reconfig.merge(self.config, ev.config, ev.names)
        except ValueError as exc:
            answer(Outcome(False, f"update: {exc}"))
            return
        d = config_diff.diff(self.config, effective)
        shown = d
        if not ev.names:  # what it does not apply is said too: the settings kept
            shown = replace(d, settings=config_diff.diff(self.config, ev.config).settings)
        changes = tuple(config_diff.lines(shown))
        if d.empty:
            answer(Outcome(True, changes=changes))
            return
        restarted = set(d.restarted())
        renewed = tuple(s for s, _ in d.sockets.changed)
        for sock in d.sockets.removed + renewed:
            out.append(CloseSocket(sock))
        out.append(Reconfigured(effective))
        for sock in d.sockets.added + renewed:
            out.append(OpenSocket(sock))
        for line in changes:
            out.append(Log("pidone", f"update: {line}"))
        before = {n: sum(self.procs[n].restarts_by_reason.values()) for n in restarted}
        for n in d.removed:
            p = self.procs[n]
            p.goal, p.leaving, p.pending = Goal.DOWN, True, None
        for n in d.added:
            spec = effective.processes[n]
            back = self.procs.get(n)
            if back is not None and back.leaving:  # removed, still stopping: kept, renewed
                back.leaving, back.goal = False, Goal.UP if spec.autostart else Goal.DOWN
                back.spec, back.pending = (
                    (back.spec, spec) if back.state in HAS_PID else (spec, None)
                )
                back.restart_reason = "manual"
                continue
            p = _Proc(spec)
            if not p.spec.autostart:
                p.goal, p.started = Goal.DOWN, False
            self.procs[n] = p
        for c in d.changed:
            if c.name not in restarted:
                self.procs[c.name].spec = effective.processes[c.name]  # in place
        self._take_config(effective)
        for n in self.order:
            if n in restarted:
                self._renew(self.procs[n], effective.processes[n])
        if ev.ticket is None:
            return
        started = [n for n in d.added if self.procs[n].spec.autostart]
        waited = [n for n in self.order if n in started or (n in restarted and n in self._up_now())]
        timeout = ev.timeout if ev.timeout is not None else DEFAULT_WAIT
        restarts = {n: before[n] for n in waited if n in before}
        wait = Wait(ev.ticket, Command.UPDATE, tuple(waited), self.now + timeout, restarts)
        self.waits.append(replace(wait, gone=d.removed, changes=changes))

    def _up_now(self) -> set[str]:
        return {n for n, p in self.procs.items() if p.goal is not Goal.DOWN}

    def _renew(self, p: _Proc, spec: ProcessSpec) -> None:
        """A change that alters the instance: the new spec for its next one;
        restarted now (as ctl restart: dependents cycled) if wanted up."""
        if p.state in HAS_PID or p.launch is not Launch.IDLE:
            p.pending = spec
        else:
            p.spec, p.pending = spec, None
        if p.goal is not Goal.DOWN:
            self._restart([p.name], "manual")

    def _take_config(self, config: Config) -> None:
        """The graph and the per-name tables from `config`, with the removed
        processes still being stopped after what they were after."""
        self.config = config
        self.settings = config.settings
        deps = {n: s.after for n, s in config.processes.items()}
        for n, p in self.procs.items():
            if n not in deps:  # leaving: stopped in its old place in the graph
                deps[n] = tuple(d for d in p.spec.after if d in self.procs)
        self.order = [n for wave in graph.start_waves(deps) for n in wave]
        self.procs = {n: self.procs[n] for n in self.order}
        self.deps = deps
        # In time linear in the graph (not a walk of every process for each
        # one): it runs at each update and each removal's end, with
        # thousands of processes too.
        self.dependents = {n: set[str]() for n in self.order}
        for n in self.order:
            for dep in deps[n]:
                self.dependents[dep].add(n)
        self.all_dependents = {n: self._downstream(n) for n in self.order}
        self.legion_procs = {
            g: [n for n in self.order if self.procs[n].spec.legion == g] for g in self.leases
        }
        self.touchers = {}
        for n in self.order:
            for path in self.procs[n].spec.touch:
                self.touchers.setdefault(path, []).append(n)
        self._memo.clear()

    def _downstream(self, name: str) -> set[str]:
        """graph.dependents(), on the dependents table made already."""
        found: set[str] = set()
        todo = [name]
        while todo:
            for user in self.dependents[todo.pop()]:
                if user not in found:
                    found.add(user)
                    todo.append(user)
        return found

    def _forget_left(self, out: list[Action]) -> None:
        """Removed processes at rest are gone: from status, metrics and the loop."""
        gone = [
            n
            for n, p in self.procs.items()
            if p.leaving and p.state in AT_REST and p.launch is Launch.IDLE
        ]
        if not gone:
            return
        for n in gone:
            del self.procs[n]
            out.append(Forget(n))
            out.append(Log("pidone", f"update: {n} removed"))
        self._take_config(self.config)
