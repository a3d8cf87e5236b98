"""The supervisor's subcommands: `pidone run`, `pidone check`, `pidone import`.

Loaded only for them (the config stack would bloat the single-command
mode). Their options are parsed with argparse, as `pidone ctl`'s are,
imported only while parsing (parse_args); its help formatter is given its
width, so that it does not import shutil (and lzma and bz2 with it), which
`pidone run` would keep. Config and usage errors exit 2, having started
nothing.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from pidone.config.load import load, select
from pidone.config.specs import Config
from pidone.config.values import BadValue, address
from pidone.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import NoReturn

WHAT = {
    "run": "Supervise the processes of a Procfile / pidone.toml.",
    "check": "Validate the configuration and print the start order; start nothing.",
    "import": "Turn a supervisord config or a uWSGI ini into a Procfile and pidone.toml.",
}
IMPORT_KINDS = ("supervisord", "uwsgi")


@dataclass
class Args:
    command: str
    procfile: Path | None = None
    config: Path | None = None
    env: Path | None = None
    metrics: str | None = None
    names: tuple[str, ...] = ()  # only these, and what they are after
    source: Path | None = None  # import: FILE, -o DIR, --force, --from
    output: Path | None = None
    force: bool = False
    kind: str | None = None


def _file(text: str) -> Path:
    if not text:
        raise ValueError("needs a file name")
    return Path(text)


def _metrics(text: str) -> str:
    try:
        return address(text)
    except BadValue as exc:
        raise ValueError(f"{text!r} {exc}") from None


def _parser(command: str) -> argparse.ArgumentParser:
    import argparse

    class Formatter(argparse.HelpFormatter):
        def __init__(self, prog: str) -> None:
            try:  # the width shutil would give, without importing it
                width = os.get_terminal_size(sys.stderr.fileno()).columns - 2
            except (OSError, ValueError):
                width = 78
            super().__init__(prog, width=max(width, 40))

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise UsageError(f"{command}: {message}")

    def typed(parse: Callable[[str], object]) -> Callable[[str], object]:
        def check(text: str) -> object:  # argparse's message: "argument -c/--config: ..."
            try:
                return parse(text)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None

        return check

    parser = Parser(
        prog=f"pidone {command}",
        description=WHAT[command],
        add_help=False,
        allow_abbrev=False,
        formatter_class=Formatter,
    )
    add = parser.add_argument
    if command == "import":
        _import_arguments(add, typed)
        add("-h", "--help", action="store_true", help="show this help and exit")
        return parser
    add(
        "-f",
        "--procfile",
        type=typed(_file),
        metavar="PROCFILE",
        help="Procfile (default: ./Procfile)",
    )
    add(
        "-c",
        "--config",
        type=typed(_file),
        metavar="CONFIG",
        help="pidone.toml (default: ./pidone.toml if present)",
    )
    add(
        "-e",
        "--env",
        type=typed(_file),
        metavar="ENVFILE",
        help=".env file (default: ./.env if present)",
    )
    add(
        "--metrics",
        type=typed(_metrics),
        metavar="ADDR",
        help="serve /metrics, /healthz, /readyz on HOST:PORT (overrides [pidone] metrics)",
    )
    add(
        "names",
        nargs="*",
        metavar="NAME",
        help="only these processes, and what they are after (default: every one with autostart)",
    )
    add("-h", "--help", action="store_true", help="show this help and exit")
    return parser  # fmt: skip


def _import_arguments(
    add: Callable[..., object], typed: Callable[..., Callable[[str], object]]
) -> None:
    """`pidone import`'s own arguments (it shares nothing with run and check)."""
    add(
        "file",
        nargs="?",
        type=typed(_file),
        metavar="FILE",
        help="supervisord.conf or uwsgi.ini",
    )
    add(
        "-o",
        "--output",
        type=typed(_file),
        metavar="DIR",
        help="write DIR/Procfile and DIR/pidone.toml (default: print both to stdout)",
    )
    add("--force", action="store_true", help="overwrite them in DIR")
    add(
        "--from",
        dest="kind",
        choices=IMPORT_KINDS,
        help="the file's kind (default: told by its sections)",
    )


def usage(command: str) -> str:
    return _parser(command).format_help()


# What parsing alone needs, dropped once it is done (see parse_args). Pure
# Python modules only, that nothing else holds: a module object dropped
# while another module kept a name from it would exist twice if re-imported.
PARSING_ONLY = ("argparse", "gettext", "locale")


def parse_args(argv: list[str]) -> Args | str:
    """`run|check [OPTIONS]`: Args, or a str to print and exit 0 (help).

    argparse, and the gettext and locale it imports, are forgotten again if
    parsing loaded them: `pidone run` would otherwise keep 0.6 MiB of them
    for as long as the container lives (VmRSS of a real run, one process:
    16.4 MiB with the hand parser before, 17.3 with argparse kept, 16.7
    forgotten)."""
    command, rest = argv[0], argv[1:]
    if command not in WHAT:
        raise UsageError(f"unknown subcommand {command!r}: use run, check, import or ctl")
    new = [name for name in PARSING_ONLY if name not in sys.modules]
    try:
        parser = _parser(command)
        ns = parser.parse_intermixed_args(rest)  # NAMEs before or after options
        if ns.help:
            return parser.format_help()
        if command == "import":
            if ns.file is None:
                raise UsageError("import: name the file to import: pidone import FILE [-o DIR]")
            return Args(command, source=ns.file, output=ns.output, force=ns.force, kind=ns.kind)
        return Args(command, ns.procfile, ns.config, ns.env, ns.metrics, tuple(ns.names))
    finally:
        for name in new:
            sys.modules.pop(name, None)


def load_config(args: Args) -> Config:
    from pidone.system import proc, sdnotify

    environ = proc.original_environ()
    env = (
        {
            k.decode(errors="surrogateescape"): v.decode(errors="surrogateescape")
            for k, v in environ.items()
        }
        if environ is not None
        else dict(os.environ)
    )
    for name in sdnotify.VARIABLES:  # pidone's own service manager's, not the children's
        env.pop(name, None)
    env.pop("PIDONE_REEXEC_FD", None)  # ctl reexec's, to pidone alone
    from pidone.config import identity

    checks = [identity.check, shell_check, touch_check]
    config = load(args.procfile, args.config, args.env, environ=env, checks=checks)
    if args.names:
        config = select(config, args.names)
    if args.metrics is not None:
        config = replace(config, settings=replace(config.settings, metrics=args.metrics))
    return config


SHELL_CHECK_SECONDS = 5.0  # for all of one load's `sh -n`; past it, no verdict


def shell_check(config: Config) -> Iterable[str]:
    """config.load's check that /bin/sh can parse each command (and exec:
    check) it will be given: `sh -n` runs nothing. A syntax error would
    otherwise be restarted forever with check's blessing."""
    from pidone.system import spawn

    deadline = time.monotonic() + SHELL_CHECK_SECONDS
    for name, spec in config.processes.items():
        ready = spec.ready.command
        for key, command in (("command", spec.command), ("ready", ready)):
            left = deadline - time.monotonic()
            if command is None or not command.uses_shell or left <= 0:
                continue
            error = spawn.shell_syntax(command.argv[-1], left)
            if error is not None:
                yield config.sources.problem(
                    f"process.{name}", key, f"/bin/sh cannot parse it: {error}; fix the command"
                )


def touch_check(config: Config) -> Iterable[str]:
    """config.load's check that each `touch` file's directory can be watched
    (the file itself may come later)."""
    from pidone.system import inotify

    for name, spec in config.processes.items():
        for path in spec.touch:
            problem = inotify.directory_problem(os.path.dirname(path))
            if problem is not None:
                yield config.sources.problem(
                    f"process.{name}",
                    "touch",
                    f"{path}: {problem}; create the directory or fix the path "
                    "(a relative path is relative to the directory of pidone.toml)",
                )


def describe(config: Config) -> str:
    lines = ["start order (each line starts together, once the line above is ready):"]
    for i, wave in enumerate(config.start_waves, 1):
        lines.append(f"  {i}. {', '.join(wave)}")
    lines.append("processes:")
    for name, spec in config.processes.items():
        after = f" after {', '.join(spec.after)}" if spec.after else ""
        manual = "" if spec.autostart else " (autostart = false: started by ctl start)"
        lord = f" (only on the lord of legion {spec.legion})" if spec.legion else ""
        lines.append(f"  {name}: {spec.command_line}{after}{manual}{lord}")
    if config.legions:
        lines.append("legions (the lease renewed every ttl/3; stop by ttl - margin):")
    for name, legion in config.legions.items():
        members = [n for n, spec in config.processes.items() if spec.legion == name]
        lines.append(
            f"  {name}: {legion.redis} key {legion.key}, ttl {legion.ttl:g} s, priority "
            f"{legion.priority}: {', '.join(members) or 'no process'}"
        )
    if config.sources.included:
        files = ", ".join(str(path) for path in config.sources.included)
        lines.append(f"included, merged after {config.sources.config} in this order: {files}")
    return "\n".join(lines) + "\n"


def run_subcommand(argv: list[str]) -> int:
    args = parse_args(argv)
    if isinstance(args, str):
        sys.stdout.write(args)
        return 0
    if args.command == "import":
        return import_config(args)
    config = load_config(args)
    if args.command == "check":
        for warning in config.warnings:
            sys.stderr.write(warning + "\n")
        if os.environ.get("PIDONE_REEXEC_FD") is not None:
            return check_handover(config)
        sys.stdout.write(describe(config))
        return 0
    from pidone.runtime import loop
    from pidone.system import sockets

    try:
        return loop.run(config, reload=lambda: load_config(args))
    except sockets.UnsafePath as exc:
        sys.stderr.write(f"pidone: refusing to start: {exc}\n")
        return 2


def check_handover(config: Config) -> int:
    """`pidone check` as ctl reexec's preflight: this code must take the
    configuration and the handover PIDONE_REEXEC_FD names, all of it."""
    from pidone.runtime import reexec
    from pidone.system import reexec as system

    try:
        fd = system.handover_fd(os.environ)
    except system.HandoverError as exc:
        problems = [str(exc)]
    else:
        assert fd is not None
        problems = reexec.verify(config, fd)
    for problem in problems:
        sys.stderr.write(f"pidone check: {problem}\n")
    return 1 if problems else 0


def import_config(args: Args) -> int:
    """`pidone import FILE [-o DIR] [--force]`: convert, list what was not
    translated on stderr (and atop pidone.toml), write or print. Bad input
    exits 2 (ConfigError), having written nothing."""
    import socket

    from pidone.config.load import MAX_FILE_BYTES
    from pidone.convert import supervisord, uwsgi, write
    from pidone.convert.ini import BadInput
    from pidone.errors import ConfigError

    assert args.source is not None
    path = args.source.absolute()
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{args.source}: cannot read it: {exc.strerror}"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            [f"{args.source}: larger than {MAX_FILE_BYTES // 1024} KiB; not a config"]
        )
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"{args.source}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"]
        ) from None
    kind = args.kind or _kind(text)
    if kind is None:
        raise ConfigError(
            [
                f"{args.source}: neither a supervisord config ([program:NAME] sections) nor a "
                "uWSGI ini (a [uwsgi] section); name its kind with --from supervisord|uwsgi"
            ]
        )
    try:
        if kind == "uwsgi":
            conv = uwsgi.convert(text, str(path), os.environ)
        else:
            include = _include_reader(path)
            conv = supervisord.convert(text, str(path), os.environ, socket.gethostname(), include)
    except BadInput as exc:
        raise ConfigError([str(exc)]) from None
    files = {"Procfile": write.procfile(conv), "pidone.toml": write.pidone_toml(conv)}
    for name, content in files.items():
        if len(content.encode()) > MAX_FILE_BYTES:  # pidone's bound on a file it reads
            raise ConfigError(
                [
                    f"{args.source}: its {name} would be larger than {MAX_FILE_BYTES // 1024} "
                    "KiB, more than pidone reads; import it in parts"
                ]
            )
    for line in write.notes(conv):
        sys.stderr.write(f"pidone import: {line}\n")
    if args.output is None:
        # Both on stdout, each under a header that is a comment in both
        # formats: readable as one text, and each part still valid if cut out.
        for name, text in files.items():
            sys.stdout.write(f"# ==> {name} <==\n{text}")
        return 0
    _write(args.output, files, args.force)
    names = ", ".join(str(args.output / name) for name in files)
    sys.stderr.write(f"pidone import: wrote {names}; check them with `pidone check`\n")
    return 0


def _include_reader(main: Path) -> Callable[[str, int], list[tuple[str, str]]]:
    """What supervisord's [include] files = patterns match, read for `pidone
    import`: each a regular file (opened without blocking: a FIFO or a device
    is refused, never read) within pidone's bound on a file, never `main`
    itself (a cycle). Raises BadInput ("path: what")."""
    import glob
    import itertools

    from pidone.config.include import IncludeError, read_regular
    from pidone.config.load import MAX_FILE_BYTES
    from pidone.convert.ini import BadInput
    from pidone.convert.supervisord import MAX_INCLUDE_FILES

    try:
        st = os.stat(main)
        own: tuple[int, int] | None = (st.st_dev, st.st_ino)
    except OSError:
        own = None

    def read(pattern: str, most: int) -> list[tuple[str, str]]:
        matches = sorted(itertools.islice(glob.iglob(pattern), most + 1))
        if len(matches) > most:
            raise BadInput(
                f"{pattern}: more than {MAX_INCLUDE_FILES} files in all; import it in parts"
            )
        found = []
        for path in matches:
            try:
                data, identity = read_regular(Path(path), MAX_FILE_BYTES)
            except IncludeError as exc:
                raise BadInput(f"{path}: {exc}; an [include] reads only files") from None
            except OSError as exc:
                raise BadInput(f"{path}: cannot read it: {exc.strerror}") from None
            if identity == own:
                raise BadInput(
                    f"{path}: is {main} itself, a cycle; narrow the pattern to the other files"
                )
            if len(data) > MAX_FILE_BYTES:
                raise BadInput(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB; not a config")
            try:
                found.append((path, data.decode("utf-8").removeprefix("\ufeff")))
            except UnicodeDecodeError as exc:
                raise BadInput(
                    f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                ) from None
        return found

    return read


def _kind(text: str) -> str | None:
    """supervisord or uwsgi, by the section headers the file has."""
    import re

    headers = re.findall(r"^[ \t]*\[([^\]\n]*)\]", text, re.M)
    if "uwsgi" in (h.strip() for h in headers):
        return "uwsgi"
    if any(h.strip().partition(":")[0] in ("program", "supervisord") for h in headers):
        return "supervisord"
    return None


def _write(directory: Path, files: dict[str, str], force: bool) -> None:
    """Each file written whole (a temporary file renamed over), none written
    if one exists and --force was not given."""
    from pidone.errors import ConfigError

    existing = [name for name in files if (directory / name).exists()]
    if existing and not force:
        raise ConfigError(
            [
                f"{directory / name}: exists; pidone import does not overwrite it: "
                "give --force, or another -o DIR"
                for name in existing
            ]
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            temporary = directory / f".{name}.pidone-import"
            temporary.write_text(text)
            temporary.replace(directory / name)
    except OSError as exc:
        raise ConfigError([f"{directory}: cannot write there: {exc.strerror}"]) from None
