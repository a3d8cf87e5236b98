"""The supervisor core replayed against scripted event histories and a fake
clock: no fork, no signals; spawns are answered with made-up pids."""

from __future__ import annotations

import dataclasses
import itertools
import signal
from pathlib import Path

import pytest

from pidone.config import load as config
from pidone.config.specs import Config
from pidone.core.requests import Command as C
from pidone.core.requests import Outcome, Result
from pidone.core.snapshot import not_ready
from pidone.core.states import (
    LAUNCHES,
    PHASES,
    Goal,
    Launch,
    LaunchEvent,
    Phase,
    PhaseEvent,
    next_launch,
    next_phase,
)
from pidone.core.states import ProcessState as S
from pidone.core.supervisor import (
    PIDFILE_POLL,
    PIDFILE_RETRY,
    SOCKET_POLL,
    SOCKET_RETRY,
    SWEEP_TIMEOUT,
    TOUCH_WINDOW,
    UNKNOWN_STATUS,
    Action,
    Adopt,
    Adopted,
    AdoptedExited,
    Boot,
    CancelProbe,
    CloseSocket,
    Collect,
    EventType,
    Exit,
    FixSocket,
    Forget,
    Kill,
    KillLeftovers,
    Log,
    NoChildren,
    NotAdopted,
    Notify,
    OpenSocket,
    PidfileNotRead,
    PidfileRead,
    ReadPidfile,
    Ready,
    Reaped,
    Reconfigure,
    Reconfigured,
    Reply,
    Request,
    SignalReceived,
    SocketFixed,
    SocketNotFixed,
    Spawn,
    Spawned,
    SpawnFailed,
    StartProbe,
    Supervisor,
    Sweep,
    Tick,
    Touched,
    backoff_delay,
    spawns_and_signals_first,
)
from pidone.errors import IllegalTransition
from pidone.observe.health import check_ready

FIXTURES = Path(__file__).parent.parent / "fixtures"
TERM = int(signal.SIGTERM)
KILL = int(signal.SIGKILL)
CONT = int(signal.SIGCONT)


def exited(code: int) -> tuple[int, int]:
    """Reaped's (status, signal) for an exit with `code`."""
    return code, 0


def killed(signum: int) -> tuple[int, int]:
    """Reaped's (status, signal) for a death by `signum`."""
    return 128 + signum, signum


class Sim:
    """Drives a Supervisor like the loop does, answering Spawn at once."""

    def __init__(self, core: Supervisor) -> None:
        self.core = core
        self.now = 0.0
        self.pids = itertools.count(100)
        self.spawned: list[str] = []
        self.fail_spawn: set[str] = set()

    def do(self, event: EventType) -> list[Action]:
        actions = self.core.handle(event, self.now)
        out: list[Action] = []
        for action in actions:
            out.append(action)
            if isinstance(action, Spawn):
                self.spawned.append(action.name)
                if action.name in self.fail_spawn:
                    out += self.do(SpawnFailed(action.name, "exec x: No such file or directory"))
                else:
                    out += self.do(Spawned(action.name, next(self.pids)))
        return out

    def at(self, when: float) -> list[Action]:
        self.now = when
        return self.do(Tick())

    def state(self, name: str) -> S:
        return self.core.procs[name].state

    def pid(self, name: str) -> int:
        pid = self.core.procs[name].pid
        assert pid is not None, f"{name} has no pid"
        return pid

    def exit(self, name: str, status: tuple[int, int]) -> list[Action]:
        return self.do(Reaped(self.pid(name), *status))

    def ready(self, name: str) -> list[Action]:
        return self.do(Ready(name, self.pid(name)))


def sim_for(tmp_path: Path, toml: str, procfile: str | None = None) -> Sim:
    (tmp_path / "pidone.toml").write_text(toml)
    proc_path = None
    if procfile is not None:
        proc_path = tmp_path / "Procfile"
        proc_path.write_text(procfile)
    cfg = config.load(proc_path, tmp_path / "pidone.toml", None, environ={})
    return Sim(Supervisor(cfg, 0.0))


def fixture_sim(shape: str) -> Sim:
    d = FIXTURES / shape
    procfile = d / "Procfile"
    cfg = config.load(procfile if procfile.exists() else None, d / "pidone.toml", None, environ={})
    return Sim(Supervisor(cfg, 0.0))


def spawns(actions: list[Action]) -> list[str]:
    return [a.name for a in actions if isinstance(a, Spawn)]


def kills(actions: list[Action], *, cont: bool = False) -> list[tuple[str, int, bool]]:
    """The signals sent; the SIGCONT after each stop signal only with `cont`
    (test_a_sigstopped_process_gets_sigcont_after_its_stop_signal)."""
    return [
        (a.name, a.signum, a.group)
        for a in actions
        if isinstance(a, Kill) and (cont or a.signum != signal.SIGCONT)
    ]


def logs(actions: list[Action]) -> list[str]:
    return [f"{a.name}: {a.message}" for a in actions if isinstance(a, Log)]


def exits(actions: list[Action]) -> list[int]:
    return [a.code for a in actions if isinstance(a, Exit)]


THREE = """
[process.a]
command = "a"
[process.b]
command = "b"
[process.c]
command = "c"
"""


def chain_toml(**extra: str) -> str:
    lines = [
        "[process.a]",
        'command = "a"',
        'ready = "tcp:127.0.0.1:1"',
        "[process.b]",
        'command = "b"',
        'after = ["a"]',
        'ready = "tcp:127.0.0.1:2"',
        "[process.c]",
        'command = "c"',
        'after = ["b"]',
        'ready = "tcp:127.0.0.1:3"',
    ]
    return "\n".join(lines) + "\n" + "\n".join(f"{k} = {v}" for k, v in extra.items())


# --- start order -----------------------------------------------------------------


def test_chain_starts_one_by_one_as_each_becomes_ready(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, chain_toml())
    out = sim.do(Boot())
    assert spawns(out) == ["a"]
    assert StartProbe("a", sim.pid("a")) in out
    assert (sim.state("b"), sim.state("c")) == (S.STARTING, S.STARTING)
    assert spawns(sim.ready("a")) == ["b"]
    assert spawns(sim.ready("b")) == ["c"]
    assert spawns(sim.ready("c")) == []
    assert {sim.state(n) for n in "abc"} == {S.READY}
    assert sim.core.next_deadline() is None  # nothing pending: the loop may sleep


def test_diamond_starts_the_middle_together_and_the_bottom_last() -> None:
    sim = fixture_sim("diamond")
    order = sim.core.order
    first = spawns(sim.do(Boot()))
    assert len(first) == 1
    top = first[0]
    sim.at(10)  # settle time passes: the top is ready
    middle = [n for n in order if sim.state(n) is not S.STARTING and n != top]
    assert len(middle) == 2
    assert {sim.state(n) for n in middle} == {S.RUNNING}
    bottom = [n for n in order if n not in (top, *middle)]
    assert [sim.state(n) for n in bottom] == [S.STARTING]
    sim.at(20)
    assert sim.spawned == [top, *middle, *bottom]


def test_independent_processes_start_together(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, THREE)
    assert spawns(sim.do(Boot())) == ["a", "b", "c"]


def test_only_an_exit_lets_the_relay_send_an_unfinished_line_before_the_log(
    tmp_path: Path,
) -> None:
    # "ready" about a live flood cut the line the relay was halfway through
    # in two (tests/integration/test_log_relay.py): only a Log about an
    # instance that ended says so.
    sim = sim_for(tmp_path, '[process.a]\ncommand = "a"\nrestart = "never"\n')
    out = sim.do(Boot()) + sim.at(10) + sim.exit("a", exited(1))
    lines = [(a.message, a.ended) for a in out if isinstance(a, Log) and a.name == "a"]
    assert lines[1:] == [
        ("ready", False),
        ("exited with status 1", True),
        ("not restarting (restart = 'never')", False),
    ]
    assert lines[0][0].startswith("started: pid ") and not lines[0][1]
    sim = sim_for(tmp_path, '[process.a]\ncommand = "a"\n')
    sim.do(Boot())
    sim.do(SignalReceived(TERM))
    stopped = [a for a in sim.exit("a", killed(TERM)) if isinstance(a, Log)]
    assert [(a.message, a.ended) for a in stopped if a.name == "a"] == [
        ("stopped (signal SIGTERM)", True)
    ]


def test_settle_readiness_comes_after_the_settle_time(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, '[pidone]\nsettle_time = 2\n[process.a]\ncommand = "a"\n')
    sim.do(Boot())
    assert sim.core.next_deadline() == 2.0
    sim.at(1.9)
    assert sim.state("a") is S.RUNNING
    assert "a: ready" in logs(sim.at(2.0))
    assert sim.state("a") is S.READY


def test_a_late_ready_for_a_previous_instance_is_ignored(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, chain_toml())
    sim.do(Boot())
    old = sim.pid("a")
    sim.exit("a", exited(1))  # restarted at once with a new pid
    assert sim.pid("a") != old
    sim.do(Ready("a", old))
    assert sim.state("a") is S.RUNNING


# --- restarts ----------------------------------------------------------------------


def test_restart_at_once_then_with_doubling_backoff(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, '[pidone]\nbackoff_initial = 0.5\n[process.a]\ncommand = "a"\n')
    sim.do(Boot())
    assert spawns(sim.exit("a", exited(1))) == ["a"]  # first crash: no delay
    out = sim.exit("a", exited(1))
    assert spawns(out) == []
    assert "a: restarting in 0.5 s" in logs(out)
    assert sim.state("a") is S.BACKOFF
    assert sim.core.next_deadline() == 0.5
    assert spawns(sim.at(0.49)) == []
    assert spawns(sim.at(0.5)) == ["a"]
    sim.now = 1.0
    sim.exit("a", exited(1))
    assert sim.core.next_deadline() == 2.0  # 1.0 + 0.5 * 2
    assert sim.core.snapshot().processes[0].restarts_by_reason == {"crash": 2}


def test_a_restart_at_once_is_spawned_before_its_exit_is_logged(tmp_path: Path) -> None:
    # The loop carries actions out in order, and logging takes time: the
    # Spawn goes first, the lines about the exit after it, in their order.
    sim = sim_for(tmp_path, '[process.a]\ncommand = "a"\n')
    sim.do(Boot())
    old = sim.pid("a")
    actions = sim.core.handle(Reaped(old, *killed(KILL)), sim.now)
    # what is left of its group goes first: no new instance beside the old one's
    assert actions[:2] == [KillLeftovers("a", group=old), Spawn("a")]
    assert logs(actions) == ["a: exited with signal SIGKILL", "a: restarting in 0 s"]


def test_a_process_killed_by_a_real_time_signal_is_restarted(tmp_path: Path) -> None:
    # signal.Signals has no member for SIGRTMIN+6: naming it must not break the restart
    sim = sim_for(tmp_path, '[process.a]\ncommand = "a"\n')
    sim.do(Boot())
    old = sim.pid("a")
    actions = sim.core.handle(Reaped(old, *killed(signal.SIGRTMIN + 6)), sim.now)
    assert actions[1] == Spawn("a")  # after KillLeftovers of its group
    assert logs(actions)[0] == "a: exited with signal SIGRTMIN+6"
    assert sim.core.snapshot().processes[0].exits_by_status == {128 + signal.SIGRTMIN + 6: 1}


def test_real_time_stop_and_reload_signals_are_named(tmp_path: Path) -> None:
    rt3, rt4 = int(signal.SIGRTMIN) + 3, int(signal.SIGRTMIN) + 4
    toml = f'[process.a]\ncommand = "a"\nstop_signal = {rt3}\nreload_signal = {rt4}\n'
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    assert "a: reload: SIGRTMIN+4" in logs(sim.do(Request(C.RELOAD, ("a",))))
    out = sim.do(SignalReceived(TERM))
    assert any("SIGRTMIN+3" in line for line in logs(out)), logs(out)


def test_fatal_after_too_many_exits_in_the_window(tmp_path: Path) -> None:
    toml = '[pidone]\nfatal_after = 3\nfatal_window = 60\n[process.a]\ncommand = "a"\n'
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    sim.exit("a", exited(2))
    sim.now = 1
    sim.exit("a", exited(2))
    sim.at(5)
    assert sim.state("a") is S.RUNNING
    out = sim.exit("a", exited(2))
    assert sim.state("a") is S.FATAL
    assert any("FATAL: exited 3 times within 60 s" in line for line in logs(out))
    # FATAL was the only process: nothing left to run, so pidone winds down, unclean
    assert [a for a in out if not isinstance(a, Notify)][-1] == Sweep(TERM)
    assert exits(sim.do(NoChildren())) == [1]


def test_exits_outside_the_window_do_not_count(tmp_path: Path) -> None:
    toml = '[pidone]\nfatal_after = 2\nfatal_window = 10\n[process.a]\ncommand = "a"\n'
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    sim.exit("a", exited(1))
    sim.at(11)
    assert spawns(sim.exit("a", exited(1))) == ["a"]  # the first one fell out of the window
    assert sim.state("a") is S.RUNNING


# --- backoff_reset: a stable process is no crash loop ----------------------------


def test_a_stable_process_killed_five_times_is_restarted_at_once_every_time(
    tmp_path: Path,
) -> None:
    # Defaults: ready after settle_time (1 s), stable 1 s later (backoff_reset).
    # Five kills 3.5 s apart: without the reset the second would back off and
    # the fifth would make it FATAL (fatal_after = 5 within 60 s).
    sim = sim_for(tmp_path, '[process.a]\ncommand = "a"\n')
    sim.do(Boot())
    pids = [sim.pid("a")]
    for kill_at in (3.5, 7.0, 10.5, 14.0, 17.5):
        sim.at(kill_at - 2.5)  # 1 s after its spawn: ready
        assert sim.state("a") is S.READY
        sim.now = kill_at
        out = sim.exit("a", killed(KILL))
        assert spawns(out) == ["a"]
        restarting = [line for line in logs(out) if "restarting" in line]
        assert restarting == ["a: restarting in 0 s"]
        assert sim.state("a") is S.RUNNING
        pids.append(sim.pid("a"))
    assert len(set(pids)) == 6
    assert sim.core.snapshot().processes[0].restarts_by_reason == {"crash": 5}


def test_a_crash_loop_dying_before_backoff_reset_still_backs_off_then_goes_fatal(
    tmp_path: Path,
) -> None:
    # Ready (settle_time 1 s) but dead 0.5 s later, under backoff_reset (1 s):
    # the delays double and the fifth exit within the window is FATAL.
    sim = sim_for(tmp_path, '[pidone]\nbackoff_initial = 0.5\n[process.a]\ncommand = "a"\n')
    sim.do(Boot())
    delays = []
    spawned_at = 0.0
    for _ in range(5):
        sim.at(spawned_at + 1.0)
        assert sim.state("a") is S.READY
        sim.now = spawned_at + 1.5
        out = sim.exit("a", exited(1))
        if sim.state("a") is S.FATAL:
            break
        delays.append(sim.core.procs["a"].backoff_until - sim.now)
        spawned_at = sim.core.procs["a"].backoff_until
        sim.at(spawned_at)
        assert sim.state("a") is S.RUNNING
    assert delays == [0.0, 0.5, 1.0, 2.0]
    assert sim.state("a") is S.FATAL
    assert "a: FATAL: exited 5 times within 60 s; not restarting" in logs(out)


def test_a_ready_gated_process_counts_backoff_reset_from_ready_not_from_its_start(
    tmp_path: Path,
) -> None:
    toml = '[process.a]\ncommand = "a"\nready = "tcp:127.0.0.1:1"\n'
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    sim.now = 30.0  # up 30 s, never ready: a failure like any other
    assert spawns(sim.exit("a", exited(1))) == ["a"]
    sim.ready("a")
    sim.now = 30.9  # ready 0.9 s: under backoff_reset, the second failure backs off
    out = sim.exit("a", exited(1))
    assert spawns(out) == []
    assert "a: restarting in 0.5 s" in logs(out)
    sim.at(31.4)
    sim.ready("a")
    sim.now = 32.4  # ready for backoff_reset (1 s): its failures are forgotten
    out = sim.exit("a", exited(1))
    assert spawns(out) == ["a"]
    assert "a: restarting in 0 s" in logs(out)
    sim.now = 32.5  # the count starts over from that exit: this is the second
    assert "a: restarting in 0.5 s" in logs(sim.exit("a", exited(1)))


def test_a_spawn_failure_after_a_stable_run_still_backs_off(tmp_path: Path) -> None:
    # The stable run forgives what came before it, once: the failures after
    # it (here its executable gone) count again.
    sim = sim_for(tmp_path, '[process.a]\ncommand = "a"\n[process.z]\ncommand = "z"\n')
    sim.do(Boot())
    sim.at(5.0)
    sim.fail_spawn.add("a")
    sim.exit("a", killed(KILL))
    assert sim.state("a") is S.BACKOFF
    assert sim.core.procs["a"].backoff_until == 5.5


def test_backoff_reset_0_forgets_failures_once_ready(tmp_path: Path) -> None:
    toml = '[pidone]\nbackoff_reset = 0\n[process.a]\ncommand = "a"\nready = "file:/x"\n'
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    for _ in range(10):
        sim.ready("a")
        assert spawns(sim.exit("a", exited(1))) == ["a"]
    assert sim.state("a") is S.RUNNING
    sim.exit("a", exited(1))  # not ready this time: the second failure in a row
    assert sim.state("a") is S.BACKOFF


@pytest.mark.parametrize(
    ("policy", "status", "restarted"),
    [
        ("always", exited(0), True),
        ("always", exited(1), True),
        ("on-failure", exited(0), False),
        ("on-failure", exited(3), True),
        ("on-failure", killed(KILL), True),
        ("never", exited(1), False),
    ],
)
def test_restart_policies(
    tmp_path: Path, policy: str, status: tuple[int, int], restarted: bool
) -> None:
    toml = f'[process.a]\ncommand = "a"\nrestart = "{policy}"\n[process.z]\ncommand = "z"\n'
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    assert spawns(sim.exit("a", status)) == (["a"] if restarted else [])
    assert sim.state("a") is (S.RUNNING if restarted else S.EXITED)


def test_spawn_failure_counts_as_a_failure_and_backs_off(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, '[process.a]\ncommand = "a"\n[process.z]\ncommand = "z"\n')
    sim.fail_spawn.add("a")
    out = sim.do(Boot())
    assert "a: cannot start: exec x: No such file or directory" in logs(out)
    assert sim.spawned.count("a") == 2  # the failed attempt and the immediate retry
    assert sim.state("a") is S.BACKOFF
    assert sim.core.procs["a"].last_exit is not None
    assert sim.core.procs["a"].last_exit.status == 127


def test_dependents_are_stopped_first_and_started_after_the_restart(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, chain_toml())
    sim.do(Boot())
    sim.ready("a")
    sim.ready("b")
    sim.ready("c")
    out = sim.exit("a", killed(KILL))
    # c goes first (it is after b), b waits for c, a waits for both
    assert kills(out) == [("c", TERM, False)]
    assert spawns(out) == []
    assert "a: restarting in 0 s; stopping c, b first" in logs(out) or (
        "a: restarting in 0 s; stopping b, c first" in logs(out)
    )
    out = sim.exit("c", killed(TERM))
    assert kills(out) == [("b", TERM, False)]
    assert spawns(out) == []
    out = sim.exit("b", exited(0))
    assert spawns(out) == ["a"]
    assert (sim.state("b"), sim.state("c")) == (S.STARTING, S.STARTING)
    assert spawns(sim.ready("a")) == ["b"]
    assert spawns(sim.ready("b")) == ["c"]
    reasons = {p.name: p.restarts_by_reason for p in sim.core.snapshot().processes}
    assert reasons == {"a": {"crash": 1}, "b": {"dependency": 1}, "c": {"dependency": 1}}


def test_a_dependent_that_opts_out_keeps_running(tmp_path: Path) -> None:
    sim = sim_for(
        tmp_path, chain_toml().replace('after = ["b"]', 'after = ["b"]\nrestart_dependents = false')
    )
    sim.do(Boot())
    sim.ready("a")
    sim.ready("b")
    sim.ready("c")
    c_pid = sim.pid("c")
    out = sim.exit("b", exited(1))
    assert kills(out) == []
    assert spawns(out) == ["b"]
    assert sim.pid("c") == c_pid


def test_a_completed_one_shot_job_satisfies_its_dependents(tmp_path: Path) -> None:
    toml = (
        '[process.migrate]\ncommand = "m"\nrestart = "never"\n'
        '[process.web]\ncommand = "w"\nafter = ["migrate"]\n'
    )
    sim = sim_for(tmp_path, toml)
    assert spawns(sim.do(Boot())) == ["migrate"]
    assert spawns(sim.exit("migrate", exited(0))) == ["web"]
    assert sim.state("migrate") is S.EXITED
    # The same rule for the observers (wait-ready, /readyz): one definition.
    assert [p.completed for p in sim.core.snapshot().processes] == [True, False]


def test_a_failed_one_shot_job_blocks_its_dependents(tmp_path: Path) -> None:
    toml = (
        '[process.migrate]\ncommand = "m"\nrestart = "never"\n'
        '[process.web]\ncommand = "w"\nafter = ["migrate"]\n'
        '[process.other]\ncommand = "o"\n'
    )
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    assert spawns(sim.exit("migrate", exited(1))) == []
    assert sim.state("web") is S.STARTING


def test_pidfile_process_is_followed_through_its_daemon(tmp_path: Path) -> None:
    toml = '[process.d]\ncommand = "d"\npidfile = "/run/d.pid"\n'
    sim = sim_for(tmp_path, toml)
    out = sim.do(Boot())
    assert ReadPidfile("d", "/run/d.pid") in out  # at once: no other process to exclude
    launcher = sim.core.procs["d"].launcher_pid
    assert launcher is not None
    assert sim.do(Reaped(launcher, *exited(0))) == []  # the launcher daemonized: fine
    sim.do(PidfileRead("d", 4242))
    assert sim.pid("d") == 4242
    out = sim.do(Reaped(4242, *killed(KILL)))
    assert spawns(out) == ["d"]


def test_orphans_are_ignored(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, THREE)
    sim.do(Boot())
    assert sim.do(Reaped(99999, *exited(0))) == []


# --- control process ------------------------------------------------------------


def test_control_process_exit_stops_everything_and_sets_the_status(tmp_path: Path) -> None:
    toml = THREE.replace('[process.b]\ncommand = "b"', '[process.b]\ncommand = "b"\ncontrol = true')
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    out = sim.exit("b", exited(3))
    assert sorted(kills(out)) == [("a", TERM, False), ("c", TERM, False)]
    sim.exit("a", killed(TERM))
    out = sim.exit("c", exited(0))
    assert out[-1] == Sweep(TERM)
    assert exits(sim.do(NoChildren())) == [3]


# --- shutdown -----------------------------------------------------------------


def test_sigterm_stops_in_reverse_order_and_exits_0(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, chain_toml())
    sim.do(Boot())
    for n in "abc":
        sim.ready(n)
    out = sim.do(SignalReceived(TERM))
    assert kills(out) == [("c", TERM, False)]
    assert CancelProbe("c") in out
    assert kills(sim.exit("c", killed(TERM))) == [("b", TERM, False)]
    assert kills(sim.exit("b", exited(0))) == [("a", TERM, False)]
    out = sim.exit("a", exited(0))
    assert out[-1] == Sweep(TERM)
    assert exits(sim.do(NoChildren())) == [0]


def test_sigterm_signals_before_it_logs(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, THREE)
    sim.do(Boot())
    pids = {n: sim.pid(n) for n in "abc"}
    actions = sim.core.handle(SignalReceived(TERM), sim.now)
    # each: its tree remembered, the stop signal, SIGCONT; then the lines
    assert actions[:9] == [
        a
        for n in "abc"
        for a in (Collect(n, pids[n]), Kill(n, pids[n], TERM), Kill(n, pids[n], CONT))
    ]
    assert logs(actions) == [
        "pidone: received SIGTERM: stopping",
        *(f"{n}: stopping: SIGTERM to {pids[n]}" for n in "abc"),
    ]
    assert {a for a in actions[9:] if isinstance(a, CancelProbe)} == {CancelProbe(n) for n in "abc"}


def test_spawns_and_signals_go_first_each_part_in_its_order() -> None:
    batch: list[Action] = [
        Log("pidone", "one"),
        CancelProbe("a"),
        Kill("a", 10, TERM),
        Log("a", "two"),
        Spawn("b"),
        Sweep(TERM),
        Kill("c", 12, TERM),
        Exit(0),
    ]
    assert spawns_and_signals_first(batch) == [
        Kill("a", 10, TERM),
        Spawn("b"),
        Kill("c", 12, TERM),
        Log("pidone", "one"),
        CancelProbe("a"),
        Log("a", "two"),
        Sweep(TERM),
        Exit(0),
    ]
    quiet: list[Action] = [Log("pidone", "x"), Exit(1)]
    assert spawns_and_signals_first(quiet) == quiet


def test_independent_processes_stop_in_parallel(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, THREE)
    sim.do(Boot())
    out = sim.do(SignalReceived(int(signal.SIGINT)))
    assert kills(out) == [("a", TERM, False), ("b", TERM, False), ("c", TERM, False)]


def test_stop_signal_and_target_per_process(tmp_path: Path) -> None:
    toml = '[process.a]\ncommand = "a"\nstop_signal = "SIGQUIT"\nstop_target = "group"\n'
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    assert kills(sim.do(SignalReceived(TERM))) == [("a", int(signal.SIGQUIT), True)]


def test_stop_timeout_escalates_to_sigkill_of_the_group_and_is_unclean(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, '[process.a]\ncommand = "a"\nstop_timeout = 3\n')
    sim.do(Boot())
    sim.now = 10
    sim.do(SignalReceived(TERM))
    assert sim.core.next_deadline() == 13
    assert kills(sim.at(12.9)) == []
    assert kills(sim.at(13)) == [("a", KILL, True)]
    assert kills(sim.at(20)) == []  # once only
    out = sim.exit("a", killed(KILL))
    assert out[-1] == Sweep(TERM)
    out = sim.do(NoChildren())
    assert "pidone: unclean stop: a killed after its stop timeout" in logs(out)
    assert exits(out) == [1]


def test_leftover_processes_get_sigkill_after_the_sweep_timeout(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, '[process.a]\ncommand = "a"\n')
    sim.do(Boot())
    sim.do(SignalReceived(TERM))
    sim.now = 1
    assert sim.exit("a", killed(TERM))[-1] == Sweep(TERM)
    assert sim.core.next_deadline() == 6.0
    assert Sweep(KILL) in sim.at(6.0)
    assert exits(sim.do(NoChildren())) == [0]


def test_processes_waiting_for_dependencies_are_dropped_at_shutdown(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, chain_toml())
    sim.do(Boot())
    out = sim.do(SignalReceived(TERM))
    assert kills(out) == [("a", TERM, False)]
    assert (sim.state("b"), sim.state("c")) == (S.STOPPED, S.STOPPED)


def test_a_second_sigterm_changes_nothing(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, THREE)
    sim.do(Boot())
    sim.do(SignalReceived(TERM))
    out = sim.do(SignalReceived(TERM))
    assert kills(out) == []
    assert "pidone: already stopping; SIGKILL pidone to force" in logs(out)


def test_nothing_left_to_run_ends_pidone_with_the_verdict(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, '[process.a]\ncommand = "a"\nrestart = "never"\n')
    sim.do(Boot())
    out = sim.exit("a", exited(0))
    assert "pidone: no process left to run: exiting" in logs(out)
    assert exits(sim.do(NoChildren())) == [0]


# --- signals and requests --------------------------------------------------------


def test_sighup_reloads_in_dependency_order(tmp_path: Path) -> None:
    sim = sim_for(
        tmp_path, chain_toml().replace('command = "b"', 'command = "b"\nreload_signal = "USR2"')
    )
    sim.do(Boot())
    for n in "abc":
        sim.ready(n)
    out = sim.do(SignalReceived(int(signal.SIGHUP)))
    hup, usr2 = int(signal.SIGHUP), int(signal.SIGUSR2)
    assert kills(out) == [("a", hup, False), ("b", usr2, False), ("c", hup, False)]


def test_other_signals_are_forwarded_to_every_running_process(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, chain_toml())
    sim.do(Boot())
    sim.ready("a")
    usr1 = int(signal.SIGUSR1)
    assert kills(sim.do(SignalReceived(usr1))) == [("a", usr1, False), ("b", usr1, False)]


def test_ctl_restart_stops_dependents_first_and_counts_a_manual_restart(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, chain_toml())
    sim.do(Boot())
    for n in "abc":
        sim.ready(n)
    out = sim.do(Request(C.RESTART, ("b",)))
    assert kills(out) == [("c", TERM, False)]
    assert kills(sim.exit("c", killed(TERM))) == [("b", TERM, False)]
    out = sim.exit("b", killed(TERM))
    assert spawns(out) == ["b"]
    assert spawns(sim.ready("b")) == ["c"]
    reasons = {p.name: p.restarts_by_reason for p in sim.core.snapshot().processes}
    assert reasons == {"a": {}, "b": {"manual": 1}, "c": {"dependency": 1}}
    assert sim.state("a") is S.READY


def test_ctl_stop_then_start(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, THREE)
    sim.do(Boot())
    assert kills(sim.do(Request(C.STOP, ("b",)))) == [("b", TERM, False)]
    out = sim.exit("b", killed(TERM))
    assert spawns(out) == []
    assert sim.state("b") is S.STOPPED
    assert spawns(sim.do(Request(C.START, ("b",)))) == ["b"]
    assert sim.core.procs["b"].restarts_by_reason == {"manual": 1}


def test_ctl_start_revives_a_fatal_process(tmp_path: Path) -> None:
    toml = '[pidone]\nfatal_after = 1\n[process.a]\ncommand = "a"\n[process.z]\ncommand = "z"\n'
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    sim.exit("a", exited(1))
    assert sim.state("a") is S.FATAL
    assert spawns(sim.do(Request(C.START, ("a",)))) == ["a"]


def test_ctl_signal_and_reload_all(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, THREE)
    sim.do(Boot())
    usr1 = int(signal.SIGUSR1)
    assert kills(sim.do(Request(C.SIGNAL, ("c", "a"), usr1))) == [
        ("a", usr1, False),
        ("c", usr1, False),
    ]
    hup = int(signal.SIGHUP)
    assert [k[0] for k in kills(sim.do(Request(C.RELOAD, ("all",))))] == ["a", "b", "c"]
    assert all(k[1] == hup for k in kills(sim.do(Request(C.RELOAD, ("all",)))))


def test_ctl_with_an_unknown_name_raises(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, THREE)
    sim.do(Boot())
    with pytest.raises(KeyError, match="nope"):
        sim.do(Request(C.STOP, ("a", "nope")))
    assert sim.state("a") is S.RUNNING


def test_snapshot_reports_state_pid_and_exits(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, THREE)
    sim.do(Boot())
    sim.exit("a", exited(4))
    snap = {p.name: p for p in sim.core.snapshot().processes}
    assert snap["a"].state is S.RUNNING
    assert snap["a"].exits_by_status == {4: 1}
    assert snap["a"].last_exit is not None
    assert (snap["a"].last_exit.status, snap["a"].last_exit.planned) == (4, False)
    assert snap["a"].restarts == 1
    assert snap["b"].pid == sim.pid("b")
    assert snap["b"].has_ready_check is False


def daemonized(tmp_path: Path) -> Sim:
    """A pidfile process whose launcher has exited 0; its pidfile not read yet."""
    toml = '[process.d]\ncommand = "d"\npidfile = "/run/d.pid"\nstop_timeout = 2\n'
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    launcher = sim.core.procs["d"].launcher_pid
    assert launcher is not None
    sim.do(Reaped(launcher, *exited(0)))
    return sim


def test_stopping_a_daemon_before_its_pidfile_is_read_waits_for_the_pid(tmp_path: Path) -> None:
    sim = daemonized(tmp_path)
    out = sim.do(SignalReceived(TERM))
    assert kills(out) == []
    assert "d: stopping: waiting for its pidfile to know whom to signal" in logs(out)
    assert kills(sim.do(PidfileRead("d", 77))) == [("d", TERM, False)]
    assert sim.do(Reaped(77, *killed(TERM)))[-1] == Sweep(TERM)


def test_a_daemon_whose_pidfile_never_comes_is_given_up_at_the_stop_timeout(
    tmp_path: Path,
) -> None:
    sim = daemonized(tmp_path)
    sim.do(SignalReceived(TERM))
    out = sim.at(2.0)
    assert "d: stop timeout: no pid from its pidfile" in logs(out)
    assert out[-1] == Sweep(TERM)
    assert exits(sim.do(NoChildren())) == [1]


# --- issue 12: what an unlucky operator or a hostile program does ------------------


def test_five_thousand_failures_do_not_overflow_the_backoff(tmp_path: Path) -> None:
    toml = (
        # 5,000 waits of at most 10 s fit in the longest fatal_window (one day)
        "[pidone]\nbackoff_initial = 0.5\nbackoff_max = 10\nfatal_after = 100000\n"
        "fatal_window = 86400\n"
        '[process.a]\ncommand = "a"\n'
    )
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    for n in range(5000):
        sim.exit("a", exited(1))
        assert sim.state("a") in (S.BACKOFF, S.RUNNING), n
        sim.at(sim.core.procs["a"].backoff_until)
    assert sim.core.procs["a"].backoff_until == sim.now  # elapsed: spawned again
    assert len(sim.core.procs["a"].failures) == 5000
    assert backoff_delay(5000, 0.5, 30.0) == 30.0
    assert backoff_delay(10**9, 1e300, 1e308) == 1e308  # saturates, never raises
    assert [backoff_delay(n, 0.5, 30.0) for n in (1, 2, 3, 4)] == [0.0, 0.5, 1.0, 2.0]


def test_a_sigstopped_process_gets_sigcont_after_its_stop_signal(tmp_path: Path) -> None:
    toml = '[process.a]\ncommand = "a"\n[process.g]\ncommand = "g"\nstop_target = "group"\n'
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    out = sim.do(SignalReceived(TERM))
    sent = kills(out, cont=True)
    assert sent == [("a", TERM, False), ("a", CONT, False), ("g", TERM, True), ("g", CONT, True)]
    pids = [a.pid for a in out if isinstance(a, Kill)]
    assert pids == [sim.pid("a")] * 2 + [sim.pid("g")] * 2  # the same target each time


def test_ctl_stop_while_a_one_shot_job_is_done_is_not_nothing_left_to_run(
    tmp_path: Path,
) -> None:
    toml = '[process.job]\ncommand = "j"\nrestart = "never"\n[process.web]\ncommand = "w"\n'
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    sim.exit("job", exited(0))
    sim.do(Request(C.STOP, ("web",)))
    out = sim.exit("web", killed(TERM))
    assert sim.state("web") is S.STOPPED and not sim.core.shutting_down
    assert not [a for a in out if isinstance(a, (Sweep, Exit))]
    assert "pidone: no process left to run: exiting" not in logs(out)
    assert spawns(sim.do(Request(C.START, ("web",)))) == ["web"]  # the operator's to restart


def test_a_fatal_process_without_a_ready_check_makes_readyz_fail_naming_it(
    tmp_path: Path,
) -> None:
    toml = '[pidone]\nfatal_after = 1\n[process.web]\ncommand = "w"\n[process.z]\ncommand = "z"\n'
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    sim.at(10.0)  # z settles: ready
    sim.exit("web", exited(1))
    assert sim.state("web") is S.FATAL
    snap = sim.core.snapshot()
    assert not snap.processes[0].has_ready_check
    assert not_ready(snap, checked_only=True) == ["web (fatal)"]
    assert not_ready(snap) == ["web (fatal)"]
    assert check_ready(snap) == (False, "not ready: web (fatal)")


def test_ctl_signal_while_waiting_for_the_pidfile_signals_nobody(tmp_path: Path) -> None:
    sim = daemonized(tmp_path)  # its launcher has exited, no pid known yet
    usr1 = int(signal.SIGUSR1)
    out = sim.do(Request(C.SIGNAL, ("d",), usr1))  # raised AssertionError before
    assert kills(out, cont=True) == []
    assert kills(sim.do(SignalReceived(usr1)), cont=True) == []
    assert kills(sim.do(Request(C.RELOAD, ("d",))), cont=True) == []


def test_a_stop_remembers_the_tree_and_kills_its_leftovers_once_reaped(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, '[process.a]\ncommand = "a"\nstop_timeout = 2\n')
    sim.do(Boot())
    pid = sim.pid("a")
    out = sim.do(Request(C.RESTART, ("a",)))
    assert out[:2] == [Collect("a", pid), Kill("a", pid, TERM)]  # walked before signalled
    out = sim.at(2.0)
    assert [a for a in out if isinstance(a, (Collect, Kill))] == [
        Collect("a", pid),  # what it forked since
        Kill("a", pid, KILL, group=True),
    ]
    out = sim.do(Reaped(pid, *killed(KILL)))
    assert KillLeftovers("a") in out
    assert out.index(KillLeftovers("a")) < out.index(Spawn("a"))  # gone before the new one


def test_a_pidfile_process_is_not_ready_before_its_pid_is_known(tmp_path: Path) -> None:
    # A refused (or late) pidfile: settled or checked, it is still nobody we know.
    sim = daemonized(tmp_path)
    sim.at(100.0)  # far past settle_time
    assert sim.state("d") is S.RUNNING
    assert not sim.core.snapshot().processes[0].ready
    out = sim.do(PidfileRead("d", 77))
    assert sim.state("d") is S.READY
    assert logs(out) == ["d: following pid 77 from /run/d.pid", "d: ready"]


def test_a_crashed_instances_group_is_killed_but_a_daemons_unknown_group_is_not(
    tmp_path: Path,
) -> None:
    toml = (
        '[process.a]\ncommand = "a"\nrestart = "never"\n'
        '[process.d]\ncommand = "d"\npidfile = "/run/d.pid"\n'
    )
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    old = sim.pid("a")
    out = sim.core.handle(Reaped(old, *killed(KILL)), sim.now)
    assert KillLeftovers("a", group=old) in out  # even when it is not restarted
    launcher = sim.core.procs["d"].launcher_pid
    assert launcher is not None
    sim.core.handle(Reaped(launcher, *exited(0)), sim.now)  # daemonized
    sim.core.handle(PidfileRead("d", 4242), sim.now)
    out = sim.core.handle(Reaped(4242, *killed(KILL)), sim.now)
    assert [a for a in out if isinstance(a, KillLeftovers)] == []


# --- ctl requests: what they wait for, judged in the core ---------------------------


def replies(actions: list[Action]) -> dict[int, Outcome]:
    return {a.ticket: a.outcome for a in actions if isinstance(a, Reply)}


def test_a_fault_in_the_middle_of_handle_leaves_the_core_unchanged(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, THREE)
    sim.do(Boot())
    sim.exit("b", exited(1))  # restarted at once: one failure counted
    good = sim.core.procs["b"].spec
    # A spec that breaks _stop once the restart has cleared b's failures, set
    # its goal, moved it to STOPPING and registered a Wait.
    sim.core.procs["b"].spec = dataclasses.replace(good, stop_timeout=None)  # type: ignore[arg-type]
    before = (sim.core.snapshot(), sim.core.phase, sim.core.next_deadline())
    with pytest.raises(TypeError):
        sim.do(Request(C.RESTART, ("b",), ticket=1))
    assert (sim.core.snapshot(), sim.core.phase, sim.core.next_deadline()) == before
    b = sim.core.procs["b"]
    assert (b.state, b.goal, b.stop_deadline, b.failures) == (S.RUNNING, Goal.UP, None, [0.0])
    assert (b.restart_reason, sim.core.waits) == (None, [])
    b.spec = good  # the core goes on from where it was
    assert kills(sim.do(Request(C.STOP, ("b",), ticket=2))) == [("b", TERM, False)]
    assert replies(sim.exit("b", killed(TERM))) == {
        2: Outcome(True, results=(Result("b", S.STOPPED),))
    }


def test_ctl_restart_is_answered_once_a_new_instance_is_ready(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, chain_toml())
    sim.do(Boot())
    for n in "abc":
        sim.ready(n)
    out = sim.do(Request(C.RESTART, ("c",), ticket=7))
    assert kills(out) == [("c", TERM, False)] and replies(out) == {}  # the old one is READY
    assert replies(sim.exit("c", killed(TERM))) == {}
    assert replies(sim.ready("c")) == {7: Outcome(True, results=(Result("c", S.READY),))}


def test_ctl_stop_that_outlasts_its_timeout_is_answered_late(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, THREE)
    sim.do(Boot())
    sim.do(Request(C.STOP, ("a",), timeout=3.0, ticket=1))
    assert [w.deadline for w in sim.core.waits] == [3.0]
    error = "not stopped in time (stopping)"
    assert replies(sim.at(3.0)) == {
        1: Outcome(False, "1 of 1 processes failed", (Result("a", S.STOPPING, error),))
    }
    assert sim.core.waits == []


def test_ctl_start_of_a_process_that_keeps_failing_says_so(tmp_path: Path) -> None:
    toml = '[pidone]\nfatal_after = 1\n[process.a]\ncommand = "a"\n[process.z]\ncommand = "z"\n'
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    sim.exit("a", exited(1))
    sim.do(Request(C.START, ("a",), ticket=3))
    (outcome,) = replies(sim.exit("a", exited(1))).values()
    assert outcome.results == (Result("a", S.FATAL, "FATAL: it keeps exiting"),)


def test_status_reload_and_signal_are_answered_at_once(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, THREE)
    sim.do(Boot())
    status = replies(sim.do(Request(C.STATUS, ticket=1)))[1]
    assert status.status == sim.core.snapshot()
    sim.exit("c", exited(0))  # restarted at once: running again
    out = sim.do(Request(C.SIGNAL, ("a", "b"), int(signal.SIGUSR1), ticket=2))
    assert replies(out)[2] == Outcome(
        True, results=(Result("a", S.RUNNING), Result("b", S.RUNNING))
    )


def test_a_waiting_request_is_answered_when_pidone_exits(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, chain_toml())
    sim.do(Boot())
    assert replies(sim.do(Request(C.WAIT_READY, timeout=100.0, ticket=9))) == {}
    sim.do(SignalReceived(TERM))
    sim.exit("a", killed(TERM))
    out = sim.do(NoChildren())
    assert exits(out) == [0]
    assert replies(out) == {9: Outcome(False, "pidone is exiting")}


def test_wait_ready_that_times_out_names_what_is_not_ready(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, chain_toml())
    sim.do(Boot())
    sim.do(Request(C.WAIT_READY, timeout=2.0, ticket=1))
    sim.ready("a")
    outcome = replies(sim.at(2.0))[1]
    assert outcome == Outcome(
        False, "not ready: b (running), c (starting)", not_ready=("b (running)", "c (starting)")
    )


# --- pidone's own shutdown: the second table ------------------------------------------


def phase_of(sim: Sim) -> Phase:
    return sim.core.phase


def test_shutdown_walks_its_phases_from_sigterm_to_exit(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, '[process.a]\ncommand = "a"\n')
    sim.do(Boot())
    assert phase_of(sim) is Phase.UP and not sim.core.sweeping
    sim.do(SignalReceived(TERM))
    assert phase_of(sim) is Phase.STOPPING
    out = sim.exit("a", killed(TERM))
    assert Sweep(TERM) in out and phase_of(sim) is Phase.SWEEP_TERM and sim.core.sweeping
    assert sim.core.next_deadline() == SWEEP_TIMEOUT
    assert Sweep(KILL) in sim.at(SWEEP_TIMEOUT) and phase_of(sim) is Phase.SWEEP_KILL
    assert exits(sim.do(NoChildren())) == [0] and phase_of(sim) is Phase.EXITED
    assert exits(sim.do(NoChildren())) == []  # once


def test_a_phase_event_outside_the_table_is_illegal() -> None:
    with pytest.raises(IllegalTransition):
        next_phase(Phase.UP, PhaseEvent.NO_CHILDREN)
    assert {to for to in PHASES.values()} | {Phase.UP} == set(Phase)


# --- pidfile and socket polling: the core says when, the loop looks ------------------


def looks(actions: list[Action]) -> list[Action]:
    return [a for a in actions if isinstance(a, (ReadPidfile, FixSocket))]


def test_a_refused_pidfile_is_logged_once_and_looked_at_again_each_second(
    tmp_path: Path,
) -> None:
    sim = daemonized(tmp_path)
    refusal = PidfileNotRead("d", "pid 1 is pidone itself", refused=True)
    out = sim.do(refusal)
    assert logs(out) == [
        "d: pidfile /run/d.pid refused: pid 1 is pidone itself (logged once; still looking)"
    ]
    assert sim.core.next_deadline() == PIDFILE_RETRY
    assert looks(sim.at(PIDFILE_RETRY / 2)) == []
    assert looks(sim.at(PIDFILE_RETRY)) == [ReadPidfile("d", "/run/d.pid")]
    assert logs(sim.do(refusal)) == []  # once per instance
    sim.do(PidfileNotRead("d"))  # not there (or a stale pid): soon, silently
    assert sim.core.next_deadline() == PIDFILE_RETRY + PIDFILE_POLL
    sim.do(PidfileRead("d", 77))
    assert sim.pid("d") == 77 and sim.core.next_deadline() is None  # no more looks
    assert looks(sim.at(10.0)) == []


def test_a_pidfile_may_not_name_another_supervised_process(tmp_path: Path) -> None:
    toml = '[process.a]\ncommand = "a"\n[process.d]\ncommand = "d"\npidfile = "/run/d.pid"\n'
    sim = sim_for(tmp_path, toml)
    out = sim.do(Boot())
    assert looks(out) == [ReadPidfile("d", "/run/d.pid", frozenset({sim.pid("a")}))]


SOCKET_TOML = """
[process.web]
command = "nginx"
sockets = ["app"]
[socket.app]
path = "/run/app/app.sock"
"""


def test_a_socket_not_fixed_keeps_its_process_unready_and_warns_once_per_problem(
    tmp_path: Path,
) -> None:
    sim = sim_for(tmp_path, SOCKET_TOML)
    out = sim.do(Boot())
    assert looks(out) == [FixSocket("web", "app")]
    assert looks(sim.at(SOCKET_POLL / 2)) == []
    sim.do(SocketNotFixed("web", "app"))  # not created yet
    assert sim.core.next_deadline() == pytest.approx(SOCKET_POLL * 1.5)
    problem = "socket app: /run/app/app.sock is a directory"
    assert logs(sim.do(SocketNotFixed("web", "app", problem))) == [f"web: {problem}"]
    assert sim.core.procs["web"].awaiting_sockets == {"app": SOCKET_POLL / 2 + SOCKET_RETRY}
    assert logs(sim.do(SocketNotFixed("web", "app", problem))) == []  # until it changes
    sim.at(100.0)  # far past settle_time
    assert sim.state("web") is S.RUNNING  # nginx must be able to use it first
    out = sim.do(SocketFixed("web", "app"))
    assert sim.state("web") is S.READY
    assert logs(out) == ["web: socket app: owner, group and mode fixed", "web: ready"]
    assert looks(sim.at(200.0)) == [] and sim.core.next_deadline() is None


def test_every_state_has_its_one_decision_or_moves_only_by_events() -> None:
    # A state added to ProcessState without a step here would sit still forever.
    assert set(Supervisor._STEPS) == set(S) - {S.EXITED, S.FATAL}


# --- an instance's way up (states.LAUNCHES) and its stop timeout ---------------------
# The loop answers a Spawn after the batch it came in: events may come between.


def test_a_spawn_on_its_way_is_never_sent_twice(tmp_path: Path) -> None:
    core = sim_for(tmp_path, '[process.a]\ncommand = "a"\n').core
    assert spawns(core.handle(Boot(), 0.0)) == ["a"]
    assert core.procs["a"].launch is Launch.SPAWNING
    assert spawns(core.handle(Tick(), 0.5)) == []
    assert spawns(core.handle(SignalReceived(int(signal.SIGUSR1)), 0.6)) == []
    core.handle(Spawned("a", 100), 0.7)
    assert (core.procs["a"].state, core.procs["a"].launch) == (S.RUNNING, Launch.IDLE)


def test_a_process_stopped_while_its_spawn_is_on_its_way_is_sigkilled_when_it_comes(
    tmp_path: Path,
) -> None:
    core = sim_for(tmp_path, '[process.a]\ncommand = "a"\n').core
    core.handle(Boot(), 0.0)
    core.handle(Request(C.STOP, ("a",)), 0.0)
    assert (core.procs["a"].state, core.procs["a"].launch) == (S.STOPPED, Launch.SPAWNING)
    assert core.handle(Spawned("a", 100), 0.1) == [Kill("a", 100, KILL, group=True)]
    assert (core.procs["a"].state, core.procs["a"].pid, core.procs["a"].launch) == (
        S.STOPPED,
        None,
        Launch.IDLE,
    )
    assert spawns(core.handle(Request(C.START, ("a",)), 0.2)) == ["a"]  # a new one


def test_a_process_started_again_while_its_spawn_is_on_its_way_takes_that_spawn(
    tmp_path: Path,
) -> None:
    core = sim_for(tmp_path, '[process.a]\ncommand = "a"\n').core
    core.handle(Boot(), 0.0)
    core.handle(Request(C.STOP, ("a",)), 0.0)
    out = core.handle(Request(C.START, ("a",)), 0.1)
    assert spawns(out) == [] and core.procs["a"].state is S.STARTING  # still on its way
    out = core.handle(Spawned("a", 100), 0.2)
    assert kills(out) == [] and (core.procs["a"].state, core.procs["a"].pid) == (S.RUNNING, 100)
    assert core.snapshot().processes[0].restarts == 0


def test_a_stop_waits_for_a_dependent_whose_spawn_is_on_its_way(tmp_path: Path) -> None:
    toml = '[process.a]\ncommand = "a"\nready = "tcp:127.0.0.1:1"\n'
    toml += '[process.b]\ncommand = "b"\nafter = ["a"]\n'
    core = sim_for(tmp_path, toml).core
    core.handle(Boot(), 0.0)
    core.handle(Spawned("a", 100), 0.0)
    assert spawns(core.handle(Ready("a", 100), 0.0)) == ["b"]
    # a would be stopped under b, which comes up a moment later
    assert kills(core.handle(Request(C.STOP, ("a",)), 0.1)) == []
    assert kills(core.handle(Spawned("b", 101), 0.2)) == [("b", TERM, False)]  # b first
    assert kills(core.handle(Reaped(101, *killed(TERM)), 0.3)) == [("a", TERM, False)]


def test_a_check_passed_by_a_stopped_instance_does_not_make_the_next_one_ready(
    tmp_path: Path,
) -> None:
    sim = sim_for(tmp_path, SOCKET_TOML)
    sim.do(Boot())
    sim.at(100.0)  # settled, its socket still awaited
    assert (sim.state("web"), sim.core.procs["web"].launch) == (S.RUNNING, Launch.CHECKED)
    sim.do(Request(C.STOP, ("web",)))
    assert sim.core.procs["web"].launch is Launch.IDLE  # spent with its instance
    sim.exit("web", killed(TERM))
    sim.do(Request(C.START, ("web",)))
    sim.do(SocketFixed("web", "app"))
    assert sim.state("web") is S.RUNNING  # this instance has not settled yet
    assert logs(sim.at(100.0 + 1.0)) == ["web: ready"]  # settle_time 1 s


def test_a_passed_check_waits_for_both_its_socket_and_its_pidfile(tmp_path: Path) -> None:
    toml = '[process.d]\ncommand = "d"\npidfile = "/run/d.pid"\nsockets = ["app"]\n'
    toml += '[socket.app]\npath = "/run/app/app.sock"\n'
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    launcher = sim.core.procs["d"].launcher_pid
    assert launcher is not None
    sim.do(Reaped(launcher, *exited(0)))
    sim.at(100.0)
    assert logs(sim.do(SocketFixed("d", "app"))) == ["d: socket app: owner, group and mode fixed"]
    assert (sim.state("d"), sim.core.procs["d"].launch) == (S.RUNNING, Launch.CHECKED)
    out = sim.do(PidfileRead("d", 77))
    assert logs(out) == ["d: following pid 77 from /run/d.pid", "d: ready"]
    assert (sim.state("d"), sim.core.procs["d"].launch) == (S.READY, Launch.IDLE)


def test_a_launch_event_outside_the_table_is_illegal() -> None:
    with pytest.raises(IllegalTransition):
        next_launch(Launch.IDLE, LaunchEvent.ANSWER)
    with pytest.raises(IllegalTransition):
        next_launch(Launch.SPAWNING, LaunchEvent.CHECK_PASSED)
    assert set(LAUNCHES.values()) == set(Launch)


def test_a_process_that_outlives_its_sigkill_leaves_no_deadline_past_due(
    tmp_path: Path,
) -> None:
    # Stuck in D state, it is not reaped for a while: the spent stop
    # deadline made the loop wake at once, again and again, meanwhile.
    sim = sim_for(tmp_path, '[process.a]\ncommand = "a"\nstop_timeout = 3\n')
    sim.do(Boot())
    sim.do(SignalReceived(TERM))
    assert kills(sim.at(3.0)) == [("a", KILL, True)]
    assert sim.core.procs["a"].killed and sim.core.next_deadline() is None
    assert kills(sim.at(1000.0)) == []
    out = sim.do(NoChildren())  # not at rest yet: no sweep, no exit
    assert exits(out) == [] and sim.state("a") is S.STOPPING
    out = sim.exit("a", killed(KILL))
    assert out[-1] == Sweep(TERM)
    assert "pidone: unclean stop: a killed after its stop timeout" in logs(sim.do(NoChildren()))


def test_the_first_spawn_after_failed_ones_is_no_restart_the_next_one_is(
    tmp_path: Path,
) -> None:
    toml = '[pidone]\nfatal_after = 100\n[process.a]\ncommand = "a"\n'
    sim = sim_for(tmp_path, toml)
    sim.fail_spawn.add("a")
    sim.do(Boot())
    assert sim.state("a") is S.BACKOFF and sim.core.procs["a"].started_at is None
    sim.fail_spawn.clear()
    sim.at(100.0)
    (status,) = sim.core.snapshot().processes
    assert (status.state, status.restarts) == (S.RUNNING, 0)  # its first start at last
    assert spawns(sim.exit("a", exited(1))) == ["a"]  # at once: the failures at 0 are old
    (status,) = sim.core.snapshot().processes
    assert (status.state, status.restarts_by_reason) == (S.RUNNING, {"crash": 1})


# --- what pidone tells its own service manager (sd_notify) ------------------------


def notifies(actions: list[Action]) -> list[Notify]:
    return [a for a in actions if isinstance(a, Notify)]


def test_ready_is_told_once_after_the_last_process_is_ready_and_stopping_at_shutdown(
    tmp_path: Path,
) -> None:
    sim = sim_for(tmp_path, chain_toml())
    assert notifies(sim.do(Boot())) == [Notify("0 of 3 ready, waiting for a, b, c")]
    told = notifies(sim.ready("a")) + notifies(sim.ready("b"))
    assert [n.ready for n in told] == [False, False]
    assert told[-1].status == "2 of 3 ready, waiting for c"
    assert notifies(sim.ready("c")) == [Notify("3 of 3 ready", ready=True)]
    assert notifies(sim.at(5.0)) == []  # nothing changed: nothing said
    # A crash after READY: a STATUS, never a second READY.
    after_crash = notifies(sim.exit("c", exited(1))) + notifies(sim.ready("c"))
    assert [n.ready for n in after_crash] == [False, False]
    assert after_crash[-1].status == "3 of 3 ready"
    assert notifies(sim.do(SignalReceived(TERM))) == [Notify("stopping", stopping=True)]
    assert notifies(sim.do(SignalReceived(TERM))) == []


def test_a_one_shot_that_completed_counts_as_done_for_ready(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, THREE + 'restart = "never"\nready = "tcp:127.0.0.1:1"\n')
    sim.do(Boot())
    sim.at(1.0)  # a and b settle
    told = notifies(sim.exit("c", exited(0)))
    assert told == [Notify("3 of 3 ready", ready=True)]


def test_a_long_list_of_waiting_processes_is_cut_short(tmp_path: Path) -> None:
    toml = "".join(f'[process.p{i}]\ncommand = "x"\n' for i in range(40))
    sim = sim_for(tmp_path, toml)
    (told,) = notifies(sim.do(Boot()))
    assert told.status == "0 of 40 ready, waiting for p0, p1, p10, p11, p12 and 35 more"


# --- autostart = false -------------------------------------------------------------


MANUAL = """
[process.a]
command = "a"
[process.b]
command = "b"
autostart = false
ready = "tcp:127.0.0.1:2"
[process.c]
command = "c"
after = ["b"]
autostart = false
ready = "tcp:127.0.0.1:3"
"""


def test_an_autostart_false_process_is_stopped_and_not_counted_until_ctl_start(
    tmp_path: Path,
) -> None:
    sim = sim_for(tmp_path, MANUAL)
    out = sim.do(Boot())
    assert spawns(out) == ["a"]
    assert "pidone: starting 1 processes (b, c: autostart = false, not started)" in logs(out)
    sim.at(10)  # a settles
    assert (sim.state("b"), sim.state("c")) == (S.STOPPED, S.STOPPED)
    snap = sim.core.snapshot()
    assert [p.started for p in snap.processes] == [True, False, False]
    assert not_ready(snap) == []  # wait-ready, /readyz and READY=1: everything started is ready
    assert check_ready(snap) == (True, "ready")
    assert sim.core.next_deadline() is None
    assert spawns(sim.do(Request(C.START, ("b",)))) == ["b"]
    assert not_ready(sim.core.snapshot()) == ["b (running)"]  # counted once started
    assert sim.core.procs["b"].restarts_by_reason == {}  # its first start is no restart


def test_ctl_start_of_a_manual_process_starts_what_it_is_after_first(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, MANUAL)
    sim.do(Boot())
    out = sim.do(Request(C.START, ("c",), ticket=7))
    assert spawns(out) == ["b"]
    assert sim.state("c") is S.STARTING
    out = sim.ready("b")
    assert spawns(out) == ["c"]
    out = sim.ready("c")
    assert [r.outcome.ok for r in out if isinstance(r, Reply)] == [True]


def test_ctl_start_also_starts_a_dependency_the_operator_stopped(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, chain_toml())
    sim.do(Boot())
    for n in "abc":
        sim.ready(n)
    sim.do(Request(C.STOP, ("a",)))  # c and b stop first, then a
    sim.exit("c", killed(TERM))
    sim.exit("b", killed(TERM))
    sim.exit("a", killed(TERM))
    assert [sim.state(n) for n in "abc"] == [S.STOPPED, S.STARTING, S.STARTING]  # wait for a
    assert spawns(sim.do(Request(C.START, ("b",)))) == ["a"]  # else b would wait forever
    assert spawns(sim.ready("a")) == ["b"]


def test_a_restart_of_a_never_started_process_starts_it(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, MANUAL)
    sim.do(Boot())
    assert spawns(sim.do(Request(C.RESTART, ("c",)))) == ["b"]
    assert spawns(sim.ready("b")) == ["c"]
    assert sim.core.procs["b"].restarts_by_reason == {}


def test_pidone_stays_up_for_a_manual_process_when_the_others_are_done(tmp_path: Path) -> None:
    toml = '[process.job]\ncommand = "j"\nrestart = "never"\n' + MANUAL.replace("[process.a]", "")
    toml = toml.replace('command = "a"\n', "", 1)
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    out = sim.exit("job", exited(0))
    assert exits(out) == []  # `pidone ctl start b` may still come
    assert sim.state("b") is S.STOPPED
    assert exits(sim.do(SignalReceived(TERM)) + sim.do(NoChildren())) == [0]


# --- touch -------------------------------------------------------------------------

HUP = int(signal.SIGHUP)


def touch_sim(tmp_path: Path, extra: str = "") -> Sim:
    toml = f"""
[process.web]
command = "w"
touch = ["/srv/reload", "/srv/other-reload"]
{extra}
[process.worker]
command = "k"
after = ["web"]
[process.clock]
command = "c"
"""
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    sim.at(10)
    sim.at(20)
    assert {sim.state(n) for n in ("web", "worker", "clock")} == {S.READY}
    return sim


def test_a_touch_restarts_the_process_and_its_dependents_as_ctl_restart(tmp_path: Path) -> None:
    sim = touch_sim(tmp_path)
    old = sim.pid("web")
    out = sim.do(Touched(frozenset({"/srv/reload"})))
    assert "web: touched: restarting" in logs(out)
    assert kills(out) == [("worker", TERM, False)]  # dependents first, as ctl restart
    assert kills(sim.exit("worker", killed(TERM))) == [("web", TERM, False)]
    assert spawns(sim.exit("web", killed(TERM))) == ["web"]
    assert sim.pid("web") != old
    assert sim.core.procs["web"].restarts_by_reason == {"touch": 1}


def test_a_burst_of_1000_touches_is_one_restart_then_one_at_the_windows_end(
    tmp_path: Path,
) -> None:
    sim = touch_sim(tmp_path)
    stops = []
    for i in range(1000):
        sim.now = 30 + i * 0.0005  # half a second of touches
        out = sim.do(Touched(frozenset({"/srv/reload"})))
        for name in ("worker", "web"):  # each stops at once
            if sim.state(name) is S.STOPPING:
                out += sim.exit(name, killed(TERM))
        stops += [k for k in kills(out) if k[0] == "web"]
    assert stops == [("web", TERM, False)]
    assert sim.core.next_deadline() == 30 + TOUCH_WINDOW  # the burst's last touch waits
    sim.at(30 + TOUCH_WINDOW)
    stops += kills(sim.exit("worker", killed(TERM)))
    sim.exit("web", killed(TERM))
    assert stops == [("web", TERM, False), ("web", TERM, False)]
    assert sim.core.procs["web"].restarts_by_reason == {"touch": 2}
    sim.at(40)  # web settles, worker starts
    sim.at(41)  # and settles
    assert sim.core.next_deadline() is None  # nothing pending: an idle pidone sleeps


def test_touch_signal_signals_the_same_pid_instead(tmp_path: Path) -> None:
    sim = touch_sim(tmp_path, 'touch_signal = "HUP"')
    pid = sim.pid("web")
    out = sim.do(Touched(frozenset({"/srv/other-reload"})))
    assert [a for a in out if isinstance(a, Kill)] == [Kill("web", pid, HUP)]
    assert "web: touched: SIGHUP" in logs(out)
    assert spawns(out) == [] and sim.pid("web") == pid


def test_a_touch_of_an_unrelated_file_does_nothing(tmp_path: Path) -> None:
    sim = touch_sim(tmp_path)
    assert sim.do(Touched(frozenset({"/srv/reload.tmp", "/srv/unrelated"}))) == []
    assert sim.core.next_deadline() is None


def test_an_inotify_overflow_counts_as_every_touch_file_touched(tmp_path: Path) -> None:
    sim = touch_sim(tmp_path)
    out = sim.do(Touched(overflow=True))
    assert "web: touched: restarting" in logs(out)
    assert kills(out) == [("worker", TERM, False)]


def test_a_touch_leaves_a_stopped_process_stopped(tmp_path: Path) -> None:
    sim = touch_sim(tmp_path)
    sim.do(Request(C.STOP, ("web",)))
    sim.exit("worker", killed(TERM))
    sim.exit("web", killed(TERM))
    assert sim.do(Touched(frozenset({"/srv/reload"}))) == []
    assert sim.state("web") is S.STOPPED


def test_ready_is_told_without_waiting_for_an_autostart_false_process(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, MANUAL)
    assert notifies(sim.do(Boot())) == [Notify("0 of 1 ready, waiting for a")]
    assert notifies(sim.at(10)) == [Notify("1 of 1 ready", ready=True)]  # b, c not started
    told = notifies(sim.do(Request(C.START, ("b",))))
    assert told == [Notify("1 of 2 ready, waiting for b")]  # counted once started
    assert [n.ready for n in notifies(sim.ready("b"))] == [False]  # READY=1 is said once


# --- adopting a daemon an earlier pidone left running ------------------------------------------

DAEMON = '[process.d]\ncommand = "d"\npidfile = "/run/d.pid"\nstop_timeout = 2\n'


def test_as_pid_1_a_pidfile_process_is_spawned_never_adopted(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, DAEMON)
    out = sim.do(Boot())  # the loop's Boot as PID 1: adopt=False
    assert spawns(out) == ["d"]
    assert not [a for a in out if isinstance(a, Adopt)]


def test_a_daemon_not_adopted_is_spawned_and_why_is_logged(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, DAEMON)
    out = sim.do(Boot(adopt=True))
    assert [a for a in out if isinstance(a, Adopt)] == [Adopt("d", "/run/d.pid")]
    assert spawns(out) == []
    assert sim.state("d") is S.STARTING
    out = sim.do(NotAdopted("d", "pid 7 runs another program than its command's"))
    assert spawns(out) == ["d"]
    assert (
        "d: pidfile /run/d.pid not adopted: pid 7 runs another program than its command's; "
        "starting a new one" in logs(out)
    )
    assert sim.core.procs["d"].launcher_pid is not None  # spawned: followed as ever


def test_an_adopted_daemon_runs_is_signalled_and_its_exit_of_unknown_status_restarts_it(
    tmp_path: Path,
) -> None:
    sim = sim_for(tmp_path, DAEMON.replace("stop_timeout = 2", 'restart = "on-failure"'))
    sim.do(Boot(adopt=True))
    out = sim.do(Adopted("d", 4242))
    assert sim.state("d") is S.RUNNING and sim.pid("d") == 4242
    assert spawns(out) == []
    assert "d: adopted: pid 4242 from /run/d.pid, left running by an earlier pidone" in logs(out)
    assert kills(sim.do(Request(C.SIGNAL, ("d",), signum=int(signal.SIGUSR1)))) == [
        ("d", int(signal.SIGUSR1), False)
    ]
    out = sim.do(AdoptedExited("d", 4242))
    assert "d: exited with status unknown: adopted, pidone is not its parent" in logs(out)
    assert spawns(out) == ["d"]  # on-failure: an unknown status is no success
    last = sim.core.procs["d"].last_exit
    assert last is not None and last.status == UNKNOWN_STATUS
    assert sim.core.procs["d"].adopted is False


def test_an_adopted_daemon_stopped_cleanly_makes_pidone_exit_0(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, DAEMON)
    sim.do(Boot(adopt=True))
    sim.do(Adopted("d", 4242))
    out = sim.do(SignalReceived(TERM))
    assert kills(out) == [("d", TERM, False)]
    assert sim.do(AdoptedExited("d", 999)) == []  # not its pid: nothing
    out = sim.do(AdoptedExited("d", 4242))
    assert "d: stopped (status unknown: adopted, pidone is not its parent)" in logs(out)
    assert out[-1] == Sweep(TERM)
    assert exits(sim.do(NoChildren())) == [0]


# --- failure policy: ready_timeout, per-process backoff, success_exit_codes, on_fatal,
# required ---------------------------------------------------------------------------------


def never_ready(extra: str = "", pidone: str = "") -> str:
    """`a` with a check that never passes in these tests, beside a steady `z`."""
    return (
        f"[pidone]\nbackoff_initial = 0.5\n{pidone}\n"
        '[process.a]\ncommand = "a"\nready = "tcp:127.0.0.1:1"\nready_timeout = 5\n'
        f'stop_timeout = 2\n{extra}\n[process.z]\ncommand = "z"\n'
    )


def test_a_process_never_ready_is_stopped_at_its_ready_timeout_and_backs_off(
    tmp_path: Path,
) -> None:
    sim = sim_for(tmp_path, never_ready())
    sim.do(Boot())
    assert sim.core.next_deadline() == 1.0  # z's settle time first
    sim.at(1.0)
    assert sim.core.next_deadline() == 5.0  # then a's ready_timeout
    assert kills(sim.at(4.99)) == []
    out = sim.at(5.0)
    assert "a: not ready within 5 s: stopping it (a failed start)" in logs(out)
    assert kills(out) == [("a", TERM, False)]
    assert sim.state("a") is S.STOPPING
    out = sim.exit("a", killed(TERM))
    assert "a: stopped (signal SIGTERM): not ready within 5 s" in logs(out)
    assert spawns(out) == ["a"]  # its first failure: restarted at once
    assert sim.core.procs["a"].restarts_by_reason == {"ready_timeout": 1}
    assert sim.core.next_deadline() == 10.0  # the new instance has its own
    sim.at(10.0)
    out = sim.exit("a", killed(TERM))
    assert "a: restarting in 0.5 s" in logs(out)  # the second: backoff
    assert sim.state("a") is S.BACKOFF
    last = sim.core.procs["a"].last_exit
    assert last is not None and (last.status, last.planned, last.success) == (143, True, False)


def test_a_slow_starter_exiting_0_on_its_stop_is_no_success_for_on_failure(
    tmp_path: Path,
) -> None:
    # A program that exits 0 on SIGTERM must not turn its ready timeout
    # into a "completed" one-shot that nothing restarts.
    sim = sim_for(tmp_path, never_ready('restart = "on-failure"'))
    sim.do(Boot())
    sim.at(5.0)
    out = sim.exit("a", exited(0))
    assert spawns(out) == ["a"]
    assert not sim.core.snapshot().processes[0].completed


def test_a_slow_starter_that_ignores_its_stop_signal_is_sigkilled_after_stop_timeout(
    tmp_path: Path,
) -> None:
    sim = sim_for(tmp_path, never_ready())
    sim.do(Boot())
    sim.at(5.0)
    assert sim.core.next_deadline() == 7.0  # stop_timeout = 2
    assert kills(sim.at(7.0)) == [("a", KILL, True)]
    out = sim.exit("a", killed(KILL))
    assert spawns(out) == ["a"]
    assert sim.core.procs["a"].restarts_by_reason == {"ready_timeout": 1}


def test_ready_in_time_clears_the_ready_timeout(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, never_ready())
    sim.do(Boot())
    sim.at(1.0)
    sim.now = 4.0
    sim.ready("a")
    assert sim.core.next_deadline() is None
    assert kills(sim.at(100.0)) == []
    assert sim.state("a") is S.READY


def test_ready_timeouts_in_a_row_make_it_fatal(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, never_ready("fatal_after = 2"))
    sim.do(Boot())
    sim.at(5.0)
    sim.exit("a", killed(TERM))
    sim.at(10.0)
    out = sim.exit("a", killed(TERM))
    assert sim.state("a") is S.FATAL
    assert "a: FATAL: exited 2 times within 60 s; not restarting" in logs(out)
    assert sim.state("z") is S.READY  # on_fatal = "stay": the others go on


def test_a_ctl_stop_during_a_ready_timeout_stop_is_a_stop(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, never_ready())
    sim.do(Boot())
    sim.at(5.0)
    sim.do(Request(C.STOP, ("a",)))
    out = sim.exit("a", killed(TERM))
    assert sim.state("a") is S.STOPPED
    assert spawns(out) == [] and sim.core.procs["a"].failures == []


def test_a_ready_timeout_during_shutdown_is_a_plain_stop(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, never_ready())
    sim.do(Boot())
    sim.at(5.0)
    sim.do(SignalReceived(TERM))
    out = sim.exit("a", killed(TERM))
    assert sim.state("a") is S.STOPPED
    assert "a: stopped (signal SIGTERM)" in logs(out)


def test_a_per_process_failure_policy_overrides_pidones(tmp_path: Path) -> None:
    toml = (
        "[pidone]\nbackoff_initial = 0.5\nfatal_after = 9\n"
        '[process.a]\ncommand = "a"\nbackoff_initial = 2\nbackoff_max = 3\nfatal_after = 4\n'
        'fatal_window = 100\n[process.b]\ncommand = "b"\n'
    )
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    delays = []
    for _ in range(3):
        sim.exit("a", exited(1))
        delays.append(sim.core.procs["a"].backoff_until - sim.now)
        sim.at(sim.core.procs["a"].backoff_until)
    assert delays == [0.0, 2.0, 3.0]  # its own initial, doubled, capped at its own max
    sim.now = 90.0  # within its own fatal_window (100), past [pidone]'s 60
    out = sim.exit("a", exited(1))
    assert "a: FATAL: exited 4 times within 100 s; not restarting" in logs(out)
    sim.exit("b", exited(1))
    sim.exit("b", exited(1))
    assert sim.core.procs["b"].backoff_until - sim.now == 0.5  # [pidone]'s


@pytest.mark.parametrize(
    ("codes", "status", "restarted", "line"),
    [
        ("[0, 3]", exited(3), False, "a: exited with status 3 (a success exit code)"),
        ("[0, 3]", exited(0), False, "a: exited with status 0"),
        ("[0, 3]", exited(4), True, "a: exited with status 4"),
        ("[3]", exited(0), True, "a: exited with status 0 (not a success exit code)"),
        ("[0, 131]", killed(3), True, "a: exited with signal SIGQUIT"),  # a signal never is
    ],
)
def test_success_exit_codes_decide_on_failure(
    tmp_path: Path, codes: str, status: tuple[int, int], restarted: bool, line: str
) -> None:
    toml = (
        f'[process.a]\ncommand = "a"\nrestart = "on-failure"\nsuccess_exit_codes = {codes}\n'
        '[process.z]\ncommand = "z"\n'
    )
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    out = sim.exit("a", status)
    assert spawns(out) == (["a"] if restarted else [])
    said = [a for a in out if isinstance(a, Log) and a.message == line.removeprefix("a: ")]
    assert len(said) == 1 and said[0].error is restarted  # a success goes to stdout


def test_a_one_shot_exiting_with_a_success_code_completes_and_pidone_exits_0(
    tmp_path: Path,
) -> None:
    toml = (
        '[process.migrate]\ncommand = "m"\nrestart = "never"\nsuccess_exit_codes = [0, 3]\n'
        '[process.web]\ncommand = "w"\nafter = ["migrate"]\nrestart = "never"\n'
    )
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    assert spawns(sim.exit("migrate", exited(3))) == ["web"]
    assert [p.completed for p in sim.core.snapshot().processes] == [True, False]
    sim.exit("web", exited(0))
    assert exits(sim.do(NoChildren())) == [0]


def test_a_fatal_process_with_on_fatal_exit_stops_everything_in_order_and_exits_1(
    tmp_path: Path,
) -> None:
    # Its exits were all 0 (restart = "always"): pidone's status is still 1.
    toml = chain_toml().replace(
        'ready = "tcp:127.0.0.1:3"',
        'ready = "tcp:127.0.0.1:3"\n[process.d]\ncommand = "d"\nfatal_after = 2\non_fatal = "exit"',
    )
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    for n in "abc":
        sim.ready(n)
    sim.exit("d", exited(0))
    out = sim.exit("d", exited(0))
    assert sim.state("d") is S.FATAL
    assert 'pidone: d is FATAL (on_fatal = "exit"): stopping everything' in logs(out)
    assert kills(out) == [("c", TERM, False)]  # in reverse order, as any shutdown
    assert kills(sim.exit("c", killed(TERM))) == [("b", TERM, False)]
    assert kills(sim.exit("b", killed(TERM))) == [("a", TERM, False)]
    out = sim.exit("a", killed(TERM))
    assert out[-1] == Sweep(TERM)
    out = sim.do(NoChildren())
    assert exits(out) == [1]
    assert "pidone: unclean stop: d is FATAL" in logs(out)


def test_required_makes_healthz_fail_while_it_is_fatal(tmp_path: Path) -> None:
    from pidone.observe.health import check_required

    toml = (
        '[process.web]\ncommand = "w"\nfatal_after = 1\nrequired = true\n'
        '[process.side]\ncommand = "s"\nfatal_after = 1\n[process.z]\ncommand = "z"\n'
    )
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    sim.exit("side", exited(1))  # FATAL, but not required
    assert check_required(sim.core.snapshot()) == (True, "ok")
    sim.exit("web", exited(1))
    snap = sim.core.snapshot()
    assert {p.name: p.required for p in snap.processes} == {
        "web": True,
        "side": False,
        "z": False,
    }
    assert check_required(snap) == (False, "required process FATAL: web")
    sim.do(Request(C.START, ("web",)))
    assert check_required(sim.core.snapshot()) == (True, "ok")


# --- ctl update: Reconfigure --------------------------------------------------------


def reread(tmp_path: Path, toml: str) -> Config:
    """The configuration as ctl update reads it again (another directory:
    its sources differ, which Config's == ignores)."""
    again = tmp_path / "again"
    again.mkdir(exist_ok=True)
    (again / "pidone.toml").write_text(toml)
    return config.load(None, again / "pidone.toml", None, environ={})


def outcomes(actions: list[Action]) -> list[Outcome]:
    return [a.outcome for a in actions if isinstance(a, Reply)]


def booted_chain(tmp_path: Path, toml: str) -> Sim:
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    for n in sim.core.order:
        if sim.state(n) is S.RUNNING:
            sim.ready(n)
    return sim


def test_an_update_that_changes_nothing_signals_and_spawns_nothing(tmp_path: Path) -> None:
    sim = booted_chain(tmp_path, chain_toml())
    pids = {n: sim.pid(n) for n in "abc"}
    out = sim.do(Reconfigure(reread(tmp_path, chain_toml()), ticket=1))
    assert kills(out, cont=True) == [] and spawns(out) == []
    assert not any(isinstance(a, Reconfigured | CloseSocket | OpenSocket) for a in out)
    (outcome,) = outcomes(out)
    assert outcome.ok and outcome.changes == ("unchanged: a, b, c", "nothing to do")
    assert {n: sim.pid(n) for n in "abc"} == pids


def test_an_added_process_starts_after_what_it_is_after_and_the_reply_waits_for_it(
    tmp_path: Path,
) -> None:
    sim = booted_chain(tmp_path, chain_toml())
    toml = chain_toml() + '\n[process.d]\ncommand = "d"\nafter = ["c"]\nready = "tcp:127.0.0.1:4"\n'
    out = sim.do(Reconfigure(reread(tmp_path, toml), ticket=2))
    assert spawns(out) == ["d"] and kills(out) == []
    assert [a.config.processes["d"].after for a in out if isinstance(a, Reconfigured)] == [("c",)]
    assert outcomes(out) == []
    (outcome,) = outcomes(sim.ready("d"))
    assert outcome.ok and outcome.results == (Result("d", S.READY),)
    assert "added: d" in (outcome.changes or ())
    assert sim.core.order == ["a", "b", "c", "d"]


def test_an_added_process_with_autostart_false_is_not_started(tmp_path: Path) -> None:
    sim = booted_chain(tmp_path, chain_toml())
    toml = chain_toml() + '\n[process.d]\ncommand = "d"\nautostart = false\n'
    out = sim.do(Reconfigure(reread(tmp_path, toml), ticket=2))
    assert spawns(out) == []
    (outcome,) = outcomes(out)
    assert outcome.ok
    assert sim.state("d") is S.STOPPED


def test_removed_processes_stop_dependents_first_and_are_forgotten(tmp_path: Path) -> None:
    sim = booted_chain(tmp_path, chain_toml())
    only_a = '[process.a]\ncommand = "a"\nready = "tcp:127.0.0.1:1"\n'
    out = sim.do(Reconfigure(reread(tmp_path, only_a), ticket=3))
    assert kills(out) == [("c", TERM, False)]  # c is after b: first
    out = sim.exit("c", killed(TERM))
    assert kills(out) == [("b", TERM, False)]
    assert [a for a in out if isinstance(a, Forget)] == [Forget("c")]
    out = sim.exit("b", killed(TERM))
    assert [a for a in out if isinstance(a, Forget)] == [Forget("b")]
    assert [p.name for p in sim.core.snapshot().processes] == ["a"]
    assert sim.state("a") is S.READY
    (outcome,) = outcomes(out)
    assert outcome.ok and {r.name for r in outcome.results or ()} == {"b", "c"}


def test_a_removed_process_is_stopped_with_its_own_stop_signal(tmp_path: Path) -> None:
    toml = THREE.replace('command = "c"', 'command = "c"\nstop_signal = "INT"')
    sim = booted_chain(tmp_path, toml)
    out = sim.do(Reconfigure(reread(tmp_path, toml.split("[process.c]")[0])))
    assert kills(out) == [("c", int(signal.SIGINT), False)]
    out = sim.exit("c", killed(int(signal.SIGINT)))
    assert [a for a in out if isinstance(a, Forget)] == [Forget("c")]


def test_a_changed_command_restarts_it_with_the_new_spec_and_dependents_cycle(
    tmp_path: Path,
) -> None:
    sim = booted_chain(tmp_path, chain_toml())
    toml = chain_toml().replace('command = "b"', 'command = "b2"')
    out = sim.do(Reconfigure(reread(tmp_path, toml), ticket=4))
    assert kills(out) == [("c", TERM, False)]  # restart_dependents, as ctl restart
    assert sim.core.procs["b"].spec.command.argv == ("b",)  # its instance runs the old one
    assert kills(sim.exit("c", killed(TERM))) == [("b", TERM, False)]
    out = sim.exit("b", killed(TERM))
    assert spawns(out) == ["b"]
    assert sim.core.procs["b"].spec.command.argv == ("b2",)
    out = sim.ready("b")
    assert spawns(out) == ["c"]
    (outcome,) = outcomes(out)
    assert outcome.ok and outcome.results == (Result("b", S.READY),)
    assert sim.state("a") is S.READY  # untouched


def test_the_reply_to_an_update_waits_for_the_new_instance(tmp_path: Path) -> None:
    sim = booted_chain(tmp_path, THREE)
    toml = THREE.replace('command = "b"', 'command = "b2"')
    out = sim.do(Reconfigure(reread(tmp_path, toml), ticket=5))
    assert kills(out) == [("b", TERM, False)] and outcomes(out) == []
    assert outcomes(sim.exit("b", killed(TERM))) == []  # the new one is not ready yet
    (outcome,) = outcomes(sim.at(sim.now + 1.5))  # settled
    assert outcome.ok and outcome.results == (Result("b", S.READY),)
    assert outcome.changes is not None and "changed: b: command (restarted)" in outcome.changes


def test_an_in_place_change_sends_no_signal_and_the_next_stop_uses_it(tmp_path: Path) -> None:
    sim = booted_chain(tmp_path, THREE)
    pid = sim.pid("b")
    toml = THREE.replace('command = "b"', 'command = "b"\nstop_timeout = 2\nstop_signal = "INT"')
    out = sim.do(Reconfigure(reread(tmp_path, toml), ticket=6))
    assert kills(out, cont=True) == [] and spawns(out) == []
    (outcome,) = outcomes(out)
    assert outcome.ok and "changed: b: stop_signal, stop_timeout (applied in place)" in (
        outcome.changes or ()
    )
    assert sim.pid("b") == pid
    out = sim.do(Request(C.STOP, ("b",)))
    assert kills(out) == [("b", int(signal.SIGINT), False)]
    assert kills(sim.at(sim.now + 2.0)) == [("b", KILL, True)]  # the new stop_timeout


def test_an_update_of_named_processes_leaves_the_others_as_they_run(tmp_path: Path) -> None:
    sim = booted_chain(tmp_path, THREE)
    toml = THREE.replace('"a"', '"a2"').replace('"b"', '"b2"') + '[process.d]\ncommand = "d"\n'
    out = sim.do(Reconfigure(reread(tmp_path, toml), names=("b",)))
    assert kills(out) == [("b", TERM, False)]
    assert sim.core.procs["a"].spec.command.argv == ("a",)
    assert "d" not in sim.core.procs


def test_an_update_naming_an_unknown_process_is_refused_listing_the_known_ones(
    tmp_path: Path,
) -> None:
    sim = booted_chain(tmp_path, THREE)
    out = sim.do(Reconfigure(reread(tmp_path, THREE), names=("nope",), ticket=7))
    (outcome,) = outcomes(out)
    assert not outcome.ok
    assert outcome.error == "update: no such process: nope (known: a, b, c)"
    assert kills(out) == [] and spawns(out) == []


def test_an_update_that_would_leave_a_process_after_nothing_is_refused(tmp_path: Path) -> None:
    sim = booted_chain(tmp_path, chain_toml())
    only_a = '[process.a]\ncommand = "a"\nready = "tcp:127.0.0.1:1"\n'
    out = sim.do(Reconfigure(reread(tmp_path, only_a), names=("b",), ticket=8))
    (outcome,) = outcomes(out)
    assert outcome.error is not None and "c is after b" in outcome.error
    assert kills(out) == []


def test_an_update_during_the_shutdown_is_refused(tmp_path: Path) -> None:
    sim = booted_chain(tmp_path, THREE)
    sim.do(SignalReceived(TERM))
    out = sim.do(Reconfigure(reread(tmp_path, THREE + '[process.d]\ncommand = "d"\n'), ticket=9))
    assert outcomes(out) == [Outcome(False, "pidone is shutting down: update refused")]
    assert spawns(out) == [] and "d" not in sim.core.procs


def test_a_changed_socket_is_reopened_and_restarts_its_user(tmp_path: Path) -> None:
    sock = f'[socket.app]\npath = "{tmp_path}/s/app.sock"\nlisten = true\n'
    toml = sock + '[process.web]\ncommand = "w"\nsockets = ["app"]\n[process.x]\ncommand = "x"\n'
    sim = booted_chain(tmp_path, toml)
    out = sim.do(
        Reconfigure(reread(tmp_path, toml.replace("listen = true", "listen = true\nmode = 0o600")))
    )
    shape = [
        type(a).__name__ for a in out if isinstance(a, CloseSocket | Reconfigured | OpenSocket)
    ]
    assert shape == ["CloseSocket", "Reconfigured", "OpenSocket"]
    assert kills(out) == [("web", TERM, False)]


def test_an_added_process_is_spawned_after_the_loop_has_its_new_config(tmp_path: Path) -> None:
    sim = booted_chain(tmp_path, THREE)
    out = sim.do(Reconfigure(reread(tmp_path, THREE + '[process.d]\ncommand = "d"\n')))
    order = [type(a).__name__ for a in out if isinstance(a, Reconfigured | Spawn)]
    assert order == ["Reconfigured", "Spawn"]


def test_a_process_added_back_while_its_removal_still_stops_it_is_not_lost(
    tmp_path: Path,
) -> None:
    toml = THREE.replace('command = "c"', 'command = "c"\nstop_timeout = 30')
    sim = booted_chain(tmp_path, toml)
    old = sim.pid("c")
    out = sim.do(Reconfigure(reread(tmp_path, toml.split("[process.c]")[0])))
    assert kills(out) == [("c", TERM, False)]
    back = toml.replace('command = "c"', 'command = "c2"')
    out = sim.do(Reconfigure(reread(tmp_path, back), ticket=11))
    assert spawns(out) == [] and sim.pid("c") == old  # the old instance is still supervised
    out = sim.exit("c", killed(TERM))
    assert spawns(out) == ["c"] and not [a for a in out if isinstance(a, Forget)]
    assert sim.core.procs["c"].spec.command.argv == ("c2",)
    (outcome,) = outcomes(sim.at(sim.now + 1.5))
    assert outcome.ok and outcome.results == (Result("c", S.READY),)
    assert sim.core.procs["c"].restarts_by_reason == {"manual": 1}


def test_an_update_rebuilds_the_same_dependency_tables_as_the_boot() -> None:
    sim = fixture_sim("diamond")
    booted = (sim.core.order, sim.core.dependents, sim.core.all_dependents)
    sim.core._take_config(sim.core.config)
    assert (sim.core.order, sim.core.dependents, sim.core.all_dependents) == booted
