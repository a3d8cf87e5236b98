"""Command line: the only place where errors become exit statuses.

    pidone [OPTIONS] [--] CMD [ARGS...]      run one command as PID 1 (tini's and
                                             dumb-init's flags)
    pidone run|check|import|ctl ...          the supervisor (loaded only for them)

Single-command mode parses its few options by hand: argparse would cost
about 1.4 MiB of resident memory in a process that lives as long as the
container.
"""

from __future__ import annotations

import os
import sys

from pidone import __version__
from pidone.digits import ascii_int
from pidone.errors import PidoneError, UsageError
from pidone.hostport import host_port
from pidone.signames import signal_number
from pidone.single import init as single
from pidone.single.init import Options
from pidone.system import process, signals

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

USAGE = """\
usage: pidone [OPTIONS] [--] CMD [ARGS...]
       pidone run [-f PROCFILE] [-c CONFIG] [-e ENVFILE] [--metrics ADDR] [NAME...]
       pidone check [-f PROCFILE] [-c CONFIG] [-e ENVFILE] [NAME...]
       pidone import FILE [-o DIR] [--force]   (supervisord.conf or uwsgi.ini)
       pidone ctl [--socket PATH] COMMAND ...   (pidone ctl -h for the commands)

Single-command mode runs CMD as the only child of pidone, forwards every
signal to it, reaps every zombie, and exits with CMD's exit status.

options:
  -g, --group         send forwarded signals to the child's whole process group,
                      and SIGTERM to what is left of it when the child exits
  -c, --single-child  keep the child in pidone's own process group (no group of its own)
  -r, --rewrite S:R   forward signal S as R (numbers or names; R = 0 drops S); repeatable
  -e CODE             the child's exit status CODE (0..255) becomes 0; repeatable
  -p SIGNAL           pidone gets SIGNAL when its parent dies (PR_SET_PDEATHSIG)
  -w                  warn on stderr for each zombie reaped that is not the child
  -s                  accepted (tini's subreaper flag): pidone is a subreaper already
  -v, --verbose       log what pidone does to stderr (-vv: every signal and reap)
  --metrics ADDR      serve /metrics, /healthz and /readyz on ADDR (HOST:PORT)
  -l                  show the license and exit
  -h, --help          show this help and exit
  -V, --version       show the version and exit

environment (as tini and dumb-init read it): TINI_SUBREAPER (-s),
TINI_KILL_PROCESS_GROUP (-g), TINI_VERBOSITY=N (tini's level: 1 is the default),
DUMB_INIT_SETSID=0 (-c), DUMB_INIT_DEBUG=1 (-v). Usage errors exit 2.
"""

LICENSE = f"""\
pidone {__version__}: a container-native init (PID 1 and supervisor), in Python.
License: MIT. Copyright (c) the pidone authors.
The full text ships with the package (its METADATA, License-Expression: MIT).
"""

SUBCOMMANDS = ("run", "check", "import", "ctl")
_TAKES_VALUE = "epr"  # short options followed by a value, in the same word or the next


def _shown(text: str) -> str:
    """A command-line value in a message, cut short: a message stays a line."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def signal_arg(text: str, what: str, *, zero: bool = False) -> int:
    """A signal from the command line, by signames' one rule (0 only if `zero`)."""
    try:
        return signal_number(text, zero=zero)
    except ValueError as exc:
        raise UsageError(f"{what}: {_shown(text)} is {exc}") from None


def metrics_arg(text: str) -> str:
    """--metrics ADDR, by hostport's one rule: refused before CMD starts."""
    try:
        host_port(text)
    except ValueError as exc:
        raise UsageError(f"--metrics {_shown(text)}: {exc}") from None
    return text


def exit_code_arg(text: str) -> int:
    code = ascii_int(text, most=3)
    if code is not None and code <= 255:
        return code
    raise UsageError(f"-e: {_shown(text)} is not an exit status; use a number from 0 to 255")


def rewrite_arg(text: str, option: str = "-r") -> tuple[int, int]:
    """dumb-init's S:R; SIGKILL, SIGSTOP and SIGCHLD never reach pidone's forwarding."""
    what = f"{option} {_shown(text)}"
    source, sep, target = text.partition(":")
    if not sep:
        raise UsageError(f"{what}: expected S:R, like -r 15:2 or -r SIGTERM:SIGINT")
    signum = signal_arg(source, what)
    if signum in (signals.SIGKILL, signals.SIGSTOP, signals.SIGCHLD):
        raise UsageError(f"{what}: pidone never forwards signal {signum}, so it cannot rewrite it")
    return signum, signal_arg(target, what, zero=True)


def _option_value(opts: Options, flag: str, value: str, option: str = "") -> None:
    if flag == "e":
        opts.expect.add(exit_code_arg(value))
    elif flag == "p":
        opts.pdeathsig = signal_arg(value, "-p")
    else:
        signum, target = rewrite_arg(value, option or "-r")
        opts.rewrite[signum] = target


def parse_single(args: list[str], env: Mapping[str, str] | None = None) -> Options | str:
    """Parse `[OPTIONS] [--] CMD ...` and tini's and dumb-init's variables in `env`
    (default: ours); return Options, or a str to print and exit 0."""
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
        name, has_value, inline = arg.partition("=")
        if arg == "--group":
            opts.group = True
        elif arg == "--single-child":
            opts.single_child = True
        elif name in ("--metrics", "--rewrite"):
            if not has_value and i + 1 < len(args):
                i += 1
                inline = args[i]
            if not inline:
                need = "an address" if name == "--metrics" else "a value"
                example = "0.0.0.0:9100" if name == "--metrics" else "15:2"
                raise UsageError(f"{name} needs {need}, like {name} {example}")
            if name == "--metrics":
                opts.metrics = metrics_arg(inline)
            else:
                _option_value(opts, "r", inline, name)
        elif arg == "--verbose":
            opts.verbosity += 1
        elif arg.startswith("-") and not arg.startswith("--") and len(arg) > 1:
            for at, flag in enumerate(arg[1:], start=2):
                if flag in _TAKES_VALUE:
                    value = arg[at:]  # -e143, or -e 143
                    if not value:
                        if i + 1 >= len(args):
                            raise UsageError(f"-{flag} needs a value (see -h)")
                        i += 1
                        value = args[i]
                    _option_value(opts, flag, value)
                    break
                if flag == "l":
                    return LICENSE
                if flag == "g":
                    opts.group = True
                elif flag == "v":
                    opts.verbosity += 1
                elif flag == "c":
                    opts.single_child = True
                elif flag == "w":
                    opts.warn_reaped = True
                elif flag == "s":
                    opts.subreaper = True
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
    _read_peer_environment(opts, os.environ if env is None else env)
    if opts.single_child and opts.group:
        raise UsageError(
            "-c (or DUMB_INIT_SETSID=0) and -g (or TINI_KILL_PROCESS_GROUP) contradict each "
            "other: with -c the child is in pidone's own process group; drop one of them"
        )
    return opts


def _read_peer_environment(opts: Options, env: Mapping[str, str]) -> None:
    """The variables tini and dumb-init read, with their meaning: tini's are set when
    present at all (TINI_VERBOSITY is a level), dumb-init's only at one value."""
    if "TINI_SUBREAPER" in env:
        opts.subreaper = True
    if "TINI_KILL_PROCESS_GROUP" in env:
        opts.group = True
    level = env.get("TINI_VERBOSITY")
    if level is not None:
        if not (level.isdigit() and int(level) <= 9):
            raise UsageError(
                f"TINI_VERBOSITY={level!r}: use a level from 0 to 9 "
                "(tini's: 1 is the default, 2 is pidone -v, 3 is -vv)"
            )
        # tini's level 1 shows warnings only, which pidone always shows: its 0.
        opts.verbosity += max(0, int(level) - 1)
    if env.get("DUMB_INIT_SETSID") == "0":
        opts.single_child = True
    if env.get("DUMB_INIT_DEBUG") == "1":
        opts.verbosity += 1


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
                process.exit_now(code)
            return code
        parsed = parse_single(args)
        if isinstance(parsed, str):
            sys.stdout.write(parsed)
            return 0
        # Skip interpreter teardown (about 4 ms of module cleanup): the
        # container's stop time is the child's, not Python's.
        process.exit_now(single.main(parsed))
    except UsageError as exc:
        text = USAGE
        if args and args[0] in ("run", "check", "import"):
            from pidone.commands import usage

            text = usage(args[0])
        sys.stderr.write(f"pidone: {exc}\n\n{text}")
        return exc.exit_code
    except PidoneError as exc:
        sys.stderr.write(f"pidone: {exc}\n")
        return exc.exit_code
