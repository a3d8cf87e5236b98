"""Signal names and numbers: the one parser (config, `pidone ctl`, single
mode's -p and -r) and the one namer (logs, replies, metric labels). Pure.

Built on `_signal`, not `signal`: the enum wrapper would load enum into
single-command mode, which lives as long as the container.
"""

from __future__ import annotations

import _signal

from pidone.digits import ascii_int

NSIG: int = _signal.NSIG
RTMIN: int = _signal.SIGRTMIN
RTMAX: int = _signal.SIGRTMAX

# Every signal name Python knows, without SIG_DFL/SIG_IGN/SIG_BLOCK...
_NAMES: dict[str, int] = {
    name: value
    for name in dir(_signal)
    if name.startswith("SIG") and not name.startswith("SIG_")
    and isinstance(value := getattr(_signal, name), int)
}  # fmt: skip
# A number's name: the first in alphabetical order (SIGABRT, not SIGIOT), as
# signal.Signals names it.
SIGNAL_NAMES: tuple[str, ...] = tuple(sorted(_NAMES))
_BY_NUMBER: dict[int, str] = {v: k for k, v in sorted(_NAMES.items(), reverse=True)}

NAME_HINT = "use a name like SIGTERM, TERM or RTMIN+3, or a number"


def signal_name(signum: int) -> str:
    """'SIGTERM', 'SIGRTMIN+3', or the number for one without a name (a
    process killed by one must not break the code that logs it)."""
    if RTMIN < signum < RTMAX:
        return f"SIGRTMIN+{signum - RTMIN}"
    return _BY_NUMBER.get(signum, str(signum))


def signal_number(value: str | int, *, zero: bool = False) -> int:
    """The one signal rule: 15, "15", "SIGTERM", "term", "SIGRTMIN+3" or
    "RTMAX-1" (case and surrounding blanks ignored). Real-time signals are
    accepted by name as by number: a container's init is the one to pass
    SIGRTMIN+3 (systemd's stop signal) on. 0 only if `zero` (a rewrite that
    drops the signal). ValueError with what is wrong and how to say it."""
    low = 0 if zero else 1
    if isinstance(value, str):
        word = value.strip().upper()
        number = ascii_int(word, most=3)
        if number is None and word.isascii() and word.isdigit():  # too many digits
            number = -1
    else:
        word, number = "", value
    if number is not None:
        if isinstance(number, bool) or not low <= number < NSIG:
            raise ValueError(f"not a signal number; use {low} to {NSIG - 1}")
        return number
    name = word if word.startswith("SIG") else "SIG" + word
    for base, start, sign in (("SIGRTMIN+", RTMIN, 1), ("SIGRTMAX-", RTMAX, -1)):
        offset = ascii_int(name[len(base) :], most=3) if name.startswith(base) else None
        if offset is not None:
            if RTMIN <= (signum := start + sign * offset) <= RTMAX:
                return signum
            raise ValueError(f"not a signal: outside SIGRTMIN..SIGRTMAX ({RTMIN} to {RTMAX})")
    if name in _NAMES and 1 <= _NAMES[name] < NSIG:
        return _NAMES[name]
    raise ValueError(f"not a signal name; {NAME_HINT}")
