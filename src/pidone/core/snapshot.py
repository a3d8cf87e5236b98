"""What observers read: an immutable picture of every process, published by
the loop after each turn. metrics, /readyz, `pidone ctl status` and the
single-command mode read it; none of them sees the supervisor itself.
It imports only the states table, so observe/ and single/ stay small."""

from __future__ import annotations

from dataclasses import dataclass

from pidone.core.states import ProcessState


@dataclass(frozen=True)
class ExitInfo:
    status: int  # shell convention: code, or 128+N for signal N
    signal: int  # the signal that killed it, 0 if it exited
    at: float  # time.monotonic() of the exit
    planned: bool  # we asked it to stop
    # An exit with one of its success_exit_codes (ProcessSpec.succeeded);
    # a failure to spawn, a death by signal or a ready timeout never is.
    success: bool = False
    oom: bool = False  # the kernel's OOM killer killed it (its cgroup's oom_kill rose)


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    state: ProcessState
    ready: bool
    pid: int | None
    started_at: float | None  # monotonic
    restarts: int
    restarts_by_reason: dict[str, int]
    exits_by_status: dict[int, int]
    last_exit: ExitInfo | None
    has_ready_check: bool
    oom_kills: int = 0  # deaths the kernel's OOM killer caused
    # A one-shot job that ran to completion (the supervisor's one rule,
    # Supervisor.completed): its dependents, wait-ready and /readyz count it done.
    completed: bool = False
    # False: autostart = false and not started by ctl since boot: it does
    # not count for wait-ready, /readyz or READY=1 (it is STOPPED).
    started: bool = True
    # A legion process this pidone does not run, not being the lord: why
    # ("standby: legion beat is held by web-2"). Standing by counts as ready.
    standby: str = ""
    # required = true: /healthz fails while it is FATAL.
    required: bool = False


@dataclass(frozen=True)
class LegionStatus:
    name: str
    lord: bool
    holder: str  # as last seen; "" nobody or unknown
    problem: str  # redis unreachable: why
    changes: dict[str, int]  # acquired, lost, released -> how many times


@dataclass(frozen=True)
class Snapshot:
    processes: tuple[ProcessStatus, ...]
    shutting_down: bool
    legions: tuple[LegionStatus, ...] = ()
    draining: bool = False  # shutdown_delay under way: /readyz 503, the stop comes after


def not_ready(snapshot: Snapshot, *, checked_only: bool = False) -> list[str]:
    """'name (state)' for each process that is not ready, for wait-ready and
    /readyz. A job that ran to completion (exited 0 and is not restarted)
    counts as done; one never started (autostart = false), or standing by
    for its legion's lord, is left out.
    `checked_only`: only processes with a `ready` check, and every FATAL one
    (given up: traffic must not flow to it, checked or not)."""
    waiting = []
    for p in snapshot.processes:
        fatal = p.state is ProcessState.FATAL
        if checked_only and not p.has_ready_check and not fatal:
            continue
        if p.ready:
            continue
        if p.completed or not p.started or p.standby:
            continue
        waiting.append(f"{p.name} ({p.state.value})")
    return waiting
