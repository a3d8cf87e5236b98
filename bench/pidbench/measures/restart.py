"""Restart latency: from `kill -9` of a supervised child until it runs again,
KILLS times in a row in one launch, the service stable before each kill.

The service is children/up.sh: a shell that says `up` on a FIFO and becomes
`sleep`, so what is timed is the supervisor noticing the death and starting
the program again, not an interpreter's start-up. We SIGKILL the `sleep`
(found from the host) and time until the new shell's line arrives; once the
new instance has run UPTIME, again. Every kill is a sample of its own: an
init that counts each exit toward its backoff restarts the first at once and
backs off from the second on, which a single kill per launch hides.
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
from pidbench.measures.common import heavy_rounds, supervisors
from pidbench.namespace import Namespace
from pidbench.waiting import wait_until_quiet
from pidbench.workload import Service, Workload

KILLS = 5  # in one launch
RESTART = Metric("restart", "kill -9 to running again", "ms", digits=2)  # every kill
EACH_KILL = tuple(
    Metric(f"restart_{n}", f"kill {n} of {KILLS} to running again", "ms", digits=2)
    for n in range(1, KILLS + 1)
)
START_TIMEOUT = 20.0  # seconds for the first start
RESTART_TIMEOUT = 10.0  # seconds: not running again by then is "not restarted"
# Each instance is killed once it has run this long: past pidone's settle_time
# (1 s) and backoff_reset (1 s), its defaults, after which it counts as stable;
# runsv and s6-supervise hold back the restart of a service younger than 1 s.
UPTIME = 2.5


class Restart:
    name = "restart"
    title = "Restart after kill -9"
    metrics = (RESTART, *EACH_KILL)

    def applies(self, init: Init) -> bool:
        return supervisors(init)

    def rounds(self, settings: Settings) -> int:
        return heavy_rounds(settings)

    def describe(self, settings: Settings) -> str:
        return (
            "one service, `sh up.sh` (says `up` on a FIFO, then execs `sleep`), killed "
            f"{KILLS} times in one launch: each instance, once it has run {UPTIME:g} s (past "
            "pidone's settle_time and backoff_reset, 1 s each by default: a stable process; "
            "runsv and s6-supervise hold back the restart of a service younger than 1 s) and "
            "the init is quiet, gets SIGKILL to its `sleep`, and the clock runs until the "
            "restarted shell's line is read from the FIFO. A row for every kill (its median "
            "over the rounds), and one for all of them; not running again within "
            f"{RESTART_TIMEOUT:g} s is 'not restarted' (and ends the launch), and an init "
            "that stops everything instead says so."
        )

    def run_round(self, inits: Sequence[Init], settings: Settings, out: Round) -> None:
        def measure(init: Init) -> None:
            with Channel(settings.workdir) as channel:
                victim = Service("victim", tuple(script("up", str(channel.path), "victim")))
                with Namespace(init, Workload((victim,)), settings.workdir) as ns:
                    _, up = channel.read_line_ns(START_TIMEOUT)
                    for metric in EACH_KILL:
                        (pid,) = ns.wait_workload(SLEEP, 1)
                        wait_until_quiet(ns.supervision_tree())
                        time.sleep(max(0.0, UPTIME - (time.monotonic_ns() - up) / 1e9))
                        word = _kill_and_time(ns, channel, pid)
                        if isinstance(word, str):
                            out.flag(metric, init.name, word)
                            out.flag(RESTART, init.name, word)
                            return
                        killed, up = word
                        out.record(metric, init.name, (up - killed) / 1e6)
                        out.record(RESTART, init.name, (up - killed) / 1e6)

        each_init(inits, out, measure)


def _kill_and_time(ns: Namespace, channel: Channel, pid: int) -> tuple[int, int] | str:
    """(when `pid` was killed, when the new instance said `up`), in
    monotonic ns; or the word for why there is no new instance."""
    pidfd = ns.pidfd()
    try:
        killed = time.monotonic_ns()
        os.kill(pid, signal.SIGKILL)
        _, back = channel.read_line_ns(RESTART_TIMEOUT, watch=pidfd)
    except InitGone:
        return "stops all"
    except BenchError:
        return "not restarted"
    finally:
        os.close(pidfd)
    return killed, back
