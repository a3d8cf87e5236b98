"""The supervisor's subcommands: `pidone run`, `pidone check`.

Loaded only for them (argparse and the config stack would bloat the
single-command mode). Config and usage errors exit 2, having started nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pidone import __version__
from pidone.config import Config, load
from pidone.errors import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--procfile", type=Path, help="Procfile (default: ./Procfile)")
    parser.add_argument(
        "-c", "--config", type=Path, help="pidone.toml (default: ./pidone.toml if present)"
    )
    parser.add_argument("-e", "--env", type=Path, help=".env file (default: ./.env if present)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pidone", description="A container-native init and supervisor.")
    parser.add_argument("-V", "--version", action="version", version=f"pidone {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="supervise the processes of a Procfile / pidone.toml")
    _files(run)
    check = sub.add_parser("check", help="validate the configuration and print the start order")
    _files(check)
    return parser


def load_config(args: argparse.Namespace) -> Config:
    from pidone import system

    environ = system.original_environ()
    env = (
        {
            k.decode(errors="surrogateescape"): v.decode(errors="surrogateescape")
            for k, v in environ.items()
        }
        if environ is not None
        else dict(os.environ)
    )
    from pidone import identity

    return load(args.procfile, args.config, args.env, environ=env, checks=[identity.check])


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
    args = build_parser().parse_args(argv)
    config = load_config(args)
    if args.command == "check":
        sys.stdout.write(describe(config))
        return 0
    from pidone import loop, system

    try:
        return loop.run(config)
    except system.UnsafePath as exc:
        sys.stderr.write(f"pidone: refusing to start: {exc}\n")
        return 2
