"""Procfile + pidone.toml + .env -> frozen specs, pure (it only reads files).

A pipeline, like process-compose's: parse every file, apply defaults,
validate; every problem is collected and raised as one ConfigError, each
naming the file and line, the key, what is wrong and how to fix it:

    pidone.toml:12: [process.web] stop_signal = "SIGFOO": not a signal name; use a name like ...

Files: `./Procfile`, `./pidone.toml` and `./.env` unless named; either of
the first two alone is enough. A process is a Procfile entry, a
`[process.NAME]` table, or both (then the command comes from exactly one).

A child's environment is pidone's (empty with `clear_env`), then .env, then
its PORT, then `environment` (later wins). Commands (and `ready =
"exec:..."`) are never expanded here: a `$` makes them go to /bin/sh as
written, which expands them from that environment. What pidone reads itself
is expanded by envfile.expand (the shell's parameter expansions): .env
values, `environment` values (from pidone's environment, .env and PORT),
and the other readiness targets (from the child's environment).

PORT as foreman and honcho set it: base + 100 x the process's position
(Procfile order, then pidone.toml order), the base being PORT from .env,
else from pidone's environment, else 5000; `port = N` chooses one.

What needs the OS (does the user exist? the directory?) is not checked
here: `load(..., checks=[...])` runs such checks on the finished Config and
reports their problems, located with `Config.sources.problem(...)`, in the
same ConfigError.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar, cast

from pidone import hostport
from pidone.config import command as commands
from pidone.config import envfile, graph, procfile
from pidone.config.command import Command
from pidone.config.envfile import Budget
from pidone.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from pidone.config import tomllines, values
from pidone.config.specs import (
    DEFAULT_CONFIG,
    DEFAULT_ENVFILE,
    DEFAULT_PROCFILE,
    LEGION_MAX_TTL,
    LEGION_MIN_TTL,
    LOG_FORMATS,
    ON_FATAL,
    RESTART_POLICIES,
    STOP_TARGETS,
    Config,
    LegionSpec,
    ProcessSpec,
    ReadyCheck,
    Settings,
    SocketSpec,
    legion_margin,
    legion_max_stop_timeout,
    legion_min_ttl,
)
from pidone.config.tomllines import TomlLines
from pidone.config.values import BadValue


class Sources:
    """The files a Config came from, and where in them each setting is."""

    def __init__(
        self,
        procfile: Path | None,
        config: Path | None,
        envfile: Path | None,
        procfile_lines: Mapping[str, int],
        toml_text: str,
        included: Sequence[tuple[Path, str]] = (),
    ) -> None:
        self.procfile = procfile
        self.config = config
        self.envfile = envfile
        self.procfile_lines = dict(procfile_lines)
        self.toml_lines = TomlLines(toml_text)
        self.included = tuple(path for path, _ in included)  # in merge order
        # pidone.toml, then each included file (see config/include.py)
        self.toml_files = [(config, self.toml_lines)] + [(p, TomlLines(t)) for p, t in included]

    def where(self, table: str, key: str | None = None) -> str:
        """The "file:line" of a key (or else its table), e.g. "pidone.toml:12":
        of the last file that set the key (its value won), else of the first
        that has the table; the Procfile line for a process only it defines."""
        found = self._key_file(table, key)
        if found is not None:
            return f"{found[0]}:{found[2]}"
        for path, lines in self.toml_files:
            line = lines.line(table) if table else None
            if line is not None:
                return f"{path}:{line}"
        name = table.partition(".")[2]
        if table.startswith("process.") and name in self.procfile_lines:
            return f"{self.procfile}:{self.procfile_lines[name]}"
        return str(self.config or self.procfile)

    def _key_file(self, table: str, key: str | None) -> tuple[Path | None, TomlLines, int] | None:
        """The last file that sets table.key (its value won), its lines, the line."""
        if key is None:
            return None
        full = f"{table}.{key}" if table else key
        for path, lines in reversed(self.toml_files):
            line = lines.line(full)
            if line is not None:
                return path, lines, line
        return None

    def lines_of(self, table: str, key: str) -> TomlLines:
        """The lines of the file whose value of table.key won."""
        found = self._key_file(table, key)
        return self.toml_lines if found is None else found[1]

    def problem(self, table: str, key: str | None, message: str) -> str:
        """A problem found later (by an OS check) in the same format as load()'s:
        problem("process.web", "user", 'no user "bob"; ...')."""
        return f"{self.where(table, key)}: {_subject(table, key, _UNSET)}: {message}"


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
    warnings: list[str] = []
    procfile_text = _read(procfile_path, "-f", problems, warnings)
    toml_text = _read(config_path, "-c", problems, warnings)
    env_text = _read(env_path, "-e", problems, warnings)
    _raise_if(problems)

    budget = Budget()  # for every ${VAR} expansion of this load
    entries = _parse_procfile(procfile_text, procfile_path, problems)
    dotenv = _parse_envfile(env_text, env_path, environ, problems, budget)
    data = _parse_toml(toml_text, config_path, problems)
    included = _include(config_path, toml_text, data, problems, warnings)
    _raise_if(problems)

    lines = {entry.name: entry.line for entry in entries}
    sources = Sources(procfile_path, config_path, env_path, lines, toml_text or "", included)
    ctx = _Context(sources, problems, budget, warnings)
    _check_top_level(ctx, data)
    settings = _settings(ctx, data.get("pidone", {}))
    sockets = _sockets(ctx, data.get("socket", {}))
    legions = _legions(ctx, data.get("legion", {}))
    names, processes = _processes(ctx, entries, data.get("process", {}), settings, dotenv, environ)
    _check_references(ctx, names, processes, sockets)
    _check_legions(ctx, processes, legions, environ)
    _raise_if(problems)

    deps = {name: spec.after for name, spec in processes.items()}
    result = Config(
        settings=settings,
        processes=processes,
        sockets=sockets,
        start_waves=graph.start_waves(deps),
        stop_waves=graph.stop_waves(deps),
        sources=sources,
        warnings=tuple(warnings),
        legions=legions,
    )
    for check in checks:
        problems.extend(check(result))
    _raise_if(problems)
    return result


def settings_only(config: Path) -> Settings:
    """The [pidone] table of `config` alone, through the same parse and checks
    as load() (for `pidone ctl`, which needs control_socket and nothing else:
    no Procfile, no .env, no process). Raises ConfigError."""
    problems: list[str] = []
    text = _read(config, "-c", problems, [])
    _raise_if(problems)
    data = _parse_toml(text, config, problems)
    included = _include(config, text, data, problems, [])  # control_socket may be there
    _raise_if(problems)
    ctx = _Context(Sources(None, config, None, {}, text or "", included), problems, Budget(), [])
    raw = data.get("pidone", {})
    if not isinstance(raw, dict):
        ctx.problem("", "pidone", raw, "must be a table, like [pidone]")
    settings = _settings(ctx, raw)
    _raise_if(problems)
    return settings


def select(config: Config, names: Iterable[str]) -> Config:
    """The Config of `pidone run NAME...` (and `check NAME...`): only those
    processes and what they are after (transitively), as foreman's and
    honcho's `start NAME`; each of them started (a named one, or one it
    needs, with autostart = false included), the others not there at all."""
    names = list(names)
    known = list(config.processes)
    problems = []
    for name in names:
        if name not in config.processes:
            files = "/".join(str(f) for f in (config.sources.procfile, config.sources.config) if f)
            hint = values.did_you_mean(name, known) or ""
            problems.append(f"no process {name} in {files}; known: {', '.join(known)}{hint}")
    if problems:
        raise ConfigError(problems)  # in the order they were named
    keep = graph.needed(config.deps, names)
    processes = {
        n: replace(spec, autostart=True) for n, spec in config.processes.items() if n in keep
    }
    used = {s for spec in processes.values() for s in spec.sockets}
    deps = {name: spec.after for name, spec in processes.items()}
    legions = {spec.legion for spec in processes.values()}
    return replace(
        config,
        processes=processes,
        sockets={n: sock for n, sock in config.sockets.items() if n in used},
        legions={n: legion for n, legion in config.legions.items() if n in legions},
        start_waves=graph.start_waves(deps),
        stop_waves=graph.stop_waves(deps),
    )


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


MAX_FILE_BYTES = 1024 * 1024  # per config file: every parse stays fast and small


BOM = "\ufeff"


def _read(path: Path | None, option: str, problems: list[str], warnings: list[str]) -> str | None:
    if path is None:
        return None
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        problems.append(f"{path}: cannot read it: {exc.strerror}; check the path given to {option}")
        return None
    return _decode(path, data, f"the path given to {option}", problems, warnings)


def _decode(
    path: Path, data: bytes, named_by: str, problems: list[str], warnings: list[str]
) -> str | None:
    """A config file's bytes (at most MAX_FILE_BYTES + 1 read) as text, or None
    with the problem said."""
    if len(data) > MAX_FILE_BYTES:
        problems.append(
            f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB; "
            "a configuration file is never that big, check " + named_by
        )
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        )
        return None
    if text.startswith(BOM):
        # Some editors write one; it would be an invisible part of the first name.
        warnings.append(
            f"{path}:1: warning: starts with a UTF-8 byte-order mark (U+FEFF), which pidone "
            'skips; save the file as UTF-8 without one (not "UTF-8 with BOM")'
        )
        text = text[len(BOM) :]
    return text


def _include(
    config: Path | None,
    text: str | None,
    data: dict[str, Any],
    problems: list[str],
    warnings: list[str],
) -> list[tuple[Path, str]]:
    """pidone.toml's `include` (config/include.py has the rules): each file
    read, parsed and merged into `data` in order; [(path, text)] of them."""
    if config is None or "include" not in data:
        return []
    from pidone.config import include  # only a pidone.toml with `include` needs it

    raw = data.pop("include")
    where = f"{config}:{TomlLines(text or '').line('include') or 1}"
    try:
        files = include.expand(include.patterns(raw), os.path.dirname(config))
    except include.IncludeError as exc:
        problems.append(f"{where}: include = {_toml(raw)}: {exc}")
        return []
    by = f"(included by {where})"
    try:
        seen = {_identity(config): f"{config} itself"}
    except OSError:
        seen = {}
    done: list[tuple[Path, str]] = []
    for path in files:
        try:
            raw_bytes, identity = include.read_regular(path, MAX_FILE_BYTES)
        except FileNotFoundError:
            problems.append(f"{path}: no such file {by}; create it, or fix the include")
            continue
        except OSError as exc:
            problems.append(f"{path}: cannot read it: {exc.strerror} {by}")
            continue
        except include.IncludeError as exc:
            problems.append(f"{path}: {exc} {by}; include only reads files")
            continue
        if identity in seen:
            problems.append(
                f"{path}: included twice {by}: it is {seen[identity]}; narrow the patterns"
            )
            continue
        seen[identity] = str(path)
        decoded = _decode(path, raw_bytes, f"the include of {where}", problems, warnings)
        if decoded is None:
            continue
        added = _parse_toml(decoded, path, problems)
        if "include" in added:
            line = TomlLines(decoded).line("include") or 1
            problems.append(
                f"{path}:{line}: include: an included file cannot include others {by};"
                f" list its patterns in the include of {config}"
            )
            del added["include"]
        include.merge(data, added)
        done.append((path, decoded))
    return done


def _identity(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


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
    text: str | None,
    path: Path | None,
    environ: Mapping[str, str],
    problems: list[str],
    budget: Budget,
) -> dict[str, str]:
    if text is None:
        return {}
    try:
        return envfile.parse(text, str(path), environ=environ, budget=budget)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return {}


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)")


def _parse_toml(text: str | None, path: Path | None, problems: list[str]) -> dict[str, Any]:
    if text is None:
        return {}
    shape = tomllines.shape_problem(text)
    if shape is not None:
        problems.append(f"{path}:{shape[0]}: {shape[1]}; write it flatter")
        return {}
    try:
        return tomllib.loads(text)
    except RecursionError:  # shape_problem missed a form; still a config error
        problems.append(f"{path}: nested too deeply; write it flatter")
        return {}
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


# --- validation -----------------------------------------------------------------

T = TypeVar("T")
_UNSET: Any = object()


MAX_ENV_ENTRIES = 1 << 20  # variables in all processes' environments together (memory)


class _Context:
    def __init__(
        self, sources: Sources, problems: list[str], budget: Budget, warnings: list[str]
    ) -> None:
        self.sources = sources
        self.problems = problems
        self.budget = budget
        self.warnings = warnings
        self.env_entries_left = MAX_ENV_ENTRIES
        self.touch_paths_left = MAX_TOUCH_PATHS

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


_SHOWN_CHARS = 200  # of a value quoted in a message


def _toml(value: object) -> str:
    """A value written as in the TOML file (a long one cut short)."""
    text = _toml_full(value, tomllines.MAX_NESTING)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def _toml_full(value: object, depth: int) -> str:
    if depth <= 0:
        return "..."
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value[: _SHOWN_CHARS + 1], ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_full(item, depth - 1) for item in value[:_SHOWN_CHARS]) + "]"
    if isinstance(value, dict):
        items = ", ".join(
            f"{key} = {_toml_full(item, depth - 1)}"
            for key, item in list(value.items())[:_SHOWN_CHARS]
        )
        return f"{{ {items} }}" if items else "{}"
    return str(value)


def _has_nul(value: object, depth: int = tomllines.MAX_NESTING) -> bool:
    """Does a TOML value (keys included) hold a NUL? No path, name, argument or
    environment value can: the kernel's strings end at the first NUL."""
    if isinstance(value, str):
        return "\0" in value
    if depth <= 0:
        return False
    if isinstance(value, list):
        return any(_has_nul(item, depth - 1) for item in value)
    if isinstance(value, dict):
        return any(_has_nul(k, 0) or _has_nul(v, depth - 1) for k, v in value.items())
    return False


NUL_RULE = "holds a NUL character (\\u0000), which no name, path or argument can; remove it"


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
                hint = values.did_you_mean(key, known) or "; the known keys are: " + ", ".join(
                    known
                )
                if key == "include":  # set below a table header: TOML puts it in that table
                    hint = "; include is a top-level key: move it above the first [table]"
                ctx.problem(name, key, _UNSET, "unknown key" + hint)

    def get(self, key: str, parse: Callable[[Any], T], default: T) -> T:
        if key not in self.data:
            return default
        value = self.data[key]
        if _has_nul(value):
            self.ctx.problem(self.name, key, value, NUL_RULE)
            return default
        try:
            return parse(value)
        except BadValue as bad:
            self.ctx.problem(self.name, key, value, str(bad))
            return default

    def get_mode(self, key: str, maximum: int, example: str, default: T) -> int | T:
        """An octal mode: a string, or an integer written as a 0o literal
        (tomllib gives 432 for 0o660 and for 432: the file's text tells)."""
        value = self.data.get(key)
        lines = self.ctx.sources.lines_of(self.name, key)
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and lines.is_octal_literal(self.name, key, value)
        ):
            value = values.OctalLiteral(value)
            try:
                return values.octal(maximum, example)(value)
            except BadValue as bad:
                self.ctx.problem(self.name, key, value, str(bad))
                return default
        return self.get(key, values.octal(maximum, example), cast(int, default))


# --- the tables -------------------------------------------------------------------

SETTINGS_KEYS = tuple(Settings.__dataclass_fields__)
_PROCESS_KEYS = """
    command directory environment after ready restart stop_signal stop_timeout stop_target
    reload_signal control pidfile user group groups umask clear_env capabilities rlimits
    sockets restart_dependents port autostart stdin touch touch_signal pid_namespace legion
    ready_timeout backoff_initial backoff_max fatal_after fatal_window success_exit_codes
    on_fatal required
    alive alive_interval alive_timeout alive_failures alive_delay watchdog
"""
PROCESS_KEYS = tuple(_PROCESS_KEYS.split())
SOCKET_KEYS = ("path", "owner", "group", "mode", "listen", "directory_mode")
LEGION_KEYS = ("redis", "password_env", "ttl", "priority")
TABLES = ("pidone", "process", "socket", "legion")
TABLE_FORMS = "[pidone], [process.NAME], [socket.NAME] or [legion.NAME]"
_SUN_PATH_MAX = 107  # bytes in sockaddr_un.sun_path, less the final NUL


def _check_top_level(ctx: _Context, data: Mapping[str, Any]) -> None:
    for key, value in data.items():
        if key in TABLES:
            if not isinstance(value, dict):
                ctx.problem("", key, value, f"must be a table, like [{key}]")
            continue
        if isinstance(value, dict):  # a table: [sockets.app] for [socket.app]
            import difflib  # only a config with a mistake pays for it

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
        elif kind == "process" and name in procfile.RESERVED:
            ctx.problem(where, None, _UNSET, procfile.RESERVED[name])
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
        stop_timeout=table.get("stop_timeout", values.seconds, default.stop_timeout),
        log_format=table.get("log_format", values.choice(LOG_FORMATS), "text"),
        control_socket=table.get(
            "control_socket",
            values.absolute_path('"/run/pidone/control.sock"'),
            None,
        ),
        control_group=table.get("control_group", values.identity, None),
        metrics=table.get("metrics", values.address, None),
        settle_time=table.get("settle_time", values.seconds, default.settle_time),
        backoff_reset=table.get("backoff_reset", values.seconds, default.backoff_reset),
        **_failure_policy(table, default),
        shutdown_delay=table.get("shutdown_delay", values.seconds, default.shutdown_delay),
    )
    _check_backoff(ctx, "pidone", data, settings.backoff_initial, settings.backoff_max)
    return settings


# The failure policy: [pidone]'s keys, and each process's over them, by one rule.
FAILURE_POLICY: dict[str, Callable[[Any], Any]] = {
    "backoff_initial": values.positive_seconds,
    "backoff_max": values.positive_seconds,
    "fatal_after": values.count,
    "fatal_window": values.positive_seconds,
}


def _failure_policy(table: _Table, defaults: Settings) -> dict[str, Any]:
    """The FAILURE_POLICY keys of `table`, each [pidone]'s value (`defaults`) unless set."""
    return {
        key: table.get(key, parse, getattr(defaults, key)) for key, parse in FAILURE_POLICY.items()
    }


def _check_backoff(
    ctx: _Context, where: str, data: Mapping[str, Any], initial: float, maximum: float
) -> None:
    """backoff_max may not be below backoff_initial: in [pidone], and in a
    process table, where a value not set is [pidone]'s."""
    own = where == "pidone" or "backoff_initial" in data or "backoff_max" in data
    if maximum >= initial or not own:  # not own: [pidone]'s problem, reported there
        return
    if "backoff_max" in data or where == "pidone":
        message = f"is below backoff_initial ({initial}); make it at least that"
        ctx.problem(where, "backoff_max", data.get("backoff_max", maximum), message)
    else:
        message = (
            f"is above backoff_max ({maximum}, from [pidone]); make it at most that, "
            "or set backoff_max here too"
        )
        ctx.problem(where, "backoff_initial", data["backoff_initial"], message)


def _sockets(ctx: _Context, data: Any) -> dict[str, SocketSpec]:
    sockets: dict[str, SocketSpec] = {}
    owners: dict[str, str] = {}  # path -> socket name
    for name, raw in _subtables(ctx, "socket", data).items():
        table = _Table(ctx, f"socket.{name}", raw, SOCKET_KEYS)
        path = table.get("path", values.absolute_path('"/run/app/app.sock"'), "")
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
            owner=table.get("owner", values.identity, None),
            group=table.get("group", values.identity, None),
            mode=table.get_mode("mode", 0o7777, "0660", 0o660),
            listen=table.get("listen", values.flag, False),
            directory_mode=table.get_mode("directory_mode", 0o7777, "2750", 0o2750),
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
    ports = _BasePort(ctx, dotenv, environ)
    specs: dict[str, ProcessSpec] = {}
    for position, name in enumerate(names):
        spec = _process(
            ctx, name, by_name.get(name), tables.get(name, {}), settings, dotenv, environ,
            ports.for_position(name, position),
        )  # fmt: skip
        if spec is not None:
            specs[name] = spec
    return set(names), specs


DEFAULT_PORT = 5000  # foreman's and honcho's base
PORT_STEP = 100  # between processes, as theirs


class _BasePort:
    """PORT for each process as foreman and honcho give it: base + 100 x its
    position; the base is PORT from .env, else pidone's environment, else 5000."""

    def __init__(self, ctx: _Context, dotenv: Mapping[str, str], environ: Mapping[str, str]):
        self.ctx = ctx
        where = f"{ctx.sources.envfile}: PORT" if "PORT" in dotenv else "PORT in the environment"
        self.text = dotenv.get("PORT", environ.get("PORT"))
        self.where = where
        self.base = DEFAULT_PORT if self.text is None else hostport.port_number(self.text)
        self.reported = False

    def for_position(self, name: str, position: int) -> Callable[[], str | None]:
        """PORT for the process at `position` (asked only when it needs one)."""

        def port() -> str | None:
            if self.base is None:
                if not self.reported:
                    self.reported = True
                    self.ctx.problems.append(
                        f"{self.where} = {json.dumps(self.text)}: not a port number from 1 "
                        f"to 65535; it is the base of each process's PORT ({DEFAULT_PORT}, "
                        f"{DEFAULT_PORT + PORT_STEP}, ...): fix it, or set port = N "
                        "in each [process.NAME]"
                    )
                return None
            number = self.base + PORT_STEP * position
            if number > 65535:
                self.ctx.problem(
                    f"process.{name}",
                    None,
                    _UNSET,
                    f"its PORT would be {number} ({self.base} + {PORT_STEP} x its position "
                    f"{position}), past 65535; set port = N in [process.{name}], "
                    "or a lower base PORT",
                )
                return None
            return str(number)

        return port


def _process(
    ctx: _Context,
    name: str,
    entry: procfile.ProcfileEntry | None,
    raw: Mapping[str, Any],
    settings: Settings,
    dotenv: Mapping[str, str],
    environ: Mapping[str, str],
    auto_port: Callable[[], str | None],
) -> ProcessSpec | None:
    where = f"process.{name}"
    table = _Table(ctx, where, raw, PROCESS_KEYS)
    built = _environments(ctx, where, table, raw, dotenv, environ, auto_port)
    if built is None:
        return None
    environment, env, clear_env = built
    spec_command = _process_command(ctx, name, entry, table)
    if spec_command is None:
        return None
    line, argv = spec_command
    spec = ProcessSpec(
        name=name,
        command=argv,
        command_line=line,
        directory=table.get("directory", values.text('"/srv/app/current"'), None),
        environment=environment,
        env=env,
        after=table.get("after", values.names('["redis"]'), ()),
        ready=table.get(
            "ready",
            lambda value: values.ready(value, env, ctx.budget),
            ReadyCheck("settle", seconds=settings.settle_time),
        ),
        restart=table.get("restart", values.choice(RESTART_POLICIES), "always"),
        stop_signal=table.get("stop_signal", values.signal_number, int(signal.SIGTERM)),
        stop_timeout=table.get("stop_timeout", values.seconds, settings.stop_timeout),
        stop_target=table.get("stop_target", values.choice(STOP_TARGETS), "process"),
        reload_signal=table.get("reload_signal", values.signal_number, int(signal.SIGHUP)),
        control=table.get("control", values.flag, False),
        pidfile=table.get("pidfile", values.absolute_path('"/run/app/app.pid"'), None),
        user=table.get("user", values.identity, None),
        group=table.get("group", values.identity, None),
        groups=table.get("groups", values.identities, None),
        umask=table.get_mode("umask", 0o777, "0027", None),
        clear_env=clear_env,
        capabilities=table.get("capabilities", values.capabilities, ()),
        rlimits=table.get("rlimits", values.rlimits, ()),
        sockets=table.get("sockets", values.names('["app"]'), ()),
        restart_dependents=table.get("restart_dependents", values.flag, True),
        autostart=table.get("autostart", values.flag, True),
        stdin=table.get("stdin", values.flag, False),
        touch=_touch(ctx, where, table),
        touch_signal=table.get("touch_signal", values.signal_number, None),
        pid_namespace=table.get("pid_namespace", values.flag, False),
        legion=table.get("legion", values.text('"beat"'), None),
        ready_timeout=table.get("ready_timeout", values.positive_seconds, None),
        **_failure_policy(table, settings),
        success_exit_codes=table.get("success_exit_codes", values.exit_codes, (0,)),
        on_fatal=table.get("on_fatal", values.choice(ON_FATAL), "stay"),
        required=table.get("required", values.flag, False),
        alive=table.get("alive", lambda value: values.alive(value, env, ctx.budget), None),
        alive_interval=table.get("alive_interval", values.positive_seconds, 10.0),
        alive_timeout=table.get("alive_timeout", values.positive_seconds, 1.0),
        alive_failures=table.get("alive_failures", values.count, 3),
        alive_delay=table.get("alive_delay", values.seconds, 0.0),
        watchdog=table.get("watchdog", values.positive_seconds, None),
    )
    _check_backoff(ctx, where, raw, spec.backoff_initial, spec.backoff_max)
    _check_pairs(ctx, where, raw, spec)
    _warn_undefined(ctx, spec)
    return spec


def _environments(
    ctx: _Context,
    where: str,
    table: _Table,
    raw: Mapping[str, Any],
    dotenv: Mapping[str, str],
    environ: Mapping[str, str],
    auto_port: Callable[[], str | None],
) -> tuple[dict[str, str], dict[str, str], bool] | None:
    """A process's `environment` as configured (expanded), all its child
    gets, and clear_env; None once the budget of variables is spent."""
    # Each process gets its own environment dicts: their sizes add up. Counted
    # before any is built (20,000 processes x 10,000 variables ran out of memory).
    configured_raw = raw.get("environment")
    entries = (
        len(environ)
        + len(dotenv)
        + (len(configured_raw) if isinstance(configured_raw, dict) else 0)
    )
    ctx.env_entries_left -= entries
    if ctx.env_entries_left < 0:
        if ctx.env_entries_left + entries >= 0:  # report it once
            ctx.problem(
                where,
                None,
                _UNSET,
                f"the environments of all processes add up to more than {MAX_ENV_ENTRIES} "
                "variables; define fewer processes or variables",
            )
        return None
    configured: dict[str, str] = table.get("environment", values.environment, {})
    port = _port(ctx, where, table, configured, auto_port)
    own = {"PORT": port} if port is not None else {}
    base = {**environ, **dotenv, **own}
    environment: dict[str, str] = {}
    for key, value in configured.items():
        try:
            environment[key] = envfile.expand(value, base, ctx.budget)
        except ValueError as exc:
            ctx.problem(where, "environment", raw["environment"], f"{key}: {exc}")
    clear_env = table.get("clear_env", values.flag, False)
    env = {**({} if clear_env else environ), **dotenv, **own, **environment}
    return environment, env, clear_env


def _check_pairs(ctx: _Context, where: str, raw: Mapping[str, Any], spec: ProcessSpec) -> None:
    """Keys that are each fine alone and wrong together."""
    for key in ALIVE_KEYS:
        if key in raw and spec.alive is None:
            ctx.problem(
                where,
                key,
                raw[key],
                'does nothing without alive; add alive = "CHECK", or remove it',
            )
    if spec.alive is not None and spec.alive_timeout > spec.alive_interval:
        key = "alive_timeout" if "alive_timeout" in raw else "alive_interval"
        ctx.problem(
            where,
            key,
            raw[key],
            f"alive_timeout ({spec.alive_timeout:g} s) is longer than alive_interval"
            f" ({spec.alive_interval:g} s): one attempt must end before the next is due;"
            " shorten alive_timeout or lengthen alive_interval",
        )
    if spec.watchdog is not None and spec.pidfile:
        # Its pings come from the daemon, which is not below the launcher we spawned.
        ctx.problem(
            where,
            "watchdog",
            raw["watchdog"],
            "a pidfile daemon is not below the process pidone started, so its WATCHDOG=1 would"
            " not count; run it in the foreground (drop pidfile), or drop watchdog",
        )
    if spec.touch_signal is not None and not spec.touch:
        ctx.problem(
            where,
            "touch_signal",
            raw["touch_signal"],
            'does nothing without touch; add touch = ["PATH"], or remove it',
        )
    if spec.pid_namespace and spec.pidfile:
        # The launcher is its namespace's init: daemonized, it exits, and the
        # kernel kills every process of the namespace, the daemon with it.
        ctx.problem(
            where,
            "pid_namespace",
            True,
            "a pidfile process daemonizes, and its launcher's exit would end its PID "
            "namespace with the daemon in it; drop pidfile (run it in the foreground) "
            "or pid_namespace",
        )
    _check_failure_pairs(ctx, where, raw, spec)


def _check_failure_pairs(
    ctx: _Context, where: str, raw: Mapping[str, Any], spec: ProcessSpec
) -> None:
    """ready_timeout past the settle time; on_fatal and required only where
    the process can become FATAL."""
    settle = spec.ready.seconds if spec.ready.kind == "settle" else None
    if spec.ready_timeout is not None and settle is not None and spec.ready_timeout <= settle:
        ctx.problem(
            where,
            "ready_timeout",
            raw["ready_timeout"],
            f"is not longer than its settle time ({settle:g} s, as it has no ready check): "
            "it would be stopped before it could be ready; make it longer, or add a ready check",
        )
    never = None
    if spec.restart == "never":
        never = 'restart = "never": it is never restarted, so never FATAL; remove it, or use '
        never += 'restart = "on-failure"'
    if spec.control:
        never = "control = true: its exit stops pidone, so it is never FATAL; remove it"
    for key, value, used in (
        ("on_fatal", "exit", spec.on_fatal == "exit"),
        ("required", True, spec.required),
    ):
        if never is not None and used:
            ctx.problem(where, key, value, f"does nothing with {never}")


ALIVE_KEYS = ("alive_interval", "alive_timeout", "alive_failures", "alive_delay")
MAX_TOUCH_PATHS = 64  # in all `touch` lists together: each may be a directory watch


def _touch(ctx: _Context, where: str, table: _Table) -> tuple[str, ...]:
    """`touch`: absolute paths, a relative one relative to the directory of
    the configuration (pidone.toml's), not pidone's working directory."""
    config = ctx.sources.config
    base = os.path.abspath(os.path.dirname(config) if config is not None else ".")
    none: tuple[str, ...] = ()
    found = table.get("touch", values.paths(base, '["/srv/app/reload"]'), none)
    ctx.touch_paths_left -= len(found)
    if ctx.touch_paths_left < 0:
        ctx.problem(
            where,
            "touch",
            table.data["touch"],
            f"more than {MAX_TOUCH_PATHS} touch paths in all processes together; "
            "have the deploy touch fewer files",
        )
        return ()
    return found


def _port(
    ctx: _Context,
    where: str,
    table: _Table,
    configured: Mapping[str, str],
    auto_port: Callable[[], str | None],
) -> str | None:
    """The PORT pidone gives the process: `port`, else the next of the
    sequence; none when `environment` sets PORT itself (that wins)."""
    if "port" in table.data and "PORT" in configured:
        ctx.problem(
            where,
            "port",
            table.data["port"],
            "and environment.PORT both set PORT; keep only one of the two",
        )
        return None
    if "PORT" in configured:
        return None
    if "port" in table.data:
        number = table.get("port", values.port, None)
        return None if number is None else str(number)
    return auto_port()


# Set by the shell itself, or by pidone for some processes (checked apart).
_SHELL_VARIABLES = frozenset(
    ["PWD", "OLDPWD", "PPID", "IFS", "OPTIND", "OPTARG", "LINENO", "PS1", "PS2", "PS4"]
)


def _warn_undefined(ctx: _Context, spec: ProcessSpec) -> None:
    """Warn about each $NAME a command uses (not a ${NAME:-default} form) that
    nothing defines: the shell would silently make it empty."""
    texts = [("command", spec.command_line)]
    if spec.ready.command is not None:
        texts.append(("ready", spec.ready.target))
    if spec.alive is not None and spec.alive.command is not None:
        texts.append(("alive", spec.alive.target))
    if not any("$" in text for _, text in texts):
        return  # most commands: no set of names built
    known = set(spec.env) | _SHELL_VARIABLES
    if spec.user is not None and not spec.clear_env:  # as loop's _environment adds them
        known |= {"HOME", "USER", "LOGNAME"}
    if spec.notifies():
        known.add("NOTIFY_SOCKET")
    if spec.watchdog is not None:
        known.add("WATCHDOG_USEC")
    if spec.sockets:
        known |= {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"}
    for key, text in texts:
        for variable in sorted(commands.undefined(text, known)):
            ctx.warnings.append(
                f"{ctx.sources.where(f'process.{spec.name}', key)}: warning: process "
                f'"{spec.name}" {"command" if key == "command" else "ready check"} uses '
                f"${variable}, which nothing defines (pidone's environment, .env, "
                f"environment, PORT), so the shell makes it empty; define it, or write "
                f"${{{variable}:-default}}"
            )


def _process_command(
    ctx: _Context,
    name: str,
    entry: procfile.ProcfileEntry | None,
    table: _Table,
) -> tuple[str, Command] | None:
    """The command line as written and its argv, from the Procfile or the table."""
    where = f"process.{name}"
    in_table = "command" in table.data
    text = table.get("command", values.text('"uwsgi --ini uwsgi.ini"'), None)
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
        return text, commands.parse(text)
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
                hint = values.did_you_mean(dep, known) or "; the processes are: " + ", ".join(known)
                ctx.problem(
                    f"process.{name}", "after", list(spec.after), f'no process named "{dep}"{hint}'
                )
        for socket in spec.sockets:
            if socket not in sockets:
                hint = (
                    values.did_you_mean(socket, sockets)
                    or f"; define it in a [socket.{socket}] table"
                )
                ctx.problem(
                    f"process.{name}",
                    "sockets",
                    list(spec.sockets),
                    f'no socket named "{socket}"{hint}',
                )
    _check_autostart(ctx, processes)
    deps = {name: [d for d in spec.after if d in processes] for name, spec in processes.items()}
    cycle = graph.find_cycle(deps)
    if cycle:
        ctx.problem(
            f"process.{cycle[0]}",
            "after",
            _UNSET,
            f"dependency cycle {' -> '.join(cycle)}; remove one of these `after` entries",
        )


def _check_autostart(ctx: _Context, processes: Mapping[str, ProcessSpec]) -> None:
    """A process started by `pidone run` may not be `after` one that is not:
    it would wait for it forever. (`ctl start NAME` starts what NAME is
    after, so such a chain is all autostart = false, started from its end.)"""
    for name, spec in processes.items():
        if not spec.autostart:
            continue
        for dep in spec.after:
            if dep in processes and not processes[dep].autostart:
                ctx.problem(
                    f"process.{name}",
                    "after",
                    list(spec.after),
                    f'"{dep}" has autostart = false, so {name} would wait for it forever; '
                    f"set autostart = false in [process.{name}] too (`pidone ctl start "
                    f"{name}` then starts {dep} first), or remove {dep} from after",
                )


# --- legions ------------------------------------------------------------------------

_REDIS_URL = re.compile(
    r"redis://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9._-]*)"
    r"(?::(?P<port>[0-9]{1,5}))?(?:/(?P<db>[0-9]{1,5})?)?"
)
_UNIX_URL = re.compile(r"unix://(?P<path>/[^?#\s]+)(?:\?db=(?P<db>[0-9]{1,5}))?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_REDIS_DB = 65535
URL_EXAMPLE = '"redis://127.0.0.1:6379/0" or "unix:///run/redis/redis.sock?db=0"'


def redis_address(value: Any) -> tuple[str | None, int, str | None, int]:
    """`redis = "..."` -> (host, port, unix path, db). No password in it: a
    file is read by too many; `password_env` names the variable that has it."""
    if not isinstance(value, str):
        raise BadValue(f"must be a string, like {URL_EXAMPLE}")
    if "@" in value:
        raise BadValue(
            "holds a user or password (the part before @): keep secrets out of the file; "
            "put the password in an environment variable of pidone's and name it with "
            'password_env = "REDIS_PASSWORD"'
        )
    tcp = _REDIS_URL.fullmatch(value)
    if tcp is not None:
        port = int(tcp["port"]) if tcp["port"] else 6379
        if not 1 <= port <= 65535:
            raise BadValue(f"port {port} is not from 1 to 65535")
        db = int(tcp["db"] or 0)
        if db > MAX_REDIS_DB:
            raise BadValue(f"database {db} is past {MAX_REDIS_DB}")
        return tcp["host"].strip("[]"), port, None, db
    unix = _UNIX_URL.fullmatch(value)
    if unix is not None:
        db = int(unix["db"] or 0)
        if db > MAX_REDIS_DB:
            raise BadValue(f"database {db} is past {MAX_REDIS_DB}")
        if len(unix["path"].encode()) > _SUN_PATH_MAX:
            raise BadValue(f"the socket path is longer than {_SUN_PATH_MAX} bytes")
        return None, 6379, unix["path"], db
    raise BadValue(f"not a redis address; write it like {URL_EXAMPLE}")


def _legions(ctx: _Context, data: Any) -> dict[str, LegionSpec]:
    legions: dict[str, LegionSpec] = {}
    for name, raw in _subtables(ctx, "legion", data).items():
        where = f"legion.{name}"
        table = _Table(ctx, where, raw, LEGION_KEYS)
        if "redis" not in raw:
            ctx.problem(where, None, _UNSET, f"no redis; add redis = {URL_EXAMPLE}")
        none: tuple[str | None, int, str | None, int] = (None, 6379, None, 0)
        address = table.get("redis", redis_address, none)
        ttl = table.get("ttl", values.positive_seconds, 10.0)
        if not LEGION_MIN_TTL <= ttl <= LEGION_MAX_TTL:
            ctx.problem(
                where,
                "ttl",
                raw["ttl"],
                f"must be from {LEGION_MIN_TTL:g} to {LEGION_MAX_TTL:g} seconds (10 is usual)",
            )
            ttl = 10.0
        password_env = table.get("password_env", values.text('"REDIS_PASSWORD"'), None)
        if password_env is not None and not _ENV_NAME.fullmatch(password_env):
            ctx.problem(
                where,
                "password_env",
                password_env,
                'is the NAME of an environment variable, like "REDIS_PASSWORD"',
            )
        priority = table.get("priority", _priority, 0)
        host, port, path, db = address
        legions[name] = LegionSpec(
            name=name,
            redis=raw.get("redis", "") if isinstance(raw.get("redis"), str) else "",
            host=host,
            port=port,
            path=path,
            db=db,
            password_env=password_env,
            ttl=ttl,
            priority=priority,
        )
    return legions


_PRIORITY_RANGE = 1 << 31


def _priority(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadValue("must be a whole number, like 10 (the highest live candidate wins)")
    if not -_PRIORITY_RANGE < value < _PRIORITY_RANGE:
        raise BadValue(f"must be between -{_PRIORITY_RANGE} and {_PRIORITY_RANGE}")
    return value


def _check_legions(
    ctx: _Context,
    processes: Mapping[str, ProcessSpec],
    legions: Mapping[str, LegionSpec],
    environ: Mapping[str, str],
) -> None:
    """Legion processes name a legion, can stop in time, start only on the
    lord (never autostart = false or control), and nothing that runs on every
    replica waits for one (it would never start on a standby)."""
    used: set[str] = set()
    for name, spec in processes.items():
        where = f"process.{name}"
        if spec.legion is None:
            for dep in spec.after:
                other = processes.get(dep)
                if other is not None and other.legion is not None:
                    ctx.problem(
                        where,
                        "after",
                        list(spec.after),
                        f'"{dep}" runs only on the lord of legion {other.legion}, so {name} '
                        "would never start on the other replicas; remove it from after, or "
                        f'put {name} in the legion too (legion = "{other.legion}")',
                    )
            continue
        legion = legions.get(spec.legion)
        if legion is None:
            hint = values.did_you_mean(spec.legion, legions) or (
                f"; define it in a [legion.{spec.legion}] table"
            )
            ctx.problem(where, "legion", spec.legion, f'no legion named "{spec.legion}"{hint}')
            continue
        used.add(spec.legion)
        for dep in spec.after:
            other = processes.get(dep)
            if other is not None and other.legion not in (None, spec.legion):
                ctx.problem(
                    where,
                    "after",
                    list(spec.after),
                    f'"{dep}" is in legion {other.legion}, {name} in {spec.legion}: their '
                    "lords may be different replicas; put both in the same legion",
                )
        if not spec.autostart:
            ctx.problem(
                where,
                "autostart",
                False,
                "a legion process runs whenever this pidone holds the lease; remove "
                "autostart = false (ctl stop still stops it)",
            )
        if spec.control:
            ctx.problem(
                where,
                "control",
                True,
                "a legion process does not run on standbys, so it cannot be the one whose "
                "exit stops pidone; remove control = true or legion",
            )
        limit = legion_max_stop_timeout(legion.ttl)
        if spec.stop_timeout > limit:
            need = legion_min_ttl(spec.stop_timeout)
            ctx.problem(
                where,
                "stop_timeout",
                spec.stop_timeout,
                f"too long for legion {spec.legion} (ttl = {legion.ttl:g}): its lord renews "
                f"every ttl/3, must have it down {legion_margin(legion.ttl):g} s before the "
                f"lease can expire, and begins no stop before ttl/2, which leaves at most "
                f"{limit:.2f} s to stop; set "
                f"stop_timeout <= {limit:.2f} here (or in [pidone]), or ttl >= {need:.2f} "
                f"in [legion.{spec.legion}]",
            )
    for name, legion in legions.items():
        if name not in used:
            ctx.warnings.append(
                f"{ctx.sources.where(f'legion.{name}')}: warning: no process is in legion "
                f'"{name}"; add legion = "{name}" to a [process.NAME] table, or remove it'
            )
        if legion.password_env is not None and legion.password_env not in environ:
            ctx.warnings.append(
                f"{ctx.sources.where(f'legion.{name}', 'password_env')}: warning: "
                f"{legion.password_env} is not set in pidone's environment: no AUTH is sent"
            )
