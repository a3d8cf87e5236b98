"""Procfile parsing: entries in order, every bad line reported with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pidone.config import procfile
from pidone.config.procfile import ProcfileEntry
from pidone.errors import ConfigError

FIXTURES = Path(__file__).parent.parent / "fixtures"


def problems_of(text: str, filename: str = "Procfile") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        procfile.parse(text, filename)
    return caught.value.problems


def test_entries_in_file_order_with_line_numbers() -> None:
    text = "# comment\n\nweb: uwsgi --ini uwsgi.ini\n  worker:celery -A app worker  \n"
    assert procfile.parse(text, "Procfile") == [
        ProcfileEntry("web", "uwsgi --ini uwsgi.ini", 3),
        ProcfileEntry("worker", "celery -A app worker", 4),
    ]


def test_command_keeps_colons_hashes_and_shell_syntax() -> None:
    text = "web: gunicorn -b 0.0.0.0:8000 app:wsgi # not a comment | tee log\n"
    assert procfile.parse(text, "Procfile") == [
        ProcfileEntry("web", "gunicorn -b 0.0.0.0:8000 app:wsgi # not a comment | tee log", 1)
    ]


def test_names_allow_letters_digits_dash_underscore() -> None:
    entries = procfile.parse("Web_2-x: run\n", "Procfile")
    assert [entry.name for entry in entries] == ["Web_2-x"]


def test_crlf_line_endings() -> None:
    assert procfile.parse("a: one\r\nb: two\r\n", "P") == [
        ProcfileEntry("a", "one", 1),
        ProcfileEntry("b", "two", 2),
    ]


def test_empty_and_comment_only_files_have_no_entries() -> None:
    assert procfile.parse("", "Procfile") == []
    assert procfile.parse("# nothing\n\n   \n", "Procfile") == []


def test_every_bad_line_of_the_bad_line_fixture_at_once() -> None:
    text = (FIXTURES / "bad-line" / "Procfile").read_text()
    assert problems_of(text, "bad-line/Procfile") == [
        'bad-line/Procfile:3: "this line has no colon" is not a "name: command" line; '
        'write it as "name: command", or start it with "#" to make it a comment',
        'bad-line/Procfile:4: "my web" is not a valid process name; '
        'use only letters, digits, "_" and "-"',
        'bad-line/Procfile:5: process "worker" has no command; write "worker: COMMAND"',
        'bad-line/Procfile:6: process "web" is already defined on line 2; '
        "rename or remove one of them",
    ]


def test_empty_name() -> None:
    assert problems_of(": run") == [
        'Procfile:1: "" is not a valid process name; use only letters, digits, "_" and "-"'
    ]


def test_error_message_is_every_problem_joined() -> None:
    with pytest.raises(ConfigError) as caught:
        procfile.parse("a\nb\n", "Procfile")
    assert str(caught.value) == "\n".join(caught.value.problems)
    assert len(caught.value.problems) == 2
    assert caught.value.exit_code == 2


def test_all_is_reserved_for_pidone_ctl() -> None:
    with pytest.raises(ConfigError) as caught:
        procfile.parse("all: sleep 1\nweb: x\n", "Procfile")
    assert caught.value.problems == [
        'Procfile:1: "all" is reserved (pidone ctl uses it for every process); pick another name'
    ]


CONTINUATION = (
    "the line ends with a backslash, but a Procfile has no continuation lines (foreman and "
    "honcho read each line alone); write the whole command on this line, or move it to a script"
)


def test_a_line_ending_in_a_backslash_is_refused_as_no_continuation_line() -> None:
    # The lines after it were read as "name: command" lines (and told to be comments).
    text = "web: gunicorn app \\\n  --workers 4 \\\n  -b 0.0.0.0:8000\nworker: celery\n"
    assert problems_of(text) == [f"Procfile:1: {CONTINUATION}"]


def test_a_real_entry_after_a_backslash_line_is_still_read() -> None:
    text = "web: gunicorn app \\\nworker: celery -A app\nbad line\n"
    assert problems_of(text) == [
        f"Procfile:1: {CONTINUATION}",
        'Procfile:3: "bad line" is not a "name: command" line; write it as "name: command", '
        'or start it with "#" to make it a comment',
    ]
