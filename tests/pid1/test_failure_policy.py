"""The failure policy for real (ready_timeout, per-process backoff and FATAL,
success_exit_codes, on_fatal, required): pidone as PID 1 of a fresh PID
namespace and as a subreaper, supervising tests/helpers/svc.py instances."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from tests.helpers.running import wait_for
from tests.helpers.stack import Stack, before, free_port, nth
from tests.pid1.test_control import _answers, ctl, http_status

TERM = signal.SIGTERM
# pidone stops these at ready_timeout, counted from their spawn: a SIGTERM
# held back from exec on finds svc.py's handler (it unblocks it after "up"),
# however long its Python takes to start here.
HELD = "env --block-signal=TERM"


def test_a_process_that_never_gets_ready_is_stopped_at_its_ready_timeout_then_fatal(
    mode: str, tmp_path: Path
) -> None:
    # It would listen only after 60 s; it exits 0 on SIGTERM, which must not
    # pass for a success: both instances count as failed starts.
    port = free_port()
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[process.slow]
command = "{HELD} {stack.svc("slow", "--tcp", str(port), "--delay", "60")}"
ready = "tcp:127.0.0.1:{port}"
ready_timeout = 0.5
restart = "on-failure"
backoff_initial = 0.2
fatal_after = 2
[process.steady]
command = "{stack.svc("steady")}"
""")
        wait_for(lambda: "FATAL" in stack.stderr_so_far(), what="FATAL")
        journal = [e for e in stack.journal() if e.name == "slow"]
        ups = [e.ns for e in journal if e.event.startswith("up")]
        terms = [e.ns for e in journal if e.event == "term"]
        assert (len(ups), len(terms)) == (2, 2)
        for up, term in zip(ups, terms, strict=True):
            # generous: it reacted at all (its clock starts at the spawn, before "up")
            assert 0 < (term - up) / 1e9 < 5.0
        assert stack.count("steady term") == 0  # on_fatal = "stay": the others go on
        stack.init.signal(TERM)
        assert stack.init.wait() == 1  # a FATAL process: an unclean stop
        out, err = stack.output()
    assert len(re.findall(r"^slow\s+\| not ready within 0.5 s: stopping it", err, re.M)) == 2
    stopped = r"^slow\s+\| stopped \(status 0\): not ready within 0.5 s$"
    assert len(re.findall(stopped, err, re.M)) == 2, err
    assert re.search(r"^slow\s+\| FATAL: exited 2 times within 60 s", err, re.M), err
    assert re.search(r"^slow\s+\| restarting in 0 s$", out, re.M), out


def test_a_slow_starter_ignoring_its_stop_signal_is_sigkilled_after_stop_timeout(
    mode: str, tmp_path: Path
) -> None:
    port = free_port()
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[process.slow]
command = "{HELD} {stack.svc("slow", "--tcp", str(port), "--delay", "60", "--ignore-term")}"
ready = "tcp:127.0.0.1:{port}"
ready_timeout = 0.5
stop_timeout = 0.5
restart = "never"
""")
        assert stack.init.wait() == 1  # nothing left to run; it did not exit 0
        out, err = stack.output()
    assert stack.count("slow up") == 1 and stack.count("slow term") == 1
    assert re.search(r"^slow\s+\| stop timeout: SIGKILL to group \d+$", err, re.M), err
    assert re.search(r"^slow\s+\| stopped \(signal SIGKILL\): not ready within 0.5 s$", err, re.M)
    assert re.search(r"^slow\s+\| not restarting \(restart = 'never'\)$", out, re.M), out


def test_on_fatal_exit_stops_everything_in_order_and_exits_1(mode: str, tmp_path: Path) -> None:
    # flaky exits 0 each time (restart = "always"): FATAL all the same, and
    # pidone's status 1 tells the orchestrator to replace the container.
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[pidone]
settle_time = 0.2
[process.base]
command = "{stack.svc("base")}"
[process.web]
command = "{stack.svc("web")}"
after = ["base"]
[process.flaky]
command = "{stack.svc("flaky", "--exit-after", "1", "--code", "0")}"
fatal_after = 2
on_fatal = "exit"
""")
        assert stack.init.wait(30) == 1
        events = stack.events()
        out, err = stack.output()
    assert stack.count("flaky up") == 2
    assert before(events, "web up", "flaky exit 0")  # everything was up
    assert before(events, "web exit", "base term")  # stopped in reverse order
    assert nth(events, "flaky exit 0", 2) < nth(events, "web term", 1)
    assert re.search(r'^pidone\s+\| flaky is FATAL \(on_fatal = "exit"\): stopping', err, re.M)
    assert "exiting with status 1" in out


def test_success_exit_codes_complete_a_one_shot_job_and_pidone_exits_0(
    mode: str, tmp_path: Path
) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[process.job]
command = "{stack.svc("job", "--exit-after", "0.1", "--code", "3")}"
restart = "on-failure"
success_exit_codes = [0, 3]
[process.next]
command = "{stack.svc("next", "--exit-after", "0.1", "--code", "0")}"
after = ["job"]
restart = "never"
""")
        assert stack.init.wait() == 0
        events = stack.events()
        out, err = stack.output()
    assert stack.count("job up") == 1  # a success: not restarted
    assert before(events, "job exit 3", "next up")  # and it completed: next started
    assert re.search(r"^job\s+\| exited with status 3 \(a success exit code\)$", out, re.M), out
    assert "job" not in err  # a success is no error


def test_a_required_process_that_is_fatal_makes_healthz_503_until_revived(
    mode: str, tmp_path: Path
) -> None:
    port = free_port()
    flag = tmp_path / "fixed"
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[pidone]
metrics = "127.0.0.1:{port}"
[process.web]
command = "test -e {flag} && exec {stack.svc("web")} || exit 1"
fatal_after = 1
required = true
[process.side]
command = "sh -c 'exit 1'"
fatal_after = 1
[process.steady]
command = "{stack.svc("steady")}"
""")
        healthz = f"http://127.0.0.1:{port}/healthz"
        wait_for(lambda: _answers(port), what="the metrics server")
        wait_for(lambda: http_status(healthz) == (503, "required process FATAL: web\n"),
                 what="/healthz 503 naming web")  # fmt: skip
        flag.touch()
        assert ctl(stack, "start", "web", "--timeout", "20").returncode == 0
        assert http_status(healthz) == (200, "ok\n")  # side is FATAL too, not required
        stack.init.signal(TERM)
        assert stack.init.wait() == 1
