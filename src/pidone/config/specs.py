"""The frozen specs configuration turns into: what the supervisor, the
loop and the OS layer read. Pure data; config/load.py builds them."""

from __future__ import annotations

import resource
import signal
from dataclasses import dataclass, field
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
ReadyKind = Literal["unix", "tcp", "http", "file", "exec", "notify", "settle"]
RESTART_POLICIES: tuple[RestartPolicy, ...] = get_args(RestartPolicy)
STOP_TARGETS: tuple[StopTarget, ...] = get_args(StopTarget)
LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)
READY_KINDS: tuple[ReadyKind, ...] = get_args(ReadyKind)

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
    control_socket: str = "/run/pidone/control.sock"
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


@dataclass(frozen=True)
class Rlimit:
    name: str  # "nofile"
    resource: int  # resource.RLIMIT_NOFILE
    soft: int  # resource.RLIM_INFINITY for "unlimited"
    hard: int


@dataclass(frozen=True)
class ProcessSpec:
    """One process: a Procfile entry and/or a `[process.NAME]` table."""

    name: str
    command: Command
    command_line: str = ""  # the command as written, for display
    directory: str | None = None  # relative: to pidone's working directory
    environment: dict[str, str] = field(default_factory=dict, hash=False)  # as configured
    env: dict[str, str] = field(default_factory=dict, hash=False)  # all the child gets
    after: tuple[str, ...] = ()
    ready: ReadyCheck = ReadyCheck("settle", seconds=1.0)
    restart: RestartPolicy = "always"
    stop_signal: int = int(signal.SIGTERM)
    stop_timeout: float = 10.0
    stop_target: StopTarget = "process"  # who gets stop_signal; SIGKILL always hits the group
    reload_signal: int = int(signal.SIGHUP)
    control: bool = False  # its exit stops everything; pidone exits with its status
    pidfile: str | None = None  # it daemonizes: follow the pid written here
    user: str | None = None  # names or numbers, resolved by the OS layer
    group: str | None = None
    groups: tuple[str, ...] | None = None  # None: the user's groups from /etc/group
    umask: int | None = None
    clear_env: bool = False
    capabilities: tuple[str, ...] = ()  # kept (ambient) after the user switch, no "CAP_"
    rlimits: tuple[Rlimit, ...] = ()
    sockets: tuple[str, ...] = ()  # [socket.NAME] tables passed by socket activation
    restart_dependents: bool = True  # False: not cycled when something it is after restarts


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

    @cached_property
    def deps(self) -> dict[str, tuple[str, ...]]:
        """name -> its `after` list, the input graph.py expects."""
        return {name: spec.after for name, spec in self.processes.items()}
