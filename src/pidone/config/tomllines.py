"""Where tables and keys are in a TOML text, for error messages that say
file:line (tomllib gives values, not positions), and the shape limits
checked before tomllib sees a text (its parser recurses, and its memory
grows with the square of a dotted key's length)."""

from __future__ import annotations

import re

_HEADER = re.compile(r"\[\[?(?P<path>[^\]]*)\]\]?\s*(#.*)?")
_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_KEY = re.compile(rf"(?P<path>{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")
_INLINE_KEY = re.compile(r"[{,]\s*(?P<path>[A-Za-z0-9_-]+|\"[^\"]*\")\s*=")
_PART = re.compile(r""""([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+)""")


MAX_NESTING = 32  # arrays and inline tables inside each other
MAX_KEY_PARTS = 32  # a.b.c... in one key or table header

_TOKEN = re.compile(r"""[\[\]{}=,.\n"'#]""")
_STRINGS = {
    '"""': re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"{3,5}', re.S),
    "'''": re.compile(r"'''.*?'{3,5}", re.S),
    '"': re.compile(r'"(?:[^"\\\n]|\\.)*"'),
    "'": re.compile(r"'[^'\n]*'"),
}


def shape_problem(text: str) -> tuple[int, str] | None:
    """(line, what is wrong) when text nests deeper than MAX_NESTING or has a
    key of more than MAX_KEY_PARTS parts; None otherwise, or when the text is
    not TOML enough to tell (tomllib then reports it). One pass, linear."""
    line = 1
    stack: list[str] = []  # "[" array, "{" inline table
    key_mode = True  # reading a key: at a line's start, after "{" or "," in an inline table
    header = False
    dots = 0
    i = 0
    while (found := _TOKEN.search(text, i)) is not None:
        char, i = found[0], found.end()
        if char == "#":
            end = text.find("\n", i)
            if end < 0:
                return None
            i = end
        elif char in "\"'":
            quotes = char * 3 if text.startswith(char * 3, found.start()) else char
            string = _STRINGS[quotes].match(text, found.start())
            if string is None:
                return None  # unclosed: tomllib says where
            line += text.count("\n", found.start(), string.end())
            i = string.end()
        elif char == "\n":
            line += 1
            if not stack:
                key_mode, header, dots = True, False, 0
        elif char == "." and key_mode:
            dots += 1
            if dots >= MAX_KEY_PARTS:
                return line, f"a key of more than {MAX_KEY_PARTS} dotted parts"
        elif char == "[" and key_mode and not stack and not header:
            header = True
            i += text.startswith("[", i)
        elif char == "]" and header:
            header = key_mode = False
            i += text.startswith("]", i)
        elif char in "[{":
            stack.append(char)
            key_mode, dots = char == "{", 0
            if len(stack) > MAX_NESTING:
                return line, f"arrays or tables nested more than {MAX_NESTING} deep"
        elif char in "]}":
            if stack:
                stack.pop()
            key_mode = False
        elif char == "=":
            key_mode = False
        elif char == "," and stack and stack[-1] == "{":
            key_mode, dots = True, 0
    return None


class TomlLines:
    """Line numbers of tables and keys, found by scanning the text: tomllib
    gives values, not positions. Good for every layout pidone's docs use
    (tables, dotted keys, one-line inline tables); None when not found."""

    def __init__(self, text: str) -> None:
        self._lines: dict[str, int] = {}
        self._text = text.splitlines()
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
        parts = path.split(".")[:MAX_KEY_PARTS]
        for end in range(1, len(parts) + 1):
            self._lines.setdefault(".".join(parts[:end]), number)

    def line(self, path: str) -> int | None:
        """The line of exactly `path` ("process.web.command"), None if absent."""
        return self._lines.get(path)

    def find(self, table: str, key: str | None = None) -> int | None:
        """The line of `key` in `table` ("" for the top level), else of the table."""
        path = f"{table}.{key}" if table and key else (key or table)
        return self._lines.get(path) or self._lines.get(table)

    def is_octal_literal(self, table: str, key: str, value: int) -> bool:
        """Is `value` of table.key written as a 0o literal (tomllib gives 432
        for both 0o660 and 432)? Looked for on the key's own line."""
        number = self._lines.get(f"{table}.{key}")
        if number is None:
            return False
        pattern = rf"(?:^|[\s{{,.\"']){re.escape(key)}[\"']?\s*=\s*0o([0-7_]+)"
        for digits in re.findall(pattern, self._text[number - 1]):
            if int(digits.replace("_", ""), 8) == value:
                return True
        return False


def dotted(path: str) -> str:
    return ".".join(a or b or c for a, b, c in _PART.findall(path))
