"""The supervisor's subcommands: `pidone run`, `pidone check`.

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
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from pidone.config.load import load
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
}


@dataclass
class Args:
    command: str
    procfile: Path | None = None
    config: Path | None = None
    env: Path | None = None
    metrics: str | None = None


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
    add("-h", "--help", action="store_true", help="show this help and exit")
    return parser  # fmt: skip


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
        raise UsageError(f"unknown subcommand {command!r}: use run, check or ctl")
    new = [name for name in PARSING_ONLY if name not in sys.modules]
    try:
        parser = _parser(command)
        ns = parser.parse_args(rest)
        if ns.help:
            return parser.format_help()
        return Args(command, ns.procfile, ns.config, ns.env, ns.metrics)
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
    from pidone.config import identity

    checks = [identity.check, shell_check]
    config = load(args.procfile, args.config, args.env, environ=env, checks=checks)
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


def describe(config: Config) -> str:
    lines = ["start order (each line starts together, once the line above is ready):"]
    for i, wave in enumerate(config.start_waves, 1):
        lines.append(f"  {i}. {', '.join(wave)}")
    lines.append("processes:")
    for name, spec in config.processes.items():
        after = f" after {', '.join(spec.after)}" if spec.after else ""
        lines.append(f"  {name}: {spec.command_line}{after}")
    return "\n".join(lines) + "\n"


def run_subcommand(argv: list[str]) -> int:
    args = parse_args(argv)
    if isinstance(args, str):
        sys.stdout.write(args)
        return 0
    config = load_config(args)
    if args.command == "check":
        for warning in config.warnings:
            sys.stderr.write(warning + "\n")
        sys.stdout.write(describe(config))
        return 0
    from pidone.runtime import loop
    from pidone.system import sockets

    try:
        return loop.run(config)
    except sockets.UnsafePath as exc:
        sys.stderr.write(f"pidone: refusing to start: {exc}\n")
        return 2
