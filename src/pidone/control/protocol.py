"""The control protocol, shared by the server (server.py) and `pidone ctl`
(client.py): pure, no socket.

Protocol: one request and one reply per connection, each a JSON object on one
line (newline-terminated, UTF-8). After the reply the server closes.

    request   {"command": COMMAND, "args": {...}}          at most 64 KiB
    reply     {"ok": true, ...}  or  {"ok": false, "error": "why"}

    COMMAND     args                                  reply when ok
    status      {}                                    {"ok": true, "shutting_down": false,
                                                       "processes": [ROW, ...]}
    start       {"names": NAMES, "timeout": S?}       {"ok": true, "results": [RESULT, ...]}
    stop        {"names": NAMES, "timeout": S?}         (replied once every process has
    restart     {"names": NAMES, "timeout": S?}          stopped / started and is ready)
    reload      {"names": NAMES}                      {"ok": true, "results": [RESULT, ...]}
    signal      {"names": NAMES, "signal": N}         {"ok": true, "results": [RESULT, ...]}
    shutdown    {}                                    {"ok": true}
    wait-ready  {"timeout": S?}                       {"ok": true} once everything is ready;
                                                      else {"ok": false, "error": ...,
                                                            "not_ready": ["web (starting)"]}
    reread      {}                                    {"ok": true, "changes": [LINE, ...]}
    update      {"names": [NAME, ...]?, "timeout": S?} {"ok": true, "changes": [LINE, ...],
                                                       "results": [RESULT, ...]} once what it
                                                      started is ready, what it removed gone
    reexec      {}                                    {"ok": true, "message": "re-executing:
                                                       pid 1, version A", "pid": 1,
                                                       "version": "A"}, then the exec; the
                                                      next request is the new pidone's;
                                                      if the exec failed, the old one's
                                                      status has "reexec_failed": WHY

    LINE    what differs, as config/diff.lines says it: "added: beat",
            "changed: web: command (restarted)", "unchanged: web, worker", ...
            A configuration that does not load: {"ok": false, "config_error": true,
            "error": what `pidone check` prints}; nothing changed.

    NAMES   ["web", "worker"], or ["all"] for every process (in dependency order)
    S       seconds (a number > 0); the server's own default when absent
    N       a signal number (the client turns names like "HUP" into numbers)
    ROW     {"name": "web", "state": "ready", "ready": true, "pid": 42,
             "uptime": 12.5,               seconds since it started, null when down
             "restarts": 1,
             "last_exit": {"status": 137,  shell convention: code, or 128+N
                           "signal": 9,    the signal that killed it, 0 if it exited
                           "planned": false,  pidone stopped it on purpose
                           "oom": false,   the kernel's OOM killer killed it
                           "ago": 30.1}    seconds since
                          or null}
    RESULT  {"name": "web", "ok": true, "state": "ready"}
            or {"name": "web", "ok": false, "state": "running",
                "error": "not ready within 60 s"}

    When any RESULT is not ok, the reply's "ok" is false and its "error" says
    which. Errors of the request itself (garbage, too large, unknown command
    or process, bad signal) are {"ok": false, "error": "..."}.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from pidone import __version__
from pidone.config import rundir
from pidone.core.requests import NAMED, TIMED, Command, Outcome
from pidone.core.states import HAS_PID
from pidone.signames import signal_number

if TYPE_CHECKING:
    from pidone.core.snapshot import Snapshot
    from pidone.core.supervisor import Request


DEFAULT_SOCKET = os.path.join(rundir.ROOT_DIR, rundir.CONTROL_SOCKET)  # root's
MAX_REQUEST = 64 * 1024
COMMANDS = tuple(c.value for c in Command)  # the wire names


def error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


# --- wire format ---------------------------------------------------------------------


def encode(message: dict[str, Any]) -> bytes:
    # ensure_ascii keeps every line valid UTF-8 whatever a name contains.
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any] | str:
    """The request in `line`, or why it is not one."""
    line = line.rstrip(b"\r")
    if not line.strip():
        return "empty request: send one JSON object per line"
    try:
        request = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return f"bad request: not JSON ({exc})"
    if not isinstance(request, dict):
        return "bad request: not a JSON object"
    command = request.get("command")
    if not isinstance(command, str):
        return 'bad request: no "command" string'
    args = request.setdefault("args", {})
    if not isinstance(args, dict):
        return 'bad request: "args" must be an object'
    return request


def parse_request(request: dict[str, Any], known: Collection[str]) -> Request | str:
    """Check a request from ControlServer against the process names in
    `known`; the supervisor's Request (without a ticket), or the error
    message to reply. The one place a wire string becomes a Command."""
    from pidone.core.supervisor import Request

    wire = request.get("command")
    args = request.get("args", {})
    if wire not in COMMANDS:
        return f"unknown command {wire!r}; commands: {', '.join(COMMANDS)}"
    assert isinstance(wire, str) and isinstance(args, dict)
    command = Command(wire)
    names: tuple[str, ...] = ()
    if command in NAMED:
        raw = args.get("names")
        if not isinstance(raw, list) or not raw or not all(isinstance(n, str) for n in raw):
            return f'{command}: "names" must be a non-empty list of process names, or ["all"]'
        if "all" in raw and len(raw) > 1:
            return f'{command}: "all" stands alone'
        unknown = [n for n in raw if n != "all" and n not in known]
        if unknown:
            return f"{command}: no such process: {', '.join(unknown)}"
        names = tuple(dict.fromkeys(raw))
    if command is Command.UPDATE:  # names of the running or the new config: the core checks
        raw = args.get("names", [])
        if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
            return 'update: "names" must be a list of process names'
        names = tuple(dict.fromkeys(n for n in raw if n != "all"))
    signum = 0
    if command is Command.SIGNAL:
        raw_sig = args.get("signal")
        if not isinstance(raw_sig, int) or isinstance(raw_sig, bool):
            return 'signal: "signal" must be a signal number'
        try:
            signum = signal_number(raw_sig)
        except ValueError as exc:
            return f"signal: {raw_sig} is {exc}"
    timeout: float | None = None
    if command in TIMED and args.get("timeout") is not None:
        from pidone.config.values import (  # the config's one duration rule
            BadValue,
            positive_seconds,
        )

        try:
            timeout = positive_seconds(args["timeout"])
        except BadValue as bad:
            return f'{command}: "timeout" {bad}'
    return Request(command, names, signum, timeout)


def reply_for(outcome: Outcome, now: float) -> dict[str, Any]:
    """The wire reply for the core's outcome; `now` on the monotonic clock."""
    if outcome.status is not None:
        return status_reply(outcome.status, now)
    reply: dict[str, Any] = {"ok": outcome.ok}
    if outcome.error is not None:
        reply["error"] = outcome.error
    if outcome.results is not None:
        reply["results"] = [
            {"name": r.name, "state": r.state.value, "ok": r.ok}
            | ({} if r.error is None else {"error": r.error})
            for r in outcome.results
        ]
    if outcome.not_ready is not None:
        reply["not_ready"] = list(outcome.not_ready)
    if outcome.changes is not None:
        reply["changes"] = list(outcome.changes)
    return reply


# --- status --------------------------------------------------------------------------


def status_rows(snapshot: Snapshot, now: float) -> list[dict[str, Any]]:
    """The processes of `snapshot` as status ROWs; `now` on the snapshot's
    (monotonic) clock."""
    rows: list[dict[str, Any]] = []
    for p in snapshot.processes:
        uptime = None
        if p.state in HAS_PID and p.started_at is not None:
            uptime = round(max(0.0, now - p.started_at), 3)
        last = p.last_exit
        last_exit = None
        if last is not None:
            last_exit = {
                "status": last.status,
                "signal": last.signal,
                "planned": last.planned,
                "oom": last.oom,
                "ago": round(max(0.0, now - last.at), 3),
            }
        rows.append(
            {
                "name": p.name,
                "state": p.state.value,
                "ready": p.ready,
                "pid": p.pid,
                "uptime": uptime,
                "restarts": p.restarts,
                "last_exit": last_exit,
                **({"standby": p.standby} if p.standby else {}),
            }
        )
    return rows


def status_reply(snapshot: Snapshot, now: float) -> dict[str, Any]:
    return {
        "ok": True,
        "version": __version__,  # pidone's: a new one after ctl reexec
        "shutting_down": snapshot.shutting_down,
        **({"draining": True} if snapshot.draining else {}),
        "processes": status_rows(snapshot, now),
        **({"legions": legion_rows(snapshot)} if snapshot.legions else {}),
    }


def legion_rows(snapshot: Snapshot) -> list[dict[str, Any]]:
    return [
        {"name": g.name, "lord": g.lord, "holder": g.holder, "problem": g.problem}
        for g in snapshot.legions
    ]


def connect_error(path: str, exc: OSError) -> str:
    """What to tell the operator when the control socket cannot be reached."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    hint = {
        errno.ENOENT: " (is `pidone run` running, with this control_socket?)",
        errno.ECONNREFUSED: " (pidone is not listening: stale socket?)",
        errno.EACCES: " (root or a member of control_group only)",
        errno.EAGAIN: " (too many clients at once; try again)",
    }.get(exc.errno or 0, "")
    return f"cannot connect to {path}: {reason}{hint}"
