"""ready = "log:REGEX" in the log relay: real pipes, a real child, the
relay's own selector loop. What is searched: whole lines (a line cut across
writes still matches), their first LOG_MATCH_MAX bytes, of the watched
process only, until its first match."""

from __future__ import annotations

import re
import selectors
from collections.abc import Iterator

import pytest

from pidone.config.specs import LOG_MATCH_MAX
from pidone.runtime.logs import LogRelay
from tests.integration.test_log_relay import Sink, exited, finish, run_loop, spawn


@pytest.fixture
def selector() -> Iterator[selectors.BaseSelector]:
    sel = selectors.DefaultSelector()
    yield sel
    sel.close()


def test_a_ready_line_cut_across_writes_matches_once(selector: selectors.BaseSelector) -> None:
    out = Sink()
    relay = LogRelay(selector, names=["w", "x"], stdout_fd=out.fd, stderr_fd=out.fd)
    matched: list[str] = []
    relay.watch("w", re.compile(r"@\S+ ready\.$"), lambda: matched.append("w"))
    code = (
        "import os, sys, time\n"
        "os.write(2, b'starting\\nworker@ho')\n"
        "time.sleep(0.3)\n"
        "os.write(2, b'st ready.\\nworker@host ready.\\n')\n"
    )
    proc = spawn(relay, "w", code)
    run_loop(selector, exited(proc))
    (data,) = finish(relay, out)
    assert matched == ["w"]  # once, though two lines match
    assert data.count(b"w      | worker@host ready.\n") == 2  # the line is relayed as ever


def test_only_the_watched_process_is_searched_and_unwatch_stops_it(
    selector: selectors.BaseSelector,
) -> None:
    out = Sink()
    relay = LogRelay(selector, names=["w", "x"], stdout_fd=out.fd, stderr_fd=out.fd)
    matched: list[str] = []
    relay.watch("w", re.compile("ready"), lambda: matched.append("w"))
    other = spawn(relay, "x", "print('ready')")
    run_loop(selector, exited(other))
    assert matched == []  # x's line: not w's
    relay.unwatch("w")
    proc = spawn(relay, "w", "print('ready')")
    run_loop(selector, exited(proc))
    finish(relay, out)
    assert matched == []


def test_a_64_kib_line_is_searched_in_its_first_kib_only(
    selector: selectors.BaseSelector,
) -> None:
    """The attack: a hostile process writes 64 KiB lines so that every search
    costs 64 times more; only LOG_MATCH_MAX bytes of each are searched."""
    out = Sink()
    relay = LogRelay(selector, names=["w"], stdout_fd=out.fd, stderr_fd=out.fd)
    matched: list[str] = []
    relay.watch("w", re.compile("READY"), lambda: matched.append("w"))
    late = b"x" * LOG_MATCH_MAX + b"READY" + b"x" * (64 * 1024 - LOG_MATCH_MAX - 6) + b"\n"
    early = b"x" * (LOG_MATCH_MAX - 5) + b"READY" + b"x" * 60000 + b"\n"
    proc = spawn(relay, "w", f"import os; os.write(1, {late!r} * 20)")
    run_loop(selector, exited(proc))
    assert matched == []  # past the first LOG_MATCH_MAX bytes: not searched
    proc = spawn(relay, "w", f"import os; os.write(1, {early!r})")
    run_loop(selector, exited(proc))
    finish(relay, out)
    assert matched == ["w"]


def test_lines_crafted_against_the_pattern_are_searched_for_20_ms_per_read_at_most(
    selector: selectors.BaseSelector,
) -> None:
    """The attack: 1 KiB lines on which every search backtracks (about 1.5 ms
    each), thousands in a flood. Each read's search stops after
    LOG_MATCH_BUDGET, said once; the lines are relayed, and a later read is
    searched again, so a ready line after the flood still counts."""
    out, err = Sink(), Sink()
    relay = LogRelay(selector, names=["w"], stdout_fd=out.fd, stderr_fd=err.fd)
    matched: list[str] = []
    relay.watch("w", re.compile(r"@\S+ ready\.$"), lambda: matched.append("w"))
    hostile = b"@" * (LOG_MATCH_MAX - 1) + b"\n"
    code = (
        "import os, time\n"
        f"data = {hostile!r} * 4000\n"
        "while data:\n"
        "    data = data[os.write(1, data):]\n"
        "time.sleep(0.5)\n"
        "os.write(1, b'worker@host ready.\\n')\n"
    )
    proc = spawn(relay, "w", code)
    run_loop(selector, exited(proc))
    stdout, stderr = finish(relay, out, err)
    assert matched == ["w"]  # the line after the flood, in a read of its own
    assert stdout.count(b"@" * (LOG_MATCH_MAX - 1) + b"\n") == 4000  # every line relayed
    warnings = [line for line in stderr.splitlines() if b"is slow on w's lines" in line]
    assert len(warnings) == 1, stderr[-500:]
