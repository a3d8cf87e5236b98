"""Where tables and keys are in a TOML text, for error messages that say
file:line (tomllib gives values, not positions)."""

from __future__ import annotations

import re

_HEADER = re.compile(r"\[\[?(?P<path>[^\]]*)\]\]?\s*(#.*)?")
_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_KEY = re.compile(rf"(?P<path>{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")
_INLINE_KEY = re.compile(r"[{,]\s*(?P<path>[A-Za-z0-9_-]+|\"[^\"]*\")\s*=")
_PART = re.compile(r""""([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+)""")


class TomlLines:
    """Line numbers of tables and keys, found by scanning the text: tomllib
    gives values, not positions. Good for every layout pidone's docs use
    (tables, dotted keys, one-line inline tables); None when not found."""

    def __init__(self, text: str) -> None:
        self._lines: dict[str, int] = {}
        table = ""
        open_string: str | None = None  # inside a multi-line string
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if open_string is not None:
                if line.count(open_string) % 2:
                    open_string = None
                continue
            header = _HEADER.fullmatch(line)
            if header:
                table = dotted(header["path"])
                self._add(table, number)
                continue
            key = _KEY.match(line)
            if not key:
                continue
            path = dotted(key["path"])
            full = f"{table}.{path}" if table else path
            self._add(full, number)
            rest = line[key.end() :]
            for inner in _INLINE_KEY.finditer(rest.lstrip()):
                self._add(f"{full}.{dotted(inner['path'])}", number)
            for quotes in ('"""', "'''"):
                if rest.count(quotes) % 2:
                    open_string = quotes

    def _add(self, path: str, number: int) -> None:
        parts = path.split(".")
        for end in range(1, len(parts) + 1):
            self._lines.setdefault(".".join(parts[:end]), number)

    def find(self, table: str, key: str | None = None) -> int | None:
        """The line of `key` in `table` ("" for the top level), else of the table."""
        path = f"{table}.{key}" if table and key else (key or table)
        return self._lines.get(path) or self._lines.get(table)


def dotted(path: str) -> str:
    return ".".join(a or b or c for a, b, c in _PART.findall(path))
