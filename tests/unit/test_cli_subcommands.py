"""The options of `pidone run` and `pidone check`, parsed with argparse (as
`pidone ctl`'s): every form the README gives, and argparse's messages."""

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
        (
            ["run", "web", "-c", "C", "worker"],
            Args("run", config=Path("C"), names=("web", "worker")),
        ),
        (["check", "web"], Args("check", names=("web",))),
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
        (["run", "--bogus"], "run: unrecognized arguments: --bogus"),
        (["run", "-x"], "run: unrecognized arguments: -x"),
        (["run", "--conf", "C"], "run: unrecognized arguments: --conf"),  # no abbreviations
        (["run", "-c"], "run: argument -c/--config: expected one argument"),
        (["run", "--config="], "run: argument -c/--config: needs a file name"),
        (["run", "--metrics"], "run: argument --metrics: expected one argument"),
        (
            ["run", "--metrics", "9100"],
            """run: argument --metrics: '9100' must be "HOST:PORT", like "127.0.0.1:9100\"""",
        ),
    ],
)
def test_usage_errors_say_what_is_wrong(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_args(argv)
    assert str(caught.value) == message
    assert caught.value.exit_code == 2


def test_a_usage_error_exits_2_with_the_subcommands_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pidone import cli

    assert cli.main(["check", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pidone: check: unrecognized arguments: --bogus\n\nusage: pidone check")
    assert "--metrics ADDR" in err


def test_parsing_leaves_nothing_of_argparse_in_pidone_run() -> None:
    # argparse's HelpFormatter imports shutil (and lzma, bz2) for the terminal
    # width unless given one; argparse, gettext and locale are dropped once
    # parsed: 0.6 MiB that `pidone run` would keep. usage() (an error, help)
    # may load argparse again: pidone exits then.
    import subprocess
    import sys

    probe = (
        "import sys; from pidone import commands; loaded = set(sys.modules);"
        " commands.parse_args(['run', '-f', 'P', '--metrics', '127.0.0.1:9100']);"
        " print(' '.join(sorted(set(sys.modules) - loaded)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert set(out.stdout.split()) <= {"_locale"}  # a builtin: never loaded twice
