"""The options of `pidone run` and `pidone check`, parsed by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from pidone.commands import Args, parse_args
from pidone.errors import UsageError


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run"], Args("run")),
        (
            ["run", "-f", "Procfile.web", "-c", "conf/pidone.toml", "-e", ".env.prod"],
            Args("run", Path("Procfile.web"), Path("conf/pidone.toml"), Path(".env.prod")),
        ),
        (
            ["check", "--procfile=P", "--config", "C", "--env=E"],
            Args("check", Path("P"), Path("C"), Path("E")),
        ),
        (["run", "-cC", "-fP"], Args("run", Path("P"), Path("C"))),
        (["run", "-c", "a", "-c", "b"], Args("run", config=Path("b"))),  # the last one wins
        (["run", "--metrics", "0.0.0.0:9100"], Args("run", metrics="0.0.0.0:9100")),
        (["run", "--metrics=[::1]:9100"], Args("run", metrics="[::1]:9100")),
    ],
)
def test_options(argv: list[str], expected: Args) -> None:
    assert parse_args(argv) == expected


@pytest.mark.parametrize("argv", [["run", "-h"], ["check", "--help"], ["run", "-c", "x", "-h"]])
def test_help_is_returned_for_printing(argv: list[str]) -> None:
    text = parse_args(argv)
    assert isinstance(text, str)
    assert text.startswith(f"usage: pidone {argv[0]} [-f PROCFILE] [-c CONFIG] [-e ENVFILE]")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--bogus"], "run: unknown option '--bogus'"),
        (["run", "-x"], "run: unknown option '-x'"),
        (["check", "web"], "check: unknown argument 'web'"),
        (["run", "-c"], "run: -c needs a file name"),
        (["run", "--config="], "run: --config needs a file name"),
        (["run", "--metrics"], "run: --metrics needs a HOST:PORT address, like 0.0.0.0:9100"),
        (
            ["run", "--metrics", "9100"],
            """run: --metrics '9100' must be "HOST:PORT", like "127.0.0.1:9100\"""",
        ),
    ],
)
def test_usage_errors_say_what_is_wrong(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_args(argv)
    assert str(caught.value) == message
    assert caught.value.exit_code == 2
