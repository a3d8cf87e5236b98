"""The process state table: every (state, event) pair transitions or raises."""

from __future__ import annotations

import itertools
import re

import pytest

from pidone.core import states
from pidone.core.states import TRANSITIONS, Event, ProcessState
from pidone.errors import IllegalTransition, PidoneError

S = ProcessState
E = Event

EXPECTED = {
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


def test_state_and_event_names() -> None:
    assert [s.name for s in S] == [
        "STOPPED",
        "STARTING",
        "RUNNING",
        "READY",
        "BACKOFF",
        "STOPPING",
        "EXITED",
        "FATAL",
    ]
    assert [e.name for e in E] == [
        "START",
        "SPAWNED",
        "SPAWN_FAILED",
        "READY_OK",
        "EXITED",
        "EXITED_UNREADY",
        "RETRY",
        "GAVE_UP",
        "BACKOFF_ELAPSED",
        "STOP",
        "STOP_TIMEOUT",
    ]


def test_the_table_is_exactly_the_expected_one() -> None:
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(
    ("state", "event"), list(itertools.product(ProcessState, Event)), ids=lambda x: x.name
)
def test_every_pair_transitions_as_the_table_says_or_raises(state: S, event: E) -> None:
    if (state, event) in EXPECTED:
        assert states.transition(state, event) is EXPECTED[state, event]
    else:
        with pytest.raises(IllegalTransition) as caught:
            states.transition(state, event)
        assert caught.value.state is state
        assert caught.value.event is event
        assert str(caught.value) == f"illegal transition: event {event.name} in state {state.name}"
        assert isinstance(caught.value, PidoneError)


def test_stop_is_legal_in_every_state() -> None:
    for state in ProcessState:
        states.transition(state, E.STOP)


def test_every_state_is_reachable_and_left() -> None:
    reached = {S.STOPPED} | set(TRANSITIONS.values())
    assert reached == set(ProcessState)
    left = {state for (state, _), new in TRANSITIONS.items() if new is not state}
    assert left == set(ProcessState)


def test_pid_and_rest_sets() -> None:
    assert {S.RUNNING, S.READY, S.STOPPING} == states.HAS_PID
    assert {S.STOPPED, S.EXITED, S.FATAL} == states.AT_REST
    # Only a process with a pid can exit or be told to stop by a timeout.
    for (state, event), _ in TRANSITIONS.items():
        if event in (E.EXITED, E.EXITED_UNREADY, E.STOP_TIMEOUT, E.READY_OK):
            assert state in states.HAS_PID


def replay(history: list[Event], start: S = S.STOPPED) -> list[S]:
    visited = [start]
    for event in history:
        visited.append(states.transition(visited[-1], event))
    return visited


def test_history_crash_loop_until_fatal_then_manual_start() -> None:
    history = [E.START, E.SPAWNED, E.EXITED, E.RETRY, E.BACKOFF_ELAPSED, E.SPAWN_FAILED]
    history += [E.GAVE_UP, E.START, E.SPAWNED, E.READY_OK]
    assert replay(history) == [
        S.STOPPED,
        S.STARTING,
        S.RUNNING,
        S.EXITED,
        S.BACKOFF,
        S.STARTING,
        S.EXITED,
        S.FATAL,
        S.STARTING,
        S.RUNNING,
        S.READY,
    ]


def test_history_graceful_stop_with_kill_after_timeout() -> None:
    history = [E.START, E.SPAWNED, E.READY_OK, E.STOP, E.STOP, E.STOP_TIMEOUT, E.EXITED]
    assert replay(history)[-5:] == [S.READY, S.STOPPING, S.STOPPING, S.STOPPING, S.STOPPED]


def test_history_dependent_cycled_after_its_dependency_restarts() -> None:
    # celery is READY when redis dies: it is stopped, then started again and
    # waits in STARTING until redis is ready.
    assert replay([E.STOP, E.EXITED, E.START, E.SPAWNED, E.READY_OK], start=S.READY) == [
        S.READY,
        S.STOPPING,
        S.STOPPED,
        S.STARTING,
        S.RUNNING,
        S.READY,
    ]


def test_exited_during_stop_is_not_restarted() -> None:
    assert states.transition(S.STOPPING, E.EXITED) is S.STOPPED
    with pytest.raises(IllegalTransition):
        states.transition(S.STOPPED, E.RETRY)


def test_history_not_ready_in_time_is_stopped_then_a_failed_start() -> None:
    history = [E.START, E.SPAWNED, E.STOP, E.STOP_TIMEOUT, E.EXITED_UNREADY, E.RETRY]
    assert replay(history)[-4:] == [S.STOPPING, S.STOPPING, S.EXITED, S.BACKOFF]


def test_module_docstring_documents_exactly_the_table() -> None:
    assert states.__doc__ is not None
    rows = re.findall(r"^    ([A-Z_]+) +([A-Z_]+) +([A-Z_]+)\b", states.__doc__, re.MULTILINE)
    documented = {
        (ProcessState[state], Event[event]): ProcessState[new] for state, event, new in rows
    }
    assert len(rows) == len(documented)
    assert documented == TRANSITIONS
