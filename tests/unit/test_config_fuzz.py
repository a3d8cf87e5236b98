"""A property-based fuzzer over Procfile, pidone.toml and .env: whatever the
files hold, loading them either gives a Config or raises ConfigError (the
CLI's exit 2), never anything else; and `pidone check` and `pidone run`
agree, because both go through the same commands.load_config.

Deterministic (derandomized, no example database) and bounded, so CI always
runs the same few hundred examples in seconds."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pidone import cli, commands
from pidone.config.load import PROCESS_KEYS, SETTINGS_KEYS, SOCKET_KEYS
from pidone.config.specs import Config
from pidone.errors import ConfigError
from pidone.runtime import loop

FUZZ = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# What broke pidone before: deep nesting, superscript digits, NUL, (uid_t)-1,
# decimal modes, durations past epoll's range, self-doubling expansions.
NASTY_TEXT = [
    "\u00b9\u2075",
    "\u0661",
    "\0",
    "4294967295",
    "99999999999",
    "${A:-" * 20 + "x" + "}" * 20,
    "${A}${A}${A}${A}",
    "$",
    "${",
    "${A",
    "'",
    '"',
    "\\",
    "settle:1e300",
    "settle:\u00b9",
    "tcp:h:\u00b9\u2075",
    "tcp:h:99999",
    "http://h:\u00b9/",
    "exec:sh -c 'true",
    "notify",
    "0o777",
    "0660",
    "all",
    "pidone",
    "root",
    "nobody",
    "SIGTERM",
    "SIGRTMIN+3",
    "unlimited",
    "/run/x.sock",
    "/" + "x" * 200,
]
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=30) | st.sampled_from(NASTY_TEXT)
NAMES = st.sampled_from(["web", "db", "all", "pidone", "a-b", "x y", "\u00b9", "w"])
NUMBERS = st.one_of(
    st.integers(min_value=-(2**65), max_value=2**65),
    st.sampled_from([0, 1, 27, 660, 2750, 4294967294, 4294967295, 2**63, 86400, 86401]),
)
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.5, 1e300, 2592000.0, -1.0]),
)


@st.composite
def toml_scalar(draw: st.DrawFn) -> str:
    """One TOML value, written as text (0o literals included)."""
    kind = draw(st.sampled_from(["str", "int", "octal", "float", "bool"]))
    if kind == "str":
        return json.dumps(draw(TEXT), ensure_ascii=False)
    if kind == "int":
        return str(draw(NUMBERS))
    if kind == "octal":
        return "0o" + format(draw(st.integers(min_value=0, max_value=0o777777)), "o")
    if kind == "float":
        value = draw(FLOATS)
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    return draw(st.sampled_from(["true", "false"]))


KEYS = st.sampled_from([*PROCESS_KEYS, *SETTINGS_KEYS, *SOCKET_KEYS, "NOFILE", "A", "x"])
TOML_VALUE = st.recursive(
    toml_scalar(),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(KEYS, inner), max_size=3).map(
            lambda pairs: "{ " + ", ".join(f"{k} = {v}" for k, v in dict(pairs).items()) + " }"
        ),
    ),
    max_leaves=8,
)
NASTY_TOML_LINES = [
    "x = " + "[" * 40 + "]" * 40,
    "x = " + "{a=" * 40 + "1" + "}" * 40,
    "a" + ".a" * 40 + " = 1",
    "[" + ".".join(["t"] * 40) + "]",
    'x = """',
    "x = '''\n[[[\n'''",
    "[process]",
    "[[process.web]]",
    "process = 1",
]


IDS = ['"root"', "0", '"nobody"', "4294967294", "4294967295", '"99999999999"', '"\u00b9"']
SECONDS = ["10", "0", "0.5", "86400", "86401", "1e300", "inf", "nan", "-1", '"5"']
MODES = ['"0660"', "0o660", "660", '"2750"', "0o2750", "0o17777", '"rw"']
# Per key, values of the right type (good and bad): most examples get past
# the TOML syntax and reach every key's own checks.
PLAUSIBLE: dict[str, list[str]] = {
    "command": [
        '"sleep 1"',
        '"echo ${A:-x} | cat"',
        "'a \"b'",
        '"${A}${A}"',
        '"exec true"',
        '"echo ${PORT:=3000} $$ ${A:?x}"',
        '"if true; then"',
    ],
    "port": ["5000", "0", "65536", '"80"', "true"],
    "user": IDS,
    "group": IDS,
    "owner": IDS,
    "control_group": IDS,
    "groups": ['["root"]', "[0, 4294967295]", "[]", '["\u00b9\u2075"]'],
    "umask": ['"0027"', "0o27", "27", '"0o777"', "0o1000"],
    "mode": MODES,
    "directory_mode": MODES,
    "stop_timeout": SECONDS,
    "settle_time": SECONDS,
    "backoff_initial": SECONDS,
    "backoff_max": SECONDS,
    "backoff_reset": SECONDS,
    "fatal_window": SECONDS,
    "fatal_after": ["3", "0", "2.5"],
    "ready": [
        '"settle:1"',
        '"settle:1e300"',
        '"settle:\u00b9"',
        '"tcp:127.0.0.1:80"',
        '"tcp:h:\u00b9\u2075"',
        '"notify"',
        '"exec:true ${A}"',
        '"http://h:80/"',
        '"file:/x"',
        '"unix:/x"',
        '"exec:\'"',
        '"tcp:127.0.0.1:${PORT}"',
        '"unix:${A:?unset}"',
        '"file:${A##*/}"',
    ],
    "rlimits": [
        "{ nofile = 1024 }",
        "{ nofile = 99999999 }",
        '{ core = "unlimited" }',
        "{ nofile = [1, 2] }",
        "{ nofile = 9223372036854775808 }",
        "{ cpu = -1 }",
    ],
    "capabilities": ['["CHOWN"]', '["NET_BIND_SERVICE", "cap_kill"]', '["ROOT"]', "[]"],
    "environment": ['{ A = "x" }', '{ A = "${A}${A}" }', '{ A = "a\\u0000" }', "{ B = 1 }"],
    "after": ['["web"]', '["db"]', '["nope"]', '["w"]'],
    "sockets": ['["s"]', "[]", '["t"]'],
    "stop_signal": ['"SIGTERM"', '"15"', '"\u00b9\u2075"', "9", "99", '"SIGRTMIN"'],
    "reload_signal": ['"HUP"', "0"],
    "restart": ['"always"', '"never"', '"on-failure"', '"bogus"'],
    "path": ['"/run/h1/s.sock"', '"rel"', '"/' + "x" * 120 + '"'],
    "listen": ["true", "false"],
    "log_format": ['"json"', '"text"'],
    "metrics": ['"127.0.0.1:9100"', '"h:\u00b9\u2075"', '"h:0"'],
    "control_socket": ['"/run/x.sock"', '"x.sock"'],
    "directory": ['"/"', '"/nonexistent-h1"'],
    "pidfile": ['"/run/x.pid"', '"x.pid"'],
    "clear_env": ["true"],
    "control": ["true", "false"],
    "restart_dependents": ["false"],
    "stop_target": ['"group"', '"process"'],
}
TABLE_KEYS = {"pidone": SETTINGS_KEYS, "process": PROCESS_KEYS, "socket": SOCKET_KEYS}


def wild(draw: st.DrawFn) -> bool:
    """One file in four is wild (any names, any text); the others are clean
    enough to parse, so that most examples reach the checks of every value."""
    return draw(st.integers(0, 3)) == 0


@st.composite
def toml_text(draw: st.DrawFn) -> str:
    lines: list[str] = []
    free = wild(draw)
    names = (
        st.sampled_from(["web", "db", "w", "s", "t"]) | NAMES
        if free
        else st.sampled_from(["db", "s", "t", "web"])
    )
    tables = {draw(st.sampled_from(["pidone", "process", "process", "socket"])): 0 for _ in "1234"}
    for table in list(tables)[: draw(st.integers(min_value=0, max_value=4))]:
        if table == "pidone":
            lines.append("[pidone]")
        else:
            name = draw(names)
            lines.append(f"[{table}.{json.dumps(name, ensure_ascii=False)}]")
        if table == "process" and draw(st.integers(0, 9)) < 8:
            lines.append(f"command = {draw(st.sampled_from(PLAUSIBLE['command']))}")
        if table == "socket" and draw(st.integers(0, 9)) < 8:
            lines.append('path = "/run/h1/' + draw(st.sampled_from("abc")) + '.sock"')
        keys = (
            st.sampled_from(TABLE_KEYS[table]) | KEYS
            if free
            else st.sampled_from(TABLE_KEYS[table])
        )
        for key in {draw(keys): 0 for _ in range(draw(st.integers(min_value=0, max_value=4)))}:
            if key in ("command", "path"):
                continue  # written above
            if key in PLAUSIBLE and (not free or draw(st.integers(0, 9)) < 8):
                value = draw(st.sampled_from(PLAUSIBLE[key]))
            else:
                value = draw(TOML_VALUE)
            lines.append(f"{key} = {value}")
    if free and draw(st.booleans()):
        lines.insert(
            draw(st.integers(min_value=0, max_value=len(lines))),
            draw(st.sampled_from(NASTY_TOML_LINES) | TEXT),
        )
    return "\n".join(dict.fromkeys(lines)) + "\n"  # a key twice is only a TOML error


ENV_VALUE_PARTS = st.sampled_from(
    ["x", "$A", "${A}", "${B:-", "}", ":-", '"', "'", "\\", "\\n", " # c", "$$", "\n", "\0"]
)


@st.composite
def env_text(draw: st.DrawFn) -> str:
    lines = []
    free = wild(draw)
    keys = ["A", "B", "C", "export A"] + (["1X", "", "A B"] if free else [])
    parts = ENV_VALUE_PARTS | TEXT if free else CLEAN_ENV_VALUE_PARTS
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        key = draw(st.sampled_from(keys))
        lines.append(f"{key}={''.join(draw(st.lists(parts, max_size=6)))}")
    if free and draw(st.booleans()):
        lines.append("A=${A}${A}\n" * draw(st.integers(min_value=0, max_value=30)))
    return "\n".join(lines) + "\n"


CLEAN_ENV_VALUE_PARTS = st.sampled_from(["x", "$A", "${A}", "${B:-y}", "'q'", '"d\\n"', "$$"])
PROCFILE_COMMANDS = ["sleep 1", "echo ${A:-x} | cat", "a 'b", "x\0y", "${A}", "exec true"]


@st.composite
def procfile_text(draw: st.DrawFn) -> str:
    lines = []
    free = wild(draw)
    if free:
        names = [draw(st.sampled_from(["web", "db", "w"]) | NAMES) for _ in range(3)]
        commands = st.sampled_from(PROCFILE_COMMANDS) | TEXT.filter(lambda t: "\n" not in t)
    else:
        names = draw(st.lists(st.sampled_from(["web", "w", "worker"]), unique=True, max_size=3))
        commands = st.sampled_from(PROCFILE_COMMANDS[:2] + PROCFILE_COMMANDS[4:])
    for name in names:
        lines.append(f"{name}: {draw(commands)}")
    if free and draw(st.booleans()):
        lines.append(draw(TEXT))
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def files(procfile: str | None, toml: str | None, env: str | None) -> Iterator[list[str]]:
    """The three files in a fresh directory (the working directory, so no
    default file is found elsewhere), and the options that name them."""
    with tempfile.TemporaryDirectory() as directory, contextlib.chdir(directory):
        options: list[str] = []
        for option, name, text in (
            ("-f", "Procfile", procfile),
            ("-c", "pidone.toml", toml),
            ("-e", ".env", env),
        ):
            if text is not None:
                path = Path(directory, name)
                path.write_text(text, encoding="utf-8")
                options += [option, str(path)]
        yield options


def outcome(argv: list[str]) -> tuple[str, Any]:
    """What `pidone check|run` does up to the point run would start processes:
    ("config", the Config run would start) or ("error", its problems). Any
    other exception escapes and fails the test."""
    started: list[Config] = []

    def would_start(config: Config, reload: object = None) -> int:
        started.append(config)
        return 0

    with mock.patch.object(loop, "run", would_start), contextlib.redirect_stdout(io.StringIO()):
        try:
            assert commands.run_subcommand(argv) == 0
        except ConfigError as exc:
            assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
            return "error", exc.problems
    if argv[0] == "run":
        assert len(started) == 1
        return "config", started[0]
    args = commands.parse_args(argv)
    assert isinstance(args, commands.Args)
    return "config", commands.load_config(args)


INPUTS = st.tuples(
    st.none() | procfile_text(),
    st.none() | toml_text(),
    st.none() | env_text(),
)


@FUZZ
@given(INPUTS)
def test_check_and_run_agree_and_only_ever_raise_config_errors(
    inputs: tuple[str | None, str | None, str | None],
) -> None:
    with files(*inputs) as options:
        checked = outcome(["check", *options])
        ran = outcome(["run", *options])
    assert checked == ran


@FUZZ
@given(INPUTS)
def test_the_cli_exits_0_or_2_and_never_shows_a_traceback(
    inputs: tuple[str | None, str | None, str | None],
) -> None:
    err = io.StringIO()
    with (
        files(*inputs) as options,
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        code = cli.main(["check", *options])
    assert code in (0, 2)
    assert "Traceback" not in err.getvalue()
    assert (code == 2) == err.getvalue().startswith("pidone: ")
