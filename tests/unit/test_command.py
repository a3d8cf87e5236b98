"""Command strings -> argv: direct exec, `sh -c "exec ..."`, or a shell that stays."""

from __future__ import annotations

import pytest

from pidone.config import command
from pidone.config.command import Command


def direct(*argv: str) -> Command:
    return Command(argv, uses_shell=False, shell_stays=False)


def exec_shell(script: str) -> Command:
    return Command(("/bin/sh", "-c", script), uses_shell=True, shell_stays=False)


def staying_shell(script: str) -> Command:
    return Command(("/bin/sh", "-c", script), uses_shell=True, shell_stays=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("uwsgi --ini uwsgi.ini", direct("uwsgi", "--ini", "uwsgi.ini")),
        ("  redis-server   --port 6379  ", direct("redis-server", "--port", "6379")),
        # Shell syntax inside quotes or escaped is just text: no shell.
        ("""echo "a | b" 'c && d; $HOME *'""", direct("echo", "a | b", "c && d; $HOME *")),
        ("echo a\\ b \\| \\*", direct("echo", "a b", "|", "*")),
        ("gunicorn -b 0.0.0.0:8000 app:wsgi", direct("gunicorn", "-b", "0.0.0.0:8000", "app:wsgi")),
        ("prog --opt=value a~b x#y", direct("prog", "--opt=value", "a~b", "x#y")),
        ('prog ""', direct("prog", "")),
    ],
)
def test_no_shell_syntax_is_exec_directly(text: str, expected: Command) -> None:
    assert command.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "script"),
    [
        ("celery worker 2>&1 >log", "exec celery worker 2>&1 >log"),
        ("prog >&2", "exec prog >&2"),
        ("prog >| out", "exec prog >| out"),
        ("prog < in >> out", "exec prog < in >> out"),
        (">log prog", "exec >log prog"),
        ("ls *.conf", "exec ls *.conf"),
        ("ls conf.?", "exec ls conf.?"),
        ("ls [ab].conf", "exec ls [ab].conf"),
        ("prog ~/data", "exec prog ~/data"),
        ("prog # a comment", "exec prog # a comment"),
        ("prog --id $(cat /etc/id)", "exec prog --id $(cat /etc/id)"),
        # A pipe or list inside $(...) does not make the command a pipeline.
        ("prog --id $(cat /x | head -1; true)", "exec prog --id $(cat /x | head -1; true)"),
        ("prog $((1 + 2))", "exec prog $((1 + 2))"),
        ("prog `hostname`", "exec prog `hostname`"),
        ("prog $HOME", "exec prog $HOME"),
        ('prog "$HOME"', 'exec prog "$HOME"'),
        ('prog "\\$x"', 'exec prog "\\$x"'),  # shlex would keep the backslash
        ('prog "`id`"', 'exec prog "`id`"'),
        ("prog ${HOME}", "exec prog ${HOME}"),
        # Assignments stay in front: `exec VAR=1 prog` would run "VAR=1".
        ("PORT=80 ./serve", "PORT=80 exec ./serve"),
        ("A=1 B='x y' prog arg", "A=1 B='x y' exec prog arg"),
        # Already exec'd: no second exec.
        ("exec prog arg", "exec prog arg"),
    ],
)
def test_simple_commands_needing_a_shell_are_execd_by_it(text: str, script: str) -> None:
    assert command.parse(text) == exec_shell(script)


@pytest.mark.parametrize(
    "text",
    [
        "redis-server | tee log",
        "prog |& tee log",
        "a && b",
        "a || b",
        "a; b",
        "a & b",
        "prog &",
        "(cd /srv && prog)",
        "a\nb",
        "if true; then prog; fi",
        "while true; do prog; done",
        "{ prog; }",
        "! prog",
        "exec prog | tee log",
        "A=1",
        "A=1 B=2",
        "cd /srv && exec prog",
    ],
)
def test_pipelines_lists_and_compounds_keep_the_shell(text: str) -> None:
    assert command.parse(text) == staying_shell(text)


def test_line_continuation_is_left_to_the_shell_not_a_list() -> None:
    # shlex would make "\n" an argument; sh joins the lines.
    assert command.parse("prog \\\n  --flag") == exec_shell("exec prog \\\n  --flag")
    assert command.parse('prog "a\\\nb"') == exec_shell('exec prog "a\\\nb"')


def test_expansion_happens_first() -> None:
    env = {"PORT": "8000", "ARGS": "-v -x", "EMPTY": ""}
    assert command.parse("serve --port ${PORT} $ARGS", env) == direct(
        "serve", "--port", "8000", "-v", "-x"
    )
    assert command.parse("serve ${EMPTY:-default}", env) == direct("serve", "default")
    # $$ leaves a $ for the shell, which then has to run the command.
    assert command.parse("echo $$HOME", env) == exec_shell("exec echo $HOME")
    assert command.parse("echo '$$HOME'", env) == direct("echo", "$HOME")


def test_without_env_nothing_is_expanded() -> None:
    assert command.parse("echo ${X}") == exec_shell("exec echo ${X}")


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (
            "   ",
            None,
            "the command is empty (after ${VAR} expansion); "
            "write the program to run, or set the variables it uses",
        ),
        (
            "${CMD}",
            {},
            "the command is empty (after ${VAR} expansion); "
            "write the program to run, or set the variables it uses",
        ),
        (
            'echo "abc',
            None,
            'a double quote (") is never closed; close it, or escape it with a backslash',
        ),
        (
            "echo 'abc",
            None,
            "a single quote (') is never closed; close it, or escape it with a backslash",
        ),
        (
            "echo `abc",
            None,
            "a backtick (`) is never closed; close it, or escape it with a backslash",
        ),
        ("echo $(abc", None, '"$(" is never closed by ")"; add the ")"'),
        # As in sh, a quote inside $(...) opens a new string.
        (
            'echo "$(abc"',
            None,
            'a double quote (") is never closed; close it, or escape it with a backslash',
        ),
        ("echo abc\\", None, "the command ends with a backslash; remove it"),
    ],
)
def test_bad_commands(text: str, env: dict[str, str] | None, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        command.parse(text, env)
    assert str(caught.value) == message


def test_malformed_reference_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r'"\$\{1\}" does not start with a variable name'):
        command.parse("echo ${1}", {})
