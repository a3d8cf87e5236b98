"""`pidone ctl reexec`'s handover of the core (core/handover.py), without
fork: the state of a supervisor that ran through a history comes back equal,
every _Proc field has a decision, and a hostile handover is refused field by
field, never with a crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pidone.config.specs import Config
from pidone.core import handover, legion
from pidone.core.legion import Kind
from pidone.core.requests import Command
from pidone.core.states import Goal, Launch, Phase
from pidone.core.states import ProcessState as S
from pidone.core.supervisor import (
    Boot,
    LegionAnswered,
    Reaped,
    Request,
    SignalReceived,
    StartLiveness,
    StartProbe,
    Supervisor,
    Tick,
    _Proc,
)
from pidone.runtime import reexec
from tests.unit.test_supervisor import KILL, TERM, Sim, kills, logs, sim_for, spawns

TOML = """
[process.web]
command = "web"
ready = "tcp:127.0.0.1:1"
[process.worker]
command = "worker"
after = ["web"]
[process.job]
command = "job"
restart = "never"
"""


def history(tmp_path: Path) -> Sim:
    """web READY and restarted once by a crash, worker RUNNING, job exited."""
    sim = sim_for(tmp_path, TOML)
    sim.do(Boot())
    sim.ready("web")
    sim.at(5.0)
    sim.exit("job", (3, 0))
    sim.exit("web", (128 + 9, 9))
    sim.exit("worker", (128 + 15, 15))  # its dependent went down first
    sim.at(6.0)
    sim.ready("web")
    sim.at(20.0)
    assert (sim.state("web"), sim.state("worker"), sim.state("job")) == (S.READY, S.READY, S.EXITED)
    return sim


def state_of(core: Supervisor) -> dict[str, Any]:
    procs = {n: {k: getattr(p, k) for k in handover.PROC_FIELDS} for n, p in core.procs.items()}
    return {"procs": procs, "core": {k: getattr(core, k) for k in handover.CORE_FIELDS}}


def test_a_handover_round_trip_gives_the_same_state(tmp_path: Path) -> None:
    sim = history(tmp_path)
    core = sim.core
    assert core.procs["web"].restarts_by_reason == {"crash": 1}
    assert core.procs["job"].exits_by_status == {3: 1}
    data = json.loads(json.dumps(core.handover(), allow_nan=False))  # through JSON, as for real
    again, problems = handover.resume(core.config, data, 21.0)
    assert problems == []
    assert state_of(again) == state_of(core)
    assert again.snapshot() == core.snapshot()


def test_every_proc_field_has_a_handover_decision() -> None:
    """A new _Proc field fails here until PROC_FIELDS or NOT_HANDED_OVER has it."""
    decided = set(handover.PROC_FIELDS) | set(handover.NOT_HANDED_OVER)
    assert decided == handover.proc_field_names(_Proc)
    assert not set(handover.PROC_FIELDS) & set(handover.NOT_HANDED_OVER)


def test_every_core_field_has_a_handover_decision() -> None:
    from pidone.core.supervisor import _CORE_STATE, _NOTIFY_STATE

    decided = set(handover.CORE_FIELDS) | set(handover.CORE_NOT_HANDED_OVER)
    assert decided == set(_CORE_STATE) | set(_NOTIFY_STATE)


def test_the_resumed_core_restarts_checks_but_spawns_nothing(tmp_path: Path) -> None:
    toml = TOML.replace('command = "worker"', 'command = "worker"\nalive = "tcp:127.0.0.1:9"')
    sim = sim_for(tmp_path, toml)
    sim.do(Boot())
    sim.ready("web")
    sim.ready("worker")
    core, problems = handover.resume(sim.core.config, sim.core.handover(), 1.0)
    assert problems == []
    assert core.resumed() == [StartLiveness("worker", sim.pid("worker"))]
    sim2 = sim_for(tmp_path, TOML)
    sim2.do(Boot())  # web RUNNING, its check under way
    core2, _ = handover.resume(sim2.core.config, sim2.core.handover(), 1.0)
    assert core2.resumed() == [StartProbe("web", sim2.pid("web"))]
    assert core2.handle(Reaped(sim2.pid("web"), 1), 2.0)  # its exit is seen as before
    assert core2.procs["web"].state is S.BACKOFF or core2.procs["web"].state is S.STARTING


def test_a_reexec_while_shutting_down_is_refused(tmp_path: Path) -> None:
    sim = history(tmp_path)
    assert sim.core.reexec_refusal() is None
    sim.do(Request(Command.SHUTDOWN))
    assert sim.core.reexec_refusal() == "pidone is shutting down: nothing to re-execute"


def _hostile(tmp_path: Path, name: str, key: str, value: Any) -> tuple[Supervisor, list[str]]:
    sim = history(tmp_path)
    data = json.loads(json.dumps(sim.core.handover()))
    data["processes"][name][key] = value
    return handover.resume(sim.core.config, data, 21.0)


@pytest.mark.parametrize("pid", [0, 1, -1, -100, 2**40, "42", 4.5, True, [7]])
def test_a_handed_over_pid_that_is_init_or_negative_or_huge_is_refused(
    tmp_path: Path, pid: Any
) -> None:
    core, problems = _hostile(tmp_path, "web", "pid", pid)
    assert problems[0].startswith("web: pid must be an integer from 2 to 4194304")
    assert "web: its state is refused: it starts as new" in problems
    web = core.procs["web"]
    assert (web.state, web.pid, web.restarts_by_reason) == (S.STOPPED, None, {})
    assert core.procs["worker"].pid is not None  # the others resumed


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("restarts_by_reason", {"crash": -1}, "must be an integer from 0"),
        ("restarts_by_reason", {"bogus": 1}, "must be one of crash"),
        ("restarts_by_reason", {"crash": 1e400}, "must be an integer"),
        ("exits_by_status", {"x": 1}, "keys must be exit statuses"),
        ("exits_by_status", {"999": 1}, "must be an integer from -1 to 255"),
        ("failures", [float("nan")], "must be a finite time"),
        ("failures", list(range(20_000)), "must be a list of at most 10000"),
        ("started_at", "yesterday", "must be a number of seconds"),
        ("started_at", 1e300, "must be a finite time"),
        ("last_exit", {"status": 0}, "has no 'signal'"),
        ("last_exit", [], "must be an object or null"),
        ("socket_problems", {"a": "x" * 10_000}, "must be a string of at most 4096"),
        ("touch_pending", 1, "must be true or false"),
        ("awaiting_sockets", {"nosuch": 1.0}, "names no socket of it"),
    ],
)
def test_a_hostile_handed_over_counter_is_refused_field_by_field(
    tmp_path: Path, key: str, value: Any, why: str
) -> None:
    core, problems = _hostile(tmp_path, "web", key, value)
    assert len(problems) == 1 and problems[0].startswith(f"web: {key}") and why in problems[0]
    web = core.procs["web"]
    assert web.state is S.READY and web.pid is not None  # the rest of web resumed
    assert getattr(web, key) == getattr(_Proc(web.spec), key)  # the refused field: its default


@pytest.mark.parametrize("state", ["zombie", None, 3])
def test_a_handed_over_unknown_state_makes_the_process_start_over(
    tmp_path: Path, state: Any
) -> None:
    core, problems = _hostile(tmp_path, "web", "state", state)
    assert problems[-1] == "web: its state is refused: it starts as new"
    assert core.procs["web"].state is S.STOPPED and core.procs["web"].goal is Goal.UP


def test_a_handed_over_spawn_on_its_way_is_refused(tmp_path: Path) -> None:
    core, problems = _hostile(tmp_path, "web", "launch", "spawning")
    assert problems == ["web: a spawn on its way", "web: its state is refused: it starts as new"]
    assert core.procs["web"].launch is Launch.IDLE


def test_a_handed_over_ready_state_without_a_pid_is_refused(tmp_path: Path) -> None:
    core, problems = _hostile(tmp_path, "web", "pid", None)
    assert problems == ["web: ready without a pid", "web: its state is refused: it starts as new"]
    assert core.procs["web"].state is S.STOPPED


def test_two_handed_over_processes_claiming_one_pid_are_refused(tmp_path: Path) -> None:
    sim = history(tmp_path)
    data = json.loads(json.dumps(sim.core.handover()))
    data["processes"]["worker"]["pid"] = data["processes"]["web"]["pid"]
    core, problems = handover.resume(sim.core.config, data, 21.0)
    assert problems == [f"worker: pid {sim.pid('web')} is web's: it starts as new"]
    assert core.procs["web"].pid == sim.pid("web")
    assert core.procs["worker"].state is S.STOPPED


@pytest.mark.parametrize(
    "data",
    [None, [], "x", {}, {"format": 2}, {"format": 1}, {"format": 1, "processes": [], "core": {}}],
)
def test_a_handover_of_another_format_is_refused_whole(tmp_path: Path, data: Any) -> None:
    sim = history(tmp_path)
    with pytest.raises(handover.Refused):
        handover.resume(sim.core.config, data, 21.0)


def test_a_handover_naming_unknown_processes_ignores_them(tmp_path: Path) -> None:
    sim = history(tmp_path)
    data = sim.core.handover()
    assert isinstance(data["processes"], dict)
    data["processes"]["intruder"] = {"pid": 2}
    del data["processes"]["job"]
    core, problems = handover.resume(sim.core.config, data, 21.0)
    assert problems == [
        "'intruder': no such process in the configuration: ignored",
        "job: not handed over: it starts as new",
    ]
    assert "intruder" not in core.procs


def test_a_handed_over_phase_of_a_shutdown_is_refused(tmp_path: Path) -> None:
    sim = history(tmp_path)
    data = sim.core.handover()
    core_data = data["core"]
    assert isinstance(core_data, dict)
    core_data["phase"] = Phase.SWEEP_KILL.value
    core, problems = handover.resume(sim.core.config, data, 21.0)
    assert problems == ["pidone's phase sweep_kill: only up or draining is resumed"]
    assert core.phase is Phase.UP


# --- the loop's part: the fds a handover names (runtime/reexec.parse) --------------

FDS_TOML = """
[socket.app]
path = "/tmp/pidone-test-app.sock"
listen = true
[process.web]
command = "web"
sockets = ["app"]
"""


def _fds_handover(tmp_path: Path, **fds: Any) -> tuple[Config, bytes]:
    sim = sim_for(tmp_path, FDS_TOML)
    given = {
        "control": 3,
        "metrics": None,
        "listening": {"app": 4},
        "socket_dirs": {"app": 5},
        "pipes": {"web": {"stdout": [6, 7], "stderr": [8, 9]}},
        "notify": {},
        "adopted": {},
        **fds,
    }
    data = {"format": 1, "version": "0.1.0", "pid": 1, "core": sim.core.handover(), "fds": given}
    return sim.core.config, json.dumps(data).encode()


def test_the_fds_of_a_handover_are_read_by_role(tmp_path: Path) -> None:
    config, raw = _fds_handover(tmp_path)
    taken = reexec.parse(config, raw)
    assert (taken.fds.control, taken.fds.listening, taken.fds.socket_dirs) == (
        3,
        {"app": 4},
        {"app": 5},
    )
    assert taken.fds.pipes == {"web": {"stdout": (6, 7), "stderr": (8, 9)}}
    assert (taken.version, taken.pid) == ("0.1.0", 1)


@pytest.mark.parametrize(
    ("fds", "why"),
    [
        ({"control": 0}, "fds: control: 0 is no fd number from 3"),
        ({"control": 2}, "fds: control: 2 is no fd number from 3"),
        ({"control": -5}, "fds: control: -5 is no fd number from 3"),
        ({"control": True}, "fds: control: True is no fd number from 3"),
        ({"listening": {"app": 3}}, "fds: one fd is named twice"),
        ({"listening": {"intruder": 40}}, "fds: listening of intruder: not in the configuration"),
        ({"pipes": {"web": {"stdin": [6, 7]}}}, "fds: pipes of web: 'stdin' is no [read, write]"),
        ({"pipes": {"ghost": {}}}, "fds: pipes of 'ghost': no such process"),
        ({"adopted": {"web": [1, 12]}}, "fds: adopted web: pid must be an integer from 2"),
        ({"notify": []}, 'fds: "notify" must be an object'),
    ],
)
def test_a_handover_naming_hostile_fds_is_refused(tmp_path: Path, fds: Any, why: str) -> None:
    config, raw = _fds_handover(tmp_path, **fds)
    with pytest.raises(handover.Refused) as refused:
        reexec.parse(config, raw)
    assert str(refused.value).startswith(why)


def test_a_handover_that_is_not_json_is_refused(tmp_path: Path) -> None:
    config, _ = _fds_handover(tmp_path)
    with pytest.raises(handover.Refused, match=r"^not JSON"):
        reexec.parse(config, b"\xff{")


def test_a_lord_may_reexec_but_not_once_its_release_may_be_under_way(tmp_path: Path) -> None:
    import signal

    from tests.unit.test_supervisor_legion import lord

    sim = lord(tmp_path)
    assert sim.core.reexec_refusal() is None
    sim.do(SignalReceived(signal.SIGTERM))  # beat stopping, then the lease released
    assert sim.core.reexec_refusal() == "pidone is shutting down: nothing to re-execute"


# --- legions: the lease handed over (test_supervisor_legion's beat: ttl 9, margin 0.5,
# stop_timeout 2; the lord's ACQUIRE went at 0, so its lease is ours until 9) -------

TOKEN = "0123456789abcdef0123456789abcdef replica-1"


def lord_renewing(tmp_path: Path) -> Sim:
    """The lord at 3.0, its RENEW (id 2) in flight: the exec comes now."""
    from tests.unit.test_supervisor_legion import lord, requests

    sim = lord(tmp_path)
    (renew,) = requests(sim.at(3.0))
    assert (renew.send.kind, renew.send.id) == (Kind.RENEW, 2)
    return sim


def resumed_legion(
    sim: Sim, now: float = 3.5, token: Any = TOKEN, **beat: Any
) -> tuple[Sim, str | None, list[str]]:
    """The handover through JSON, the lease of beat edited (a value None: taken
    out), resumed at `now` as runtime/reexec's take() does."""
    data = json.loads(json.dumps({"core": sim.core.handover(), "legion_token": token}))
    lease = data["core"]["legions"]["beat"]
    for key, value in beat.items():
        if value is None:
            del lease[key]
        else:
            lease[key] = value
    core, kept, problems = reexec.resume_core(sim.core.config, data, now)
    again = Sim(core)
    again.now = now
    return again, kept, problems


def test_every_lease_field_has_a_handover_decision() -> None:
    """A new Lease field fails here until LEASE_FIELDS or LEASE_NOT_HANDED_OVER has it."""
    decided = set(handover.LEASE_FIELDS) | set(handover.LEASE_NOT_HANDED_OVER)
    assert decided == handover.proc_field_names(legion.Lease)
    assert not set(handover.LEASE_FIELDS) & set(handover.LEASE_NOT_HANDED_OVER)


def test_a_lord_handed_over_renews_at_once_and_its_process_is_untouched(tmp_path: Path) -> None:
    from tests.unit.test_supervisor_legion import requests

    sim = lord_renewing(tmp_path)
    beat = sim.pid("beat")
    again, kept, problems = resumed_legion(sim)
    assert (problems, kept) == ([], TOKEN)
    lease = again.core.leases["beat"]
    assert (lease.lord, lease.expires, lease.pending, lease.next_at) == (True, 9.0, None, 3.5)
    out = again.do(Tick())
    (renew,) = requests(out)  # asked again at once, measured by the new pidone
    assert (renew.send.kind, renew.send.id, renew.send.sent) == (Kind.RENEW, 3, 3.5)
    assert kills(out) == [] and spawns(out) == [] and logs(out) == []
    assert (again.state("beat"), again.pid("beat")) == (S.READY, beat)
    # The old pidone's RENEW answered late: dropped, it extends nothing.
    again.do(LegionAnswered("beat", legion.Reply(2, held=True, holder="replica-1")))
    assert again.core.leases["beat"].expires == 9.0
    again.do(LegionAnswered("beat", legion.Reply(3, held=True, holder="replica-1")))
    assert again.core.leases["beat"].expires == 3.5 + 9
    (status,) = again.core.snapshot().legions
    assert (status.lord, status.changes) == (True, {"acquired": 1, "lost": 0, "released": 0})


def test_a_standby_handed_over_stays_standby_and_asks_at_once(tmp_path: Path) -> None:
    from tests.unit.test_supervisor_legion import answer, booted, requests

    sim, out = booted(tmp_path)
    answer(sim, out, holder="replica-2")
    sim.now = 0.2  # its next ask (at 0.5) not yet due
    again, _, problems = resumed_legion(sim, now=0.2)
    assert problems == []
    (look,) = requests(again.do(Tick()))
    assert (look.send.kind, look.send.sent) == (Kind.LOOK, 0.2)  # seen held: look, not take
    assert again.state("beat") is S.STOPPED and "beat" not in again.spawned
    (status,) = again.core.snapshot().legions
    assert (status.lord, status.holder) == (False, "replica-2")
    assert again.core.legion_told == sim.core.legion_told  # "standby ..." not said twice


@pytest.mark.parametrize(
    ("beat", "why"),
    [
        ({"expires": 1e9}, "legion beat: expires 1e+09 s from now, past the ttl (9 s): refused"),
        ({"expires": float("nan")}, "legion beat: expires must be a finite time within 1e+12 s"),
        ({"expires": float("inf")}, "legion beat: expires must be a finite time within 1e+12 s"),
        ({"expires": "9"}, "legion beat: expires must be a number of seconds, not '9'"),
        ({"expires": None}, "legion beat: a lord without a valid expires: not lord"),
        ({"expires": 0}, "legion beat: a lord without a valid expires: not lord"),
    ],
    ids=["far-future", "nan", "inf", "text", "missing", "zero"],
)
def test_a_lord_handed_over_with_a_hostile_expires_is_not_lord_and_its_process_is_killed(
    tmp_path: Path, beat: dict[str, Any], why: str
) -> None:
    """Lord only until the end the old pidone measured: unknown, it may have
    ended, so what runs under it is down at once (SIGKILL at now - margin)."""
    from tests.unit.test_supervisor_legion import requests

    sim = lord_renewing(tmp_path)
    pid = sim.pid("beat")
    again, _, problems = resumed_legion(sim, **beat)
    assert problems[0].startswith(why)
    lease = again.core.leases["beat"]
    assert (lease.lord, lease.expires) == (False, 3.5)
    out = again.do(Tick())
    assert kills(out) == [("beat", TERM, False), ("beat", KILL, True)]  # its deadline: 3.0
    (ask,) = requests(out)
    assert ask.send.kind is Kind.ACQUIRE  # ours still in redis? "already ours": held again
    again.do(Reaped(pid, 128 + KILL, KILL))
    assert again.state("beat") is S.STOPPED
    (status,) = again.core.snapshot().legions
    assert status.changes == {"acquired": 1, "lost": 1, "released": 0}


def test_a_legion_token_handed_over_that_is_not_a_token_means_no_lease_is_ours(
    tmp_path: Path,
) -> None:
    sim = lord_renewing(tmp_path)
    for token in [None, 7, "x" * 32, TOKEN.upper(), TOKEN + "\n", TOKEN + "x" * 100, TOKEN[:33]]:
        again, kept, problems = resumed_legion(sim, token=token)
        assert kept is None, token
        assert problems[0].startswith("legion_token ") and problems[0].endswith(
            "a new one, and no lease is taken as ours"
        )
        assert problems[1] == "legion beat: lord under the token refused: not lord"
        lease = again.core.leases["beat"]
        assert (lease.lord, lease.expires) == (False, 9.0)  # as a loss: down by 8.5
        assert kills(again.do(Tick())) == [("beat", TERM, False)]
        assert again.core.procs["beat"].stop_deadline == 3.5 + 2


def test_the_token_shape_accepts_what_make_token_makes() -> None:
    from pidone.system import redis

    assert redis.is_token(redis.make_token()) and redis.is_token(TOKEN)
    assert redis.is_token("a" * 32 + " " + "h" * redis.MAX_HOLDER + "...")  # a long hostname


@pytest.mark.parametrize("key", ["releasing", "done"])
def test_a_lease_handed_over_as_releasing_or_done_is_refused(tmp_path: Path, key: str) -> None:
    """A reexec is refused during the shutdown: true is a lie, and would end the lease."""
    from tests.unit.test_supervisor_legion import requests

    sim = lord_renewing(tmp_path)
    again, _, problems = resumed_legion(sim, **{key: True})
    assert problems == [
        f"legion beat: {key} must be false (a reexec is refused during the shutdown), not True"
    ]
    lease = again.core.leases["beat"]
    assert (lease.lord, lease.releasing, lease.done) == (True, False, False)
    (renew,) = requests(again.do(Tick()))
    assert renew.send.kind is Kind.RENEW


def test_a_held_seen_handed_over_in_the_future_is_now(tmp_path: Path) -> None:
    """A lease redis lost is not taken within a ttl of seeing it held: a
    refused held_seen is 'seen now', never 'not seen' (None)."""
    sim = lord_renewing(tmp_path)
    for value, why in [(1e6, "held_seen 1e+06 s in the future: now"), ("x", "held_seen must be")]:
        again, _, problems = resumed_legion(sim, held_seen=value)
        assert problems[0].startswith(f"legion beat: {why}")
        assert again.core.leases["beat"].held_seen == 3.5


def test_a_lease_of_a_legion_the_configuration_does_not_have_is_ignored(tmp_path: Path) -> None:
    sim = lord_renewing(tmp_path)
    data = json.loads(json.dumps({"core": sim.core.handover(), "legion_token": TOKEN}))
    data["core"]["legions"]["ghost"] = dict(data["core"]["legions"]["beat"])
    data["core"]["core"]["lease_changes"]["ghost"] = {"acquired": 5}
    data["core"]["core"]["legion_told"]["ghost"] = "legion ghost: lord"
    core, _, problems = reexec.resume_core(sim.core.config, data, 3.5)
    assert problems == ["legion 'ghost': no such legion in the configuration: ignored"]
    assert set(core.leases) == {"beat"} and core.leases["beat"].lord
    assert core.lease_changes == {("beat", "acquired"): 1}
    assert set(core.legion_told) == {"beat"}


def test_a_lease_not_handed_over_is_not_ours(tmp_path: Path) -> None:
    sim = lord_renewing(tmp_path)
    data = json.loads(json.dumps({"core": sim.core.handover(), "legion_token": TOKEN}))
    del data["core"]["legions"]
    core, _, problems = reexec.resume_core(sim.core.config, data, 3.5)
    assert problems == [
        'no "legions" object: no lease is taken as ours',
        "legion beat: its lease is not handed over: not lord",
    ]
    assert (core.leases["beat"].lord, core.leases["beat"].expires) == (False, 3.5)


def test_a_reexec_while_draining_is_refused(tmp_path: Path) -> None:
    import signal

    sim = sim_for(tmp_path, "[pidone]\nshutdown_delay = 5\n" + TOML)
    sim.do(Boot())
    sim.do(SignalReceived(signal.SIGTERM))
    assert sim.core.draining
    assert sim.core.reexec_refusal() == "pidone is shutting down: nothing to re-execute"


def test_a_reexec_while_an_update_restarts_or_removes_a_process_is_refused(
    tmp_path: Path,
) -> None:
    """The new spec of a changed process, and the removal of one, live only
    in this core until done: a reexec then would lose them."""
    from pidone.core.supervisor import Reconfigure
    from tests.unit.test_supervisor import TERM, booted_chain, chain_toml, killed, reread

    sim = booted_chain(tmp_path, chain_toml())
    sim.do(Reconfigure(reread(tmp_path, chain_toml().replace('command = "c"', 'command = "c2"'))))
    assert sim.core.reexec_refusal() == ("a ctl update is under way (c): reexec once it is done")
    sim.exit("c", killed(TERM))  # the old instance gone, the new one spawned: done
    assert sim.core.reexec_refusal() is None
    removed = chain_toml().split("[process.c]")[0]
    sim.do(Reconfigure(reread(tmp_path, removed)))
    assert sim.core.reexec_refusal() == ("a ctl update is under way (c): reexec once it is done")
