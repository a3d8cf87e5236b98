"""/healthz and /readyz: the verdicts, read from the loop's heartbeat and the
published Snapshot, never from the supervisor.

The loop sleeps until something happens, so "it turned recently"
alone would fail an idle, healthy pidone. /healthz therefore asks: did the
loop turn within the last FRESH seconds? If not, it wakes the loop
(signals.wake_loop, the one way a side thread makes the loop turn) and
waits up to `health_wait` for the heartbeat to move past the moment of the
wake-up (HealthCheck: the server
polls it without blocking its other clients). A loop stuck in a callback
or a blocking call fails; an idle one answers within microseconds. The wait
(0.8 s) stays under Kubernetes' default 1 s probe timeout. Before the
loop is asked at all, a process with `required = true` that is FATAL in the
latest Snapshot fails /healthz (check_required): the container is not
healthy without it, so the orchestrator restarts it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pidone.core.snapshot import Snapshot, not_ready
from pidone.core.states import ProcessState
from pidone.observe.http import Later, Response

FRESH = 1.0  # a loop that turned this recently is healthy without a wake-up
HEALTH_WAIT = 0.8  # seconds /healthz waits for the loop to turn after a wake-up


class HealthCheck:
    """One /healthz question (see the module docstring). `verdict` is
    (healthy, why) at once when the heartbeat is fresh (or there is no
    waker); otherwise the loop has been woken and poll() gives the verdict
    once the loop has turned, or once `wait` seconds have passed."""

    def __init__(
        self,
        heartbeat: Callable[[], float],
        wake: Callable[[], None] | None,
        *,
        fresh: float = FRESH,
        wait: float = HEALTH_WAIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._heartbeat = heartbeat
        self._clock = clock
        self._wait = wait
        self.asked = clock()
        self._last = heartbeat()
        self.verdict: tuple[bool, str] | None = None
        if self.asked - self._last <= fresh:
            self.verdict = (True, "ok")
        elif wake is None:
            idle = self.asked - self._last
            self.verdict = (False, f"the event loop last turned {idle:.1f} s ago")
        else:
            wake()

    def poll(self) -> tuple[bool, str] | None:
        if self.verdict is None:
            if self._heartbeat() >= self.asked:
                self.verdict = (True, "ok")
            elif (now := self._clock()) >= self.asked + self._wait:
                self.verdict = (
                    False,
                    f"the event loop did not turn within {self._wait:g} s of a wake-up"
                    f" (last turn {now - self._last:.1f} s ago)",
                )
        return self.verdict


def check_required(snap: Snapshot | None) -> tuple[bool, str]:
    """(healthy, why) as far as `required` goes: not while one is FATAL."""
    fatal = [
        p.name
        for p in (snap.processes if snap is not None else ())
        if p.required and p.state is ProcessState.FATAL
    ]
    if fatal:
        return False, f"required process FATAL: {', '.join(fatal)}"
    return True, "ok"


class HealthAnswer(Later):
    def __init__(self, check: HealthCheck) -> None:
        self.check = check

    def poll(self) -> Response | None:
        verdict = self.check.poll()
        if verdict is None:
            return None
        healthy, why = verdict
        return Response.text(200 if healthy else 503, why)


def check_ready(snap: Snapshot | None) -> tuple[bool, str]:
    """(ready, why) for /readyz."""
    if snap is None:
        return False, "starting"
    if snap.shutting_down:
        return False, "shutting down"
    if snap.draining:  # load balancers stop sending before anything stops
        return False, "draining: shutting down soon"
    waiting = not_ready(snap, checked_only=True)
    if waiting:
        return False, "not ready: " + ", ".join(waiting)
    return True, "ready"
