"""The two ini dialects `pidone import` reads, bounded, with a line for every key.

configparser gives no line numbers and folds repeated keys into one, so
each dialect gets this small reader instead:

- supervisord's (Python's RawConfigParser as supervisord sets it up): `=` or
  `:` between key and value, keys in lower case, whole-line comments with
  `;` or `#`, inline ones only after whitespace (`a=b;c` keeps `;c`),
  continuation lines indented deeper than their key;
- uWSGI's: `key = value` split at the first `=` (a key alone is an empty
  value), whole-line comments only, no continuation, keys repeat.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_INPUT_BYTES = 1024 * 1024  # as config.load's bound on each file it reads
MAX_LINE_CHARS = 128 * 1024  # one value: the kernel's limit for one argument


class BadInput(Exception):
    """The file is not what its reader expects: "file:line: what; how to fix"."""


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    line: int
    file: str = ""  # the file it is in, when a config spans several ([include])


@dataclass
class Section:
    name: str
    line: int
    entries: list[Entry] = field(default_factory=list)
    file: str = ""  # the file of its header (its entries may come from others)

    def last(self) -> dict[str, Entry]:
        """Each key's last entry (a repeated key: the last wins, as in supervisord)."""
        return {entry.key: entry for entry in self.entries}


_SUPERVISORD_INLINE = re.compile(r"\s[;#]")


def _check_size(text: str, filename: str) -> None:
    if len(text) > MAX_INPUT_BYTES:
        raise BadInput(f"{filename}: larger than {MAX_INPUT_BYTES // 1024} KiB; not a config file")
    if "\0" in text:
        raise BadInput(f"{filename}: holds a NUL character; not a text config file")


def _section_name(line: str, filename: str, number: int) -> str:
    if not line.endswith("]") or len(line) < 3:
        raise BadInput(f"{filename}:{number}: {line[:80]!r} is not a [section] header")
    return line[1:-1].strip()


def read_supervisord(text: str, filename: str) -> list[Section]:
    _check_size(text, filename)
    sections: list[Section] = []
    current: Section | None = None
    key_indent = -1  # indentation of the key whose value may continue
    pending_blank = 0  # blank lines inside a value continue only if more follows
    for number, raw in enumerate(text.splitlines(), start=1):
        if len(raw) > MAX_LINE_CHARS:
            raise BadInput(f"{filename}:{number}: a line longer than {MAX_LINE_CHARS} characters")
        stripped = raw.strip()
        if not stripped or stripped[0] in ";#":
            if not stripped:
                pending_blank += 1
            continue
        inline = _SUPERVISORD_INLINE.search(raw)
        line = (raw[: inline.start()] if inline else raw).rstrip()
        indent = len(raw) - len(raw.lstrip())
        if current is not None and current.entries and 0 <= key_indent < indent:
            last = current.entries[-1]
            extra = "\n" * pending_blank + "\n" + line.strip()
            current.entries[-1] = Entry(last.key, last.value + extra, last.line, last.file)
            pending_blank = 0
            continue
        pending_blank = 0
        line = line.strip()
        if not line:
            continue
        if line.startswith("["):
            name = _section_name(line, filename, number)
            # A repeated section adds to the first, as supervisord's parser has it.
            current = next((s for s in sections if s.name == name), None)
            if current is None:
                current = Section(name, number, file=filename)
                sections.append(current)
            key_indent = -1
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i > 0), default=-1)
        if cut < 0:
            raise BadInput(
                f"{filename}:{number}: {line[:80]!r} is not a key = value line "
                "(supervisord refuses it too); fix or remove it"
            )
        if current is None:
            raise BadInput(
                f"{filename}:{number}: {line[:80]!r} comes before any [section]; "
                "supervisord refuses it too"
            )
        key, value = line[:cut].strip().lower(), line[cut + 1 :].strip()
        current.entries.append(Entry(key, value, number, filename))
        key_indent = indent
    return sections


def merge_sections(into: list[Section], more: list[Section]) -> None:
    """Another file's sections added as supervisord's parser reads a second
    file: a section seen before gets its entries (each key's last wins), a
    new one is appended."""
    for section in more:
        known = next((s for s in into if s.name == section.name), None)
        if known is None:
            into.append(section)
        else:
            known.entries.extend(section.entries)


def read_uwsgi(text: str, filename: str) -> list[Section]:
    _check_size(text, filename)
    sections: list[Section] = [Section("", 0)]  # keys before any header: uWSGI ignores them
    for number, raw in enumerate(text.splitlines(), start=1):
        if len(raw) > MAX_LINE_CHARS:
            raise BadInput(f"{filename}:{number}: a line longer than {MAX_LINE_CHARS} characters")
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("["):
            sections.append(Section(_section_name(line, filename, number), number))
            continue
        key, _, value = line.partition("=")
        sections[-1].entries.append(Entry(key.strip(), value.strip(), number))
    return sections
