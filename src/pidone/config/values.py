"""Parsers for the values of pidone.toml: each turns a TOML value into what
a spec holds, or raises BadValue("what is wrong; how to fix it")."""

from __future__ import annotations

import math
import os
import re
import resource
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from pidone import hostport, signames
from pidone.config import command as commands
from pidone.config import envfile
from pidone.config.envfile import Budget
from pidone.config.specs import (
    CAPABILITIES,
    LOG_MATCH_MAX,
    MAX_EXIT_CODE,
    READY_KINDS,
    RLIMITS,
    ReadyCheck,
    ReadyKind,
    Rlimit,
)
from pidone.digits import ascii_int

T = TypeVar("T", bound=str)  # the fixed words of specs.py


class BadValue(Exception):
    """A value is wrong: "what is wrong; how to fix it"."""


def did_you_mean(word: str, known: Iterable[str], cutoff: float = 0.6) -> str:
    import difflib  # only a config with a mistake pays for it

    by_lower = {name.lower(): name for name in known}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=cutoff)
    return f'; did you mean "{by_lower[match[0]]}"?' if match else ""


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Every duration pidone sleeps on, from its config or from a control client,
# lies in 0..MAX_SECONDS: one day, far below the ~24.8 days (2**31 ms) past
# which epoll_wait's timeout overflows, and longer than any sane stop timeout,
# backoff or readiness wait.
MAX_SECONDS = 86_400.0
_RANGE = f"from 0 to {MAX_SECONDS:g} (one day)"


def seconds(value: Any) -> float:
    """A duration in seconds, 0..MAX_SECONDS: the one rule for every duration."""
    if not is_number(value) or not 0 <= value <= MAX_SECONDS:  # NaN fails too
        raise BadValue(f"must be a number of seconds {_RANGE}, like 10 or 2.5")
    return float(value)


def positive_seconds(value: Any) -> float:
    if seconds(value) == 0:
        raise BadValue(f"must be more than 0 seconds and at most {MAX_SECONDS:g}, like 10 or 2.5")
    return float(value)


# ASCII only: superscript digits pass isdigit(), and float() reads other scripts' digits.
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


def seconds_text(text: str) -> float:
    """A duration written as text ("2.5"), by the same rule as seconds()."""
    if not _DECIMAL.fullmatch(text.strip()):
        raise BadValue(f"must be a number of seconds {_RANGE}, like 2.5")
    return seconds(float(text))


# uid_t and gid_t are 32 bits; (uid_t)-1 = 4294967295 means "leave unchanged"
# to setresuid, so it would run the process as root.
MAX_ID = 2**32 - 2


def count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadValue("must be a whole number of at least 1, like 5")
    return value


def exit_codes(value: Any) -> tuple[int, ...]:
    """`success_exit_codes`: one or more exit codes, 0..255 (repeats dropped)."""
    if not isinstance(value, list) or not value or not all(_exit_code(v) for v in value):
        raise BadValue(f"must be a list of exit codes from 0 to {MAX_EXIT_CODE}, like [0, 3]")
    return tuple(dict.fromkeys(value))


def _exit_code(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_EXIT_CODE


def flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadValue("must be true or false (without quotes)")
    return value


def text(example: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise BadValue(f"must be a non-empty string, like {example}")
        return value

    return parse


def absolute_path(example: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or not value.startswith("/"):
            raise BadValue(f"must be an absolute path, like {example}")
        return value

    return parse


def choice(options: tuple[T, ...]) -> Callable[[Any], T]:
    """One of `options` (specs' tuples of fixed words), else a "did you mean"."""

    def parse(value: Any) -> T:
        if value not in options:
            listed = ", ".join(f'"{option}"' for option in options)
            hint = did_you_mean(value, options) if isinstance(value, str) else ""
            raise BadValue(f"must be one of {listed}{hint}")
        return cast(T, value)

    return parse


def id_number(text: str) -> int | None:
    """The uid/gid a user or group text names by number, else None (a name)."""
    return ascii_int(text) if text.isascii() and text.isdigit() else None


_ID_RANGE = f"a number from 0 to {MAX_ID}"


def identity(value: Any) -> str:
    """A user or group: a name or a number (kept as text, resolved later)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= MAX_ID:
            raise BadValue(f"is not a valid id; use {_ID_RANGE}, or a name")
        return str(value)
    if (
        isinstance(value, str)
        and value.strip()
        and value.isprintable()
        and not any(c in value for c in ": ")
    ):
        if value.isascii() and value.isdigit():
            number = id_number(value)
            if number is None or number > MAX_ID:
                raise BadValue(f"is not a valid id; use {_ID_RANGE}, or a name")
            return str(number)
        return value
    raise BadValue(f'must be a name or {_ID_RANGE}, like "app" or 1000')


def identities(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise BadValue('must be a list of group names or numbers, like ["www-data", 101]')
    return tuple(identity(item) for item in value)


def names(example: str) -> Callable[[Any], tuple[str, ...]]:
    def parse(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise BadValue(f"must be a list of names, like {example}")
        return tuple(dict.fromkeys(value))  # drop repeats, keep order

    return parse


PATH_MAX = 4096  # bytes in a path the kernel takes, its final NUL included


def paths(base: str, example: str) -> Callable[[Any], tuple[str, ...]]:
    """A list of file paths, each absolute and normalized (a relative one is
    relative to `base`); repeats dropped."""

    def parse(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise BadValue(f"must be a list of file paths, like {example}")
        found = [os.path.normpath(os.path.join(base, v)) for v in value]
        for path in found:
            if len(os.fsencode(path)) >= PATH_MAX or path == "/":
                raise BadValue(f"{path[:200]!r} is no file path; name a file, like {example}")
        return tuple(dict.fromkeys(found))

    return parse


class OctalLiteral(int):
    """A TOML integer written as 0o...: the one integer form a mode may take
    (config.py tells it from a decimal 660 by the text of the file)."""

    def __str__(self) -> str:
        return f"0o{int(self):o}"


def octal(maximum: int, example: str) -> Callable[[Any], int]:
    """A mode or umask: an octal string ("0660", "660", "0o660") or a 0o literal.
    A plain TOML integer is refused: 660 would be read as decimal (0o1224)."""

    def parse(value: Any) -> int:
        number: int | None = None
        if isinstance(value, OctalLiteral):
            number = int(value)
        elif isinstance(value, str) and re.fullmatch(r"(0o)?[0-7]{1,5}", value):
            number = int(value.removeprefix("0o"), 8)
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            digits = f"{value:04d}"
            if set(digits) <= set("01234567"):
                raise BadValue(f'is read as a decimal number; write it as "{digits}" or 0o{value}')
        if number is None or not 0 <= number <= maximum:
            raise BadValue(
                f'must be an octal string up to "{maximum:04o}", like "{example}", '
                f"or an octal number like 0o{example.lstrip('0') or '0'}"
            )
        return number

    return parse


def signal_number(value: Any) -> int:
    """A signal by signames' one rule: "SIGTERM", "term", "15", 15, "SIGRTMIN+3"."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadValue('must be a signal name like "SIGTERM" or a number')
    try:
        return signames.signal_number(value)
    except ValueError as exc:
        hint = ""
        if isinstance(value, str) and str(exc).startswith("not a signal name"):
            name = value.strip().upper()
            hint = did_you_mean(
                name if name.startswith("SIG") else "SIG" + name, signames.SIGNAL_NAMES, 0.8
            )
        raise BadValue(f"{exc}{hint}") from None


def port(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise BadValue("must be a TCP port from 1 to 65535, like port = 8000")
    return value


def address(value: Any) -> str:
    """A listening address, by hostport's one rule."""
    if not isinstance(value, str):
        raise BadValue(f"must be {hostport.FORM}")
    try:
        hostport.host_port(value)
    except ValueError as exc:
        raise BadValue(str(exc)) from None
    return value


def environment(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise BadValue('must be a table of strings, like { KEY = "value" }')
    result: dict[str, str] = {}
    for key, item in value.items():
        if not key or "=" in key:
            raise BadValue(f'"{key}" is not a variable name; use letters, digits and "_"')
        if isinstance(item, str):
            result[key] = item
        elif is_number(item):
            result[key] = str(item)
        else:
            raise BadValue(f'{key} must be a string or a number; quote it, like {key} = "value"')
    return result


def capabilities(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadValue('must be a list of capability names, like ["NET_BIND_SERVICE"]')
    names = [item.upper().removeprefix("CAP_") for item in value]
    for name in names:
        if name not in CAPABILITIES:
            hint = did_you_mean(name, CAPABILITIES) or ' (see "man 7 capabilities")'
            raise BadValue(f'"{name}" is not a capability{hint}')
    return tuple(dict.fromkeys(names))


def rlimits(value: Any) -> tuple[Rlimit, ...]:
    if not isinstance(value, dict):
        raise BadValue('must be a table of limits, like { nofile = 4096, core = "unlimited" }')
    limits: list[Rlimit] = []
    for key, item in value.items():
        name = key.lower().removeprefix("rlimit_")
        if name not in RLIMITS:
            hint = did_you_mean(name, RLIMITS) or "; known: " + ", ".join(RLIMITS)
            raise BadValue(f'"{key}" is not a resource limit{hint}')
        pair = item if isinstance(item, list) and len(item) == 2 else [item, item]
        soft, hard = (limit(name, part) for part in pair)
        if as_float(soft) > as_float(hard):
            raise BadValue(
                f"{name}: the soft limit is above the hard one; use [soft, hard] with soft <= hard"
            )
        limits.append(Rlimit(name, RLIMITS[name], soft, hard))
    return tuple(limits)


# rlim_t is 64 bits; Python passes it as a signed long long (RLIM_INFINITY is -1).
_RLIM_MAX = 2**63 - 1


def limit(name: str, value: Any) -> int:
    if value in ("unlimited", "infinity"):
        return resource.RLIM_INFINITY
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _RLIM_MAX:
        return value
    raise BadValue(
        f'{name} must be a number below 2**63, "unlimited", or [soft, hard], like {name} = 4096'
    )


def as_float(limit: int) -> float:
    return math.inf if limit == resource.RLIM_INFINITY else float(limit)


READY_FORMS = (
    '"unix:PATH", "tcp:HOST:PORT", "http://HOST:PORT/PATH", "file:PATH", '
    '"exec:COMMAND", "notify", "settle:SECONDS" or "log:REGEX"'
)
# The kinds written "KIND:TARGET" (http is a URL, notify a bare word).
PREFIXED_KINDS: tuple[ReadyKind, ...] = tuple(k for k in READY_KINDS if k not in ("http", "notify"))


def ready(value: Any, env: Mapping[str, str], budget: Budget | None = None) -> ReadyCheck:
    if not isinstance(value, str):
        raise BadValue(f"must be a string: {READY_FORMS}")
    if value == "notify":
        return ReadyCheck("notify")
    if value.startswith("log:"):  # a regex: never expanded ($ is its end of line)
        return ReadyCheck("log", value[4:], pattern=log_pattern(value[4:]))
    if not value.startswith("exec:"):
        # pidone reads these targets itself: it expands them as the shell
        # would a command (an exec: command is the shell's to expand).
        try:
            value = envfile.expand(value, env, budget)
        except ValueError as exc:
            raise BadValue(str(exc)) from None
    if value.startswith(("http://", "https://")):
        return ready_http(value)
    kind, colon, target = value.partition(":")
    if not colon or kind not in PREFIXED_KINDS:
        hint = did_you_mean(kind, READY_KINDS)
        raise BadValue(f"not a readiness check{hint}; use {READY_FORMS}")
    if not target.strip():
        raise BadValue(f'"{kind}:" needs something after the colon; use {READY_FORMS}')
    if kind == "unix":
        return ReadyCheck("unix", target, path=target)
    if kind == "file":
        return ReadyCheck("file", target, path=target)
    if kind == "tcp":
        try:
            host, number = hostport.host_port(target)
        except ValueError:
            raise BadValue('must be "tcp:HOST:PORT", like "tcp:127.0.0.1:6379"') from None
        return ReadyCheck("tcp", target, host=host, port=number)
    if kind == "exec":
        try:
            return ReadyCheck("exec", target, command=commands.parse(target))
        except ValueError as exc:
            raise BadValue(str(exc)) from None
    try:
        settle = seconds_text(target)
    except BadValue:
        raise BadValue(
            f'must be "settle:SECONDS" with SECONDS {_RANGE}, like "settle:2.5"'
        ) from None
    return ReadyCheck("settle", target, seconds=settle)


def log_pattern(text: str) -> re.Pattern[str]:
    """A `ready = "log:REGEX"` pattern, compiled. Python's re backtracks and
    cannot be interrupted, and the loop runs it: a pattern that can take
    exponential time is refused (a backreference; a repeat of something
    that itself repeats or has alternatives, as in (a+)+ or (a|ab)*), and
    the relay matches only the first LOG_MATCH_MAX bytes of a line."""
    if not text:
        raise BadValue('"log:" needs a regular expression after the colon, like "log:ready"')
    try:
        compiled = re.compile(text)
    except re.error as exc:
        raise BadValue(f"not a valid regular expression: {exc}") from None
    parsed = _parse_regex(text)
    problem = _backtracks(parsed, nested=False)
    if problem:
        raise BadValue(
            f"{problem} can make a match take exponential time; write it without"
            r" (a repeat of single characters, like \S+ or [0-9]{1,3}, is fine)"
        )
    if _width(parsed) > LOG_MATCH_WIDTH:
        raise BadValue(
            "more than one unbounded repeat (*, +, {n,}) can make a match take"
            r" polynomial time (.*a.*b: seconds per line); keep one, like @\S+ ready"
        )
    return compiled


# A search's backtracking tries, at each of a line's LOG_MATCH_MAX starts,
# the product of its repeats' widths: at most this (one unbounded repeat and
# a few small ones), about 8 million steps for a line of 1 KiB.
LOG_MATCH_WIDTH = 8 * LOG_MATCH_MAX


def _width(items: Any) -> int:
    """The product of the widths of the repeats in the parsed pattern (each
    at most LOG_MATCH_MAX: a line is no longer)."""
    width = 1
    for op, av in items:
        kind = str(getattr(op, "name", op))
        if kind.endswith("_REPEAT"):
            width *= min(av[1], LOG_MATCH_MAX) * _width(av[2])
        elif kind == "BRANCH":
            width *= max(_width(b) for b in av[1])
        elif kind == "SUBPATTERN":
            width *= _width(av[-1])
        elif kind in ("ASSERT", "ASSERT_NOT"):
            width *= _width(av[1])
        elif kind == "ATOMIC_GROUP":
            width *= _width(av)
    return width


def _parse_regex(text: str) -> Any:
    import warnings

    with warnings.catch_warnings():  # re's own parser, under its 3.10 name
        warnings.simplefilter("ignore", DeprecationWarning)
        import sre_parse
    return sre_parse.parse(text)


def _backtracks(items: Any, *, nested: bool) -> str:
    """Why the parsed pattern `items` may backtrack without bound ("" if it
    cannot); `nested`: inside a repeat of more than one."""
    for op, av in items:
        kind = str(getattr(op, "name", op))  # sre's opcodes are named ints
        if kind.startswith("GROUPREF"):
            return "a backreference"
        if kind.endswith("_REPEAT"):
            if nested:
                return "a repeat inside a repeat"
            problem = _backtracks(av[2], nested=av[1] > 1)
        elif kind == "BRANCH":
            if nested:
                return "alternatives inside a repeat"
            problem = next((why for b in av[1] if (why := _backtracks(b, nested=False))), "")
        elif kind == "SUBPATTERN":
            problem = _backtracks(av[-1], nested=nested)
        elif kind in ("ASSERT", "ASSERT_NOT"):
            problem = _backtracks(av[1], nested=nested)
        elif kind == "ATOMIC_GROUP":
            problem = _backtracks(av, nested=nested)
        else:
            continue
        if problem:
            return problem
    return ""


def alive(value: Any, env: Mapping[str, str], budget: Budget | None = None) -> ReadyCheck:
    """`alive`: a readiness check that can be tried again and again. READY=1
    comes once per instance and a settle time passes once: neither says it
    still answers."""
    check = ready(value, env, budget)
    if check.kind in ("notify", "settle"):
        raise BadValue(
            f'"{check.kind}" cannot tell that a process still answers; use one of the checks'
            ' that can be tried again: "unix:PATH", "tcp:HOST:PORT", "http://HOST:PORT/PATH",'
            ' "file:PATH" or "exec:COMMAND" (for sd_notify pings, use watchdog = SECONDS)'
        )
    return check


def ready_http(value: str) -> ReadyCheck:
    try:
        url = urlsplit(value)
        port = url.port
    except ValueError:
        url, port = None, None
    if url is None or not url.hostname:
        raise BadValue('must be a URL with a host, like "http://127.0.0.1:8000/health"')
    return ReadyCheck("http", value, host=url.hostname, port=port, url=value)
