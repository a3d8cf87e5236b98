"""What an operator's request (pidone ctl) asks for, and when it is done: pure.

    Command          the ctl commands, defined once; the control protocol maps
                     the wire strings (the values) to them, and only there
    Wait             a start, stop, restart or wait-ready under way, and what
                     it waits for
    judge()          its Outcome once the snapshot says done, failed or late;
                     None while it is still on its way

The supervisor registers a Wait when the request comes in, judges every Wait
after each event (and at its deadline), and answers with a Reply action.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pidone.core.snapshot import ProcessStatus, Snapshot, not_ready
from pidone.core.states import AT_REST, HAS_PID, ProcessState

DEFAULT_WAIT = 300.0  # seconds a ctl start/restart waits for readiness unless told
STOP_GRACE = 10.0  # seconds a ctl stop waits beyond the longest stop timeout unless told


class Command(enum.Enum):
    STATUS = "status"
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    RELOAD = "reload"
    SIGNAL = "signal"
    SHUTDOWN = "shutdown"
    WAIT_READY = "wait-ready"
    REREAD = "reread"
    UPDATE = "update"
    REEXEC = "reexec"

    def __str__(self) -> str:
        return self.value


NAMED = frozenset({Command.START, Command.STOP, Command.RESTART, Command.RELOAD, Command.SIGNAL})
TIMED = frozenset(
    {Command.START, Command.STOP, Command.RESTART, Command.WAIT_READY, Command.UPDATE}
)
WAITED = TIMED  # answered once a goal is reached, not at once


@dataclass(frozen=True)
class Result:
    """One process's part of an outcome."""

    name: str
    state: ProcessState
    error: str | None = None  # None: ok

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Outcome:
    """The answer to a request: ok, or why not; per process for named ones."""

    ok: bool
    error: str | None = None
    results: tuple[Result, ...] | None = None
    not_ready: tuple[str, ...] | None = None  # wait-ready that timed out
    status: Snapshot | None = None  # the answer to status
    changes: tuple[str, ...] | None = None  # update: what it changed (config/diff.lines)


def combine(results: list[Result]) -> Outcome:
    failed = [r for r in results if not r.ok]
    if failed:  # each result says why; the error sums them up
        error = f"{len(failed)} of {len(results)} processes failed"
        return Outcome(False, error, tuple(results))
    return Outcome(True, results=tuple(results))


def signalled(p: ProcessStatus) -> Result:
    """The result of a reload or signal: only a known main pid is signalled."""
    if p.state in HAS_PID and p.pid is not None:
        return Result(p.name, p.state)
    why = "not running yet: waiting for its pidfile" if p.state in HAS_PID else "not running"
    return Result(p.name, p.state, why)


@dataclass(frozen=True)
class Wait:
    """A ctl request waiting for processes to reach a goal."""

    ticket: int
    command: Command
    names: tuple[str, ...]  # expanded, in start order; () for wait-ready
    deadline: float
    restarts: dict[str, int]  # for restart: the count before, to see a new instance
    # update: the removed processes (done once gone), and what it changed
    gone: tuple[str, ...] = ()
    changes: tuple[str, ...] | None = None


def judge(wait: Wait, snap: Snapshot, now: float) -> Outcome | None:
    """The outcome of a waiting ctl request, or None to keep waiting. A
    restart counts as done only for a new instance (its restart count rose)."""
    if wait.command is Command.WAIT_READY:
        waiting = not_ready(snap)
        if not waiting:
            return Outcome(True)
        if now >= wait.deadline:
            return Outcome(False, f"not ready: {', '.join(waiting)}", not_ready=tuple(waiting))
        return None
    procs = {p.name: p for p in snap.processes}
    results = []
    for name in wait.names:
        p = procs[name]
        failure = None
        if wait.command is Command.STOP:
            done = p.state in AT_REST
        else:
            cycled = wait.command is Command.RESTART or (
                wait.command is Command.UPDATE and name in wait.restarts
            )
            new = not cycled or p.restarts > wait.restarts.get(name, 0)
            done = new and (p.ready or p.completed)  # completed: the supervisor's rule
            if new:
                failure = _failure(p.state, p.last_exit.status if p.last_exit else None)
        if p.standby and wait.command is not Command.STOP:
            done = True  # wanted up: it runs when this pidone becomes its legion's lord
        if done:
            results.append(Result(name, p.state))
        elif failure is not None:
            results.append(Result(name, p.state, failure))
        elif now >= wait.deadline:
            what = "stopped" if wait.command is Command.STOP else "ready"
            results.append(Result(name, p.state, f"not {what} in time ({p.state.value})"))
        else:
            return None  # still on its way
    for name in wait.gone:
        left = procs.get(name)
        if left is None:
            results.append(Result(name, ProcessState.STOPPED))
        elif now >= wait.deadline:
            results.append(Result(name, left.state, f"not stopped in time ({left.state.value})"))
        else:
            return None
    outcome = combine(results)
    if wait.changes is not None:
        outcome = Outcome(outcome.ok, outcome.error, outcome.results, changes=wait.changes)
    return outcome


def _failure(state: ProcessState, status: int | None) -> str | None:
    if state is ProcessState.FATAL:
        return "FATAL: it keeps exiting"
    if state is ProcessState.EXITED:
        return f"exited with status {status} and is not restarted"
    return None
