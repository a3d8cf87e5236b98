"""`.env` files and `${VAR}` expansion, pure.

    # comment
    export DATABASE_URL=postgres://db/app   # "export " is allowed and ignored
    GREETING='literal $text, no escapes'
    MOTD="line one\\nline two, home is ${HOME}"
    PLAIN=value with spaces   # a comment after whitespace is dropped

Single quotes are literal. Double quotes understand \\n \\t \\r \\" \\\\ \\$
and expand variables. Unquoted values are expanded too (as docker compose
does); quote them with '...' to keep a `$`. A quoted value may span lines.
Variables expand from the values defined earlier in the file, then from the
`environ` passed in, so a .env file can build on the real environment.

Bounded, so no input can exhaust memory or the stack: a value expands to at
most MAX_VALUE characters (the kernel's limit for one environment string or
argument, MAX_ARG_STRLEN), `${A:-${B:-...}}` nests at most MAX_DEPTH deep, and
everything one configuration expands adds up to at most Budget's total.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from pidone.errors import ConfigError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT = re.compile(r"(?:export\s+)?(?P<key>[^=\s]*)\s*=(?P<value>.*)", re.DOTALL)
_INLINE_COMMENT = re.compile(r"\s#")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}
EXPANSION_RULE = "write ${NAME}, ${NAME:-default} or $NAME, and $$ for a literal $"
MAX_VALUE = 128 * 1024  # characters of one expanded value
MAX_DEPTH = 16  # ${A:-${B:-...}} inside each other
MAX_TOTAL = 4 * 1024 * 1024  # characters expanded by one configuration load


class Budget:
    """What one configuration may expand in all (MAX_TOTAL characters): a
    value doubled by each line (A=${A}${A}) stops here, with its line."""

    def __init__(self, total: int = MAX_TOTAL) -> None:
        self.left = total

    def spend(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise ValueError(
                f"the expanded values add up to more than {MAX_TOTAL // (1024 * 1024)} MiB; "
                "use fewer or shorter ${VAR} references"
            )


def _check_size(size: int) -> None:
    if size > MAX_VALUE:
        raise ValueError(
            f"expands to more than {MAX_VALUE // 1024} KiB (the kernel's limit for one "
            "environment value or argument); use fewer or shorter ${VAR} references"
        )


def expand(text: str, env: Mapping[str, str], budget: Budget | None = None) -> str:
    """Expand ${VAR}, ${VAR:-default} and $VAR from `env`; `$$` is a literal `$`.

    An unknown variable expands to "" (and `:-` also replaces ""). A `$` not
    followed by a name, `{` or `$` stays as it is, so `$(cmd)` and `$1` reach
    the shell untouched. Raises ValueError on a malformed `${...}`, and past
    the bounds (MAX_VALUE, MAX_DEPTH, the budget's total).
    """
    value, _ = _expand_until(text, 0, env, closing=None, depth=0)
    if budget is not None:
        budget.spend(len(value))
    return value


def _expand_until(
    text: str, i: int, env: Mapping[str, str], closing: str | None, depth: int
) -> tuple[str, int]:
    """Expand from text[i] up to `closing` (exclusive) or the end; return the end index."""
    parts: list[str] = []
    size = 0
    while i < len(text):
        char = text[i]
        if char == closing:
            return "".join(parts), i
        if char == "$":
            value, i = _expand_dollar(text, i, env, depth)
            size += len(value)
            _check_size(size)
            parts.append(value)
        else:
            # Plain text in one slice: a long value costs one append, not one per character.
            end = _next_special(text, i, closing)
            parts.append(text[i:end])
            size += end - i
            i = end
    if closing is not None:
        raise ValueError(f'"${{" is never closed by "{closing}"; {EXPANSION_RULE}')
    return "".join(parts), i


_SPECIAL = {None: re.compile(r"\$"), "}": re.compile(r"[$}]")}


def _next_special(text: str, i: int, closing: str | None) -> int:
    """Index of the next `$` (or `closing`) at or after i, else len(text)."""
    found = _SPECIAL[closing].search(text, i)
    return found.start() if found else len(text)


def _expand_dollar(text: str, i: int, env: Mapping[str, str], depth: int) -> tuple[str, int]:
    """Expand the one `$` construct at text[i]; return its value and the index after it."""
    following = text[i + 1 : i + 2]
    if following == "$":
        return "$", i + 2
    if following != "{":
        name = _NAME.match(text, i + 1)
        if name is None:
            return "$", i + 1
        return env.get(name[0], ""), name.end()
    name = _NAME.match(text, i + 2)
    if name is None:
        raise ValueError(
            f'"{text[i : i + 12]}" does not start with a variable name; {EXPANSION_RULE}'
        )
    after = name.end()
    if text.startswith("}", after):
        return env.get(name[0], ""), after + 1
    if text.startswith(":-", after):
        if depth >= MAX_DEPTH:
            raise ValueError(
                f"${{...:-default}} nested more than {MAX_DEPTH} deep; write it flatter"
            )
        default, end = _expand_until(text, after + 2, env, closing="}", depth=depth + 1)
        return env.get(name[0]) or default, end + 1
    raise ValueError(f'"${{{name[0]}" must be followed by "}}" or ":-default}}"; {EXPANSION_RULE}')


def parse(
    text: str,
    filename: str,
    *,
    environ: Mapping[str, str] | None = None,
    budget: Budget | None = None,
) -> dict[str, str]:
    """Return the variables of a .env file in file order, or raise ConfigError."""
    budget = budget or Budget()
    lines = text.splitlines()
    result: dict[str, str] = {}
    problems: list[str] = []
    index = 0
    while index < len(lines):
        number = index + 1
        # Keep trailing blanks: they belong to a quoted value that goes on.
        line = lines[index].lstrip()
        index += 1
        if not line.strip() or line.startswith("#"):
            continue
        where = f"{filename}:{number}"
        match = _ASSIGNMENT.fullmatch(line)
        if match is None:
            problems.append(
                f'{where}: "{line.rstrip()}" is not a KEY=VALUE line; write KEY=VALUE, '
                'or start it with "#" to make it a comment'
            )
            continue
        key = match["key"]
        if not _NAME.fullmatch(key):
            problems.append(
                f'{where}: "{key}" is not a variable name; use letters, digits and "_", '
                "not starting with a digit"
            )
            continue
        raw = match["value"].lstrip()
        quote = raw[:1]
        if quote in ("'", '"'):
            # A quoted value may continue on the following lines: scan each
            # line once (rescanning the whole value per line was quadratic).
            # (A line break is never a quote, escaped or not: each next line
            # is scanned from its start.)
            pieces = [raw]
            while _closing_quote(pieces[-1], quote, len(pieces) == 1) < 0 and index < len(lines):
                pieces.append(lines[index])
                index += 1
            raw = "\n".join(pieces)
        if "\0" in raw:
            problems.append(f"{where}: {key}: holds a NUL character, which no value can; remove it")
            continue
        env = _Layered(environ or {}, result)
        try:
            result[key] = _value(raw, env)
            budget.spend(len(result[key]))
        except ValueError as exc:
            problems.append(f"{where}: {key}: {exc}")
            if budget.left < 0:
                break
    if problems:
        raise ConfigError(problems)
    return result


def _value(raw: str, env: Mapping[str, str]) -> str:
    """Decode the text after `KEY=`: quoted, or unquoted up to a ` # comment`."""
    quote = raw[:1]
    if quote not in ("'", '"'):
        comment = _INLINE_COMMENT.search(raw)
        return expand((raw[: comment.start()] if comment else raw).strip(), env)
    end = _closing_quote(raw, quote, 1)
    if end < 0:
        raise ValueError(f"the opening {quote} is never closed; add the closing {quote}")
    rest = raw[end + 1 :].strip()
    if rest and not rest.startswith("#"):
        raise ValueError(
            f'unexpected "{rest}" after the closing {quote}; '
            f"put everything inside the quotes, or start a comment with #"
        )
    body = raw[1:end]
    return body if quote == "'" else _double_quoted(body, env)


_QUOTE_END = {"'": re.compile("'"), '"': re.compile(r'["\\]')}


def _closing_quote(raw: str, quote: str, start: int) -> int:
    """Index of the quote closing a value, scanning raw from `start` (1: past
    the opening quote), or -1; a double quote can be escaped."""
    i = start
    while (found := _QUOTE_END[quote].search(raw, i)) is not None:
        if found[0] == quote:
            return found.start()
        i = found.start() + 2  # a backslash escapes the next character
    return -1


_ESCAPE_OR_DOLLAR = re.compile(r"[\\$]")


def _double_quoted(body: str, env: Mapping[str, str]) -> str:
    parts: list[str] = []
    size = 0
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            escaped = body[i + 1]
            # An unknown escape keeps its backslash, as the shell does.
            parts.append(_ESCAPES.get(escaped, "\\" + escaped))
            i += 2
        elif char == "$":
            value, i = _expand_dollar(body, i, env, 0)
            parts.append(value)
        else:
            found = _ESCAPE_OR_DOLLAR.search(body, i + 1)
            end = found.start() if found else len(body)
            parts.append(body[i:end])
            i = end
        size += len(parts[-1])
        _check_size(size)
    return "".join(parts)


class _Layered(Mapping[str, str]):
    """environ under the values read so far, without copying both for each line
    (the copy made a long .env quadratic)."""

    def __init__(self, base: Mapping[str, str], top: Mapping[str, str]) -> None:
        self.base, self.top = base, top

    def __getitem__(self, key: str) -> str:
        return self.top[key] if key in self.top else self.base[key]

    def __iter__(self) -> Iterator[str]:
        return iter({**self.base, **self.top})

    def __len__(self) -> int:
        return len({**self.base, **self.top})
