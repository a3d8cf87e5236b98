"""Single-command mode, `pidone [OPTIONS] -- CMD [ARGS...]`: what tini and dumb-init do.

main() reads as the recipe: catch every forwardable signal, become a
subreaper unless we are PID 1, start the child in its own process group
(and the terminal's foreground group, when ours has it), then sleep in
sigwaitinfo(): forward each signal (rewritten as -r says; after a job-control
stop, stop too), reap every zombie, and exit with the child's status as soon
as it has been reaped. No timer, no tick: zero wakeups while idle. The
signals wait in the kernel (see signals.catch_signals), so none is dropped
and the child's SIGCHLD comes before any flood of real-time signals.
"""

from __future__ import annotations

import os

from pidone.errors import SpawnError
from pidone.system import proc, process, reap, signals, spawn, terminal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pidone.single.metrics import SingleMetrics
    from pidone.system.sdnotify import Notifier


class Options:
    """Parsed single-command options (a plain class: dataclasses cost RSS)."""

    __slots__ = (
        "command",
        "expect",
        "group",
        "metrics",
        "pdeathsig",
        "rewrite",
        "single_child",
        "subreaper",
        "verbosity",
        "warn_reaped",
    )

    def __init__(
        self,
        command: list[str],
        group: bool = False,
        verbosity: int = 0,
        metrics: str | None = None,
    ) -> None:
        self.command = command
        self.group = group
        self.verbosity = verbosity
        self.metrics = metrics
        self.expect: set[int] = set()  # tini -e: these exit statuses of the child become 0
        self.rewrite: dict[int, int] = {}  # dumb-init -r: received -> forwarded (0: dropped)
        self.pdeathsig = 0  # tini -p: our signal when our parent dies
        self.single_child = False  # dumb-init -c: the child stays in our process group
        self.subreaper = False  # tini -s: nothing to do, said with -v
        self.warn_reaped = False  # tini -w


class Log:
    def __init__(self, verbosity: int) -> None:
        self.verbosity = verbosity

    def error(self, text: str) -> None:
        process.write_stderr(f"pidone: {text}\n")

    def info(self, text: str) -> None:
        if self.verbosity >= 1:
            process.write_stderr(f"pidone: {text}\n")

    def debug(self, text: str) -> None:
        if self.verbosity >= 2:
            process.write_stderr(f"pidone: {text}\n")


# Job-control signals: forwarded, then pidone stops too, so that the shell
# that started pidone sees its job stop (dumb-init's rule); SIGCONT resumes it.
STOPPING = frozenset([signals.SIGTSTP, signals.SIGTTIN, signals.SIGTTOU])


def main(opts: Options) -> int:
    log = Log(opts.verbosity)
    caught = [*signals.forwardable_signals(), *signals.FAULT_SIGNALS, *STOPPING, signals.SIGCHLD]
    signals.catch_signals(caught)
    if opts.pdeathsig:
        process.set_parent_death_signal(opts.pdeathsig)
    if not process.is_pid1():
        reap.become_subreaper()
        log.info(f"not PID 1 (pid {os.getpid()}): registered as child subreaper")
    if opts.subreaper:
        log.info("-s: nothing to do, pidone reaps as PID 1 or as a subreaper on its own")
    new_group = not opts.single_child
    env = proc.original_environ()
    notifier = None
    if any(name in os.environ for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")):
        # Under a service manager (systemd's Type=notify): pidone speaks for
        # itself, and the manager's variables are not the child's. Loaded only then.
        import time

        from pidone.system import sdnotify

        notifier = sdnotify.Notifier.from_environ(os.environ, log=log.error, clock=time.monotonic)
        env = sdnotify.without_manager_variables(env if env is not None else dict(os.environb))
    try:
        child = spawn.spawn(
            opts.command,
            env=env,
            foreground_tty=new_group and terminal.in_foreground(),
            new_group=new_group,
        )
    except SpawnError as exc:
        log.error(f"cannot run {opts.command[0]!r}: {exc}")
        reap.reap_zombies()
        return exc.exit_code
    log.info(f"started {opts.command[0]!r} as pid {child}")
    if notifier is not None:
        notifier.status(f"running {opts.command[0][:200]} (pid {child})", ready=True)
    watch = None
    if opts.metrics:
        # Only now: the HTTP server costs memory that plain tini users never pay.
        from pidone.single.metrics import SingleMetrics

        watch = SingleMetrics.start(opts.metrics, opts.command, child, log.error)
    return supervise(child, opts, log, watch, notifier)


def supervise(
    child: int,
    opts: Options,
    log: Log,
    watch: SingleMetrics | None = None,
    notifier: Notifier | None = None,
) -> int:
    """The loop: block until a signal is pending, take it, reap or forward it.
    With a watchdog (WATCHDOG_USEC) the wait ends at each ping's time."""
    reaped_total = 0
    told = False  # STOPPING=1 sent
    while True:
        due = None if notifier is None else notifier.next_deadline()
        if due is not None:
            assert notifier is not None
            taken = signals.wait_signal_until(due)
            notifier.run_due(signals.monotonic())
            if taken is None:
                continue
            signum, code, sender = taken
        else:
            signum, code, sender = signals.wait_signal()
        wake = signum == signals.SIGCHLD and signals.is_wake(code, sender)
        if watch is not None:
            watch.turned(0 if wake else signum)
        if signum != signals.SIGCHLD:
            forward(child, signum, code, opts, log, watch)
            if notifier is not None and signum in (signals.SIGTERM, signals.SIGINT) and not told:
                told = True  # STOPPING=1 once; the pings go on while the child stops
                notifier.status("stopping", stopping=True)
            continue
        if not opts.single_child and terminal.stopped_by_terminal(child) and terminal.stop_self():
            # Ctrl-Z reached the child's group only: pidone stops too, so that
            # the shell sees its job stop and takes the terminal back.
            log.debug(f"child {child} stopped from the terminal: pidone stopped too, continued")
        if opts.group and reap.has_exited(child):
            # dumb-init's cleanup: what the child leaves in its group goes with
            # it. Sent while the child is a zombie, whose pid holds the group.
            left = signals.kill_group(child, signals.SIGTERM)
            log.debug(f"child {child} exited: SIGTERM to the rest of its group: {left}")
        # A wake-up from the metrics thread reaps too: it may have merged with a child's SIGCHLD.
        # The whole batch is counted (and warned about): zombies reaped after
        # the child in the same batch are reaped as much as those before it.
        child_status: int | None = None
        for pid, status in reap.reap_zombies():
            reaped_total += 1
            if watch is not None:
                watch.reaped()
            if pid == child:
                child_status = status
            else:
                warn_reaped(pid, status, opts, log)
        if child_status is None:
            continue
        code = reap.exit_status(child_status)
        # Collect anything that died together with the child, then go.
        for other, other_status in reap.reap_zombies():
            reaped_total += 1
            warn_reaped(other, other_status, opts, log)
        log.info(f"child {child} exited with status {code}; reaped {reaped_total}")
        if code in opts.expect:
            log.info(f"-e {code}: pidone exits 0")
            return 0
        return code


def forward(
    child: int, signum: int, code: int, opts: Options, log: Log, watch: SingleMetrics | None
) -> None:
    """Pass one signal on, rewritten as asked; after a job-control stop, stop too."""
    if signum in signals.FAULT_SIGNALS and code > 0:
        # si_code > 0: the kernel's, about pidone's own memory (a real fault
        # is never queued: it kills pidone). kill(), sigqueue(): code <= 0.
        log.error(f"signal {signum} from the kernel (code {code}) not forwarded")
        return
    target = opts.rewrite.get(signum, signum)
    if target == 0:
        log.debug(f"signal {signum} dropped (-r {signum}:0)")
        return
    if (
        signum == signals.SIGCONT
        and not opts.single_child
        and terminal.give_terminal_back(child)  # before the child runs again
    ):
        log.debug(f"SIGCONT in the foreground: the terminal goes back to {child}'s group")
    sent = signals.send_signal(child, target, group=opts.group)
    if watch is not None and sent:
        watch.forwarded(target)
    where = f"{'group ' if opts.group else ''}{child}"
    log.debug(
        f"forwarded signal {signum}{f' as {target}' if target != signum else ''} to {where}: {sent}"
    )
    if signum in STOPPING and terminal.stop_self():
        log.debug(f"signal {signum}: pidone stopped too, and continued")


def warn_reaped(pid: int, status: int, opts: Options, log: Log) -> None:
    """tini -w: a zombie that was not the child, reaped (an orphan's, usually)."""
    if opts.warn_reaped:
        log.error(
            f"reaped zombie pid {pid} (not the child), exit status {reap.exit_status(status)}"
        )
