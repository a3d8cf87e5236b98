"""Restart latency: from `kill -9` of a supervised child until it runs again.

The service is children/up.sh: a shell that says `up` on a FIFO and becomes
`sleep`, so what is timed is the supervisor noticing the death and starting
the program again, not an interpreter's start-up. We SIGKILL the `sleep`
(found from the host) and time until the new shell's line arrives. Each
launch gives one sample: pidone (like others) backs off from the second
restart on, and the first restart after a crash is the one that counts.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence

from pidbench.channel import Channel
from pidbench.children import SLEEP, script
from pidbench.errors import BenchError, InitGone
from pidbench.inits import Init
from pidbench.measure import Metric, Round, Settings, each_init
from pidbench.measures.common import supervisors
from pidbench.namespace import Namespace
from pidbench.waiting import wait_until_quiet
from pidbench.workload import Service, Workload

RESTART = Metric("restart", "kill -9 to running again", "ms", digits=2)
START_TIMEOUT = 20.0  # seconds for the first start
RESTART_TIMEOUT = 10.0  # seconds: not running again by then is "not restarted"
# runsv and s6-supervise hold a restart back until the service has been
# started a second before: kill only a service that has run longer.
UPTIME = 1.1


class Restart:
    name = "restart"
    title = "Restart after kill -9"
    metrics = (RESTART,)

    def applies(self, init: Init) -> bool:
        return supervisors(init)

    def rounds(self, settings: Settings) -> int:
        return settings.rounds

    def describe(self, settings: Settings) -> str:
        return (
            "one service, `sh up.sh` (says `up` on a FIFO, then execs `sleep`); once it has "
            f"run {UPTIME:g} s (runsv and s6-supervise hold back the restart of a service "
            "younger than 1 s) and the init is quiet, SIGKILL to the `sleep`, and the clock "
            "runs until the "
            "restarted shell's line is read from the FIFO. One kill per launch (the first "
            f"restart after a crash); not running again within {RESTART_TIMEOUT:g} s is "
            "'not restarted', and an init that stops everything instead says so."
        )

    def run_round(self, inits: Sequence[Init], settings: Settings, out: Round) -> None:
        def measure(init: Init) -> None:
            with Channel(settings.workdir) as channel:
                victim = Service("victim", tuple(script("up", str(channel.path), "victim")))
                with Namespace(init, Workload((victim,)), settings.workdir) as ns:
                    _, up = channel.read_line_ns(START_TIMEOUT)
                    (pid,) = ns.wait_workload(SLEEP, 1)
                    wait_until_quiet(ns.supervision_tree())
                    time.sleep(max(0.0, UPTIME - (time.monotonic_ns() - up) / 1e9))
                    pidfd = ns.pidfd()
                    try:
                        killed = time.monotonic_ns()
                        os.kill(pid, signal.SIGKILL)
                        _, back = channel.read_line_ns(RESTART_TIMEOUT, watch=pidfd)
                    except InitGone:
                        out.flag(RESTART, init.name, "stops all")
                        return
                    except BenchError:
                        out.flag(RESTART, init.name, "not restarted")
                        return
                    finally:
                        os.close(pidfd)
                    out.record(RESTART, init.name, (back - killed) / 1e6)

        each_init(inits, out, measure)
