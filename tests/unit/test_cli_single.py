"""Parsing of single-command mode's options (pure: nothing is started)."""

from __future__ import annotations

import pytest

from pidone.cli import USAGE, parse_single
from pidone.errors import UsageError
from pidone.single.init import Options


def parsed(args: list[str]) -> Options:
    result = parse_single(args)
    assert isinstance(result, Options)
    return result


def test_command_after_double_dash_is_taken_verbatim() -> None:
    opts = parsed(["--", "prog", "-g", "--", "-v"])
    assert opts.command == ["prog", "-g", "--", "-v"]
    assert (opts.group, opts.verbosity) == (False, 0)


def test_command_without_double_dash_starts_at_first_word() -> None:
    opts = parsed(["-g", "prog", "-v"])
    assert opts.command == ["prog", "-v"]
    assert opts.group is True
    assert opts.verbosity == 0


def test_combined_short_flags_and_repeated_verbosity() -> None:
    opts = parsed(["-gvv", "--verbose", "--", "x"])
    assert (opts.group, opts.verbosity, opts.command) == (True, 3, ["x"])


def test_long_group_flag() -> None:
    assert parsed(["--group", "--", "x"]).group is True


@pytest.mark.parametrize("args", [[], ["--"], ["-g"], ["-v", "--"]])
def test_no_command_is_a_usage_error(args: list[str]) -> None:
    with pytest.raises(UsageError, match="no command given") as info:
        parse_single(args)
    assert info.value.exit_code == 2


@pytest.mark.parametrize(("args", "bad"), [(["-x", "p"], "-x"), (["--nope", "p"], "'--nope'")])
def test_unknown_options_are_named(args: list[str], bad: str) -> None:
    with pytest.raises(UsageError, match=f"unknown option {bad}"):
        parse_single(args)


def test_help_and_version_are_returned_as_text() -> None:
    assert parse_single(["-h"]) == USAGE
    version = parse_single(["--version"])
    assert isinstance(version, str)
    assert version.startswith("pidone ")


@pytest.mark.parametrize(
    "args", [["--metrics", "0.0.0.0:9100", "x"], ["--metrics=0.0.0.0:9100", "x"]]
)
def test_metrics_address(args: list[str]) -> None:
    opts = parsed(args)
    assert (opts.metrics, opts.command) == ("0.0.0.0:9100", ["x"])


def test_metrics_without_an_address_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--metrics needs an address"):
        parse_single(["--metrics"])


# --- tini's and dumb-init's flags and variables --------------------------------


def test_tini_flags_in_getopts_forms() -> None:
    opts = parsed(["-swe", "143", "-e3", "-pSIGTERM", "-gv", "prog", "-e", "9"])
    assert opts.command == ["prog", "-e", "9"]  # options stop at the command
    assert (opts.subreaper, opts.warn_reaped, opts.group, opts.verbosity) == (True, True, True, 1)
    assert opts.expect == {143, 3}
    assert opts.pdeathsig == 15


@pytest.mark.parametrize("value", ["SIGKILL", "KILL", "kill", "9"])
def test_dash_p_takes_a_name_or_a_number(value: str) -> None:
    assert parsed(["-p", value, "x"]).pdeathsig == 9


def test_dumb_init_flags_in_every_form() -> None:
    args = ["-c", "-r", "15:2", "-r1:0", "--rewrite", "SIGUSR1:SIGHUP", "--rewrite=TERM:INT"]
    opts = parsed([*args, "--single-child", "--verbose", "x"])
    assert opts.single_child is True
    assert opts.rewrite == {15: 2, 1: 0, 10: 1}
    assert opts.verbosity == 1


def test_dash_l_returns_the_license_text() -> None:
    text = parse_single(["-l"])
    assert isinstance(text, str)
    assert "License: MIT" in text


@pytest.mark.parametrize(
    ("env", "flags"),
    [
        ({"TINI_SUBREAPER": ""}, ["-s"]),
        ({"TINI_KILL_PROCESS_GROUP": "1"}, ["-g"]),
        ({"TINI_VERBOSITY": "2"}, ["-v"]),
        ({"TINI_VERBOSITY": "3"}, ["-vv"]),
        ({"TINI_VERBOSITY": "1"}, []),
        ({"TINI_VERBOSITY": "0"}, []),
        ({"DUMB_INIT_SETSID": "0"}, ["-c"]),
        ({"DUMB_INIT_DEBUG": "1"}, ["-v"]),
        ({"DUMB_INIT_SETSID": "1", "DUMB_INIT_DEBUG": "0"}, []),
    ],
)
def test_each_peer_variable_equals_its_flag(env: dict[str, str], flags: list[str]) -> None:
    def fields(opts: Options) -> tuple[object, ...]:
        return (opts.subreaper, opts.group, opts.verbosity, opts.single_child)

    assert fields(parsed_env(["x"], env)) == fields(parsed_env([*flags, "x"], {}))


def parsed_env(args: list[str], env: dict[str, str]) -> Options:
    result = parse_single(args, env)
    assert isinstance(result, Options)
    return result


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-e"], "-e needs a value"),
        (["-e", "-1", "x"], "-e: '-1' is not an exit status"),
        (["-p", "0", "x"], "-p: '0' is not a signal number; use 1 to"),
        (["-p", "SIG_IGN", "x"], "-p: 'SIG_IGN' is not a signal"),
        (["-r", "x:1", "x"], "-r 'x:1': 'x' is not a signal"),
        (["-r", "17:1", "x"], "-r '17:1': pidone never forwards signal 17"),
        (["--rewrite=", "x"], "--rewrite needs a value"),
        (["-cg", "x"], "-c (or DUMB_INIT_SETSID=0) and -g"),
    ],
)
def test_bad_peer_flags_are_usage_errors(args: list[str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_single(args, {})
    assert message in str(info.value)
    assert info.value.exit_code == 2


def test_peer_variables_must_be_well_formed() -> None:
    with pytest.raises(UsageError, match="TINI_VERBOSITY='10': use a level from 0 to 9"):
        parse_single(["x"], {"TINI_VERBOSITY": "10"})


def test_a_huge_value_is_refused_and_cut_short_in_the_message() -> None:
    with pytest.raises(UsageError) as info:
        parse_single(["-e", "9" * 5000, "x"], {})
    assert len(str(info.value)) < 120
