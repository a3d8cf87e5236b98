"""Procfile parsing (Heroku format), pure: text in, entries out.

    # a comment
    web: uwsgi --ini uwsgi.ini
    worker: celery -A app worker

Unlike honcho, a line that does not parse is never skipped: every bad line,
empty command and duplicate name is reported with file:line and the fix, all
at once in one ConfigError. As in foreman and honcho, each line stands alone:
a line ending in a backslash is refused (it does not continue on the next).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pidone.errors import ConfigError

NAME = re.compile(r"[A-Za-z0-9_-]+")
NAME_RULE = 'use only letters, digits, "_" and "-"'
# Names no process may take, and why.
RESERVED = {
    "all": '"all" is reserved (pidone ctl uses it for every process); pick another name',
    "pidone": '"pidone" is reserved (it names pidone\'s own log lines); pick another name',
}

# The name is whatever precedes the first colon, so that a bad name gets its
# own message instead of a vague "does not parse".
_LINE = re.compile(r"(?P<name>[^:]*):(?P<command>.*)")


@dataclass(frozen=True)
class ProcfileEntry:
    name: str
    command: str
    line: int


def parse(text: str, filename: str) -> list[ProcfileEntry]:
    """Return the entries of a Procfile in file order, or raise ConfigError."""
    entries: list[ProcfileEntry] = []
    first_line: dict[str, int] = {}
    problems: list[str] = []
    continued = False  # the line before ended in a backslash: already reported
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        after_backslash, continued = continued, line.endswith("\\")
        if not line or line.startswith("#"):
            continue
        where = f"{filename}:{number}"
        if after_backslash and not _named(line):
            continue  # meant as the rest of that line; its problem says so
        if continued:
            problems.append(
                f"{where}: the line ends with a backslash, but a Procfile has no continuation "
                "lines (foreman and honcho read each line alone); write the whole command on "
                "this line, or move it to a script"
            )
            continue
        if "\0" in line:
            problems.append(f"{where}: holds a NUL character, which no command can; remove it")
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            problems.append(
                f'{where}: "{line}" is not a "name: command" line; '
                'write it as "name: command", or start it with "#" to make it a comment'
            )
            continue
        name = match["name"].strip()
        command = match["command"].strip()
        if not NAME.fullmatch(name):
            problems.append(f'{where}: "{name}" is not a valid process name; {NAME_RULE}')
            continue
        if not command:
            problems.append(f'{where}: process "{name}" has no command; write "{name}: COMMAND"')
            continue
        if name in RESERVED:
            problems.append(f"{where}: {RESERVED[name]}")
            continue
        if name in first_line:
            problems.append(
                f'{where}: process "{name}" is already defined on line {first_line[name]}; '
                "rename or remove one of them"
            )
            continue
        first_line[name] = number
        entries.append(ProcfileEntry(name, command, number))
    if problems:
        raise ConfigError(problems)
    return entries


def _named(line: str) -> bool:
    """Does the line start with a valid process name and a colon?"""
    match = _LINE.fullmatch(line)
    return match is not None and NAME.fullmatch(match["name"].strip()) is not None
