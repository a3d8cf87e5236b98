"""`pidone --metrics ADDR -- CMD`: /metrics, /healthz and /readyz for
single-command mode, loaded only when asked for (the HTTP server and its
threads cost memory that a plain tini replacement should not carry).

The child is shown as one process named after its command, ready while it
runs; the counters are pidone's own (zombies reaped, signals received and
forwarded). A port that cannot be bound is logged, and pidone runs on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

from pidone.core.counters import PidoneCounters
from pidone.core.snapshot import ProcessStatus, Snapshot
from pidone.core.states import ProcessState
from pidone.system import signals


class SingleMetrics:
    def __init__(self, command: Sequence[str], child: int) -> None:
        self.counters = PidoneCounters()
        self.heartbeat = time.monotonic()
        name = os.path.basename(command[0]) or "child"
        status = ProcessStatus(
            name=name,
            state=ProcessState.READY,
            ready=True,
            pid=child,
            started_at=time.monotonic(),
            restarts=0,
            restarts_by_reason={},
            exits_by_status={},
            last_exit=None,
            has_ready_check=False,
        )
        self.snapshot = Snapshot((status,), shutting_down=False)

    @classmethod
    def start(
        cls, address: str, command: Sequence[str], child: int, log: Callable[[str], None]
    ) -> SingleMetrics | None:
        from pidone.observe.metrics import MetricsServer

        watch = cls(command, child)
        try:
            MetricsServer(
                address,
                snapshot=lambda: watch.snapshot,
                heartbeat=lambda: watch.heartbeat,
                counters=watch.counters,
                wake=signals.wake_loop,
                log=log,
            )
        except Exception as exc:
            log(f"metrics on {address} disabled: {exc}")
            return None
        return watch

    def turned(self, signum: int) -> None:
        """The loop took a signal (0: a wake-up from our thread, no signal)."""
        self.heartbeat = time.monotonic()
        if signum:
            self.counters.count(self.counters.signals_received, signum)

    def forwarded(self, signum: int) -> None:
        self.counters.count(self.counters.signals_forwarded, signum)

    def reaped(self) -> None:
        self.counters.zombies_reaped += 1
