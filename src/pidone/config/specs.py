"""The frozen specs configuration turns into: what the supervisor, the
loop and the OS layer read. Pure data; config/load.py builds them."""

from __future__ import annotations

import re
import resource
import signal
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Literal, get_args

from pidone.config.command import Command

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pidone.config.load import Sources  # where each setting came from (file:line)

DEFAULT_PROCFILE = Path("Procfile")
DEFAULT_CONFIG = Path("pidone.toml")
DEFAULT_ENVFILE = Path(".env")

# The fixed words of the config, each spelled once: the Literal for mypy
# (strict equality refuses a comparison with a word not in it), the tuple
# for what reads them at run time (config's choices, the probes' check).
RestartPolicy = Literal["always", "on-failure", "never"]
StopTarget = Literal["process", "group"]
LogFormat = Literal["text", "json", "raw"]
ReadyKind = Literal["unix", "tcp", "http", "file", "exec", "notify", "settle", "log"]
OnFatal = Literal["stay", "exit"]
RESTART_POLICIES: tuple[RestartPolicy, ...] = get_args(RestartPolicy)
STOP_TARGETS: tuple[StopTarget, ...] = get_args(StopTarget)
LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)
READY_KINDS: tuple[ReadyKind, ...] = get_args(ReadyKind)
ON_FATAL: tuple[OnFatal, ...] = get_args(OnFatal)
# An exit code is 0..255; a death by signal is never a success.
MAX_EXIT_CODE = 255

# Linux capability names (without "CAP_") in the order of their numbers in
# linux/capability.h.
_CAPABILITY_NAMES = """
    CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
    LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER
    SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE
    SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP
    MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF
    CHECKPOINT_RESTORE
"""
CAPABILITIES: dict[str, int] = {name: n for n, name in enumerate(_CAPABILITY_NAMES.split())}

# rlimit names as prlimit(1) spells them, for those this platform has.
_RLIMIT_NAMES = """
    as core cpu data fsize memlock msgqueue nice nofile nproc rss rtprio rttime sigpending stack
"""
RLIMITS: dict[str, int] = {
    name: getattr(resource, "RLIMIT_" + name.upper())
    for name in _RLIMIT_NAMES.split()
    if hasattr(resource, "RLIMIT_" + name.upper())
}


@dataclass(frozen=True)
class Settings:
    """The `[pidone]` table."""

    stop_timeout: float = 10.0  # default for every process, seconds
    log_format: LogFormat = "text"
    control_socket: str | None = None  # None: in the runtime directory (config/rundir.py)
    control_group: str | None = None  # group (name or number) allowed to use it
    metrics: str | None = None  # "HOST:PORT" to serve Prometheus metrics on
    settle_time: float = 1.0  # no `ready`: ready once up this long
    # Restart delays double from backoff_initial up to backoff_max; a process
    # failing fatal_after times within fatal_window seconds becomes FATAL.
    # One that stayed ready for backoff_reset seconds was no crash loop: its
    # earlier exits are forgotten and its next exit restarts it at once
    # (supervisord's startsecs and s6-supervise's wait are 1 s too).
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    backoff_reset: float = 1.0
    fatal_after: int = 5
    fatal_window: float = 60.0
    # SIGTERM: /readyz 503 at once, the stop this many seconds later (a drain)
    shutdown_delay: float = 0.0


# `ready = "log:REGEX"` searches only this many bytes at the start of each
# line (a hostile 64 KiB line costs no more than a 1 KiB one).
LOG_MATCH_MAX = 1024


@dataclass(frozen=True)
class ReadyCheck:
    """How to tell that a process is ready; which fields are set depends on kind."""

    kind: ReadyKind
    target: str = ""  # what followed "kind:", as written (for messages)
    path: str | None = None  # unix, file
    host: str | None = None  # tcp, http
    port: int | None = None  # tcp, http (None: the scheme's default)
    url: str | None = None  # http (http:// or https://)
    command: Command | None = None  # exec: ready when it exits 0
    seconds: float | None = None  # settle: ready once up this long
    pattern: re.Pattern[str] | None = None  # log: ready once a line of its output matches


@dataclass(frozen=True)
class Rlimit:
    name: str  # "nofile"
    resource: int  # resource.RLIMIT_NOFILE
    soft: int  # resource.RLIM_INFINITY for "unlimited"
    hard: int


# Where each ProcessSpec setting acts when the process starts, declared
# beside it (the field's "spawn" metadata; tests/unit/test_spawn_settings.py
# fails on a field without one):
#   CHILD       in the child between fork and exec (identity, limits, umask):
#               a process with one set is forked, never posix_spawn'd;
#   SPAWN       handed to spawn() itself (argv, environment, directory,
#               sockets), which knows what posix_spawn can do with it;
#   SUPERVISOR  read by the supervisor or the loop only.
CHILD, SPAWN, SUPERVISOR = ({"spawn": where} for where in ("child", "spawn", "supervisor"))


@dataclass(frozen=True)
class ProcessSpec:
    """One process: a Procfile entry and/or a `[process.NAME]` table."""

    name: str = field(metadata=SUPERVISOR)
    command: Command = field(metadata=SPAWN)
    command_line: str = field(default="", metadata=SUPERVISOR)  # as written, for display
    directory: str | None = field(default=None, metadata=SPAWN)  # relative: to pidone's cwd
    # `environment` as configured; `env` all the child gets
    environment: dict[str, str] = field(default_factory=dict, hash=False, metadata=SPAWN)
    env: dict[str, str] = field(default_factory=dict, hash=False, metadata=SPAWN)
    after: tuple[str, ...] = field(default=(), metadata=SUPERVISOR)
    ready: ReadyCheck = field(default=ReadyCheck("settle", seconds=1.0), metadata=SUPERVISOR)
    restart: RestartPolicy = field(default="always", metadata=SUPERVISOR)
    stop_signal: int = field(default=int(signal.SIGTERM), metadata=SUPERVISOR)
    stop_timeout: float = field(default=10.0, metadata=SUPERVISOR)
    # who gets stop_signal; SIGKILL always hits the group
    stop_target: StopTarget = field(default="process", metadata=SUPERVISOR)
    reload_signal: int = field(default=int(signal.SIGHUP), metadata=SUPERVISOR)
    # its exit stops everything; pidone exits with its status
    control: bool = field(default=False, metadata=SUPERVISOR)
    pidfile: str | None = field(default=None, metadata=SUPERVISOR)  # it daemonizes: follow it
    user: str | None = field(default=None, metadata=CHILD)  # names or numbers
    group: str | None = field(default=None, metadata=CHILD)
    # None: the user's groups from /etc/group
    groups: tuple[str, ...] | None = field(default=None, metadata=CHILD)
    umask: int | None = field(default=None, metadata=CHILD)
    clear_env: bool = field(default=False, metadata=SPAWN)
    # kept (ambient) after the user switch, no "CAP_"
    capabilities: tuple[str, ...] = field(default=(), metadata=CHILD)
    rlimits: tuple[Rlimit, ...] = field(default=(), metadata=CHILD)
    # [socket.NAME] tables passed by socket activation
    sockets: tuple[str, ...] = field(default=(), metadata=SPAWN)
    # False: not cycled when something it is after restarts
    restart_dependents: bool = field(default=True, metadata=SUPERVISOR)
    # False: not started by `pidone run`, only by `pidone ctl start` (supervisord's)
    autostart: bool = field(default=True, metadata=SUPERVISOR)
    # True: fd 0 is pidone's own stdin, not /dev/null (attach-daemon2's stdin)
    stdin: bool = field(default=False, metadata=SPAWN)
    # Absolute, normalized: restarted (or sent touch_signal) when one is touched
    touch: tuple[str, ...] = field(default=(), metadata=SUPERVISOR)
    touch_signal: int | None = field(default=None, metadata=SUPERVISOR)
    # PID 1 of a PID namespace of its own, with its own /proc: spawn() forks
    # for it (posix_spawn cannot mount), see system/namespaces.py
    pid_namespace: bool = field(default=False, metadata=SPAWN)
    # [legion.NAME]: runs only while this pidone holds that legion's lease
    legion: str | None = field(default=None, metadata=SUPERVISOR)
    # Not READY this long after its spawn: stopped, and a failed start.
    # None: no limit (s6-overlay found a default limit caused more failures).
    ready_timeout: float | None = field(default=None, metadata=SUPERVISOR)
    # The failure policy: [pidone]'s values unless set here (config/load.py).
    backoff_initial: float = field(default=Settings.backoff_initial, metadata=SUPERVISOR)
    backoff_max: float = field(default=Settings.backoff_max, metadata=SUPERVISOR)
    fatal_after: int = field(default=Settings.fatal_after, metadata=SUPERVISOR)
    fatal_window: float = field(default=Settings.fatal_window, metadata=SUPERVISOR)
    # The exit codes that are a success (supervisord's exitcodes): for
    # restart = "on-failure", a one-shot's "completed" and pidone's verdict.
    success_exit_codes: tuple[int, ...] = field(default=(0,), metadata=SUPERVISOR)
    # FATAL: "stay" (pidone goes on without it) or "exit" (stop everything,
    # exit 1: the orchestrator replaces the container).
    on_fatal: OnFatal = field(default="stay", metadata=SUPERVISOR)
    # True: /healthz answers 503 while it is FATAL.
    required: bool = field(default=False, metadata=SUPERVISOR)

    def succeeded(self, status: int, signum: int) -> bool:
        """Is this end of it a success? An exit with one of its
        success_exit_codes; never a death by signal (nor UNKNOWN_STATUS, -1)."""
        return signum == 0 and status in self.success_exit_codes

    # Liveness: once READY (and alive_delay later), `alive` is tried every
    # alive_interval, each attempt given alive_timeout; alive_failures in a
    # row restart it (reason "liveness").
    alive: ReadyCheck | None = field(default=None, metadata=SUPERVISOR)
    alive_interval: float = field(default=10.0, metadata=SUPERVISOR)
    alive_timeout: float = field(default=1.0, metadata=SUPERVISOR)
    alive_failures: int = field(default=3, metadata=SUPERVISOR)
    alive_delay: float = field(default=0.0, metadata=SUPERVISOR)
    # sd_notify watchdog: WATCHDOG=1 at least every this many seconds, or restarted
    watchdog: float | None = field(default=None, metadata=SPAWN)

    def notifies(self) -> bool:
        """Does it get a NOTIFY_SOCKET (its READY=1, or its WATCHDOG=1 pings)?"""
        return self.ready.kind == "notify" or self.watchdog is not None

    def runs_in_child(self) -> bool:
        """Has it a CHILD setting? Then its child has work of its own before
        exec, and it is started by fork (posix_spawn cannot run that work).
        (A CHILD field with a default_factory would always count: forked.)"""
        return any(
            getattr(self, f.name) != f.default
            for f in fields(self)
            if f.metadata["spawn"] == "child"
        )


@dataclass(frozen=True)
class SocketSpec:
    """A `[socket.NAME]` table: a unix socket in a directory pidone makes safe."""

    name: str
    path: str  # absolute
    owner: str | None = None
    group: str | None = None
    mode: int = 0o660
    listen: bool = False  # True: pidone binds it and passes it on (LISTEN_FDS)
    directory_mode: int = 0o2750


# The timing rule of a legion, defined once (config checks it, the core and
# the README use it): a lease of `ttl` seconds is renewed every ttl/3 (each
# request waits at most that long); the lord's legion processes must be down
# legion_margin() before the lease it last renewed can expire (the clock
# drift and scheduling delay allowed for), so their stop begins stop_timeout
# before that. A stop_timeout is refused unless that stop begins halfway
# through the first renewal's wait at the earliest (ttl/3 + ttl/6: a slow
# answer, or a failure and its retries, still come before any stop):
# stop_timeout + margin <= ttl/2.
LEGION_MIN_TTL = 1.0
LEGION_MAX_TTL = 3600.0


def legion_margin(ttl: float) -> float:
    """Seconds before the lease's expiry (as measured from when the request
    that set it was sent) by which the legion processes must be down."""
    return max(0.5, ttl * 0.05)


def legion_max_stop_timeout(ttl: float) -> float:
    """The longest stop_timeout a legion process of this ttl may have."""
    return ttl / 2 - legion_margin(ttl)


def legion_min_ttl(stop_timeout: float) -> float:
    """The shortest ttl that allows this stop_timeout (the inverse of the above)."""
    return max(2 * stop_timeout + 1.0, stop_timeout / 0.45)


@dataclass(frozen=True)
class LegionSpec:
    """A `[legion.NAME]` table: a lease in one redis, held by one pidone."""

    name: str
    redis: str  # as written: redis://HOST:PORT/DB or unix:///PATH?db=N
    host: str | None = None  # tcp
    port: int = 6379
    path: str | None = None  # unix socket
    db: int = 0
    password_env: str | None = None  # AUTH with the value of this variable of pidone's
    ttl: float = 10.0
    priority: int = 0

    @property
    def key(self) -> str:
        return f"pidone:legion:{self.name}"


@dataclass(frozen=True)
class Config:
    settings: Settings
    processes: dict[str, ProcessSpec]  # Procfile order, then pidone.toml order
    sockets: dict[str, SocketSpec]
    start_waves: list[list[str]]
    stop_waves: list[list[str]]
    sources: Sources = field(compare=False, repr=False)
    # "file:line: warning: ..." lines that `pidone check` prints; nothing refused.
    warnings: tuple[str, ...] = field(default=(), compare=False, repr=False)
    legions: dict[str, LegionSpec] = field(default_factory=dict)

    @cached_property
    def deps(self) -> dict[str, tuple[str, ...]]:
        """name -> its `after` list, the input graph.py expects."""
        return {name: spec.after for name, spec in self.processes.items()}
