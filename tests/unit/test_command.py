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


@pytest.mark.parametrize(
    "text",
    [
        "serve --port ${PORT} $ARGS",
        "serve ${EMPTY:-default}",
        'serve "${PORT:="3000"}"',
        "echo $$",
        "echo ${#X} ${X%.*} ${X:?set X}",
        "${CMD}",
    ],
)
def test_a_command_with_a_dollar_goes_to_the_shell_as_written(text: str) -> None:
    # pidone puts no value into the text: the shell expands it, by its rules.
    assert command.parse(text) == exec_shell("exec " + text)


def test_a_list_with_variables_goes_to_the_shell_untouched() -> None:
    rails = '[ -n "$RAILS_STARTUP" ] && $RAILS_STARTUP || bin/rails server -b 0.0.0.0'
    assert command.parse(rails) == staying_shell(rails)
    inner = "sh -c 'exec gunicorn -b \"0.0.0.0:${PORT:-8000}\" app'"
    assert command.parse(inner) == direct(
        "sh", "-c", 'exec gunicorn -b "0.0.0.0:${PORT:-8000}" app'
    )


def test_a_dollar_in_single_quotes_is_text_and_needs_no_shell() -> None:
    assert command.parse("echo '$HOME'") == direct("echo", "$HOME")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("   ", "the command is empty; write the program to run"),
        (
            'echo "abc',
            'a double quote (") is never closed; close it, or escape it with a backslash',
        ),
        (
            "echo 'abc",
            "a single quote (') is never closed; close it, or escape it with a backslash",
        ),
        (
            "echo `abc",
            "a backtick (`) is never closed; close it, or escape it with a backslash",
        ),
        ("echo $(abc", '"$(" is never closed by ")"; add the ")"'),
        # As in sh, a quote inside $(...) opens a new string.
        (
            'echo "$(abc"',
            'a double quote (") is never closed; close it, or escape it with a backslash',
        ),
        ("echo abc\\", "the command ends with a backslash; remove it"),
    ],
)
def test_bad_commands(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        command.parse(text)
    assert str(caught.value) == message


def test_an_unclosed_dollar_brace_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r'"\$\{" is never closed by "\}"'):
        command.parse("echo ${PORT")


@pytest.mark.parametrize(
    ("text", "undefined"),
    [
        ('[ -n "$RAILS_STARTUP" ] && $RAILS_STARTUP || bin/rails s', {"RAILS_STARTUP"}),
        ("node a.js $OPTS ${ARGS} ${#LEN} ${FILE%.js}", {"OPTS", "ARGS", "LEN", "FILE"}),
        # Defaults and `?` are the author's own answer to "unset".
        ("serve ${A:-1} ${B-2} ${C:=3} ${D=4} ${E:?set E} ${F?} ${G:+x} ${H+y}", set()),
        # Single quotes: the inner script's own variables.
        ("sh -c 'echo $INNER' \"$OUTER\"", {"OUTER"}),
        # What the command sets itself, special parameters, escaped dollars.
        ("A=1; for i in 1 2; do read -r line; echo $A $i $line; done", set()),
        ("echo $$HOME $? $1 $@ \\$ESCAPED $KNOWN", set()),
    ],
)
def test_undefined_variables_a_command_uses(text: str, undefined: set[str]) -> None:
    assert command.undefined(text, {"KNOWN"}) == undefined


@pytest.mark.parametrize(
    ("text", "program"),
    [
        ("redis-server redis.conf", "redis-server"),
        ("python app.py $ARGS", "python"),  # the shell execs python
        ("PORT=80 ./serve *.conf", "./serve"),
        ("FOO=1 exec bin/worker $X", "bin/worker"),
        ("$PROGRAM --flag", ""),  # only the shell knows
        ("a | b", ""),  # the shell stays
        ('"my prog" $X', ""),  # quoted: not plain text
    ],
)
def test_the_program_a_command_ends_up_running_is_known_when_the_text_says_it(
    text: str, program: str
) -> None:
    # A pidfile daemon's executable is checked against it (system.Launcher).
    assert command.parse(text).program == program
