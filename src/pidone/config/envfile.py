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
from collections.abc import Callable, Iterator, Mapping

from pidone.errors import ConfigError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT = re.compile(r"(?:export\s+)?(?P<key>[^=\s]*)\s*=(?P<value>.*)", re.DOTALL)
_INLINE_COMMENT = re.compile(r"\s#")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}
EXPANSION_RULE = (
    "write $NAME, ${NAME} or a POSIX form (${NAME:-default}, ${NAME:=default}, "
    "${NAME:?message}, ${NAME:+word}, ${#NAME}, ${NAME%pattern}, ...), and $$ for a literal $"
)
MAX_VALUE = 128 * 1024  # characters of one expanded value
MAX_DEPTH = 16  # ${A:-${B:-...}} inside each other
MAX_TOTAL = 4 * 1024 * 1024  # characters expanded (or scanned by a pattern) by one load
MAX_PATTERN = 1024  # characters of the pattern in ${NAME%pattern} and its kin
# After ${NAME: the operators, longest first ("%%" before "%").
_OPERATORS = (":-", ":=", ":?", ":+", "-", "=", "?", "+", "%%", "%", "##", "#")


class Budget:
    """What one configuration may expand in all (MAX_TOTAL characters): a
    value doubled by each line (A=${A}${A}) stops here, with its line. The
    values a pattern is matched against count too (${B%x} scans all of B)."""

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
    """Expand $NAME and the POSIX ${NAME...} forms from `env`; `$$` is a literal `$`.

        ${V}  ${V-w} ${V:-w}  ${V=w} ${V:=w}  ${V?w} ${V:?w}  ${V+w} ${V:+w}
        ${#V}  ${V%p} ${V%%p} ${V#p} ${V##p}

    as sh(1) has them: without `:` a form tests "unset", with it "unset or
    empty"; a word is expanded only when it is used; `=` sets V for the rest
    of this text (not beyond it); `?` raises ValueError with the message;
    p is a glob pattern (* ? [...], a backslash quotes one character). An
    unknown variable expands to "". A `$` not followed by a name, `{` or `$`
    stays as it is, so `$(cmd)` and `$1` stay text. Raises ValueError on a
    malformed `${...}`, and past the bounds (MAX_VALUE, MAX_DEPTH,
    MAX_PATTERN, the budget's total).
    """
    scope = _Scope(env, budget or Budget())
    value, _ = _expand_until(text, 0, scope, closing=None, depth=0, live=True)
    scope.budget.spend(len(value))
    return value


class _Scope:
    """The variables one expansion sees: `env`, under what its ${V:=w} set."""

    def __init__(self, env: Mapping[str, str], budget: Budget) -> None:
        self.env = env
        self.assigned: dict[str, str] = {}
        self.budget = budget

    def get(self, name: str) -> str | None:
        if name in self.assigned:
            return self.assigned[name]
        return self.env.get(name)


def _expand_until(
    text: str, i: int, scope: _Scope, closing: str | None, depth: int, live: bool
) -> tuple[str, int]:
    """Expand from text[i] up to `closing` (exclusive) or the end; return the
    end index. Not `live`: only find the end (a word that is not used)."""
    parts: list[str] = []
    size = 0
    while i < len(text):
        char = text[i]
        if char == closing:
            return "".join(parts), i
        if char == "$":
            value, i = _expand_dollar(text, i, scope, depth, live)
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


def _expand_dollar(
    text: str, i: int, scope: _Scope, depth: int, live: bool = True
) -> tuple[str, int]:
    """Expand the one `$` construct at text[i]; return its value and the index after it."""
    following = text[i + 1 : i + 2]
    if following == "$":
        return "$", i + 2
    if following != "{":
        name = _NAME.match(text, i + 1)
        if name is None:
            return "$", i + 1
        return scope.get(name[0]) or "", name.end()
    length = text.startswith("#", i + 2) and not text.startswith("}", i + 3)
    name = _NAME.match(text, i + 3 if length else i + 2)
    if name is None:
        raise ValueError(
            f'"{text[i : i + 12]}" does not start with a variable name; {EXPANSION_RULE}'
        )
    after = name.end()
    value = scope.get(name[0])
    if text.startswith("}", after):
        if length:
            return str(len(value or "")), after + 1
        return value or "", after + 1
    operator = None if length else next((o for o in _OPERATORS if text.startswith(o, after)), None)
    if operator is None:
        raise ValueError(
            f'"${{{"#" if length else ""}{name[0]}" must be followed by "}}" or an operator '
            f"(:- - := = :? ? :+ + % %% # ##); {EXPANSION_RULE}"
        )
    if depth >= MAX_DEPTH:
        raise ValueError(f"${{...}} nested more than {MAX_DEPTH} deep; write it flatter")
    missing = value is None or (operator.startswith(":") and not value)
    kind = operator.lstrip(":")
    # Which forms use their word: the defaults when missing, `+` when not.
    used = live and (missing if kind in "-=?" else not missing if kind == "+" else True)
    word, end = _expand_until(text, after + len(operator), scope, "}", depth + 1, used)
    end += 1
    if not live:
        return "", end
    if kind in "-=?":
        if not missing:
            return value or "", end
        if kind == "=":
            scope.assigned[name[0]] = word
        elif kind == "?":
            state = "not set" if value is None else "empty"
            raise ValueError(f"{name[0]} is {state}: {word or 'it must be set'}")
        return word, end
    if kind == "+":
        return ("" if missing else word), end
    return _remove(value or "", word, operator, scope.budget), end


def _remove(value: str, pattern: str, operator: str, budget: Budget) -> str:
    """${V%p} ${V%%p} (shortest, longest suffix) ${V#p} ${V##p} (prefix)."""
    if len(pattern) > MAX_PATTERN:
        raise ValueError(
            f"the pattern of ${{NAME{operator}...}} is longer than {MAX_PATTERN} characters; "
            "use a shorter one"
        )
    budget.spend(len(value))
    tokens = _glob(pattern)
    longest = len(operator) == 2
    if operator[0] == "#":
        cut = _match_length(tokens, value, longest)
        return value if cut is None else value[cut:]
    cut = _match_length(tokens[::-1], value[::-1], longest)
    return value if cut is None else value[: len(value) - cut]


# A glob pattern as tokens: "*", or a test for one character.
_Token = Callable[[str], bool] | str
_CLASSES: dict[str, Callable[[str], bool]] = {
    "alnum": str.isalnum,
    "alpha": str.isalpha,
    "blank": lambda c: c in " \t",
    "digit": lambda c: c in "0123456789",
    "lower": str.islower,
    "print": str.isprintable,
    "punct": lambda c: c.isprintable() and not c.isalnum() and not c.isspace(),
    "space": str.isspace,
    "upper": str.isupper,
    "xdigit": lambda c: c in "0123456789abcdefABCDEF",
}


def _glob(pattern: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        i += 1
        if char == "*":
            if tokens[-1:] != ["*"]:  # ** is *
                tokens.append("*")
        elif char == "?":
            tokens.append(lambda c: True)
        elif char == "[" and (bracket := _bracket(pattern, i)) is not None:
            test, i = bracket
            tokens.append(test)
        else:
            if char == "\\" and i < len(pattern):
                char = pattern[i]
                i += 1
            tokens.append(char.__eq__)
    return tokens


def _bracket(pattern: str, i: int) -> tuple[Callable[[str], bool], int] | None:
    """The [...] expression whose "[" is before i, and the index after it;
    None when it is never closed (then "[" is an ordinary character)."""
    negate = pattern[i : i + 1] in ("!", "^")
    i += negate
    tests: list[Callable[[str], bool]] = []
    start = i
    while i < len(pattern):
        char = pattern[i]
        if char == "]" and i > start:

            def test(c: str) -> bool:
                return any(t(c) for t in tests) != negate

            return test, i + 1
        if pattern.startswith("[:", i) and (close := pattern.find(":]", i + 2)) > 0:
            found = _CLASSES.get(pattern[i + 2 : close])
            if found is not None:
                tests.append(found)
                i = close + 2
                continue
        if char == "\\" and i + 1 < len(pattern):
            i += 1
            char = pattern[i]
        if pattern[i + 1 : i + 2] == "-" and pattern[i + 2 : i + 3] not in ("", "]"):
            tests.append(_in_range(char, pattern[i + 2]))
            i += 3
        else:
            tests.append(char.__eq__)
            i += 1
    return None


def _in_range(low: str, high: str) -> Callable[[str], bool]:
    return lambda c: low <= c <= high


def _match_length(tokens: list[_Token], text: str, longest: bool) -> int | None:
    """The shortest (or longest) k such that text[:k] matches the pattern, or None.

    One pass over text with the pattern's states as the bits of an int
    (shift-and): linear in the text, no backtracking whatever the pattern."""
    accept = 1 << len(tokens)
    star_state = 0  # bit j+1 when token j is "*": that state loops on any character
    chars: dict[str, int] = {}  # character -> the bits j+1 whose token j accepts it
    for j, token in enumerate(tokens):
        if token == "*":
            star_state |= 1 << (j + 1)

    def closure(states: int) -> int:
        return states | ((states << 1) & star_state)  # "*" may match nothing

    def accepting(char: str) -> int:
        bits = chars.get(char)
        if bits is None:
            bits = 0
            for j, token in enumerate(tokens):
                if token != "*" and not isinstance(token, str) and token(char):
                    bits |= 1 << (j + 1)
            chars[char] = bits
        return bits

    states = closure(1)
    found = 0 if states & accept else None
    if found is not None and not longest:
        return found
    for k, char in enumerate(text, 1):
        states = closure(((states << 1) & accepting(char)) | (states & star_state))
        if not states:
            break
        if states & accept:
            found = k
            if not longest:
                break
    return found


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
            result[key] = _value(raw, _Scope(env, budget))
            budget.spend(len(result[key]))
        except ValueError as exc:
            problems.append(f"{where}: {key}: {exc}")
            if budget.left < 0:
                break
    if problems:
        raise ConfigError(problems)
    return result


def _value(raw: str, scope: _Scope) -> str:
    """Decode the text after `KEY=`: quoted, or unquoted up to a ` # comment`."""
    quote = raw[:1]
    if quote not in ("'", '"'):
        comment = _INLINE_COMMENT.search(raw)
        text = (raw[: comment.start()] if comment else raw).strip()
        return _expand_until(text, 0, scope, closing=None, depth=0, live=True)[0]
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
    return body if quote == "'" else _double_quoted(body, scope)


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


def _double_quoted(body: str, scope: _Scope) -> str:
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
            value, i = _expand_dollar(body, i, scope, 0)
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
