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
