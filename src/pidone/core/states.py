"""The life of one supervised process: its states, the events that move it,
and the one table that says which event moves it where.

    state      event            new state   what happened / what the supervisor does
    ---------  ---------------  ----------  ----------------------------------------------
    STOPPED    START            STARTING    wanted up; it spawns once every `after` is READY
    STARTING   SPAWNED          RUNNING     fork/exec succeeded, the pid is known
    STARTING   SPAWN_FAILED     EXITED      any failure to start: exec, EMFILE, ... (counts
                                            as a failure, like an exit)
    RUNNING    READY_OK         READY       the `ready` check passed (or it stayed up
                                            for the settle time); dependents may start
    READY      READY_OK         READY       a repeated READY=1 (uwsgi after a reload)
    RUNNING    EXITED           EXITED      it died before it was ready
    READY      EXITED           EXITED      it died; its dependents are stopped first
                                            when it is going to be restarted
    EXITED     RETRY            BACKOFF     the restart policy restarts it after a delay
    EXITED     GAVE_UP          FATAL       too many failures in the window: no more retries
    BACKOFF    BACKOFF_ELAPSED  STARTING    the delay is over
    BACKOFF    START            STARTING    started by hand: skip the rest of the delay
    EXITED     START            STARTING    started by hand (or `restart = "never"` is
    FATAL      START            STARTING      overridden by the operator); failures reset
    RUNNING    STOP             STOPPING    stop signal, then SIGCONT, to the main pid (or group)
    READY      STOP             STOPPING
    STOPPING   STOP_TIMEOUT     STOPPING    stop timeout passed: SIGKILL to its group and pid
    STOPPING   EXITED           STOPPED     it stopped as asked (never restarted for it)
    STOPPING   EXITED_UNREADY   EXITED      stopped for its ready_timeout, wanted up still:
                                            a failed start (the policy acts as at EXITED)
    STARTING   STOP             STOPPED     not spawned yet: nothing to signal
    BACKOFF    STOP             STOPPED     the pending restart is cancelled
    STOPPED    STOP             STOPPED     STOP is legal in every state, so that
    STOPPING   STOP             STOPPING      "stop everything" (a second SIGTERM, a
    EXITED     STOP             EXITED        control process exit) needs no checks;
    FATAL      STOP             FATAL         EXITED and FATAL keep their verdict

Every other (state, event) pair raises IllegalTransition: a supervisor that
feeds one has a bug, and should fail loudly rather than drift.

Restart policy, backoff delays, failure counting and the ordered restart of
dependents are decisions the supervisor takes *between* these events (for
example at EXITED it sends RETRY, GAVE_UP, or nothing when the policy says
not to restart); they are not states, so the table stays small.
"""

from __future__ import annotations

import enum
from typing import Literal, TypeVar, get_args

from pidone.errors import IllegalTransition

# Why a process was started again: the restarts counter's `reason` label
# (every one shown from 0, so a rate() sees the first restart).
RestartReason = Literal[
    "crash", "manual", "dependency", "touch", "ready_timeout", "liveness", "watchdog"
]
RESTART_REASONS: tuple[RestartReason, ...] = get_args(RestartReason)

_State = TypeVar("_State", bound=enum.Enum)
_Event = TypeVar("_Event", bound=enum.Enum)


def _look_up(table: dict[tuple[_State, _Event], _State], state: _State, event: _Event) -> _State:
    """What `event` moves `state` to in `table` (each table below says it
    once); IllegalTransition if it has no such row."""
    try:
        return table[state, event]
    except KeyError:
        raise IllegalTransition(state, event) from None


class Named(enum.Enum):
    """An enum that prints as its member's name (STOPPED, not ProcessState.STOPPED):
    the states, events and stages in log lines and IllegalTransition messages."""

    def __str__(self) -> str:
        return self.name


class ProcessState(Named):
    STOPPED = "stopped"  # not started yet, or stopped on purpose
    STARTING = "starting"  # wanted up: waiting for its dependencies, then spawned
    RUNNING = "running"  # up, readiness pending
    READY = "ready"  # up and ready: dependents may start
    BACKOFF = "backoff"  # exited, restart scheduled after a delay
    STOPPING = "stopping"  # stop signal sent, waiting for it to exit
    EXITED = "exited"  # exited on its own (or could not be spawned)
    FATAL = "fatal"  # failed too often in a short window: given up


class Event(Named):
    START = "start"
    SPAWNED = "spawned"
    SPAWN_FAILED = "spawn_failed"
    READY_OK = "ready_ok"
    EXITED = "exited"
    EXITED_UNREADY = "exited_unready"
    RETRY = "retry"
    GAVE_UP = "gave_up"
    BACKOFF_ELAPSED = "backoff_elapsed"
    STOP = "stop"
    STOP_TIMEOUT = "stop_timeout"


S = ProcessState
E = Event

TRANSITIONS: dict[tuple[ProcessState, Event], ProcessState] = {
    (S.STOPPED, E.START): S.STARTING,
    (S.STOPPED, E.STOP): S.STOPPED,
    (S.STARTING, E.SPAWNED): S.RUNNING,
    (S.STARTING, E.SPAWN_FAILED): S.EXITED,
    (S.STARTING, E.STOP): S.STOPPED,
    (S.RUNNING, E.READY_OK): S.READY,
    (S.RUNNING, E.EXITED): S.EXITED,
    (S.RUNNING, E.STOP): S.STOPPING,
    (S.READY, E.READY_OK): S.READY,
    (S.READY, E.EXITED): S.EXITED,
    (S.READY, E.STOP): S.STOPPING,
    (S.BACKOFF, E.BACKOFF_ELAPSED): S.STARTING,
    (S.BACKOFF, E.START): S.STARTING,
    (S.BACKOFF, E.STOP): S.STOPPED,
    (S.STOPPING, E.EXITED): S.STOPPED,
    (S.STOPPING, E.EXITED_UNREADY): S.EXITED,
    (S.STOPPING, E.STOP_TIMEOUT): S.STOPPING,
    (S.STOPPING, E.STOP): S.STOPPING,
    (S.EXITED, E.RETRY): S.BACKOFF,
    (S.EXITED, E.GAVE_UP): S.FATAL,
    (S.EXITED, E.START): S.STARTING,
    (S.EXITED, E.STOP): S.EXITED,
    (S.FATAL, E.START): S.STARTING,
    (S.FATAL, E.STOP): S.FATAL,
}

# States in which the process has a main pid that can be signalled and reaped.
HAS_PID = frozenset({S.RUNNING, S.READY, S.STOPPING})
# States in which nothing more happens unless someone sends START: pidone
# may exit once every process is in one of these.
AT_REST = frozenset({S.STOPPED, S.EXITED, S.FATAL})


def transition(state: ProcessState, event: Event) -> ProcessState:
    """The state `event` moves `state` to; IllegalTransition if there is none."""
    return _look_up(TRANSITIONS, state, event)


# --- the second table: pidone's own shutdown ------------------------------------
#
#     phase        event          new phase    what the supervisor does
#     -----------  -------------  -----------  ---------------------------------------
#     UP           SHUTDOWN       STOPPING     every process unwanted: stops in reverse order
#     UP           DRAIN          DRAINING     SIGTERM with shutdown_delay: /readyz 503, all runs
#     DRAINING     SHUTDOWN       STOPPING     the delay is over (or a second SIGTERM, a SIGINT)
#     STOPPING     AT_REST        SWEEP_TERM   every process at rest: SIGTERM to the leftovers
#     SWEEP_TERM   SWEEP_TIMEOUT  SWEEP_KILL   sweep_timeout passed: SIGKILL to the leftovers
#     SWEEP_TERM   NO_CHILDREN    SWEPT        nothing left in the container
#     SWEEP_KILL   NO_CHILDREN    SWEPT
#     SWEPT        AT_REST        EXITED       the unclean reasons logged, then Exit(code)


class Phase(Named):
    UP = "up"  # supervising
    DRAINING = "draining"  # shutdown_delay: still supervising, /readyz 503, then STOPPING
    STOPPING = "stopping"  # shutting down: the processes are being stopped
    SWEEP_TERM = "sweep_term"  # SIGTERM sent to whatever is left in the container
    SWEEP_KILL = "sweep_kill"  # ... which ignored it: SIGKILL sent
    SWEPT = "swept"  # no child left
    EXITED = "exited"  # Exit(code) given


class PhaseEvent(Named):
    SHUTDOWN = "shutdown"
    DRAIN = "drain"
    AT_REST = "at_rest"
    SWEEP_TIMEOUT = "sweep_timeout"
    NO_CHILDREN = "no_children"


P = Phase
PE = PhaseEvent

PHASES: dict[tuple[Phase, PhaseEvent], Phase] = {
    (P.UP, PE.SHUTDOWN): P.STOPPING,
    (P.UP, PE.DRAIN): P.DRAINING,
    (P.DRAINING, PE.SHUTDOWN): P.STOPPING,
    (P.STOPPING, PE.AT_REST): P.SWEEP_TERM,
    (P.SWEEP_TERM, PE.SWEEP_TIMEOUT): P.SWEEP_KILL,
    (P.SWEEP_TERM, PE.NO_CHILDREN): P.SWEPT,
    (P.SWEEP_KILL, PE.NO_CHILDREN): P.SWEPT,
    (P.SWEPT, PE.AT_REST): P.EXITED,
}
SWEEPING = frozenset({P.SWEEP_TERM, P.SWEEP_KILL})  # waiting for the last child to go


def next_phase(phase: Phase, event: PhaseEvent) -> Phase:
    """The phase `event` moves `phase` to; IllegalTransition if there is none."""
    return _look_up(PHASES, phase, event)


class Goal(Named):
    """What a process is wanted to do, beside the state it is in."""

    UP = "up"  # wanted running
    DOWN = "down"  # stopped by the operator, or pidone is shutting down
    CYCLE = "cycle"  # ctl restart under way: down (dependents first), then up again


# --- the third table: one instance's way up, beside its state -----------------------
#
# What STARTING and RUNNING cannot say alone: a spawn on its way (it outlives
# STARTING when the process is stopped meanwhile) and a check that passed
# while the instance could not be READY yet. A stop timeout's SIGKILL needs no
# stage: it is due while STOPPING has a stop_deadline, and sent once it has none.
#
#     stage     event         new stage  what the supervisor does
#     --------  ------------  ---------  -----------------------------------------------
#     IDLE      SPAWN         SPAWNING   Spawn sent, once; the processes it is `after`
#                                        wait for it to be down as for a pid
#     SPAWNING  ANSWER        IDLE       Spawned (SIGKILLed if no longer STARTING) or
#                                        SpawnFailed
#     IDLE      CHECK_PASSED  CHECKED    RUNNING, its ready check passed (or it settled):
#     CHECKED   CHECK_PASSED  CHECKED      READY once its created sockets are fixed and
#                                          its pidfile's pid is known
#     CHECKED   RELEASE       IDLE       it became READY, or stopped, or exited


class Launch(Named):
    IDLE = "idle"  # nothing under way
    SPAWNING = "spawning"  # a Spawn is out, its answer not in yet
    CHECKED = "checked"  # RUNNING, its check passed: waiting for its sockets or its pid


class LaunchEvent(Named):
    SPAWN = "spawn"
    ANSWER = "answer"
    CHECK_PASSED = "check_passed"
    RELEASE = "release"


L = Launch
LE = LaunchEvent

LAUNCHES: dict[tuple[Launch, LaunchEvent], Launch] = {
    (L.IDLE, LE.SPAWN): L.SPAWNING,
    (L.SPAWNING, LE.ANSWER): L.IDLE,
    (L.IDLE, LE.CHECK_PASSED): L.CHECKED,
    (L.CHECKED, LE.CHECK_PASSED): L.CHECKED,
    (L.CHECKED, LE.RELEASE): L.IDLE,
}


def next_launch(stage: Launch, event: LaunchEvent) -> Launch:
    """The stage `event` moves `stage` to; IllegalTransition if there is none."""
    return _look_up(LAUNCHES, stage, event)
