"""bench/pidbench/profile.py: the parsing behind the profile of a miss, on
inputs written by hand (no py-spy, strace or namespace is run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pidbench import profile
from pidbench.inits import REPO
from pidbench.measure import Settings
from pidbench.targets import Verdict

# --- PYTHONPROFILEIMPORTTIME and rss_trace.py -------------------------------

# What `python -X importtime` prints: a child before its parent, two spaces
# deeper; pidone's own log lines in between. `json` is imported later, from
# inside a function (at depth 0, with no importer).
IMPORT_TIME = """\
import time: self [us] | cumulative | imported package
import time:       300 |        300 | pidone
import time:        50 |         50 |         tomllib._re
import time:        80 |        130 |       tomllib._parser
import time:        20 |        150 |     tomllib
import time:        40 |        190 |   pidone.config
import time:        30 |         30 |     _socket
import time:        60 |         90 |   socket
import time:       100 |        380 | pidone.cli
pidone run: web | started: pid 2
import time:         5 |          5 |   json.decoder
import time:        25 |         30 | json
"""

# rss_trace.py: `PID MODULE RSS_KIB CALLER`, the first line the interpreter
# before pidone. PID 200 is a child between its fork and its exec; the last
# line was cut short.
RSS_TRACE = """\
100 <start> 9000 -
100 pidone 9156 -
100 pidone.cli 9256 -
100 pidone.config 9300 pidone.cli.<module>
100 tomllib 9400 pidone.config.<module>
100 tomllib._parser 9420 pidone.config.<module>
100 tomllib._re 9820 pidone.config.<module>
100 socket 9900 pidone.cli.<module>
200 os 30000 pidone.system.spawn
100 _socket 10100 pidone.cli.<module>
100 json 10200 pidone.loop.run
100 json.decoder 10230 pidone.loop.run
100 json.enc
"""


def test_import_tree_pairs_each_module_with_its_importer() -> None:
    assert profile._import_tree(IMPORT_TIME) == {
        "tomllib._re": "tomllib._parser",
        "tomllib._parser": "tomllib",
        "tomllib": "pidone.config",
        "pidone.config": "pidone.cli",
        "_socket": "socket",
        "socket": "pidone.cli",
        "json.decoder": "json",
    }


def test_import_tree_siblings_share_their_parent() -> None:
    text = (
        "import time:        10 |         10 |   a1\n"
        "import time:        10 |         10 |     b1\n"
        "import time:        10 |         20 |   a2\n"
        "import time:        10 |         50 | top\n"
        "import time:        10 |         10 |   c1\n"
        "import time:        10 |         20 | other\n"
    )
    assert profile._import_tree(text) == {"a1": "top", "b1": "a2", "a2": "top", "c1": "other"}


def test_import_tree_of_nothing() -> None:
    assert profile._import_tree("") == {}
    assert profile._import_tree("pidone: no import time here\n") == {}


PARENT = profile._import_tree(IMPORT_TIME)
CALLERS = {"json": "pidone.loop.run", "json.decoder": "pidone.loop.run"}


@pytest.mark.parametrize(
    ("module", "group"),
    [
        ("pidone", "pidone (own code)"),
        ("pidone.config", "pidone (own code)"),
        ("tomllib", "pidone.config -> tomllib"),
        ("tomllib._re", "pidone.config -> tomllib"),  # up the chain to pidone's import
        ("_socket", "pidone.cli -> socket"),
        ("json", "pidone.loop.run() -> json"),  # imported in a function
        ("json.decoder", "pidone.loop.run() -> json"),
        ("unknown", "-() -> unknown"),
    ],
)
def test_group_puts_a_module_on_the_import_in_pidone_that_pulled_it_in(
    module: str, group: str
) -> None:
    assert profile._group(module, PARENT, CALLERS) == group


def test_rss_table_pairs_the_trace_with_the_import_tree() -> None:
    # Each module's growth is the RSS until the next import of pidone's own
    # process: pidone 100 + pidone.cli 44 + pidone.config 100 = 244; tomllib
    # 20 + 400 + 80; socket 200 + 100 (the child's line of pid 200 is not
    # pidone's); json 30 (under 64 KiB); json.decoder is the last import.
    assert profile._rss_table(RSS_TRACE, IMPORT_TIME, 10500) == [
        "| where | modules | RSS (KiB) |",
        "|---|--:|--:|",
        "| the interpreter before pidone (`python` and `site`) | | 9000 |",
        "| the tracer (rss_trace.py) until pidone's first import | | 156 |",
        "| `pidone.config -> tomllib` | 3 | 500 |",
        "| `pidone.cli -> socket` | 2 | 300 |",
        "| `pidone (own code)` | 3 | 244 |",
        "| everything under 64 KiB each | | 30 |",
        "| after the last import (running: buffers, threads, the heap) | | 270 |",
        "| **total: the init's RSS** | | **10500** |",
    ]


def test_rss_table_rows_add_up_to_the_total() -> None:
    rows = profile._rss_table(RSS_TRACE, IMPORT_TIME, 10500)[2:-1]
    assert sum(int(row.split("|")[-2]) for row in rows) == 10500


def test_rss_table_without_any_import() -> None:
    assert profile._rss_table("7 <start> 9000 -\n", "", 9100)[2:] == [
        "| the interpreter before pidone (`python` and `site`) | | 9000 |",
        "| the tracer (rss_trace.py) until pidone's first import | | 0 |",
        "| everything under 64 KiB each | | 0 |",
        "| after the last import (running: buffers, threads, the heap) | | 100 |",
        "| **total: the init's RSS** | | **9100** |",
    ]


# --- strace -tt -T ------------------------------------------------------------


def test_seconds_since_midnight_from_strace_tt() -> None:
    assert profile._seconds("01:02:03.500000 write(1, ...) = 1") == 3723.5
    assert profile._seconds("00:00:00.000250 --- SIGTERM ---") == pytest.approx(0.00025)


@pytest.mark.parametrize(
    ("rest", "took"),
    [
        ('write(7, "\\21", 1)      = 1 <0.000014>', 0.000014),
        ("epoll_wait(3, [], 4, -1) = 0 <1.250000>", 1.25),
        ("--- SIGCHLD {si_signo=SIGCHLD} ---", 0.0),
        ("epoll_wait(3,  <detached ...>", 0.0),
        ("exit_group(0)                     = ?", 0.0),
    ],
)
def test_took_reads_strace_T(rest: str, took: float) -> None:
    assert profile._took(rest) == took


STRACE = [
    "12:00:00.090000 epoll_wait(3, [], 4, -1) = ? ERESTARTSYS (To be restarted) <1.200000>",
    "12:00:00.100000 --- SIGTERM {si_signo=SIGTERM, si_code=SI_USER, si_pid=0, si_uid=0} ---",
    '12:00:00.100250 write(7, "\\17", 1)      = 1 <0.000014>',
    "12:00:00.100500 rt_sigreturn({mask=[]}) = -1 EINTR (Interrupted system call) <0.000011>",
    "12:00:00.101000 epoll_wait(3, [{events=EPOLLIN, data={u32=6}}], 4, -1) = 1 <0.000010>",
    "12:00:00.102000 kill(2, SIGTERM)        = 0 <0.000012>",
    "12:00:00.162000 epoll_wait(3, [{events=EPOLLIN, data={u32=6}}], 4, -1) = 1 <0.060000>",
    "12:00:00.163000 wait4(-1, [{WIFEXITED(s) && WEXITSTATUS(s) == 0}], WNOHANG, NULL) = 2",
]


def test_timeline_from_the_event_until_the_init_blocks_again() -> None:
    timeline = profile._Timeline("pidone run", "SIGTERM")
    timeline.lines = STRACE
    assert timeline.text().splitlines() == [
        "+  0.000 ms  --- SIGTERM {si_signo=SIGTERM, si_code=SI_USER, si_pid=0, si_uid=0} ---",
        '+  0.250 ms  write(7, "\\17", 1)      = 1 <0.000014>',
        "+  0.500 ms  rt_sigreturn({mask=[]}) = -1 EINTR (Interrupted system call) <0.000011>",
        "+  1.000 ms  epoll_wait(3, [{events=EPOLLIN, data={u32=6}}], 4, -1) = 1 <0.000010>",
        "+  2.000 ms  kill(2, SIGTERM)        = 0 <0.000012>",
        # Blocked for 60 ms: the event is over.
        "+ 62.000 ms  epoll_wait(3, [{events=EPOLLIN, data={u32=6}}], 4, -1) = 1 <0.060000>",
    ]


def test_timeline_cuts_long_calls_and_long_timelines() -> None:
    timeline = profile._Timeline("pidone", "SIGCHLD")
    timeline.lines = ["12:00:00.000000 --- SIGCHLD {si_signo=SIGCHLD} ---"] + [
        f"12:00:00.{i:06d} getpid() = 1 <0.000001>" for i in range(1, 200)
    ]
    timeline.lines[1] = "12:00:00.000001 write(1, " + "x" * 200 + ") = 1 <0.000001>"
    lines = timeline.text().splitlines()
    assert len(lines) == profile.MAX_TIMELINE + 1
    assert lines[-1] == "..."
    assert lines[1] == "+  0.001 ms  write(1, " + "x" * 101  # the call cut at 110 characters


def test_timeline_without_the_event() -> None:
    timeline = profile._Timeline("pidone run", "SIGUSR1")
    timeline.lines = STRACE
    assert timeline.text() == "(strace saw no SIGUSR1)"


# --- py-spy ---------------------------------------------------------------------


def test_spy_sums_the_raw_stacks_of_every_launch(tmp_path: Path) -> None:
    spy = profile._Spy("pidone run", tmp_path)
    first = tmp_path / "spy-1.txt"
    first.write_text(
        "<module> (pidone:8);main (pidone/cli.py:84) 3\n"
        "<module> (pidone:8);main (pidone/cli.py:84);f (pidone/x.py:1) 2\n"
        "a line without a count\n"
    )
    second = tmp_path / "spy-2.txt"
    second.write_text("<module> (pidone:8);main (pidone/cli.py:84) 4\n")
    spy._add(first)
    spy._add(second)
    spy._add(tmp_path / "never-written.txt")  # py-spy failed: a launch, no samples
    assert spy.launches == 3
    assert dict(spy.stacks) == {
        "<module> (pidone:8);main (pidone/cli.py:84)": 7,
        "<module> (pidone:8);main (pidone/cli.py:84);f (pidone/x.py:1)": 2,
    }


def _stack(*frames: str) -> str:
    return ";".join(frames)


SRC = f"{REPO}/src/pidone"
TURN = (
    f"<module> ({REPO}/.venv/bin/pidone:8)",
    f"main ({SRC}/cli.py:84)",
    f"run ({SRC}/loop.py:550)",
    f"Loop.run ({SRC}/loop.py:143)",
    f"Loop._turn ({SRC}/loop.py:213)",
)


def test_spy_tables_every_frame_on_the_stack_and_every_one_at_the_top(tmp_path: Path) -> None:
    raw = tmp_path / "spy.txt"
    raw.write_text(
        f"{_stack(*TURN, f'Loop._reap ({SRC}/loop.py:367)')} 6\n"
        f"{_stack(*TURN, f'spawn ({SRC}/system.py:186)')} 3\n"
        # Start-up: not in the loop, counted only in the total.
        f"{_stack(*TURN[:2], '_find_and_load (<frozen importlib._bootstrap>:1165)')} 10\n"
    )
    spy = profile._Spy("pidone run", tmp_path)
    spy._add(raw)
    assert spy.tables().splitlines() == [
        "9 samples in the loop over 1 launches (19 in all: the rest is start-up, imports and "
        "configuration), shares of those in the loop:",
        "",
        "| on the stack (inclusive) | share | at the top (self) | share |",
        "|---|--:|---|--:|",
        # Ties in the order of the stack, outermost first.
        "| `<module> (.venv/bin/pidone:8)` | 100% | `Loop._reap (pidone/loop.py:367)` | 67% |",
        "| `main (pidone/cli.py:84)` | 100% | `spawn (pidone/system.py:186)` | 33% |",
        "| `run (pidone/loop.py:550)` | 100% |  |  |",
        "| `Loop.run (pidone/loop.py:143)` | 100% |  |  |",
        "| `Loop._turn (pidone/loop.py:213)` | 100% |  |  |",
        "| `Loop._reap (pidone/loop.py:367)` | 67% |  |  |",
        "| `spawn (pidone/system.py:186)` | 33% |  |  |",
    ]


def test_spy_tables_count_a_recursive_frame_once_and_show_the_top_rows(tmp_path: Path) -> None:
    spy = profile._Spy("pidone", tmp_path)
    deep = [f"f{i} (pidone/x.py:{i})" for i in range(20)]
    spy.stacks[_stack("supervise (pidone/single.py:1)", "g (pidone/y.py:1)", *deep)] = 1
    spy.stacks[
        _stack("supervise (pidone/single.py:1)", "g (pidone/y.py:1)", "g (pidone/y.py:1)")
    ] = 1
    rows = spy.tables().splitlines()[4:]
    assert len(rows) == profile.TOP
    assert rows[0] == "| `supervise (pidone/single.py:1)` | 100% | `f19 (pidone/x.py:19)` | 50% |"
    assert rows[1] == "| `g (pidone/y.py:1)` | 100% | `g (pidone/y.py:1)` | 50% |"
    assert rows[2] == "| `f0 (pidone/x.py:0)` | 50% |  |  |"


def test_spy_without_samples_in_the_loop_says_so(tmp_path: Path) -> None:
    spy = profile._Spy("pidone run", tmp_path)
    spy.stacks["<module> (pidone:8);main (pidone/cli.py:84)"] = 40
    spy.errors.append("py-spy did not start: Permission denied")
    assert spy.tables() == (
        "py-spy took no sample in the loop (40 in all). py-spy did not start: Permission denied"
    )


def test_short_frames_lose_the_checkout_and_stdlib_prefixes() -> None:
    assert profile._short(f"poll ({REPO}/src/pidone/loop.py:120)") == "poll (pidone/loop.py:120)"
    assert profile._short(f"main ({REPO}/.venv/bin/pidone:8)") == "main (.venv/bin/pidone:8)"
    assert profile._short("select (/usr/lib/python3.11/selectors.py:468)") == (
        "select (selectors.py:468)"
    )


# --- which targets get a profile ----------------------------------------------------


def test_misses_profiles_only_the_targets_missed() -> None:
    verdicts = [
        Verdict("restart", "restart < 10 ms", True, "median 5.00 ms"),
        Verdict("scrape", "scrape < 250 ms", None, "no /metrics scrape"),
        Verdict("nothing-to-profile", "some target", False, "12 ms"),
    ]
    said: list[str] = []
    found = profile.misses(verdicts, Settings(Path("/nonexistent")), said.append)
    assert found == [("some target: 12 ms", "no profiler for this target")]
    assert said == ["profiling a miss: some target"]


def test_by_name_finds_the_registry_init() -> None:
    assert profile._by_name("pidone run").kind == "supervisor"
    with pytest.raises(KeyError):
        profile._by_name("systemd")
