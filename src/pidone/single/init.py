"""Single-command mode, `pidone [OPTIONS] -- CMD [ARGS...]`: what tini does.

main() reads as the recipe: catch every forwardable signal, become a
subreaper unless we are PID 1, start the child in its own process group
(and the terminal's foreground group), then sleep in sigwaitinfo(): forward
each signal, reap every zombie, and exit with the child's status as soon as
it has been reaped. No timer, no tick: zero wakeups while idle. The signals
wait in the kernel (see system.catch_signals), so none is dropped and the
child's SIGCHLD comes before any flood of real-time signals.
"""

from __future__ import annotations

import os

from pidone import system
from pidone.errors import SpawnError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pidone.single.metrics import SingleMetrics


class Options:
    """Parsed single-command options (a plain class: dataclasses cost RSS)."""

    __slots__ = ("command", "group", "metrics", "verbosity")

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


class Log:
    def __init__(self, verbosity: int) -> None:
        self.verbosity = verbosity

    def error(self, text: str) -> None:
        system.write_stderr(f"pidone: {text}\n")

    def info(self, text: str) -> None:
        if self.verbosity >= 1:
            system.write_stderr(f"pidone: {text}\n")

    def debug(self, text: str) -> None:
        if self.verbosity >= 2:
            system.write_stderr(f"pidone: {text}\n")


def main(opts: Options) -> int:
    log = Log(opts.verbosity)
    system.catch_signals([*system.forwardable_signals(), system.SIGCHLD])
    if not system.is_pid1():
        system.become_subreaper()
        log.info(f"not PID 1 (pid {os.getpid()}): registered as child subreaper")
    try:
        child = system.spawn(
            opts.command, env=system.original_environ(), foreground_tty=system.stdin_is_tty()
        )
    except SpawnError as exc:
        log.error(f"cannot run {opts.command[0]!r}: {exc}")
        system.reap_zombies()
        return exc.exit_code
    log.info(f"started {opts.command[0]!r} as pid {child}")
    watch = None
    if opts.metrics:
        # Only now: the HTTP server costs memory that plain tini users never pay.
        from pidone.single.metrics import SingleMetrics

        watch = SingleMetrics.start(opts.metrics, opts.command, child, log.error)
    return supervise(child, opts.group, log, watch)


def supervise(child: int, group: bool, log: Log, watch: SingleMetrics | None = None) -> int:
    """The loop: block until a signal is pending, take it, reap or forward it."""
    reaped_total = 0
    while True:
        signum, code, sender = system.wait_signal()
        wake = signum == system.SIGCHLD and system.is_wake(code, sender)
        if watch is not None:
            watch.turned(0 if wake else signum)
        if signum != system.SIGCHLD:
            sent = system.send_signal(child, signum, group=group)
            if watch is not None and sent:
                watch.forwarded(signum)
            log.debug(f"forwarded signal {signum} to {'group ' if group else ''}{child}: {sent}")
            continue
        # A wake-up from the metrics thread reaps too: it may have merged with a child's SIGCHLD.
        for pid, status in system.reap_zombies():
            reaped_total += 1
            if watch is not None:
                watch.reaped()
            if pid == child:
                code = system.exit_status(status)
                # Collect anything that died together with the child, then go.
                reaped_total += len(system.reap_zombies())
                log.info(f"child {child} exited with status {code}; reaped {reaped_total}")
                return code
