"""A dependency chain of 3 with tcp readiness: start-up and shutdown.

a, b after a, c after b; each is children/service.py listening on a port
of its own. pidone waits for each port (`after`, `ready = "tcp:..."`);
s6 waits in the run script for the notification fd (`s6-svwait -U`),
runit for `sv start` with a ./check script; supervisord and circus only
start in priority order, honcho and the single-command inits all at once.

Start-up: from starting the init until the last port listens (the service
says so on the FIFO right after listen()), and how many services started
before what they are after answered (they check its port first thing).
Shutdown: SIGTERM until the init has exited, and whether the children were
told in reverse order (c, b, a).
"""

from __future__ import annotations

from collections.abc import Sequence

from pidbench.channel import Channel
from pidbench.children import program
from pidbench.inits import Init
from pidbench.measure import Metric, Round, Settings, each_init
from pidbench.measures.shutdown import run_until_term
from pidbench.namespace import Namespace
from pidbench.workload import Service, Workload, free_port

START_TIMEOUT = 60.0

ALL_READY = Metric("chain_ready", "Start to all 3 ports answering", "ms", digits=1)
EARLY = Metric("chain_early", "Started before its dependency answered", "of 2", 0)
CHAIN_SHUTDOWN = Metric("chain_shutdown", "Chain: SIGTERM to init exited", "ms", digits=2)
IN_ORDER = Metric(
    "chain_order", "Chain: told in reverse order (c, b, a)", "yes=1", 0, better="higher"
)


def chain(fifo: str) -> Workload:
    ports = {name: free_port() for name in "abc"}
    out = []
    for name, dep in (("a", None), ("b", "a"), ("c", "b")):
        argv = program("service", fifo, name, "--port", str(ports[name]))
        if dep is not None:
            argv += ["--deps", str(ports[dep])]
        after = () if dep is None else (dep,)
        out.append(Service(name, tuple(argv), after=after, ready_port=ports[name]))
    return Workload(tuple(out))


class Chain:
    name = "chain"
    title = "Dependency chain of 3 with tcp readiness"
    metrics = (ALL_READY, EARLY, CHAIN_SHUTDOWN, IN_ORDER)

    def applies(self, init: Init) -> bool:
        return not init.variant

    def rounds(self, settings: Settings) -> int:
        return settings.rounds

    def describe(self, settings: Settings) -> str:
        return (
            "a; b after a; c after b; each listens on a tcp port of its own, which is its "
            'readiness (pidone: `after` and `ready = "tcp:..."`; s6: `s6-svwait -U` in the '
            "run script on a notification fd; runit: `sv start` in the run script with a "
            "./check script; supervisord and circus: priorities; honcho and single-command "
            "inits: none). Start-up is from starting the init until the last port listens; "
            "'started before its dependency answered' counts b and c finding their "
            "dependency's port closed when they start. Then SIGTERM until the init has "
            "exited, and whether the children were told in the order c, b, a."
        )

    def run_round(self, inits: Sequence[Init], settings: Settings, out: Round) -> None:
        def measure(init: Init) -> None:
            with (
                Channel(settings.workdir) as channel,
                Namespace(init, chain(str(channel.path)), settings.workdir) as ns,
            ):
                ready: dict[str, int] = {}
                early = 0
                while len(ready) < 3:
                    event, name, at, *info = channel.read_line(START_TIMEOUT).split()
                    if event == "ready":
                        ready[name] = int(at)
                    elif event == "up" and info:
                        early += int(info[0]) > 0
                out.record(ALL_READY, init.name, (max(ready.values()) - ns.started_ns) / 1e6)
                out.record(EARLY, init.name, early)
                took, told = run_until_term(ns, channel, 3)
            out.record(CHAIN_SHUTDOWN, init.name, took)
            out.record(IN_ORDER, init.name, 1 if told == ["c", "b", "a"] else 0)

        each_init(inits, out, measure)
