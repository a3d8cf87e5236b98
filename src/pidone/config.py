"""Procfile + pidone.toml + .env -> frozen specs, pure (it only reads files).

A pipeline, like process-compose's: parse every file, apply defaults,
validate; every problem is collected and raised as one ConfigError, each
naming the file and line, the key, what is wrong and how to fix it:

    pidone.toml:12: [process.web] stop_signal = "SIGFOO": not a signal name; use a name like ...

Files: `./Procfile`, `./pidone.toml` and `./.env` unless named; either of
the first two alone is enough. A process is a Procfile entry, a
`[process.NAME]` table, or both (then the command comes from exactly one).

`${VAR}` in commands (and in `ready = "exec:..."`) expands from the
environment pidone got, then .env, then the process's `environment` (later
wins); `environment` values expand from the environment and .env. A child's
environment is pidone's (empty with `clear_env`), then .env, then
`environment`.

What needs the OS (does the user exist? the directory?) is not checked
here: `load(..., checks=[...])` runs such checks on the finished Config and
reports their problems, located with `Config.sources.problem(...)`, in the
same ConfigError.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import resource
import signal
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

from pidone import command as commands
from pidone import envfile, graph, procfile
from pidone.command import Command
from pidone.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_PROCFILE = Path("Procfile")
DEFAULT_CONFIG = Path("pidone.toml")
DEFAULT_ENVFILE = Path(".env")

RestartPolicy = Literal["always", "on-failure", "never"]
StopTarget = Literal["process", "group"]
LogFormat = Literal["text", "json"]
ReadyKind = Literal["unix", "tcp", "http", "file", "exec", "notify", "settle"]

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
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
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
    command_line: str = ""  # the command after ${VAR} expansion, for display
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


class Sources:
    """The files a Config came from, and where in them each setting is."""

    def __init__(
        self,
        procfile: Path | None,
        config: Path | None,
        envfile: Path | None,
        procfile_lines: Mapping[str, int],
        toml_text: str,
    ) -> None:
        self.procfile = procfile
        self.config = config
        self.envfile = envfile
        self.procfile_lines = dict(procfile_lines)
        self._toml_lines = _TomlLines(toml_text)

    def where(self, table: str, key: str | None = None) -> str:
        """The "file:line" of a key (or else its table), e.g. "pidone.toml:12";
        the Procfile line for a process that only the Procfile defines."""
        line = self._toml_lines.find(table, key)
        if line is not None:
            return f"{self.config}:{line}"
        name = table.partition(".")[2]
        if table.startswith("process.") and name in self.procfile_lines:
            return f"{self.procfile}:{self.procfile_lines[name]}"
        return str(self.config or self.procfile)

    def problem(self, table: str, key: str | None, message: str) -> str:
        """A problem found later (by an OS check) in the same format as load()'s:
        problem("process.web", "user", 'no user "bob"; ...')."""
        return f"{self.where(table, key)}: {_subject(table, key, _UNSET)}: {message}"


@dataclass(frozen=True)
class Config:
    settings: Settings
    processes: dict[str, ProcessSpec]  # Procfile order, then pidone.toml order
    sockets: dict[str, SocketSpec]
    start_waves: list[list[str]]
    stop_waves: list[list[str]]
    sources: Sources = field(compare=False, repr=False)

    @cached_property
    def deps(self) -> dict[str, tuple[str, ...]]:
        """name -> its `after` list, the input graph.py expects."""
        return {name: spec.after for name, spec in self.processes.items()}


Check = Callable[[Config], Iterable[str]]


def load(
    procfile: Path | None,
    config: Path | None,
    envfile: Path | None,
    *,
    environ: Mapping[str, str],
    checks: Iterable[Check] = (),
) -> Config:
    """Read, default and validate the configuration, or raise one ConfigError.

    `checks` run on the valid Config (the OS layer passes its user, group and
    directory checks here); the problems they return are raised the same way.
    """
    procfile_path, config_path, env_path = _paths(procfile, config, envfile)
    problems: list[str] = []
    procfile_text = _read(procfile_path, "-f", problems)
    toml_text = _read(config_path, "-c", problems)
    env_text = _read(env_path, "-e", problems)
    _raise_if(problems)

    entries = _parse_procfile(procfile_text, procfile_path, problems)
    dotenv = _parse_envfile(env_text, env_path, environ, problems)
    data = _parse_toml(toml_text, config_path, problems)
    _raise_if(problems)

    lines = {entry.name: entry.line for entry in entries}
    sources = Sources(procfile_path, config_path, env_path, lines, toml_text or "")
    ctx = _Context(sources, problems)
    _check_top_level(ctx, data)
    settings = _settings(ctx, data.get("pidone", {}))
    sockets = _sockets(ctx, data.get("socket", {}))
    names, processes = _processes(ctx, entries, data.get("process", {}), settings, dotenv, environ)
    _check_references(ctx, names, processes, sockets)
    _raise_if(problems)

    deps = {name: spec.after for name, spec in processes.items()}
    result = Config(
        settings=settings,
        processes=processes,
        sockets=sockets,
        start_waves=graph.start_waves(deps),
        stop_waves=graph.stop_waves(deps),
        sources=sources,
    )
    for check in checks:
        problems.extend(check(result))
    _raise_if(problems)
    return result


# --- files --------------------------------------------------------------------


def _paths(
    procfile: Path | None, config: Path | None, envfile: Path | None
) -> tuple[Path | None, Path | None, Path | None]:
    """Fill in the default files that exist; a file named explicitly must exist."""
    if procfile is None and DEFAULT_PROCFILE.is_file():
        procfile = DEFAULT_PROCFILE
    if config is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG
    if envfile is None and DEFAULT_ENVFILE.is_file():
        envfile = DEFAULT_ENVFILE
    if procfile is None and config is None:
        raise ConfigError(
            [
                f"no {DEFAULT_PROCFILE} and no {DEFAULT_CONFIG} in {Path.cwd()}: nothing to run; "
                'create a Procfile with lines like "web: COMMAND", or name a file '
                "with -f PROCFILE or -c CONFIG"
            ]
        )
    return procfile, config, envfile


def _read(path: Path | None, option: str, problems: list[str]) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append(f"{path}: cannot read it: {exc.strerror}; check the path given to {option}")
    except UnicodeDecodeError as exc:
        problems.append(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        )
    return None


def _parse_procfile(
    text: str | None, path: Path | None, problems: list[str]
) -> list[procfile.ProcfileEntry]:
    if text is None:
        return []
    try:
        return procfile.parse(text, str(path))
    except ConfigError as exc:
        problems.extend(exc.problems)
        return []


def _parse_envfile(
    text: str | None, path: Path | None, environ: Mapping[str, str], problems: list[str]
) -> dict[str, str]:
    if text is None:
        return {}
    try:
        return envfile.parse(text, str(path), environ=environ)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return {}


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)")


def _parse_toml(text: str | None, path: Path | None, problems: list[str]) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        where = f"{path}:{position[1]}" if position else str(path)
        problems.append(
            f"{where}: not valid TOML: {_TOML_POSITION.sub('', message)}; fix the syntax"
        )
        return {}


_POSITION = re.compile(r"([^:]*):(\d+):")


def _raise_if(problems: list[str]) -> None:
    """Raise them all, sorted by file and line (stable: same line keeps its order)."""

    def position(problem: str) -> tuple[str, int]:
        match = _POSITION.match(problem)
        return (match[1], int(match[2])) if match else (problem.partition(":")[0], 0)

    if problems:
        raise ConfigError(sorted(problems, key=position))


# --- locating keys in the TOML text ---------------------------------------------

_HEADER = re.compile(r"\[\[?(?P<path>[^\]]*)\]\]?\s*(#.*)?")
_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_KEY = re.compile(rf"(?P<path>{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")
_INLINE_KEY = re.compile(r"[{,]\s*(?P<path>[A-Za-z0-9_-]+|\"[^\"]*\")\s*=")
_PART = re.compile(r""""([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+)""")


class _TomlLines:
    """Line numbers of tables and keys, found by scanning the text: tomllib
    gives values, not positions. Good for every layout pidone's docs use
    (tables, dotted keys, one-line inline tables); None when not found."""

    def __init__(self, text: str) -> None:
        self._lines: dict[str, int] = {}
        table = ""
        open_string: str | None = None  # inside a multi-line string
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if open_string is not None:
                if line.count(open_string) % 2:
                    open_string = None
                continue
            header = _HEADER.fullmatch(line)
            if header:
                table = _dotted(header["path"])
                self._add(table, number)
                continue
            key = _KEY.match(line)
            if not key:
                continue
            path = _dotted(key["path"])
            full = f"{table}.{path}" if table else path
            self._add(full, number)
            rest = line[key.end() :]
            for inner in _INLINE_KEY.finditer(rest.lstrip()):
                self._add(f"{full}.{_dotted(inner['path'])}", number)
            for quotes in ('"""', "'''"):
                if rest.count(quotes) % 2:
                    open_string = quotes

    def _add(self, path: str, number: int) -> None:
        parts = path.split(".")
        for end in range(1, len(parts) + 1):
            self._lines.setdefault(".".join(parts[:end]), number)

    def find(self, table: str, key: str | None = None) -> int | None:
        """The line of `key` in `table` ("" for the top level), else of the table."""
        path = f"{table}.{key}" if table and key else (key or table)
        return self._lines.get(path) or self._lines.get(table)


def _dotted(path: str) -> str:
    return ".".join(a or b or c for a, b, c in _PART.findall(path))


# --- validation -----------------------------------------------------------------

T = TypeVar("T")
_UNSET: Any = object()


class _Bad(Exception):
    """A value is wrong: "what is wrong; how to fix it"."""


class _Context:
    def __init__(self, sources: Sources, problems: list[str]) -> None:
        self.sources = sources
        self.problems = problems

    def problem(self, table: str, key: str | None, value: object, message: str) -> None:
        where = self.sources.where(table, key)
        self.problems.append(f"{where}: {_subject(table, key, value)}: {message}")


def _subject(table: str, key: str | None, value: object) -> str:
    """`[process.web] stop_signal = "SIGFOO"`, `[process.web]`, or a top-level key."""
    text = f"[{table}]" if table else ""
    if key is not None:
        text = f"{text} {key}" if text else key
    if value is not _UNSET:
        text += f" = {_toml(value)}"
    return text


def _toml(value: object) -> str:
    """A value written as in the TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{key} = {_toml(item)}" for key, item in value.items())
        return f"{{ {items} }}" if items else "{}"
    return str(value)


def _did_you_mean(word: str, known: Iterable[str], cutoff: float = 0.6) -> str:
    by_lower = {name.lower(): name for name in known}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=cutoff)
    return f'; did you mean "{by_lower[match[0]]}"?' if match else ""


class _Table:
    """A TOML table: reports its unknown keys, and reads typed values, each bad
    one becoming a problem (and the default, so validation goes on)."""

    def __init__(self, ctx: _Context, name: str, data: Mapping[str, Any], known: Iterable[str]):
        self.ctx = ctx
        self.name = name
        self.data = data
        known = list(known)
        for key in data:
            if key not in known:
                hint = _did_you_mean(key, known) or "; the known keys are: " + ", ".join(known)
                ctx.problem(name, key, _UNSET, "unknown key" + hint)

    def get(self, key: str, parse: Callable[[Any], T], default: T) -> T:
        if key not in self.data:
            return default
        try:
            return parse(self.data[key])
        except _Bad as bad:
            self.ctx.problem(self.name, key, self.data[key], str(bad))
            return default


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _seconds(value: Any) -> float:
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise _Bad("must be a number of seconds, like 10 or 2.5")
    return float(value)


def _positive_seconds(value: Any) -> float:
    if _seconds(value) == 0:
        raise _Bad("must be more than 0 seconds, like 10 or 2.5")
    return float(value)


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _Bad("must be a whole number of at least 1, like 5")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad("must be true or false (without quotes)")
    return value


def _text(example: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise _Bad(f"must be a non-empty string, like {example}")
        return value

    return parse


def _absolute_path(example: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or not value.startswith("/"):
            raise _Bad(f"must be an absolute path, like {example}")
        return value

    return parse


def _choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in options:
            listed = ", ".join(f'"{option}"' for option in options)
            hint = _did_you_mean(value, options) if isinstance(value, str) else ""
            raise _Bad(f"must be one of {listed}{hint}")
        return cast(str, value)

    return parse


def _identity(value: Any) -> str:
    """A user or group: a name or a number (kept as text, resolved later)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and value.strip() and not any(c in value for c in ":\n "):
        return value
    raise _Bad('must be a name or a number, like "app" or 1000')


def _identities(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Bad('must be a list of group names or numbers, like ["www-data", 101]')
    return tuple(_identity(item) for item in value)


def _names(example: str) -> Callable[[Any], tuple[str, ...]]:
    def parse(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise _Bad(f"must be a list of names, like {example}")
        return tuple(dict.fromkeys(value))  # drop repeats, keep order

    return parse


def _octal(maximum: int, example: str) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        number: int | None = None
        if isinstance(value, str) and re.fullmatch(r"(0o)?[0-7]{1,5}", value):
            number = int(value.removeprefix("0o"), 8)
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        if number is None or not 0 <= number <= maximum:
            raise _Bad(f'must be an octal string up to "{maximum:04o}", like "{example}"')
        return number

    return parse


def _signal(value: Any) -> int:
    """A signal number from "SIGTERM", "term", "15" or 15."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value < signal.NSIG:
            raise _Bad(f'not a signal number; use 1 to {signal.NSIG - 1} or a name like "SIGTERM"')
        return value
    if not isinstance(value, str):
        raise _Bad('must be a signal name like "SIGTERM" or a number')
    name = value.strip().upper()
    name = name if name.startswith("SIG") else "SIG" + name
    if name not in signal.Signals.__members__:
        hint = _did_you_mean(name, signal.Signals.__members__, cutoff=0.8)
        raise _Bad('not a signal name; use a name like "SIGTERM" or a number' + hint)
    return int(signal.Signals[name])


def _address(value: Any) -> str:
    host, _, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _Bad('must be "HOST:PORT", like "127.0.0.1:9100"')
    return cast(str, value)


def _environment(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _Bad('must be a table of strings, like { KEY = "value" }')
    result: dict[str, str] = {}
    for key, item in value.items():
        if not key or "=" in key:
            raise _Bad(f'"{key}" is not a variable name; use letters, digits and "_"')
        if isinstance(item, str):
            result[key] = item
        elif _is_number(item):
            result[key] = str(item)
        else:
            raise _Bad(f'{key} must be a string or a number; quote it, like {key} = "value"')
    return result


def _capabilities(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Bad('must be a list of capability names, like ["NET_BIND_SERVICE"]')
    names = [item.upper().removeprefix("CAP_") for item in value]
    for name in names:
        if name not in CAPABILITIES:
            hint = _did_you_mean(name, CAPABILITIES) or ' (see "man 7 capabilities")'
            raise _Bad(f'"{name}" is not a capability{hint}')
    return tuple(dict.fromkeys(names))


def _rlimits(value: Any) -> tuple[Rlimit, ...]:
    if not isinstance(value, dict):
        raise _Bad('must be a table of limits, like { nofile = 4096, core = "unlimited" }')
    limits: list[Rlimit] = []
    for key, item in value.items():
        name = key.lower().removeprefix("rlimit_")
        if name not in RLIMITS:
            hint = _did_you_mean(name, RLIMITS) or "; known: " + ", ".join(RLIMITS)
            raise _Bad(f'"{key}" is not a resource limit{hint}')
        pair = item if isinstance(item, list) and len(item) == 2 else [item, item]
        soft, hard = (_limit(name, part) for part in pair)
        if _as_float(soft) > _as_float(hard):
            raise _Bad(
                f"{name}: the soft limit is above the hard one; use [soft, hard] with soft <= hard"
            )
        limits.append(Rlimit(name, RLIMITS[name], soft, hard))
    return tuple(limits)


def _limit(name: str, value: Any) -> int:
    if value in ("unlimited", "infinity"):
        return resource.RLIM_INFINITY
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _Bad(f'{name} must be a number, "unlimited", or [soft, hard], like {name} = 4096')


def _as_float(limit: int) -> float:
    return math.inf if limit == resource.RLIM_INFINITY else float(limit)


READY_FORMS = (
    '"unix:PATH", "tcp:HOST:PORT", "http://HOST:PORT/PATH", "file:PATH", '
    '"exec:COMMAND", "notify" or "settle:SECONDS"'
)


def _ready(value: Any, env: Mapping[str, str]) -> ReadyCheck:
    if not isinstance(value, str):
        raise _Bad(f"must be a string: {READY_FORMS}")
    if value == "notify":
        return ReadyCheck("notify")
    if value.startswith(("http://", "https://")):
        return _ready_http(value)
    kind, colon, target = value.partition(":")
    if not colon or kind not in ("unix", "tcp", "file", "exec", "settle"):
        hint = _did_you_mean(kind, ("unix", "tcp", "http", "file", "exec", "notify", "settle"))
        raise _Bad(f"not a readiness check{hint}; use {READY_FORMS}")
    if not target.strip():
        raise _Bad(f'"{kind}:" needs something after the colon; use {READY_FORMS}')
    if kind == "unix":
        return ReadyCheck("unix", target, path=target)
    if kind == "file":
        return ReadyCheck("file", target, path=target)
    if kind == "tcp":
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise _Bad('must be "tcp:HOST:PORT", like "tcp:127.0.0.1:6379"')
        return ReadyCheck("tcp", target, host=host.strip("[]"), port=int(port))
    if kind == "exec":
        try:
            return ReadyCheck("exec", target, command=commands.parse(target, env))
        except ValueError as exc:
            raise _Bad(str(exc)) from None
    try:
        seconds = float(target)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        raise _Bad('must be "settle:SECONDS", like "settle:2.5"')
    return ReadyCheck("settle", target, seconds=seconds)


def _ready_http(value: str) -> ReadyCheck:
    try:
        url = urlsplit(value)
        port = url.port
    except ValueError:
        url, port = None, None
    if url is None or not url.hostname:
        raise _Bad('must be a URL with a host, like "http://127.0.0.1:8000/health"')
    return ReadyCheck("http", value, host=url.hostname, port=port, url=value)


# --- the tables -------------------------------------------------------------------

SETTINGS_KEYS = tuple(Settings.__dataclass_fields__)
_PROCESS_KEYS = """
    command directory environment after ready restart stop_signal stop_timeout stop_target
    reload_signal control pidfile user group groups umask clear_env capabilities rlimits
    sockets restart_dependents
"""
PROCESS_KEYS = tuple(_PROCESS_KEYS.split())
SOCKET_KEYS = ("path", "owner", "group", "mode", "listen", "directory_mode")
TABLES = ("pidone", "process", "socket")
TABLE_FORMS = "[pidone], [process.NAME] or [socket.NAME]"
_SUN_PATH_MAX = 107  # bytes in sockaddr_un.sun_path, less the final NUL


def _check_top_level(ctx: _Context, data: Mapping[str, Any]) -> None:
    for key, value in data.items():
        if key in TABLES:
            if not isinstance(value, dict):
                ctx.problem("", key, value, f"must be a table, like [{key}]")
            continue
        if isinstance(value, dict):  # a table: [sockets.app] for [socket.app]
            match = difflib.get_close_matches(key, TABLES, n=1)
            hint = f"did you mean [{match[0]}]?" if match else "use " + TABLE_FORMS
            ctx.problem(key, None, _UNSET, f"unknown table; {hint}")
        elif key in SETTINGS_KEYS:
            ctx.problem("", key, _UNSET, "belongs in the [pidone] table; move it under [pidone]")
        elif key in PROCESS_KEYS:
            ctx.problem("", key, _UNSET, "belongs in a process table; move it under [process.NAME]")
        else:
            ctx.problem("", key, _UNSET, f"unknown key; use {TABLE_FORMS}")


def _subtables(ctx: _Context, kind: str, data: Any) -> dict[str, Mapping[str, Any]]:
    """The [kind.NAME] tables with valid names."""
    tables: dict[str, Mapping[str, Any]] = {}
    if not isinstance(data, dict):
        return tables  # reported by _check_top_level
    for name, table in data.items():
        where = f"{kind}.{name}"
        if not procfile.NAME.fullmatch(name):
            ctx.problem(where, None, _UNSET, f'"{name}" is not a valid name; {procfile.NAME_RULE}')
        elif kind == "process" and name == procfile.RESERVED:
            ctx.problem(where, None, _UNSET, procfile.RESERVED_RULE)
        elif not isinstance(table, dict):
            ctx.problem(kind, name, table, f"must be a table, like [{kind}.{name}]")
        else:
            tables[name] = table
    return tables


def _settings(ctx: _Context, data: Any) -> Settings:
    if not isinstance(data, dict):
        return Settings()
    table = _Table(ctx, "pidone", data, SETTINGS_KEYS)
    default = Settings()
    settings = Settings(
        stop_timeout=table.get("stop_timeout", _seconds, default.stop_timeout),
        log_format=cast(LogFormat, table.get("log_format", _choice("text", "json"), "text")),
        control_socket=table.get(
            "control_socket", _absolute_path('"/run/pidone/control.sock"'), default.control_socket
        ),
        control_group=table.get("control_group", _identity, None),
        metrics=table.get("metrics", _address, None),
        settle_time=table.get("settle_time", _seconds, default.settle_time),
        backoff_initial=table.get("backoff_initial", _positive_seconds, default.backoff_initial),
        backoff_max=table.get("backoff_max", _positive_seconds, default.backoff_max),
        fatal_after=table.get("fatal_after", _count, default.fatal_after),
        fatal_window=table.get("fatal_window", _positive_seconds, default.fatal_window),
    )
    if settings.backoff_max < settings.backoff_initial:
        ctx.problem(
            "pidone",
            "backoff_max",
            data.get("backoff_max", settings.backoff_max),
            f"is below backoff_initial ({settings.backoff_initial}); make it at least that",
        )
    return settings


def _sockets(ctx: _Context, data: Any) -> dict[str, SocketSpec]:
    sockets: dict[str, SocketSpec] = {}
    owners: dict[str, str] = {}  # path -> socket name
    for name, raw in _subtables(ctx, "socket", data).items():
        table = _Table(ctx, f"socket.{name}", raw, SOCKET_KEYS)
        path = table.get("path", _absolute_path('"/run/app/app.sock"'), "")
        if "path" not in raw:
            ctx.problem(f"socket.{name}", None, _UNSET, 'no path; add path = "/run/app/app.sock"')
        elif len(path.encode()) > _SUN_PATH_MAX:
            ctx.problem(
                f"socket.{name}",
                "path",
                path,
                f"longer than the {_SUN_PATH_MAX} bytes a socket path can have; use a shorter one",
            )
        elif path in owners:
            ctx.problem(
                f"socket.{name}",
                "path",
                path,
                f"already used by [socket.{owners[path]}]; use another path",
            )
        owners.setdefault(path, name)
        sockets[name] = SocketSpec(
            name=name,
            path=path,
            owner=table.get("owner", _identity, None),
            group=table.get("group", _identity, None),
            mode=table.get("mode", _octal(0o7777, "0660"), 0o660),
            listen=table.get("listen", _flag, False),
            directory_mode=table.get("directory_mode", _octal(0o7777, "2750"), 0o2750),
        )
    return sockets


def _processes(
    ctx: _Context,
    entries: list[procfile.ProcfileEntry],
    data: Any,
    settings: Settings,
    dotenv: Mapping[str, str],
    environ: Mapping[str, str],
) -> tuple[set[str], dict[str, ProcessSpec]]:
    """Every process name (even those too broken to build), and the specs."""
    by_name = {entry.name: entry for entry in entries}
    tables = _subtables(ctx, "process", data)
    names = list(by_name) + [name for name in tables if name not in by_name]
    if not names:
        ctx.problems.append(
            f"{ctx.sources.config or ctx.sources.procfile}: no processes defined; "
            'add a [process.NAME] table with a command, or a "name: command" line to a Procfile'
        )
    specs: dict[str, ProcessSpec] = {}
    for name in names:
        spec = _process(
            ctx, name, by_name.get(name), tables.get(name, {}), settings, dotenv, environ
        )
        if spec is not None:
            specs[name] = spec
    return set(names), specs


def _process(
    ctx: _Context,
    name: str,
    entry: procfile.ProcfileEntry | None,
    raw: Mapping[str, Any],
    settings: Settings,
    dotenv: Mapping[str, str],
    environ: Mapping[str, str],
) -> ProcessSpec | None:
    where = f"process.{name}"
    table = _Table(ctx, where, raw, PROCESS_KEYS)
    base = {**environ, **dotenv}
    environment: dict[str, str] = {}
    configured: dict[str, str] = table.get("environment", _environment, {})
    for key, value in configured.items():
        try:
            environment[key] = envfile.expand(value, base)
        except ValueError as exc:
            ctx.problem(where, "environment", raw["environment"], f"{key}: {exc}")
    command_env = {**base, **environment}
    clear_env = table.get("clear_env", _flag, False)
    spec_command = _process_command(ctx, name, entry, table, command_env)
    if spec_command is None:
        return None
    line, argv = spec_command
    return ProcessSpec(
        name=name,
        command=argv,
        command_line=line,
        directory=table.get("directory", _text('"/srv/app/current"'), None),
        environment=environment,
        env={**({} if clear_env else environ), **dotenv, **environment},
        after=table.get("after", _names('["redis"]'), ()),
        ready=table.get(
            "ready",
            lambda value: _ready(value, command_env),
            ReadyCheck("settle", seconds=settings.settle_time),
        ),
        restart=cast(
            RestartPolicy, table.get("restart", _choice("always", "on-failure", "never"), "always")
        ),
        stop_signal=table.get("stop_signal", _signal, int(signal.SIGTERM)),
        stop_timeout=table.get("stop_timeout", _seconds, settings.stop_timeout),
        stop_target=cast(
            StopTarget, table.get("stop_target", _choice("process", "group"), "process")
        ),
        reload_signal=table.get("reload_signal", _signal, int(signal.SIGHUP)),
        control=table.get("control", _flag, False),
        pidfile=table.get("pidfile", _absolute_path('"/run/app/app.pid"'), None),
        user=table.get("user", _identity, None),
        group=table.get("group", _identity, None),
        groups=table.get("groups", _identities, None),
        umask=table.get("umask", _octal(0o777, "0027"), None),
        clear_env=clear_env,
        capabilities=table.get("capabilities", _capabilities, ()),
        rlimits=table.get("rlimits", _rlimits, ()),
        sockets=table.get("sockets", _names('["app"]'), ()),
        restart_dependents=table.get("restart_dependents", _flag, True),
    )


def _process_command(
    ctx: _Context,
    name: str,
    entry: procfile.ProcfileEntry | None,
    table: _Table,
    env: Mapping[str, str],
) -> tuple[str, Command] | None:
    """The expanded command line and its argv, from the Procfile or the table."""
    where = f"process.{name}"
    in_table = "command" in table.data
    text = table.get("command", _text('"uwsgi --ini uwsgi.ini"'), None)
    if in_table and entry is not None:
        ctx.problem(
            where,
            "command",
            table.data["command"],
            f"also given on {ctx.sources.procfile}:{entry.line}; keep only one of the two",
        )
        return None
    if text is None and entry is not None:
        text = entry.command
    if text is None:
        if not in_table:
            ctx.problem(
                where,
                None,
                _UNSET,
                f'no command; add command = "..." to it, or a "{name}: COMMAND" line '
                "to the Procfile",
            )
        return None
    try:
        line = envfile.expand(text, env)
        return line, commands.parse(line)
    except ValueError as exc:
        if entry is None:
            ctx.problem(where, "command", text, str(exc))
        else:
            ctx.problems.append(f'{ctx.sources.procfile}:{entry.line}: process "{name}": {exc}')
        return None


def _check_references(
    ctx: _Context,
    names: set[str],
    processes: Mapping[str, ProcessSpec],
    sockets: Mapping[str, SocketSpec],
) -> None:
    """`after` and `sockets` name things that exist; `after` has no cycle."""
    known = sorted(names)
    for name, spec in processes.items():
        for dep in spec.after:
            if dep not in names:
                hint = _did_you_mean(dep, known) or "; the processes are: " + ", ".join(known)
                ctx.problem(
                    f"process.{name}", "after", list(spec.after), f'no process named "{dep}"{hint}'
                )
        for socket in spec.sockets:
            if socket not in sockets:
                hint = _did_you_mean(socket, sockets) or f"; define it in a [socket.{socket}] table"
                ctx.problem(
                    f"process.{name}",
                    "sockets",
                    list(spec.sockets),
                    f'no socket named "{socket}"{hint}',
                )
    deps = {name: [d for d in spec.after if d in processes] for name, spec in processes.items()}
    cycle = graph.find_cycle(deps)
    if cycle:
        ctx.problem(
            f"process.{cycle[0]}",
            "after",
            _UNSET,
            f"dependency cycle {' -> '.join(cycle)}; remove one of these `after` entries",
        )
