"""ready = "log:REGEX" (its config rule) and [pidone] shutdown_delay (the
drain before the stop), replayed on the pure core with a fake clock."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from pidone.config import load as config
from pidone.config.specs import Config, ReadyCheck
from pidone.core.states import Phase
from pidone.core.supervisor import Boot, NoChildren, Notify, Ready, SignalReceived
from pidone.errors import ConfigError
from pidone.observe.health import check_ready
from tests.unit.test_supervisor import TERM, THREE, Sim, exits, killed, kills, logs, sim_for

INT = int(signal.SIGINT)


def load(tmp_path: Path, toml: str) -> Config:
    (tmp_path / "pidone.toml").write_text(toml)
    return config.load(None, tmp_path / "pidone.toml", None, environ={"HOST": "h"})


def problems(tmp_path: Path, toml: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, toml)
    return caught.value.problems


def ready_problem(tmp_path: Path, regex: str) -> str:
    """The one problem of `ready = 'log:REGEX'`, after its file:line and key."""
    (found,) = problems(tmp_path, f"[process.w]\ncommand = \"w\"\nready = 'log:{regex}'\n")
    where = f"{tmp_path / 'pidone.toml'}:3: [process.w] ready = "
    assert found.startswith(where), found
    return found[len(where) :].split(": ", 1)[1]


# --- ready = "log:REGEX" ---------------------------------------------------------------


def test_a_log_check_is_compiled_and_never_expanded(tmp_path: Path) -> None:
    cfg = load(tmp_path, "[process.w]\ncommand = \"w\"\nready = 'log:@${HOST} ready\\.$'\n")
    check = cfg.processes["w"].ready
    assert (check.kind, check.target) == ("log", "@${HOST} ready\\.$")
    assert check.pattern is not None and check.pattern.pattern == "@${HOST} ready\\.$"
    assert check.pattern.search("worker@${HOST} ready.") is None  # $ is the end: not "h"
    cfg = load(tmp_path, "[process.w]\ncommand = \"w\"\nready = 'log:^up$'\n")
    assert cfg.processes["w"].ready.pattern == re.compile("^up$")


@pytest.mark.parametrize(
    ("regex", "why"),
    [
        ("(a+)+$", "a repeat inside a repeat"),
        ("(?:ab|a)*!", "alternatives inside a repeat"),
        ("(x*y*)*z", "a repeat inside a repeat"),
        ("(?=(a+)+)b", "a repeat inside a repeat"),
        ("(a)\\1", "a backreference"),
        ('(?P<q>")x(?P=q)', "a backreference"),
    ],
)
def test_a_log_pattern_that_backtracks_exponentially_is_refused_with_its_line(
    tmp_path: Path, regex: str, why: str
) -> None:
    assert ready_problem(tmp_path, regex) == (
        f"{why} can make a match take exponential time; write it without (a repeat of single"
        " characters, like \\S+ or [0-9]{1,3}, is fine)"
    )


def test_a_log_pattern_that_does_not_compile_is_refused_with_its_line(tmp_path: Path) -> None:
    assert ready_problem(tmp_path, "ready (") == (
        "not a valid regular expression: missing ), unterminated subpattern at position 6"
    )
    found = problems(tmp_path, '[process.w]\ncommand = "w"\nready = "log:"\n')
    assert found[0].endswith('"log:" needs a regular expression after the colon, like "log:ready"')


@pytest.mark.parametrize("regex", [".*foo.*bar", "\\d+\\.\\d+", "a{1000}b{1000}"])
def test_a_log_pattern_that_backtracks_polynomially_is_refused(tmp_path: Path, regex: str) -> None:
    assert ready_problem(tmp_path, regex) == (
        "more than one unbounded repeat (*, +, {n,}) can make a match take polynomial time"
        " (.*a.*b: seconds per line); keep one, like @\\S+ ready"
    )


@pytest.mark.parametrize("regex", ["@\\S+ ready\\.$", "^\\[.*\\] (ok|up)", "[0-9]{1,3}(?:\\.x)+"])
def test_a_log_pattern_of_single_character_repeats_is_accepted(tmp_path: Path, regex: str) -> None:
    cfg = load(tmp_path, f"[process.w]\ncommand = \"w\"\nready = 'log:{regex}'\n")
    assert cfg.processes["w"].ready.kind == "log"


def test_a_log_process_is_ready_on_the_core_s_word_only_for_its_instance(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, "[process.w]\ncommand = 'w'\nready = 'log:up'\n")
    sim.do(Boot())
    assert sim.core.procs["w"].spec.ready == ReadyCheck(
        "log", "up", pattern=sim.core.procs["w"].spec.ready.pattern
    )
    pid = sim.pid("w")
    sim.at(100.0)  # no settle time: only its line makes it ready
    assert sim.core.procs["w"].state.name == "RUNNING"
    assert logs(sim.do(Ready("w", pid + 1))) == []  # an earlier instance's line: not this one
    assert logs(sim.do(Ready("w", pid))) == ["w: ready"]
    assert sim.core.procs["w"].state.name == "READY"


# --- [pidone] shutdown_delay -------------------------------------------------------------


def test_shutdown_delay_is_validated_with_its_line(tmp_path: Path) -> None:
    found = problems(tmp_path, '[pidone]\nshutdown_delay = -1\n[process.a]\ncommand = "a"\n')
    assert found == [
        f"{tmp_path / 'pidone.toml'}:2: [pidone] shutdown_delay = -1: must be a number of"
        " seconds from 0 to 86400 (one day), like 10 or 2.5"
    ]
    assert load(tmp_path, '[process.a]\ncommand = "a"\n').settings.shutdown_delay == 0.0


def drain_sim(tmp_path: Path, delay: float = 5.0) -> Sim:
    sim = sim_for(tmp_path, f"[pidone]\nshutdown_delay = {delay}\n{THREE}")
    sim.do(Boot())
    sim.at(2.0)  # settled: all three ready
    assert check_ready(sim.core.snapshot()) == (True, "ready")
    return sim


def test_sigterm_drains_first_readyz_503_at_once_then_stops_after_the_delay(
    tmp_path: Path,
) -> None:
    sim = drain_sim(tmp_path)
    out = sim.do(SignalReceived(TERM))
    assert kills(out) == []  # nothing stopped yet
    assert sim.core.phase is Phase.DRAINING and sim.core.draining
    assert not sim.core.shutting_down
    assert check_ready(sim.core.snapshot()) == (False, "draining: shutting down soon")
    assert Notify("draining", stopping=True) in out
    assert sim.core.next_deadline() == 2.0 + 5.0
    assert kills(sim.at(6.9)) == []
    out = sim.at(7.0)
    assert logs(out)[0] == "pidone: drained: stopping"
    assert sorted(kills(out)) == [("a", TERM, False), ("b", TERM, False), ("c", TERM, False)]
    assert Notify("stopping") in out  # STOPPING=1 went with "draining", once
    assert sim.core.snapshot().shutting_down


def test_a_crash_during_the_drain_is_restarted_as_before(tmp_path: Path) -> None:
    sim = drain_sim(tmp_path)
    sim.do(SignalReceived(TERM))
    old = sim.pid("a")
    sim.exit("a", killed(9))
    assert sim.pid("a") != old and sim.core.procs["a"].state.name == "RUNNING"


@pytest.mark.parametrize("second", [TERM, INT])
def test_a_second_sigterm_or_a_sigint_during_the_drain_stops_at_once(
    tmp_path: Path, second: int
) -> None:
    sim = drain_sim(tmp_path)
    sim.do(SignalReceived(TERM))
    sim.now = 3.0
    out = sim.do(SignalReceived(second))
    assert (
        logs(out)[0] == f"pidone: received {signal.Signals(second).name} while draining: stopping"
    )
    assert len(kills(out)) == 3 and sim.core.phase is Phase.STOPPING
    for n in "abc":
        sim.exit(n, killed(TERM))
    assert sim.core.next_deadline() is not None  # the sweep's, not the drain's 7.0
    assert sim.core.next_deadline() != 7.0


def test_sigint_without_a_drain_and_ctl_shutdown_stop_at_once(tmp_path: Path) -> None:
    sim = drain_sim(tmp_path)
    out = sim.do(SignalReceived(INT))  # Ctrl-C: an operator, no load balancer to wait for
    assert len(kills(out)) == 3 and sim.core.phase is Phase.STOPPING


def test_no_delay_no_drain(tmp_path: Path) -> None:
    sim = drain_sim(tmp_path, delay=0)
    out = sim.do(SignalReceived(TERM))
    assert logs(out)[0] == "pidone: received SIGTERM: stopping" and len(kills(out)) == 3
    for n in "abc":
        sim.exit(n, killed(TERM))
    assert exits(sim.do(NoChildren())) == [0]
