"""A Conversion -> the text of a Procfile and a pidone.toml.

The Procfile holds the commands (`name: command`, one line each), pidone.toml
every other key. What was not translated heads pidone.toml as comments, each
with its source file:line, and so does the mapping of renamed processes.
"""

from __future__ import annotations

import json
import re

from pidone.config.procfile import NAME
from pidone.config.procfile import parse as parse_procfile
from pidone.convert.model import Conversion, Note, Process
from pidone.errors import ConfigError

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def notes(conv: Conversion) -> list[str]:
    """What was not translated, and how names were mapped: one line each."""
    lines = [str(note) for note in conv.notes]
    for where, source, name in conv.renamed:
        why = (
            "the name is taken"
            if NAME.fullmatch(source)
            else 'a Procfile name holds only letters, digits, "_" and "-"'
        )
        lines.append(str(Note(where, repr(source), f"named {name} ({why})")))
    return lines


def in_procfile(process: Process) -> bool:
    """Can the command be a Procfile line, read back as it is? (One line, no
    trailing backslash: else it is `command` in pidone.toml.)"""
    try:
        entries = parse_procfile(f"{process.name}: {process.command}", "Procfile")
    except ConfigError:
        return False
    return [e.command for e in entries] == [process.command]


def procfile(conv: Conversion) -> str:
    out = [f"# Procfile: by `pidone import` from {_one_line(conv.path)} ({conv.kind})"]
    lines = [p for p in conv.processes if in_procfile(p)]
    width = max((len(p.name) for p in lines), default=0)
    out += [f"{p.name + ':':<{width + 1}} {p.command}" for p in lines]
    if len(lines) < len(conv.processes):
        out.append("# (the other commands are in pidone.toml: a Procfile line could not hold them)")
    return "\n".join(out) + "\n"


def pidone_toml(conv: Conversion) -> str:
    out = [f"# pidone.toml: by `pidone import` from {_one_line(conv.path)} ({conv.kind})."]
    untranslated = notes(conv)
    if untranslated:
        out.append(f"# Not translated, or translated with a difference ({len(untranslated)}):")
        out += [f"#   {_one_line(line)}" for line in untranslated]
    else:
        out.append("# Everything was translated.")
    if conv.settings:
        out += ["", "[pidone]"]
        out += [f"{key} = {_toml(conv.settings[key])}" for key in sorted(conv.settings)]
    for process in conv.processes:
        keys = (
            process.keys if in_procfile(process) else {"command": process.command, **process.keys}
        )
        if not keys:
            continue
        out += ["", f"[process.{process.name}]"]
        out += [f"{key} = {_toml(value)}" for key, value in keys.items()]
    return "\n".join(out) + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml(key)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        # JSON's string escapes are TOML's, but for DEL, which TOML wants escaped.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_key(str(key))} = {_toml(item)}" for key, item in value.items())
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"no TOML form for {type(value).__name__}")
