"""Parsers for the values of pidone.toml: each turns a TOML value into what
a spec holds, or raises BadValue("what is wrong; how to fix it")."""

from __future__ import annotations

import math
import re
import resource
import signal
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast
from urllib.parse import urlsplit

from pidone import command as commands
from pidone.specs import CAPABILITIES, RLIMITS, ReadyCheck, Rlimit


class BadValue(Exception):
    """A value is wrong: "what is wrong; how to fix it"."""


def did_you_mean(word: str, known: Iterable[str], cutoff: float = 0.6) -> str:
    import difflib  # only a config with a mistake pays for it

    by_lower = {name.lower(): name for name in known}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=cutoff)
    return f'; did you mean "{by_lower[match[0]]}"?' if match else ""


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def seconds(value: Any) -> float:
    if not is_number(value) or not math.isfinite(value) or value < 0:
        raise BadValue("must be a number of seconds, like 10 or 2.5")
    return float(value)


def positive_seconds(value: Any) -> float:
    if seconds(value) == 0:
        raise BadValue("must be more than 0 seconds, like 10 or 2.5")
    return float(value)


def count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadValue("must be a whole number of at least 1, like 5")
    return value


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


def choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in options:
            listed = ", ".join(f'"{option}"' for option in options)
            hint = did_you_mean(value, options) if isinstance(value, str) else ""
            raise BadValue(f"must be one of {listed}{hint}")
        return cast(str, value)

    return parse


def identity(value: Any) -> str:
    """A user or group: a name or a number (kept as text, resolved later)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and value.strip() and not any(c in value for c in ":\n "):
        return value
    raise BadValue('must be a name or a number, like "app" or 1000')


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


def octal(maximum: int, example: str) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        number: int | None = None
        if isinstance(value, str) and re.fullmatch(r"(0o)?[0-7]{1,5}", value):
            number = int(value.removeprefix("0o"), 8)
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        if number is None or not 0 <= number <= maximum:
            raise BadValue(f'must be an octal string up to "{maximum:04o}", like "{example}"')
        return number

    return parse


def signal_number(value: Any) -> int:
    """A signal number from "SIGTERM", "term", "15" or 15."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value < signal.NSIG:
            raise BadValue(
                f'not a signal number; use 1 to {signal.NSIG - 1} or a name like "SIGTERM"'
            )
        return value
    if not isinstance(value, str):
        raise BadValue('must be a signal name like "SIGTERM" or a number')
    name = value.strip().upper()
    name = name if name.startswith("SIG") else "SIG" + name
    if name not in signal.Signals.__members__:
        hint = did_you_mean(name, signal.Signals.__members__, cutoff=0.8)
        raise BadValue('not a signal name; use a name like "SIGTERM" or a number' + hint)
    return int(signal.Signals[name])


def address(value: Any) -> str:
    host, _, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise BadValue('must be "HOST:PORT", like "127.0.0.1:9100"')
    return cast(str, value)


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


def limit(name: str, value: Any) -> int:
    if value in ("unlimited", "infinity"):
        return resource.RLIM_INFINITY
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise BadValue(f'{name} must be a number, "unlimited", or [soft, hard], like {name} = 4096')


def as_float(limit: int) -> float:
    return math.inf if limit == resource.RLIM_INFINITY else float(limit)


READY_FORMS = (
    '"unix:PATH", "tcp:HOST:PORT", "http://HOST:PORT/PATH", "file:PATH", '
    '"exec:COMMAND", "notify" or "settle:SECONDS"'
)


def ready(value: Any, env: Mapping[str, str]) -> ReadyCheck:
    if not isinstance(value, str):
        raise BadValue(f"must be a string: {READY_FORMS}")
    if value == "notify":
        return ReadyCheck("notify")
    if value.startswith(("http://", "https://")):
        return ready_http(value)
    kind, colon, target = value.partition(":")
    if not colon or kind not in ("unix", "tcp", "file", "exec", "settle"):
        hint = did_you_mean(kind, ("unix", "tcp", "http", "file", "exec", "notify", "settle"))
        raise BadValue(f"not a readiness check{hint}; use {READY_FORMS}")
    if not target.strip():
        raise BadValue(f'"{kind}:" needs something after the colon; use {READY_FORMS}')
    if kind == "unix":
        return ReadyCheck("unix", target, path=target)
    if kind == "file":
        return ReadyCheck("file", target, path=target)
    if kind == "tcp":
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise BadValue('must be "tcp:HOST:PORT", like "tcp:127.0.0.1:6379"')
        return ReadyCheck("tcp", target, host=host.strip("[]"), port=int(port))
    if kind == "exec":
        try:
            return ReadyCheck("exec", target, command=commands.parse(target, env))
        except ValueError as exc:
            raise BadValue(str(exc)) from None
    try:
        seconds = float(target)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        raise BadValue('must be "settle:SECONDS", like "settle:2.5"')
    return ReadyCheck("settle", target, seconds=seconds)


def ready_http(value: str) -> ReadyCheck:
    try:
        url = urlsplit(value)
        port = url.port
    except ValueError:
        url, port = None, None
    if url is None or not url.hostname:
        raise BadValue('must be a URL with a host, like "http://127.0.0.1:8000/health"')
    return ReadyCheck("http", value, host=url.hostname, port=port, url=value)
