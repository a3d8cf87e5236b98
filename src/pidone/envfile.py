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
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pidone.errors import ConfigError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT = re.compile(r"(?:export\s+)?(?P<key>[^=\s]*)\s*=(?P<value>.*)", re.DOTALL)
_INLINE_COMMENT = re.compile(r"\s#")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}
EXPANSION_RULE = "write ${NAME}, ${NAME:-default} or $NAME, and $$ for a literal $"


def expand(text: str, env: Mapping[str, str]) -> str:
    """Expand ${VAR}, ${VAR:-default} and $VAR from `env`; `$$` is a literal `$`.

    An unknown variable expands to "" (and `:-` also replaces ""). A `$` not
    followed by a name, `{` or `$` stays as it is, so `$(cmd)` and `$1` reach
    the shell untouched. Raises ValueError on a malformed `${...}`.
    """
    value, _ = _expand_until(text, 0, env, closing=None)
    return value


def _expand_until(
    text: str, i: int, env: Mapping[str, str], closing: str | None
) -> tuple[str, int]:
    """Expand from text[i] up to `closing` (exclusive) or the end; return the end index."""
    parts: list[str] = []
    while i < len(text):
        char = text[i]
        if char == closing:
            return "".join(parts), i
        if char == "$":
            value, i = _expand_dollar(text, i, env)
            parts.append(value)
        else:
            parts.append(char)
            i += 1
    if closing is not None:
        raise ValueError(f'"${{" is never closed by "{closing}"; {EXPANSION_RULE}')
    return "".join(parts), i


def _expand_dollar(text: str, i: int, env: Mapping[str, str]) -> tuple[str, int]:
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
        default, end = _expand_until(text, after + 2, env, closing="}")
        return env.get(name[0]) or default, end + 1
    raise ValueError(f'"${{{name[0]}" must be followed by "}}" or ":-default}}"; {EXPANSION_RULE}')


def parse(text: str, filename: str, *, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the variables of a .env file in file order, or raise ConfigError."""
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
            # A quoted value may continue on the following lines.
            while _closing_quote(raw, quote) < 0 and index < len(lines):
                raw += "\n" + lines[index]
                index += 1
        env = {**(environ or {}), **result}
        try:
            result[key] = _value(raw, env)
        except ValueError as exc:
            problems.append(f"{where}: {key}: {exc}")
    if problems:
        raise ConfigError(problems)
    return result


def _value(raw: str, env: Mapping[str, str]) -> str:
    """Decode the text after `KEY=`: quoted, or unquoted up to a ` # comment`."""
    quote = raw[:1]
    if quote not in ("'", '"'):
        comment = _INLINE_COMMENT.search(raw)
        return expand((raw[: comment.start()] if comment else raw).strip(), env)
    end = _closing_quote(raw, quote)
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


def _closing_quote(raw: str, quote: str) -> int:
    """Index of the quote closing raw[0], or -1; a double quote can be escaped."""
    i = 1
    while i < len(raw):
        if raw[i] == "\\" and quote == '"':
            i += 2
            continue
        if raw[i] == quote:
            return i
        i += 1
    return -1


def _double_quoted(body: str, env: Mapping[str, str]) -> str:
    parts: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            escaped = body[i + 1]
            # An unknown escape keeps its backslash, as the shell does.
            parts.append(_ESCAPES.get(escaped, "\\" + escaped))
            i += 2
        elif char == "$":
            value, i = _expand_dollar(body, i, env)
            parts.append(value)
        else:
            parts.append(char)
            i += 1
    return "".join(parts)
