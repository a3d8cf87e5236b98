"""The supervisor's subcommands: `pidone run`, `pidone check`.

Loaded only for them (the config stack would bloat the single-command
mode). Their few options are parsed by hand, like single-command mode's:
argparse and the shutil, lzma and bz2 its help formatter imports would cost
`pidone run` over 1 MiB of resident memory for as long as the container
lives. Config and usage errors exit 2, having started nothing.
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

USAGE = """\
usage: pidone {command} [-f PROCFILE] [-c CONFIG] [-e ENVFILE] [--metrics ADDR]

{what}

options:
  -f, --procfile PROCFILE  Procfile (default: ./Procfile)
  -c, --config CONFIG      pidone.toml (default: ./pidone.toml if present)
  -e, --env ENVFILE        .env file (default: ./.env if present)
  --metrics ADDR           serve /metrics, /healthz, /readyz on HOST:PORT
                           (overrides [pidone] metrics)
  -h, --help               show this help and exit
"""

WHAT = {
    "run": "Supervise the processes of a Procfile / pidone.toml.",
    "check": "Validate the configuration and print the start order; start nothing.",
}

OPTIONS = {
    "-f": "procfile",
    "--procfile": "procfile",
    "-c": "config",
    "--config": "config",
    "-e": "env",
    "--env": "env",
    "--metrics": "metrics",
}


@dataclass
class Args:
    command: str
    procfile: Path | None = None
    config: Path | None = None
    env: Path | None = None
    metrics: str | None = None


_WORD = {"metrics": "HOST:PORT address, like 0.0.0.0:9100"}


def usage(command: str) -> str:
    return USAGE.format(command=command, what=WHAT[command])


def parse_args(argv: list[str]) -> Args | str:
    """`run|check [OPTIONS]`: Args, or a str to print and exit 0 (help)."""
    command, rest = argv[0], argv[1:]
    if command not in WHAT:
        raise UsageError(f"unknown subcommand {command!r}: use run, check or ctl")
    args = Args(command)
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg in ("-h", "--help"):
            return usage(command)
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name not in OPTIONS and len(arg) > 2 and arg[:2] in OPTIONS:
            name, eq, value = arg[:2], "=", arg[2:]  # -cFILE
        field = OPTIONS.get(name)
        if field is None:
            what = "option" if arg.startswith("-") else "argument"
            raise UsageError(f"{command}: unknown {what} {arg!r}")
        if not eq and i + 1 < len(rest):
            i += 1
            value = rest[i]
        if not value:
            raise UsageError(f"{command}: {name} needs a {_WORD.get(field, 'file name')}")
        if field == "metrics":
            try:
                args.metrics = address(value)
            except BadValue as exc:
                raise UsageError(f"{command}: --metrics {value!r} {exc}") from None
        else:
            setattr(args, field, Path(value))
        i += 1
    return args


def load_config(args: Args) -> Config:
    from pidone.system import proc

    environ = proc.original_environ()
    env = (
        {
            k.decode(errors="surrogateescape"): v.decode(errors="surrogateescape")
            for k, v in environ.items()
        }
        if environ is not None
        else dict(os.environ)
    )
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
