"""`pidone ctl`: steer a running `pidone run` through its control socket.

    pidone ctl [--socket PATH] status [--json]
    pidone ctl start|stop|restart [--timeout S] NAME...|all
    pidone ctl reload NAME...|all
    pidone ctl signal SIG NAME...|all
    pidone ctl shutdown
    pidone ctl wait-ready [--timeout S]
    pidone ctl reread
    pidone ctl update [--timeout S] [NAME...]
    pidone ctl reexec [--timeout S]

One request, one reply (the protocol is in control/protocol.py). Exit status: 0 done,
1 refused or failed (the reason on stderr), 2 usage (or a broken ./pidone.toml;
for reread and update: a configuration pidone cannot load, printed as
`pidone check` prints it).
The socket is --socket, else $PIDONE_CONTROL_SOCKET, else `[pidone]
control_socket` of ./pidone.toml (or of a file it includes), else the
runtime directory's, by the rule `pidone run` follows (config/rundir.py: /run/pidone for root;
$XDG_RUNTIME_DIR/pidone or ./.pidone for any other user).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import time
from typing import Any, NoReturn

from pidone.control.protocol import connect_error
from pidone.errors import ConfigError
from pidone.signames import signal_name, signal_number

SHORT_TIMEOUT = 30.0  # status, reload, signal, shutdown: answered at once
# start/stop/restart without --timeout: the server applies each process's
# stop_timeout (celery's may be 600 s) and readiness wait, so wait long.
LONG_TIMEOUT = 900.0
WAIT_READY_TIMEOUT = 300.0  # wait-ready without --timeout
REEXEC_TIMEOUT = 60.0  # reexec without --timeout: the new code's check, then its start
GRACE = 5.0  # past --timeout, so the server's own "not ready within S s" arrives first
MAX_REPLY = 16 * 1024 * 1024


class CtlUsageError(Exception):
    pass


class CtlError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CtlUsageError(f"{message}\n{self.format_usage().rstrip()}")


def _timeout(text: str) -> float:
    """The server's rule for a duration (values.positive_seconds), checked here
    too: the client's own socket timeout would overflow on 1e300."""
    from pidone.config.values import BadValue, positive_seconds

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    try:
        return positive_seconds(value)
    except BadValue as bad:
        raise argparse.ArgumentTypeError(f"{text!r} {bad}") from None


def _signal(text: str) -> int:
    try:
        return signal_number(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pidone ctl", description="Steer a running `pidone run`.")
    parser.add_argument(
        "--socket",
        metavar="PATH",
        help="the control socket (default: $PIDONE_CONTROL_SOCKET, else control_socket in"
        " ./pidone.toml, else pidone's runtime directory: /run/pidone/control.sock for"
        " root, $XDG_RUNTIME_DIR/pidone/control.sock or ./.pidone/control.sock otherwise)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = sub.add_parser("status", help="every process: state, pid, uptime, restarts")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    verbs = {
        "start": "start processes (all: in dependency order), wait until ready",
        "stop": "stop processes with their stop signal and timeout",
        "restart": "stop, start again, and wait until ready",
    }
    for verb, text in verbs.items():
        p = sub.add_parser(verb, help=text)
        p.add_argument("--timeout", type=_timeout, metavar="S", help="give up after S seconds")
        p.add_argument("names", nargs="+", metavar="NAME", help="process names, or all")
    reload = sub.add_parser("reload", help="send each process its reload_signal")
    reload.add_argument("names", nargs="+", metavar="NAME", help="process names, or all")
    sig = sub.add_parser("signal", help="send a signal to processes")
    sig.add_argument("signum", type=_signal, metavar="SIG", help="TERM, HUP, 15, RTMIN+1, ...")
    sig.add_argument("names", nargs="+", metavar="NAME", help="process names, or all")
    sub.add_parser("shutdown", help="stop everything and exit (like SIGTERM to pidone)")
    wait = sub.add_parser("wait-ready", help="exit 0 once every process is ready")
    wait.add_argument(
        "--timeout",
        type=_timeout,
        metavar="S",
        default=WAIT_READY_TIMEOUT,
        help="give up after S seconds (default: %(default)g)",
    )
    sub.add_parser(
        "reread", help="read the configuration again and print what would change (nothing applied)"
    )
    update = sub.add_parser(
        "update",
        help="apply the configuration read again: start the added, stop the removed, restart"
        " what changed, leave the rest untouched",
    )
    update.add_argument("--timeout", type=_timeout, metavar="S", help="give up after S seconds")
    update.add_argument(
        "names", nargs="*", metavar="NAME", help="only these processes (default: all)"
    )
    reexec = sub.add_parser(
        "reexec", help="execute pidone again (a newer version), keeping every process as it is"
    )
    reexec.add_argument(
        "--timeout",
        type=_timeout,
        metavar="S",
        default=REEXEC_TIMEOUT,
        help="give up waiting for the new pidone after S seconds (default: %(default)g)",
    )
    return parser


def default_socket() -> str:
    """The control socket `pidone run` in this directory uses, found by its
    rule: $PIDONE_CONTROL_SOCKET, control_socket of ./pidone.toml (read by
    the config layer: a broken file is a ConfigError), the runtime directory's."""
    from pidone.config import rundir
    from pidone.config.specs import DEFAULT_CONFIG

    path = os.environ.get("PIDONE_CONTROL_SOCKET")
    if path:
        return path
    if DEFAULT_CONFIG.is_file():
        from pidone.config.load import settings_only

        configured = settings_only(DEFAULT_CONFIG).control_socket
        if configured is not None:
            return configured
    return rundir.runtime_dir(os.getcwd()).control_socket


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.socket is None:
        args.socket = default_socket()
    names = getattr(args, "names", None)
    if names is not None:
        if "all" in names and len(names) > 1:
            parser.error(f"{args.command}: 'all' stands alone")
        args.names = list(dict.fromkeys(names))
    return args


def build_request(args: argparse.Namespace) -> dict[str, Any]:
    request_args: dict[str, Any] = {}
    if getattr(args, "names", None) is not None:
        request_args["names"] = args.names
    if args.command == "signal":
        request_args["signal"] = args.signum
    if getattr(args, "timeout", None) is not None and args.command != "reexec":
        request_args["timeout"] = args.timeout
    return {"command": args.command, "args": request_args}


def reply_timeout(args: argparse.Namespace) -> float:
    """How long the client waits for the reply."""
    timeout = getattr(args, "timeout", None)
    if timeout is not None:
        return float(timeout) + GRACE
    if args.command in ("start", "stop", "restart", "update"):
        return LONG_TIMEOUT
    return SHORT_TIMEOUT


# --- talking -----------------------------------------------------------------------------


def connect(path: str, deadline: float) -> socket.socket:
    """A connection to the control socket; CtlError with the reason if none.
    A full listen backlog (EAGAIN: a burst of clients) is retried until
    `deadline`, where a blocking connect() could wait forever on a stuck server."""
    pause = 0.005
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            sock.connect(path)
            return sock
        except BlockingIOError as exc:
            sock.close()
            if time.monotonic() + pause > deadline:
                raise CtlError(connect_error(path, exc)) from None
        except OSError as exc:
            sock.close()
            raise CtlError(connect_error(path, exc)) from None
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def send(path: str, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send `request`, return the reply; CtlError with the reason otherwise."""
    deadline = time.monotonic() + timeout
    data = json.dumps(request, separators=(",", ":")).encode() + b"\n"
    with connect(path, time.monotonic() + min(timeout, SHORT_TIMEOUT)) as sock:
        received = bytearray()
        try:
            # refused before it read the request: the refusal is there to read
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(data)
            while b"\n" not in received:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""  # closed with our request unread: after its reply, if any
                if not chunk:
                    break
                received += chunk
                if len(received) > MAX_REPLY:
                    raise CtlError("reply too large")
        except TimeoutError:
            raise CtlError(f"no reply within {timeout:g} s") from None
        except OSError as exc:
            raise CtlError(f"talking to {path}: {exc}") from None
    line = bytes(received).partition(b"\n")[0]
    if not line:
        raise CtlError("pidone closed the connection without a reply")
    try:
        reply = json.loads(line)
    except ValueError:
        raise CtlError(f"unreadable reply: {line[:200]!r}") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise CtlError(f"unexpected reply: {line[:200]!r}")
    return reply


# --- output ------------------------------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    """Like ps and kubectl: '45s', '3m 05s', '2h 07m', '3d 04h'."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def format_last_exit(last: dict[str, Any] | None) -> str:
    if not last:
        return "-"
    signum = last.get("signal") or 0
    how = signal_name(signum) if signum else f"exit {last.get('status')}"
    if last.get("oom") is True:
        how = f"killed by the OOM killer ({how})"
    if last.get("planned"):
        how += " (stopped)"
    ago = last.get("ago")
    return f"{how}, {format_duration(ago)} ago" if isinstance(ago, int | float) else how


HEADER = ("NAME", "STATE", "READY", "PID", "UPTIME", "RESTARTS", "LAST EXIT")


def format_status(reply: dict[str, Any]) -> str:
    """The status reply as an aligned table (the last column is not padded)."""
    rows = [HEADER]
    notes = []
    for p in reply.get("processes") or []:
        pid = p.get("pid")
        standby = p.get("standby")
        if standby:  # a legion process on a replica that is not the lord
            notes.append(f"{p.get('name', '?')}: {standby}")
        rows.append(
            (
                str(p.get("name", "?")),
                "STANDBY" if standby else str(p.get("state", "?")).upper(),
                "yes" if p.get("ready") else "no",
                "-" if pid is None else str(pid),
                format_duration(p.get("uptime")),
                str(p.get("restarts", 0)),
                format_last_exit(p.get("last_exit")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    lines += notes
    if reply.get("reexec_failed"):
        lines.append(f"pidone's last re-exec failed: {reply['reexec_failed']}")
    if reply.get("shutting_down"):
        lines.append("pidone is shutting down")
    elif reply.get("draining"):
        lines.append("pidone is draining: /readyz is 503, the stop begins after shutdown_delay")
    return "\n".join(lines) + "\n"


def report(reply: dict[str, Any]) -> tuple[str, str]:
    """(stdout, stderr) text for the reply to an action command."""
    out: list[str] = [str(line) for line in reply.get("changes") or []]
    err: list[str] = []
    failed_shown = False
    for result in reply.get("results") or []:
        name = result.get("name", "?")
        if result.get("ok", True):
            out.append(f"{name}: {result.get('state', 'ok')}")
        else:
            failed_shown = True
            err.append(f"{name}: {result.get('error') or 'failed'}")
    if not reply["ok"]:
        message = str(reply.get("error") or "")
        if message or not failed_shown:
            err.append(message or "failed")
        waiting = [str(item) for item in reply.get("not_ready") or []]
        if waiting and not all(item in message for item in waiting):
            err.append(f"not ready: {', '.join(waiting)}")
    return "".join(f"{line}\n" for line in out), "".join(f"{line}\n" for line in err)


def _wait_for_new_pidone(path: str, reply: dict[str, Any], timeout: float) -> int:
    """After "re-executing": ask for the status until the new pidone
    answers (the control socket is inherited: the request waits in its
    backlog meanwhile), at most `timeout` seconds; print its version."""
    sys.stdout.write(f"{reply.get('message', 're-executing')}\n")
    deadline = time.monotonic() + timeout
    problem = "no answer"
    while time.monotonic() < deadline:
        try:
            status = send(path, {"command": "status", "args": {}}, deadline - time.monotonic())
        except CtlError as exc:  # between its exec and its loop, or starting afresh
            problem = str(exc)
            time.sleep(0.05)
            continue
        failed = status.get("reexec_failed")
        if failed:  # the same pidone answers: its exec failed, it went on as before
            sys.stderr.write(
                f"pidone ctl: re-executing failed: {failed}; pidone goes on as before"
                f" (version {status.get('version', '?')})\n"
            )
            return 1
        sys.stdout.write(f"re-executed: pidone {status.get('version', '?')}\n")
        return 0
    sys.stderr.write(f"pidone ctl: the new pidone did not answer within {timeout:g} s: {problem}\n")
    return 1


# --- main --------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    try:
        args = parse_args(argv)
    except CtlUsageError as exc:
        sys.stderr.write(f"pidone ctl: {exc}\n")
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except ConfigError as exc:
        sys.stderr.write(
            "".join(f"pidone ctl: {line}\n" for line in exc.problems)
            + "pidone ctl: fix ./pidone.toml, or name the socket with --socket PATH\n"
        )
        return exc.exit_code
    try:
        reply = send(args.socket, build_request(args), reply_timeout(args))
    except CtlError as exc:
        sys.stderr.write(f"pidone ctl: {exc}\n")
        return 1
    if args.command == "status" and reply["ok"]:
        if args.json:
            sys.stdout.write(json.dumps(reply, indent=2) + "\n")
        else:
            sys.stdout.write(format_status(reply))
        return 0
    if reply.get("config_error") is True:  # as `pidone check` prints it
        sys.stderr.write(f"pidone: {reply.get('error')}\n")
        return 2
    if args.command == "reexec" and reply["ok"]:
        return _wait_for_new_pidone(args.socket, reply, args.timeout)
    out, err = report(reply)
    sys.stdout.write(out)
    if err:
        sys.stderr.write("".join(f"pidone ctl: {line}\n" for line in err.splitlines()))
    return 0 if reply["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
