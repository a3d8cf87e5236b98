"""Adding a process to a running stack: `pidone ctl update` against
supervisord's `supervisorctl reread && supervisorctl update`.

A stack of STACK services, each children/up.sh (says `up` on a FIFO, then
becomes `sleep`), runs; the configuration is written again with one more
service (pidone.toml, supervisord.conf: each init's own renderer), and the
command a user types runs, through /bin/sh as typed. Timed from starting it:
until the new service's line is read from the FIFO (it runs), and until it
is ready as each init says it: pidone's reply comes once the process is
ready (`ready = "settle:1"`, pidone's default settle_time), supervisord's
state turns RUNNING once the program has run `startsecs=1` (read over its
XML-RPC socket, which supervisorctl needs anyway). ADDS services are added
in one launch, one after the other; every add is a sample. Then: how many of
the STACK first services still run with the pid they had.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import threading
import time
import xmlrpc.client
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

from pidbench import configs
from pidbench.channel import Channel
from pidbench.children import SHELL, SLEEP, script
from pidbench.errors import BenchError
from pidbench.inits import PIDONE_RUN, SUPERVISORD, Init
from pidbench.measure import Metric, Round, Settings, each_init
from pidbench.namespace import Namespace
from pidbench.waiting import wait_for, wait_until_quiet
from pidbench.workload import Service, Workload

STACK = 10  # services running before the update
ADDS = 3  # services added in one launch, one update each
SETTLE = 1.0  # seconds up before the added one counts as ready / RUNNING
START_TIMEOUT = 30.0
UPDATE_TIMEOUT = 30.0
RPC_TIMEOUT = 5.0

TO_RUNNING = Metric("update_running", "Command to the added process running", "ms", digits=1)
TO_READY = Metric("update_ready", f"Command to it ready (up {SETTLE:g} s)", "ms", digits=1)
OVER_SETTLE = Metric("update_over", f"Ready, beyond the {SETTLE:g} s it must be up", "ms", digits=1)
KEPT = Metric(
    "update_kept",
    f"Pids kept of the {STACK} running before",
    "count",
    digits=0,
    better="higher",
)

# supervisord with its control socket (the documented [unix_http_server],
# [rpcinterface:supervisor] and [supervisorctl] sections); same name in the report.
SUPERVISORD_CTL = replace(SUPERVISORD, render=partial(configs.supervisord, control=True))


class Update:
    name = "update"
    title = f"Adding a process to a running stack of {STACK}"
    metrics = (TO_RUNNING, TO_READY, OVER_SETTLE, KEPT)

    def applies(self, init: Init) -> bool:
        # The peers that can add a program to a running stack from a changed
        # configuration file: supervisord (circus's reloadconfig, s6's and
        # runit's new service directories are not measured).
        return init.name in (PIDONE_RUN.name, SUPERVISORD.name)

    def rounds(self, settings: Settings) -> int:
        return settings.rounds

    def describe(self, settings: Settings) -> str:
        return (
            f"{STACK} services run, each `sh up.sh` (says `up` on a FIFO, then execs `sleep`); "
            "the configuration is written again with one more (the same renderer), and the "
            "command a user types runs through /bin/sh: `pidone ctl update` (its reply waits "
            "until what it started is ready) and `supervisorctl reread && supervisorctl "
            "update` (supervisord configured with its control socket as its documentation's "
            "sample has it). Timed from starting the command: until the added service's line "
            f"is read from the FIFO (running), and until it is ready, up {SETTLE:g} s by "
            f"each one's rule: pidone's reply received (`ready = \"settle:{SETTLE:g}\"`, its "
            f"default settle_time), supervisord's state RUNNING (`startsecs={SETTLE:g}`, "
            "polled every 2 ms over its XML-RPC socket once the command is done). "
            f"{ADDS} adds one after the other in one launch, each a sample; then how many of "
            f"the {STACK} first services still run with their pid (each add must leave all "
            "of them alone). Only supervisord among the peers: circus, s6 and runit add "
            "programs other ways (`circusctl reloadconfig`, a new service directory)."
        )

    def run_round(self, inits: Sequence[Init], settings: Settings, out: Round) -> None:
        each_init(inits, out, lambda init: _launch(init, settings, out), failed=KEPT)


def trace(init: Init, settings: Settings) -> str:
    """The profile of a miss: one launch, what each update said, which pids
    changed, and the init's output."""
    log: list[str] = []
    observed = Round()
    try:
        _launch(init, settings, observed, log)
    except (BenchError, OSError) as exc:
        log.append(f"failed: {exc}")
    return "\n".join(["```", *log, "```"])


def _launch(init: Init, settings: Settings, out: Round, log: list[str] | None = None) -> None:
    """One launch of STACK services and ADDS updates, recorded in `out`; with
    `log`, what each update said and the init's output go there too."""
    subject = SUPERVISORD_CTL if init.name == SUPERVISORD.name else init
    with Channel(settings.workdir) as channel:
        fifo = str(channel.path)
        stack = tuple(_service(fifo, f"p{i:02d}") for i in range(STACK))
        with Namespace(subject, Workload(stack), settings.workdir) as ns:
            channel.read_lines(STACK, START_TIMEOUT)
            before = set(ns.wait_workload(SLEEP, STACK))
            added: tuple[Service, ...] = ()
            for n in range(1, ADDS + 1):
                wait_until_quiet(ns.supervision_tree())
                new = _service(fifo, f"new{n}", settle=SETTLE)
                added = (*added, new)
                # The renderer writes the whole file again: the same services as before, one more.
                subject.argv(Workload(stack + added), ns.rundir)
                running, ready, said = _add(ns, channel, new.name)
                out.record(TO_RUNNING, init.name, running)
                out.record(TO_READY, init.name, ready)
                out.record(OVER_SETTLE, init.name, ready - SETTLE * 1000)
                if log is not None:
                    log += [
                        f"$ {_command(ns)}",
                        said,
                        f"(running {running:.1f} ms, ready {ready:.1f} ms)",
                    ]
            ns.wait_workload(SLEEP, STACK + ADDS)
            after = set(ns.workload_pids(SLEEP))
            out.record(KEPT, init.name, len(before & after))
            if log is not None:
                log += [
                    f"pids before: {sorted(before)}",
                    f"pids after: {sorted(after)}",
                    f"gone: {sorted(before - after)}",
                    "the init's output:",
                    ns.output(),
                ]


def _service(fifo: str, name: str, settle: float | None = None) -> Service:
    return Service(name, tuple(script("up", fifo, name)), settle=settle)


def _command(ns: Namespace) -> str:
    """The shell line a user types after changing the configuration."""
    if ns.init.is_pidone:
        sock = ns.rundir / "control.sock"
        return f"{configs.PIDONE_BIN} ctl --socket {sock} update"
    ctl = f"{configs.SUPERVISORCTL_BIN} -c {ns.rundir / 'supervisord.conf'}"
    return f"{ctl} reread && {ctl} update"


def _add(ns: Namespace, channel: Channel, name: str) -> tuple[float, float, str]:
    """(ms until `name` runs, ms until it is ready), from starting the command,
    and what the command said."""
    ended: list[int] = []
    started = time.monotonic_ns()
    command = subprocess.Popen(
        [SHELL, "-c", _command(ns)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )

    def wait() -> None:
        command.wait()
        ended.append(time.monotonic_ns())

    # Its own thread, so the end is timed while we read the FIFO.
    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    try:
        line, up = channel.read_line_ns(UPDATE_TIMEOUT)
        if line.split()[:2] != ["up", name]:
            raise BenchError(f"expected {name} to start, read {line!r}")
        waiter.join(UPDATE_TIMEOUT)
    finally:
        if command.poll() is None:
            command.kill()
        waiter.join(5)
    assert command.stdout is not None
    said = command.stdout.read().decode(errors="replace").strip()
    command.stdout.close()
    if not ended or command.returncode != 0:
        raise BenchError(f"the update failed ({command.returncode}): {said!r}")
    ready = ended[0] if ns.init.is_pidone else _running_at(ns.rundir, name)
    return (up - started) / 1e6, (ready - started) / 1e6, said


def _running_at(rundir: Path, name: str) -> int:
    """time.monotonic_ns() once supervisord says `name` is RUNNING."""
    rpc = xmlrpc.client.ServerProxy(
        "http://localhost", transport=_UnixTransport(str(rundir / configs.SUPERVISOR_SOCKET))
    )

    def running() -> int | None:
        info = rpc.supervisor.getProcessInfo(name)
        if not isinstance(info, dict):
            raise BenchError(f"supervisord: no process info for {name}: {info!r}")
        if info["statename"] in ("FATAL", "EXITED", "BACKOFF"):
            raise BenchError(f"supervisord: {name} is {info['statename']}")
        return time.monotonic_ns() if info["statename"] == "RUNNING" else None

    return wait_for(running, UPDATE_TIMEOUT, f"supervisord to say {name} is RUNNING")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=RPC_TIMEOUT)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(RPC_TIMEOUT)
        self.sock.connect(self._path)


class _UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over supervisord's unix socket: a connection per call."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def make_connection(self, host: object) -> http.client.HTTPConnection:
        return _UnixConnection(self._path)
