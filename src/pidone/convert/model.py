"""What a conversion produces, whatever it read: processes with their
pidone.toml keys, [pidone] settings, and the list of what was left out."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pidone.config import command as commands
from pidone.config import procfile, values
from pidone.config.values import BadValue

MAX_PROCESSES = 1000  # numprocs is the source's word: bounded before it is multiplied
SHOWN_CHARS = 120  # of a source value quoted in a note


def shown(text: str) -> str:
    """A value in a note: one line, cut short."""
    text = " ".join(text.split())
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "...")


@dataclass(frozen=True)
class Note:
    """Something not translated (or translated with a difference), and why."""

    where: str  # "file:line"
    what: str  # "[program:web] stdout_logfile"
    why: str

    def __str__(self) -> str:
        return " ".join(f"{self.where}: {self.what}: {self.why}".split())


@dataclass
class Process:
    name: str  # the Procfile name
    source: str  # the name in the source ("web:00", or the daemon's command)
    where: str  # file:line of its section or option
    command: str
    keys: dict[str, object] = field(default_factory=dict)  # pidone.toml, in order


@dataclass
class Conversion:
    kind: str  # "supervisord" or "uWSGI"
    path: str
    processes: list[Process] = field(default_factory=list)
    settings: dict[str, object] = field(default_factory=dict)  # [pidone]
    notes: list[Note] = field(default_factory=list)
    renamed: list[tuple[str, str, str]] = field(default_factory=list)  # where, source, name

    _seen: set[Note] = field(default_factory=set, repr=False)

    def note(self, where: str, what: str, why: str) -> None:
        note = Note(where, what, why)
        if note not in self._seen:  # numprocs instances would say it each
            self._seen.add(note)
            self.notes.append(note)


_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def procfile_name(wanted: str, taken: set[str]) -> str:
    """A Procfile name for `wanted`, by one deterministic rule: each run of
    characters a name cannot hold becomes "-" (ends trimmed), an empty result
    is "process", and a taken or reserved name gets "-2", "-3", ..."""
    base = _NOT_NAME.sub("-", wanted).strip("-") or "process"
    name, n = base, 1
    while name in taken or name in procfile.RESERVED:
        n += 1
        name = f"{base}-{n}"
    assert procfile.NAME.fullmatch(name)
    taken.add(name)
    return name


# Each value written, held to the rule pidone's loader reads it by: what the
# source allowed and pidone does not (an empty directory, a relative pidfile)
# is refused here, with the source's line, not later by `pidone check`.
_RULES: dict[str, Callable[[Any], object]] = {
    "directory": values.text('"/srv/app"'),
    "user": values.identity,
    "group": values.identity,
    "environment": values.environment,
    "pidfile": values.absolute_path('"/run/app.pid"'),
    "stop_timeout": values.seconds,
    "stop_signal": values.signal_number,
    "reload_signal": values.signal_number,
    "umask": values.octal(0o777, '"0027"'),
    "ready": lambda value: values.ready(value, {}),
}


def _paths(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(p, str) and p for p in value)


def validate(conv: Conversion) -> None:
    """Raise BadInput for the first value pidone would refuse."""
    from pidone.convert.ini import BadInput

    for process in conv.processes:
        try:
            commands.parse(process.command)
        except ValueError as exc:
            raise BadInput(f"{process.where}: {process.source}: the command: {exc}") from None
        for key, value in process.keys.items():
            rule = _RULES.get(key)
            try:
                if rule is not None:
                    rule(value)
                if key == "touch" and not _paths(value):
                    raise BadValue("must be a list of file paths")
            except BadValue as exc:
                raise BadInput(
                    f"{process.where}: {process.source}: {key} = {shown(str(value))}: {exc} "
                    "(pidone's rule for it)"
                ) from None
