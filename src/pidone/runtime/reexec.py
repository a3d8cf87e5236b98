"""`pidone ctl reexec`: the loop hands its state and fds to a new pidone.

The old pidone (reexec):
    refused (nothing changed) while shutting down (the core says), when
    the configuration changed since it was read (a legion too) or no longer
    loads, or when the NEW code's `pidone check` (with the handover, so
    that the new code validates it too) fails within 10 s; else every other
    waiting ctl client is answered "pidone is re-executing", the requester
    "re-executing: pid N, version A", the relay drained (a partial last
    line is written out as a line), the side threads stopped, the kept fds
    made inheritable (everything else close-on-exec) and pidone exec'd
    again, as it was started (sys.orig_argv), PIDONE_REEXEC_FD=N in its
    own environment only. A failed exec is logged and pidone goes on.

The new one (resume, from `pidone run` with PIDONE_REEXEC_FD):
    reads the handover (bounded), checks every fd it names (open, of its
    kind), makes them close-on-exec again, rebuilds the loop around them
    (no bind, no spawn of what runs), restarts the readiness and liveness
    checks under way, reaps what exited meanwhile, and carries on. A value
    of the core refused is logged (core/handover.py). With legions, the
    loop's token goes too: the leases in redis hold it, so the new pidone's
    renewals (compare-and-set) still match; a token not of make_token()'s
    shape is refused: a new one, and no lease is taken as ours. A handover
    it cannot use at all (unreadable, another format, an fd gone): logged, every
    process left is stopped (SIGTERM, SIGKILL after 5 s) and pidone starts
    afresh from its configuration: PID 1 does not die, and no second
    instance runs beside an unknown first.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pidone import __version__
from pidone.config import diff
from pidone.config.specs import Config
from pidone.control import protocol
from pidone.control.server import REEXECUTING
from pidone.core import handover
from pidone.core.supervisor import Tick
from pidone.errors import ConfigError
from pidone.system import proc
from pidone.system import reexec as system

if TYPE_CHECKING:
    from pidone.core.supervisor import Supervisor
    from pidone.runtime.logformat import Stream
    from pidone.runtime.loop import Answer, Loop

RESUME_LOG = "re-executed from version {version} (pid {pid})"
METRICS_LINGER = 1.0  # seconds the old /metrics server serves the requests it accepted


@dataclass
class Fds:
    """The fds a handover names, by role."""

    control: int | None = None
    metrics: int | None = None
    listening: dict[str, int] = field(default_factory=dict)
    socket_dirs: dict[str, int] = field(default_factory=dict)
    pipes: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    notify: dict[str, int] = field(default_factory=dict)
    adopted: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (pid, pidfd)

    def all(self) -> list[int]:
        found = [fd for fd in (self.control, self.metrics) if fd is not None]
        found += [*self.listening.values(), *self.socket_dirs.values(), *self.notify.values()]
        found += [fd for streams in self.pipes.values() for ends in streams.values() for fd in ends]
        found += [fd for _, fd in self.adopted.values()]
        return found


# --- the old pidone ----------------------------------------------------------------


def reexec(loop: Loop, answer: Answer) -> None:
    """`pidone ctl reexec`: refused with the reason, or exec'd (no return)."""
    refusal = loop.core.reexec_refusal() or _config_refusal(loop)
    if refusal is not None:
        answer(protocol.error(refusal))
        return
    fds = loop_fds(loop)
    if loop.metrics is not None:  # a copy that keeps it open once its threads stop
        fds.metrics = loop.metrics.keep_listener()
    memfd = -1
    try:
        data = json.dumps(state(loop, fds), separators=(",", ":"), allow_nan=False).encode()
        env = _environment()
        memfd = system.write_handover(data)
        why = system.preflight(check_argv(), env, memfd, loop.devnull)
        if why is not None:
            answer(protocol.error(f"not re-executing: {why}"))
            return
        _go(loop, answer, fds, env)
    finally:
        if memfd >= 0:
            os.close(memfd)
        if fds.metrics is not None:  # not handed to a metrics server
            os.close(fds.metrics)


def _config_refusal(loop: Loop) -> str | None:
    if loop.reload is None:
        return "pidone cannot read its configuration again: not re-executing"
    try:
        config = loop.reload()
    except ConfigError as exc:
        return "the configuration does not load now, fix it first:\n" + "\n".join(exc.problems)
    if config != loop.config:  # what changed, as ctl reread says it
        changes = "; ".join(
            line
            for line in diff.lines(diff.diff(loop.config, config))
            if not line.startswith(("unchanged", "nothing"))
        )
        return (
            f"the configuration changed since it was read ({changes}): pidone ctl update"
            " first (a setting that needs a restart of pidone: put it back, or restart pidone)"
        )
    return None


def _go(loop: Loop, answer: Answer, fds: Fds, env: dict[bytes, bytes]) -> None:
    for ticket, waiting in list(loop.answers.items()):
        waiting(protocol.error(REEXECUTING))
        del loop.answers[ticket]  # the core's Reply for it finds no client: dropped
    message = f"re-executing: pid {os.getpid()}, version {__version__}"
    loop.relay.event("pidone", message)  # logged before the reply says it, as every reply
    answer({"ok": True, "message": message, "pid": os.getpid(), "version": __version__})
    control = loop.control.detach() if loop.control is not None else None
    if loop.metrics is not None:  # its threads stop; the copy of its listener stays open
        loop.metrics.close(linger=METRICS_LINGER)
        loop.metrics = None
    # From here pidone has no control socket and no /metrics server: whatever
    # fails on the way to the exec (no memfd under EMFILE, an exec refused),
    # it gets them back and goes on as before.
    handed = -1
    keep: list[int] = []
    try:
        # Drained, what the drain queued goes in (a `log:` ready line): the
        # state is taken after it, into a memfd of its own (the preflight's
        # is older).
        for _ in range(3):
            loop.relay.drain(timeout=1.0)
            if not loop.events:
                break
            loop.feed(Tick())
        final = loop_fds(loop)
        final.metrics = fds.metrics
        data = json.dumps(state(loop, final), separators=(",", ":"), allow_nan=False).encode()
        handed = system.write_handover(data)
        keep = [handed, *final.all()]
        system.inherit_only(keep)
        env = {**env, system.ENV.encode(): str(handed).encode()}
        error: Exception = system.execute(sys.orig_argv, env)
    except Exception as exc:
        error = exc
    # Still here: the exec failed. Everything as before, but the side threads restarted.
    system.not_inherited(keep)
    if handed >= 0:
        os.close(handed)
    loop.reexec_failed = str(error)  # for the waiting `ctl reexec`: no new pidone
    loop.relay.event("pidone", f"re-executing failed: {error}; going on as before", stream="stderr")
    loop.inherited_control = control
    loop.inherited_metrics, fds.metrics = fds.metrics, None
    loop.start_control()
    loop.start_metrics()


def check_argv() -> list[str]:
    """The new code's `pidone check` with this `pidone run`'s options."""
    args = sys.argv[1:]
    options = args[1:] if args[:1] == ["run"] else args
    return [sys.executable, "-m", "pidone", "check", *options]


def _environment() -> dict[bytes, bytes]:
    """pidone's environment as it was started (not CPython's changes)."""
    env = proc.original_environ()
    if env is None:
        env = {k.encode(): v.encode() for k, v in os.environ.items()}
    env.pop(system.ENV.encode(), None)
    return env


def loop_fds(loop: Loop) -> Fds:
    fds = Fds(
        control=loop.control.fileno() if loop.control is not None else None,
        listening=dict(loop.listening),
        socket_dirs=dict(loop.socket_dirs),
        notify=loop.prober.notify_fds(),
        adopted=dict(loop.adopted),
    )
    for (name, stream), ends in loop.relay.pipes().items():
        fds.pipes.setdefault(name, {})[stream] = ends
    return fds


def state(loop: Loop, fds: Fds) -> dict[str, Any]:
    counters = loop.counters
    return {
        "format": handover.FORMAT,
        "version": __version__,
        "pid": os.getpid(),
        "core": loop.core.handover(),
        "legion_token": loop.legion_token,
        "fds": {
            "control": fds.control,
            "metrics": fds.metrics,
            "listening": fds.listening,
            "socket_dirs": fds.socket_dirs,
            "pipes": {n: {s: list(e) for s, e in st.items()} for n, st in fds.pipes.items()},
            "notify": fds.notify,
            "adopted": {n: list(v) for n, v in fds.adopted.items()},
        },
        "trees": {n: {str(pid): t for pid, t in tree.items()} for n, tree in loop.trees.items()},
        "counters": {
            "zombies_reaped": counters.zombies_reaped,
            "signals_received": {str(k): v for k, v in counters.signals_received.items()},
            "signals_forwarded": {str(k): v for k, v in counters.signals_forwarded.items()},
        },
    }


# --- the new pidone ----------------------------------------------------------------


@dataclass
class Handover:
    """A handover read and checked, before the loop takes it."""

    data: dict[str, Any]
    fds: Fds
    version: str
    pid: int


def parse(config: Config, raw: bytes) -> Handover:
    """The handover in `raw`, its fds checked for shape (not for being
    open: check_open); handover.Refused if it cannot be used at all."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise handover.Refused(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != handover.FORMAT:
        raise handover.Refused(f"not a pidone handover of format {handover.FORMAT}")
    given = data.get("fds")
    if not isinstance(given, dict):
        raise handover.Refused('no "fds" object')
    version = data.get("version")
    pid = data.get("pid")
    fds = Fds(
        control=_fd_or_none(given.get("control"), "control"),
        metrics=_fd_or_none(given.get("metrics"), "metrics"),
        listening=_named(given.get("listening"), "listening", set(config.sockets)),
        socket_dirs=_named(given.get("socket_dirs"), "socket_dirs", set(config.sockets)),
        notify=_named(given.get("notify"), "notify", set(config.processes)),
    )
    pipes = given.get("pipes")
    if not isinstance(pipes, dict):
        raise handover.Refused('fds: "pipes" must be an object')
    for name, streams in pipes.items():
        if name not in config.processes or not isinstance(streams, dict):
            raise handover.Refused(f"fds: pipes of {name!r}: no such process")
        for stream, ends in streams.items():
            if stream not in ("stdout", "stderr") or not isinstance(ends, list) or len(ends) != 2:
                raise handover.Refused(f"fds: pipes of {name}: {stream!r} is no [read, write]")
            read, write = (_fd(e, f"pipes of {name}") for e in ends)
            fds.pipes.setdefault(name, {})[stream] = (read, write)
    adopted = given.get("adopted")
    if not isinstance(adopted, dict):
        raise handover.Refused('fds: "adopted" must be an object')
    for name, pair in adopted.items():
        if name not in config.processes or not isinstance(pair, list) or len(pair) != 2:
            raise handover.Refused(f"fds: adopted {name!r} is no [pid, pidfd] of a process")
        try:
            pid_of = handover._pid(pair[0])
        except handover.Refused as why:
            raise handover.Refused(f"fds: adopted {name}: pid {why}") from None
        if pid_of is None:
            raise handover.Refused(f"fds: adopted {name}: no pid")
        fds.adopted[name] = (pid_of, _fd(pair[1], f"adopted {name}"))
    every = fds.all()
    if len(set(every)) != len(every):
        raise handover.Refused("fds: one fd is named twice")
    return Handover(
        data,
        fds,
        version if isinstance(version, str) else "?",
        pid if isinstance(pid, int) else -1,
    )


def _fd(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 3 <= value < 1 << 20:
        raise handover.Refused(f"fds: {what}: {value!r} is no fd number from 3")
    return value


def _fd_or_none(value: Any, what: str) -> int | None:
    return None if value is None else _fd(value, what)


def _named(value: Any, what: str, known: set[str]) -> dict[str, int]:
    if not isinstance(value, dict):
        raise handover.Refused(f'fds: "{what}" must be an object')
    unknown = sorted(str(n) for n in value if n not in known)
    if unknown:
        raise handover.Refused(f"fds: {what} of {', '.join(unknown)}: not in the configuration")
    return {name: _fd(fd, f"{what} {name}") for name, fd in value.items()}


# What each role's fd must be (fstat): a socket, a pipe, a directory.
_KINDS: dict[str, Callable[[int], bool]] = {
    "socket": stat.S_ISSOCK,
    "pipe": stat.S_ISFIFO,
    "directory": stat.S_ISDIR,
}


def check_open(fds: Fds) -> None:
    """Every fd open and of its kind; handover.Refused else (each left
    inheritable: the fallback closes them). Then each is close-on-exec
    again: no child gets one."""
    wanted: list[tuple[int, str, str]] = []
    for name, fd in [("control", fds.control), ("metrics", fds.metrics)]:
        if fd is not None:
            wanted.append((fd, "socket", name))
    wanted += [(fd, "socket", f"socket {n}") for n, fd in fds.listening.items()]
    wanted += [(fd, "directory", f"socket directory {n}") for n, fd in fds.socket_dirs.items()]
    wanted += [(fd, "socket", f"notify socket of {n}") for n, fd in fds.notify.items()]
    for name, streams in fds.pipes.items():
        for stream, ends in streams.items():
            wanted += [(fd, "pipe", f"{stream} pipe of {name}") for fd in ends]
    for fd, kind, what in wanted:
        try:
            mode = os.fstat(fd).st_mode
        except OSError as exc:
            raise handover.Refused(f"the {what} (fd {fd}): {exc.strerror}") from None
        if not _KINDS[kind](mode):
            raise handover.Refused(f"the {what} (fd {fd}) is not a {kind}")
    for name, (_, fd) in fds.adopted.items():
        try:
            os.fstat(fd)
        except OSError as exc:
            raise handover.Refused(f"the pidfd of {name} (fd {fd}): {exc.strerror}") from None
    # Only now: until here a refusal leaves them inheritable, for the fallback to close.
    system.not_inherited(fds.all())


def read(config: Config, fd: int) -> Handover:
    """The handover in fd (closed), checked; handover.Refused or
    system.HandoverError if it cannot be used at all."""
    return parse(config, system.read_handover(fd))


def verify(config: Config, fd: int) -> list[str]:
    """`pidone check` with PIDONE_REEXEC_FD: what this code would refuse of
    the handover (the old pidone's preflight): [] if it takes all of it."""
    import time

    try:
        taken = parse(config, system.read_handover(fd, close=False))
        _, _, problems = resume_core(config, taken.data, time.monotonic())
    except (handover.Refused, system.HandoverError) as why:
        return [f"the handover cannot be used: {why}"]
    return [f"the handover: {problem}" for problem in problems]


def resume_core(
    config: Config, data: dict[str, Any], now: float
) -> tuple[Supervisor, str | None, list[str]]:
    """The core and the legions' token (None: none, or refused: a new one)
    from the handover, and the problems found; handover.Refused as resume."""
    token: str | None = None
    problems: list[str] = []
    if config.legions:
        from pidone.system import redis

        token = data.get("legion_token")
        if not redis.is_token(token):
            problems.append(
                f"legion_token {handover._show(token)}: not a token of this pidone's shape"
                f" (32 hex digits, a space, at most {redis.TOKEN_MAX} characters in all):"
                " a new one, and no lease is taken as ours"
            )
            token = None
    core, found = handover.resume(config, data.get("core"), now, token_kept=token is not None)
    return core, token, problems + found


def take(loop: Loop, taken: Handover) -> list[str]:
    """Rebuild `loop` around the handover (before its run): the core, the
    fds, the counters. The problems of the core's values, to log."""
    core, token, problems = resume_core(loop.config, taken.data, loop.clock())
    check_open(taken.fds)  # the last refusal: from here on the loop owns the fds
    loop.core = core
    loop.legion_token = token
    fds = taken.fds
    loop.listening = dict(fds.listening)
    loop.socket_dirs = dict(fds.socket_dirs)
    for name, streams in fds.pipes.items():
        for stream, (read_end, write_end) in streams.items():
            kind: Stream = "stdout" if stream == "stdout" else "stderr"
            loop.relay.adopt_pipe(name, kind, read_end, write_end)
    for name, fd in fds.notify.items():
        loop.prober.adopt_notify(name, fd)
    for name, (pid, fd) in fds.adopted.items():
        loop.watch_adopted(name, pid, fd)
    if fds.control is not None:
        loop.inherited_control = socket.socket(fileno=fds.control)
    loop.inherited_metrics = fds.metrics
    _take_rest(loop, taken.data, problems)
    return problems


def _take_rest(loop: Loop, data: dict[str, Any], problems: list[str]) -> None:
    """The trees of stopping processes and the counters: refused whole
    when malformed (a problem logged), never raised."""
    trees = data.get("trees")
    try:
        if not isinstance(trees, dict):
            raise handover.Refused("must be an object")
        for name, tree in trees.items():
            if name not in loop.config.processes or not isinstance(tree, dict):
                raise handover.Refused(f"{name!r} is no process with a tree")
            loop.trees[name] = {
                _tree_pid(pid): None if t is None else handover._count(t) for pid, t in tree.items()
            }
    except (handover.Refused, ValueError) as why:
        problems.append(f"trees {why}")
        loop.trees.clear()
    counters = data.get("counters")
    try:
        if not isinstance(counters, dict):
            raise handover.Refused("must be an object")
        signals = handover._dict(_signum, handover._count)
        received = signals(counters.get("signals_received"))
        forwarded = signals(counters.get("signals_forwarded"))
        loop.counters.zombies_reaped = handover._count(counters.get("zombies_reaped"))
        loop.counters.signals_received = received
        loop.counters.signals_forwarded = forwarded
    except handover.Refused as why:
        problems.append(f"counters {why}")


def _tree_pid(text: str) -> int:
    pid = handover._pid(int(text)) if text.isdigit() else None
    if pid is None:
        raise handover.Refused(f"keys must be pids, not {text[:20]!r}")
    return pid


def _signum(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise handover.Refused(f"keys must be signal numbers, not {text[:20]!r}")
    return int(text)


def resume_log(taken: Handover) -> str:
    return RESUME_LOG.format(version=taken.version, pid=taken.pid)


def resume(loop: Loop) -> bool:
    """`pidone run` with PIDONE_REEXEC_FD: take the handover into `loop`
    (True), or, unusable, stop every process left (False: start afresh)."""
    try:
        fd = system.handover_fd(os.environ)
    except system.HandoverError as why:
        return _fallback(loop, str(why))
    finally:
        os.environ.pop(system.ENV, None)  # pidone's own: never passed on
    assert fd is not None
    named: list[int] = []
    try:
        taken = read(loop.config, fd)
        named = taken.fds.all()
        problems = take(loop, taken)
    except (handover.Refused, system.HandoverError) as why:
        return _fallback(loop, str(why), named)
    except Exception as exc:  # a bug of ours: PID 1 must not die of it
        return _fallback(loop, f"internal error: {type(exc).__name__}: {exc}", named)
    for problem in problems:
        loop.relay.event("pidone", f"re-exec: refused {problem}", stream="stderr")
    _launchers(loop)
    loop.resumed = resume_log(taken)
    return True


def _launchers(loop: Loop) -> None:
    """A pidfile process whose pidfile is not read yet: its launcher
    recorded again (its start time and executable as they are now)."""
    from pidone.runtime.loop import _environment

    for name, p in loop.core.procs.items():
        if p.spec.pidfile and p.pid is None and p.launcher_pid is not None:
            ident = loop.identities[name]
            loop.launchers[name] = proc.Launcher(
                p.launcher_pid,
                os.geteuid() if ident.uid is None else ident.uid,
                p.spec.command.program,
                _environment(p.spec, ident).get("PATH"),
                p.spec.directory,
            )


def _fallback(loop: Loop, why: str, named: Collection[int] = ()) -> bool:
    loop.relay.event(
        "pidone",
        f"re-exec: the handover cannot be used ({why}): stopping every process left"
        " (SIGTERM, SIGKILL after 5 s), then starting afresh",
        stream="stderr",
    )
    if loop.inherited_control is not None:  # its object must not close the fd number later
        loop.inherited_control.detach()
        loop.inherited_control = None
    system.sweep_leftovers(5.0)
    system.close_inherited(named)
    return False
