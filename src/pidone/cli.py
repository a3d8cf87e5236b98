"""Command line: the only place where errors become exit statuses.

    pidone [-g] [-v...] [--] CMD [ARGS...]   run one command as PID 1 (like tini)
    pidone run|check|ctl ...                 the supervisor (loaded only for them)

Single-command mode parses its few options by hand: argparse would cost
about 1.4 MiB of resident memory in a process that lives as long as the
container.
"""

from __future__ import annotations

import sys

from pidone import __version__, system
from pidone.errors import PidoneError, UsageError
from pidone.single import init as single
from pidone.single.init import Options

USAGE = """\
usage: pidone [OPTIONS] [--] CMD [ARGS...]
       pidone run [-f PROCFILE] [-c CONFIG] [-e ENVFILE] [--metrics ADDR]
       pidone check [-f PROCFILE] [-c CONFIG] [-e ENVFILE]
       pidone ctl [--socket PATH] COMMAND ...   (pidone ctl -h for the commands)

Single-command mode runs CMD as the only child of pidone, forwards every
signal to it, reaps every zombie, and exits with CMD's exit status.

options:
  -g, --group       send forwarded signals to the child's whole process group
  -v, --verbose     log what pidone does to stderr (-vv: every signal and reap)
  --metrics ADDR    serve /metrics, /healthz and /readyz on ADDR (HOST:PORT)
  -h, --help        show this help and exit
  -V, --version     show the version and exit
"""


SUBCOMMANDS = ("run", "check", "ctl")


def parse_single(args: list[str]) -> Options | str:
    """Parse `[OPTIONS] [--] CMD ...`; return Options, or a str to print and exit 0."""
    opts = Options(command=[])
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if arg in ("-h", "--help"):
            return USAGE
        if arg in ("-V", "--version"):
            return f"pidone {__version__}\n"
        if arg == "--group":
            opts.group = True
        elif arg == "--metrics" or arg.startswith("--metrics="):
            if "=" in arg:
                opts.metrics = arg.partition("=")[2]
            elif i + 1 < len(args):
                i += 1
                opts.metrics = args[i]
            if not opts.metrics:
                raise UsageError("--metrics needs an address, like --metrics 0.0.0.0:9100")
        elif arg == "--verbose":
            opts.verbosity += 1
        elif arg.startswith("-") and not arg.startswith("--") and len(arg) > 1:
            for flag in arg[1:]:
                if flag == "g":
                    opts.group = True
                elif flag == "v":
                    opts.verbosity += 1
                else:
                    raise UsageError(f"unknown option -{flag} in {arg!r}")
        elif arg.startswith("-"):
            raise UsageError(f"unknown option {arg!r}")
        else:
            break  # first word of the command
        i += 1
    opts.command = args[i:]
    if not opts.command:
        raise UsageError("no command given: pidone [OPTIONS] -- CMD [ARGS...]")
    return opts


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args and args[0] == "ctl":
            from pidone.control import client as ctl

            return ctl.main(args[1:])
        if args and args[0] in SUBCOMMANDS:
            from pidone.commands import run_subcommand

            code = run_subcommand(args)
            if args[0] == "run":
                # Everything is stopped and the logs are drained: skip the
                # interpreter's teardown, which only delays the container's exit.
                system.exit_now(code)
            return code
        parsed = parse_single(args)
        if isinstance(parsed, str):
            sys.stdout.write(parsed)
            return 0
        # Skip interpreter teardown (about 4 ms of module cleanup): the
        # container's stop time is the child's, not Python's.
        system.exit_now(single.main(parsed))
    except UsageError as exc:
        text = USAGE
        if args and args[0] in ("run", "check"):
            from pidone.commands import usage

            text = usage(args[0])
        sys.stderr.write(f"pidone: {exc}\n\n{text}")
        return exc.exit_code
    except PidoneError as exc:
        sys.stderr.write(f"pidone: {exc}\n")
        return exc.exit_code
