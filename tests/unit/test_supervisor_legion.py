"""The supervisor with a legion: legion processes run only on the lord, are
down before the lease can expire, and the lease is released after them."""

from __future__ import annotations

from pathlib import Path

from pidone.core import legion
from pidone.core.legion import Kind
from pidone.core.requests import Command as C
from pidone.core.snapshot import not_ready
from pidone.core.states import ProcessState as S
from pidone.core.supervisor import (
    Action,
    Boot,
    LegionAnswered,
    LegionRequest,
    Reaped,
    Reply,
    Request,
    SignalReceived,
)
from tests.unit.test_supervisor import KILL, TERM, Sim, exited, killed, kills, logs, sim_for, spawns

# ttl 9: renew every 3 s, margin 0.5 s; beat's stop_timeout 2: it must stop
# at sent + 6.5 and be down at sent + 8.5.
TOML = """
[legion.beat]
redis = "redis://127.0.0.1:1/0"
ttl = 9
[process.web]
command = "web"
[process.beat]
command = "beat"
legion = "beat"
stop_timeout = 2
after = ["web"]
"""


def requests(actions: list[Action]) -> list[LegionRequest]:
    return [a for a in actions if isinstance(a, LegionRequest)]


def answer(sim: Sim, out: list[Action], **reply: object) -> list[Action]:
    (req,) = requests(out)
    return sim.do(LegionAnswered("beat", legion.Reply(req.send.id, **reply)))  # type: ignore[arg-type]


def booted(tmp_path: Path) -> tuple[Sim, list[Action]]:
    sim = sim_for(tmp_path, TOML)
    out = sim.do(Boot())
    assert spawns(out) == ["web"]
    (req,) = requests(out)
    assert req.send.kind is Kind.ACQUIRE
    return sim, out


def lord(tmp_path: Path) -> Sim:
    sim, out = booted(tmp_path)
    sim.at(1.0)  # web settled: ready
    out = answer(sim, out, held=True, holder="me")
    assert spawns(out) == ["beat"]
    assert "pidone: legion beat: lord (lease acquired): starting beat" in logs(out)
    return sim


def test_the_lord_runs_its_legion_process_after_its_deps(tmp_path: Path) -> None:
    sim = lord(tmp_path)
    assert sim.state("beat") is S.RUNNING
    assert sim.core.snapshot().legions[0].lord


def test_a_standby_does_not_run_it_and_counts_as_ready(tmp_path: Path) -> None:
    sim, out = booted(tmp_path)
    out = answer(sim, out, holder="replica-2")
    assert spawns(out) == []
    assert "pidone: legion beat: standby: legion beat is held by replica-2" in logs(out)
    sim.at(1.0)
    snap = sim.core.snapshot()
    (beat,) = [p for p in snap.processes if p.name == "beat"]
    assert beat.state is S.STOPPED and beat.standby == "standby: legion beat is held by replica-2"
    assert not_ready(snap) == []  # /readyz, wait-ready
    assert sim.core.told_ready  # READY=1 went out


def test_the_standby_log_line_is_said_once(tmp_path: Path) -> None:
    sim, out = booted(tmp_path)
    out = answer(sim, out, holder="replica-2")
    said = 0
    for tenth in range(5, 50, 5):
        out = sim.at(tenth / 10)
        said += sum("standby" in line for line in logs(out))
        if requests(out):
            answer(sim, out, holder="replica-2")
    assert said == 0


def test_redis_unreachable_nobody_runs_it_and_the_log_says_why(tmp_path: Path) -> None:
    sim, out = booted(tmp_path)
    out = answer(sim, out, error="connection refused")
    assert "pidone: legion beat: no lord: redis unreachable (connection refused)" in logs(out)
    sim.at(5.0)
    assert sim.state("beat") is S.STOPPED and "beat" not in sim.spawned


def test_renew_failures_stop_it_in_time_and_sigkill_at_the_deadline(tmp_path: Path) -> None:
    sim = lord(tmp_path)  # acquired by the request sent at 0: lease to 9, down by 8.5
    beat = sim.pid("beat")
    now, stopped_at, killed_at = 1.0, None, None
    while now < 9.0:
        now = round(now + 0.25, 2)
        out = sim.at(now)
        if ("beat", TERM, False) in kills(out):
            stopped_at = now
        if ("beat", KILL, True) in kills(out):
            killed_at = now
        for req in requests(out):
            sim.do(LegionAnswered("beat", legion.Reply(req.send.id, error="timed out")))
    assert stopped_at == 6.5  # 9 - 0.5 - stop_timeout 2
    assert killed_at == 8.5  # it ignored SIGTERM: SIGKILL at must-stop-by, not later
    assert sim.core.procs["beat"].pid == beat  # until it is reaped
    sim.do(Reaped(beat, *killed(KILL)))
    assert sim.state("beat") is S.STOPPED


def test_a_lord_told_another_holds_it_stops_it(tmp_path: Path) -> None:
    sim = lord(tmp_path)
    out = sim.at(3.0)
    out = answer(sim, out, holder="replica-2")
    assert ("beat", TERM, False) in kills(out)
    assert "pidone: legion beat: lease lost (held by replica-2): beat stopped" in logs(out)
    assert sim.core.procs["beat"].stop_deadline == 2.0 + 3.0  # now + stop_timeout <= 8.5


def test_shutdown_releases_the_lease_after_the_legion_process_is_down(tmp_path: Path) -> None:
    sim = lord(tmp_path)
    out = sim.do(SignalReceived(TERM))
    assert ("beat", TERM, False) in kills(out) and requests(out) == []
    out = sim.exit("beat", exited(0))
    (req,) = requests(out)
    assert req.send.kind is Kind.RELEASE
    out = sim.do(LegionAnswered("beat", legion.Reply(req.send.id, held=True)))
    assert "pidone: legion beat: lease released" in logs(out)
    assert sim.core.snapshot().legions[0].changes == {"acquired": 1, "lost": 0, "released": 1}


def test_ctl_stop_of_a_legion_process_keeps_it_down_on_the_lord(tmp_path: Path) -> None:
    sim = lord(tmp_path)
    sim.do(Request(C.STOP, ("beat",)))
    sim.exit("beat", exited(0))
    out = sim.at(3.0)
    out = answer(sim, out, held=True)
    assert spawns(out) == [] and sim.state("beat") is S.STOPPED


def test_takeover_after_the_lord_died_starts_it(tmp_path: Path) -> None:
    sim, out = booted(tmp_path)
    sim.at(1.0)
    out = answer(sim, out, holder="replica-2")
    out = sim.at(1.5)
    out = answer(sim, out, held=True, holder="me")
    assert spawns(out) == ["beat"]


def test_ctl_start_and_restart_of_a_standby_process_answer_at_once(tmp_path: Path) -> None:
    sim, out = booted(tmp_path)
    answer(sim, out, holder="replica-2")
    for command in (C.START, C.RESTART):
        out = sim.do(Request(command, ("beat",), ticket=7))
        (reply,) = [a for a in out if isinstance(a, Reply)]
        assert reply.outcome.ok and reply.outcome.results is not None
        assert [(r.name, r.state) for r in reply.outcome.results] == [("beat", S.STOPPED)]
