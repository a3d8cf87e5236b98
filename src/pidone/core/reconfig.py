"""`pidone ctl update [NAME...]`: the configuration to run from now on, pure.

    merge(running, read, names) -> the effective Config, or ValueError

Without NAMEs the configuration read again, with two things kept from the
running one: the [pidone] settings that need a restart of pidone (they were
read once at the start: config/diff.SETTINGS) and the legions (each lease's
redis thread is made at the start). With NAMEs only those processes change
(added, removed or changed as read), everything else is kept as it runs;
a socket changes only when every process that uses it is named. Refused
(ValueError, the reason for the operator) when the result would not hold
together: a process after one that is not there, a cycle, a legion the
running pidone has no lease for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pidone.config import graph
from pidone.config.diff import NEEDS_RESTART, SETTINGS
from pidone.config.specs import Config, ProcessSpec, SocketSpec


def merge(running: Config, read: Config, names: Sequence[str] = ()) -> Config:
    if not names:
        processes = dict(read.processes)
        sockets = dict(read.sockets)
    else:
        known = list(dict.fromkeys([*running.processes, *read.processes]))
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(
                f"no such process: {', '.join(unknown)} (known: {', '.join(known) or 'none'})"
            )
        chosen = set(names)
        kept = {n: s for n, s in running.processes.items() if n not in chosen}
        new = {n: s for n, s in read.processes.items() if n in chosen}
        # the order of the configuration read, then the unnamed ones it no longer has
        processes = {n: new.get(n) or kept[n] for n in read.processes if n in new or n in kept}
        processes |= {n: s for n, s in kept.items() if n not in processes}
        sockets = _sockets(running, read, processes, chosen)
    _check(processes, sockets, running)
    keep = {k: getattr(running.settings, k) for k, how in SETTINGS.items() if how == NEEDS_RESTART}
    settings = replace(read.settings if not names else running.settings, **keep)
    deps = {n: s.after for n, s in processes.items()}
    return Config(
        settings=settings,
        processes=processes,
        sockets=sockets,
        start_waves=graph.start_waves(deps),
        stop_waves=graph.stop_waves(deps),
        sources=read.sources,
        legions=running.legions,
    )


def _sockets(
    running: Config, read: Config, processes: dict[str, ProcessSpec], chosen: set[str]
) -> dict[str, SocketSpec]:
    """The sockets the processes use: as read where each of their users is
    named, else as running; and the running ones nobody uses, untouched."""
    users: dict[str, set[str]] = {}
    for name, spec in processes.items():
        for sock in spec.sockets:
            users.setdefault(sock, set()).add(name)
    result: dict[str, SocketSpec] = {}
    for sock, who in users.items():
        fresh = read.sockets.get(sock)
        result[sock] = fresh if fresh is not None and who <= chosen else running.sockets[sock]
    for sock, socket_spec in running.sockets.items():
        result.setdefault(sock, socket_spec)
    return result


def _check(
    processes: dict[str, ProcessSpec], sockets: dict[str, SocketSpec], running: Config
) -> None:
    for name, spec in processes.items():
        missing = [d for d in spec.after if d not in processes]
        if missing:
            raise ValueError(
                f"{name} is after {', '.join(missing)}, which this update would not have:"
                " name them too (or update everything)"
            )
        gone = [s for s in spec.sockets if s not in sockets]
        if gone:
            raise ValueError(f"{name} uses [socket.{gone[0]}], which this update would not have")
        if spec.legion is not None and spec.legion not in running.legions:
            raise ValueError(
                f"{name} is in legion {spec.legion}, which this pidone holds no lease for:"
                " a new legion needs a restart of pidone"
            )
    cycle = graph.find_cycle({n: s.after for n, s in processes.items()})
    if cycle is not None:
        raise ValueError(f"this update would make a cycle: {' -> '.join(cycle)}")
