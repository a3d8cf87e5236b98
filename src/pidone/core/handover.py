"""The supervisor's state as JSON, for `pidone ctl reexec`: pure.

    data = handover(core)                     # a JSON-able dict
    core, problems = resume(config, data, now)

The old pidone writes it (with the loop's fds, runtime/loop.py) to a memfd;
the new one reads it back. Every _Proc field has one entry in PROC_FIELDS:
how it is written and how it is read back, checked (a new field fails
tests/unit/test_handover.py until it has one). What is not handed over:
the spec (the new Config's, which must equal the old one) and ctl waits
(their clients are answered before the exec).

Each legion's Lease (core/legion.py) is handed over by LEASE_FIELDS, safety
before liveness: the new pidone is lord only until the `expires` the old
one measured, and only if that is within now + ttl; a request in flight
at the exec is dropped (its answer went to the old pidone's thread) and
asked again at once, so only an answer the new pidone measured extends it.
The loop's token (the lease's value in redis) is checked by the runtime
(runtime/reexec.py): refused, no lease is taken as ours (`token_kept`).

A value that is wrong (type, range, an unknown name) is refused field by
field: the field keeps its default and the problem is listed, never raised.
A process whose state, pids or goal are refused starts over as new (it
would be spawned again): its state would be a lie to act on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from pidone.core import legion as leasing
from pidone.core.snapshot import ExitInfo
from pidone.core.states import (
    HAS_PID,
    RESTART_REASONS,
    Goal,
    Launch,
    Phase,
    ProcessState,
)

if TYPE_CHECKING:
    from pidone.config.specs import Config
    from pidone.core.supervisor import Supervisor, _Proc

FORMAT = 1  # the handover's format; another one is refused whole
PID_MAX = 4_194_304  # the kernel's highest pid_max (PID_MAX_LIMIT)
MAX_TIME = 1e12  # seconds of CLOCK_MONOTONIC: far beyond any uptime
MAX_COUNT = 2**53  # a count a float still holds exactly
MAX_ITEMS = 10_000  # entries in a list or dict of one field
MAX_TEXT = 4096  # characters of one string


class Refused(ValueError):
    """A value of the handover that is refused: why (without the field's name)."""


# --- the checks: each returns the value or raises Refused ----------------------------


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Refused(f"must be true or false, not {_show(value)}")
    return value


def _int(value: Any, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise Refused(f"must be an integer from {low} to {high}, not {_show(value)}")
    return value


def _count(value: Any) -> int:
    return _int(value, 0, MAX_COUNT)


def _pid(value: Any) -> int | None:
    """A pid pidone may act on: never 0, 1 (init), negative or past pid_max."""
    return None if value is None else _int(value, 2, PID_MAX)


def _time(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Refused(f"must be a number of seconds, not {_show(value)}")
    number = float(value)
    if not math.isfinite(number) or not -MAX_TIME <= number <= MAX_TIME:
        raise Refused(f"must be a finite time within {MAX_TIME:g} s, not {_show(value)}")
    return number


def _opt_time(value: Any) -> float | None:
    return None if value is None else _time(value)


def _text(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise Refused(f"must be a string of at most {MAX_TEXT} characters, not {_show(value)}")
    return value


def _enum(kind: Any) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        try:
            return kind(value)
        except (ValueError, TypeError):
            names = ", ".join(m.value for m in kind)
            raise Refused(f"must be one of {names}, not {_show(value)}") from None

    return check


def _list(item: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
    def check(value: Any) -> list[Any]:
        if not isinstance(value, list) or len(value) > MAX_ITEMS:
            raise Refused(f"must be a list of at most {MAX_ITEMS} items, not {_show(value)}")
        return [item(v) for v in value]

    return check


def _dict(key: Callable[[str], Any], item: Callable[[Any], Any]) -> Callable[[Any], dict[Any, Any]]:
    def check(value: Any) -> dict[Any, Any]:
        if not isinstance(value, dict) or len(value) > MAX_ITEMS:
            raise Refused(f"must be an object of at most {MAX_ITEMS} entries, not {_show(value)}")
        return {key(_text(k)): item(v) for k, v in value.items()}

    return check


def _false(value: Any) -> bool:
    """releasing, done: a reexec is refused once pidone shuts down (reexec_refusal)."""
    if value is not False:
        during = "a reexec is refused during the shutdown"
        raise Refused(f"must be false ({during}), not {_show(value)}")
    return value


def _change(value: str) -> str:
    change: leasing.Change = _enum(leasing.Change)(value)
    return change.value


def _changes(value: Any) -> dict[tuple[str, str], int]:
    """lease_changes: {legion: {change: count}} -> {(legion, change): count}."""
    nested = _dict(_same, _dict(_change, _count))(value)
    return {(name, change): n for name, counts in nested.items() for change, n in counts.items()}


def _nested_changes(value: dict[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    nested: dict[str, dict[str, int]] = {}
    for (name, change), n in value.items():
        nested.setdefault(name, {})[change] = n
    return nested


def _reason(value: Any) -> str:
    if value not in RESTART_REASONS:
        raise Refused(f"must be one of {', '.join(RESTART_REASONS)}, not {_show(value)}")
    assert isinstance(value, str)
    return value


def _opt_reason(value: Any) -> str | None:
    return None if value is None else _reason(value)


def _status_key(value: str) -> int:
    """An exits_by_status key: JSON keys are strings; -1 (unknown) to 128+127."""
    try:
        number = int(value)
    except ValueError:
        raise Refused(f"keys must be exit statuses, not {_show(value)}") from None
    return _int(number, -1, 255)


def _exit_info(value: Any) -> ExitInfo | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Refused(f"must be an object or null, not {_show(value)}")
    try:
        return ExitInfo(
            status=_int(value["status"], -1, 255),
            signal=_int(value["signal"], 0, 64),
            at=_time(value["at"]),
            planned=_bool(value["planned"]),
            success=_bool(value["success"]),
            oom=_bool(value["oom"]),
        )
    except KeyError as exc:
        raise Refused(f"has no {exc.args[0]!r}") from None


def _exit_dict(info: ExitInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {
        "status": info.status,
        "signal": info.signal,
        "at": info.at,
        "planned": info.planned,
        "success": info.success,
        "oom": info.oom,
    }


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _same(value: Any) -> Any:
    return value


def _value(member: Any) -> Any:
    return member.value


def _listed(value: Any) -> Any:
    return list(value)


def _stringed_keys(value: dict[Any, Any]) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()}


# --- every _Proc field: (written as, read back with) ---------------------------------
#
# "spec" is the new Config's (equal to the old one, or the reexec is refused).
# A new _Proc field must be added here, or to NOT_HANDED_OVER with the reason:
# tests/unit/test_handover.py fails until it is.

Field = tuple[Callable[[Any], Any], Callable[[Any], Any]]
PROC_FIELDS: dict[str, Field] = {
    "state": (_value, _enum(ProcessState)),
    "goal": (_value, _enum(Goal)),
    "started": (_same, _bool),
    "launch": (_value, _enum(Launch)),
    "restart_reason": (_same, _opt_reason),
    "pid": (_same, _pid),
    "launcher_pid": (_same, _pid),
    "started_at": (_same, _opt_time),
    "ready_at": (_same, _opt_time),
    "settle_at": (_same, _opt_time),
    "backoff_until": (_same, _time),
    "stop_deadline": (_same, _opt_time),
    "ready_deadline": (_same, _opt_time),
    "ready_timed_out": (_same, _bool),
    "spawned_pid": (_same, _pid),
    "pidfile_due": (_same, _opt_time),
    "pidfile_refused": (_same, _bool),
    "adopted": (_same, _bool),
    "awaiting_sockets": (_same, _dict(_same, _time)),
    "socket_problems": (_same, _dict(_same, _text)),
    "failures": (_listed, _list(_time)),
    "restarts_by_reason": (_same, _dict(_reason, _count)),
    "exits_by_status": (_stringed_keys, _dict(_status_key, _count)),
    "last_exit": (_exit_dict, _exit_info),
    "oom_kills": (_same, _count),
    "touch_quiet_until": (_same, _time),
    "touch_pending": (_same, _bool),
    "alive_failed": (_same, _count),
    "watchdog_due": (_same, _opt_time),
}
NOT_HANDED_OVER = {
    "spec": "the new Config's, equal to the old one's",
    "pending": "a reexec is refused while a ctl update is under way (reexec_refusal)",
    "leaving": "a reexec is refused while a ctl update is under way (reexec_refusal)",
}
# Refused, these make the process start over as new rather than keep a part.
VITAL = ("state", "goal", "launch", "pid", "launcher_pid", "spawned_pid")

# The Supervisor's own state (states.py's phase and the rest), as PROC_FIELDS.
CORE_FIELDS: dict[str, Field] = {
    "booted": (_same, _bool),
    "adopting": (_same, _bool),
    "phase": (_value, _enum(Phase)),
    "exit_code": (_same, lambda v: None if v is None else _int(v, 0, 255)),
    "unclean": (_listed, _list(_text)),
    "sweep_deadline": (_same, _opt_time),
    "drain_until": (_same, _opt_time),
    "told": (_same, _text),
    "told_ready": (_same, _bool),
    "lease_changes": (_nested_changes, _changes),  # a legion not configured: dropped
    "legion_told": (_same, _dict(_same, _text)),
}
# The rest of _CORE_STATE: ctl waits (answered before the exec), the clock
# (the new pidone's now), and the leases, which go apart.
CORE_NOT_HANDED_OVER = {
    "waits": "their clients are answered before the exec",
    "now": "the new pidone's clock",
    "leases": 'not as one field: under "legions", each Lease field by LEASE_FIELDS',
}
# What a Supervisor derives from its Config (a Reconfigure replaces them whole).
_DERIVED = ("config", "settings", "order", "deps", "dependents", "all_dependents")
for _derived in (*_DERIVED, "legion_procs", "touchers"):
    CORE_NOT_HANDED_OVER[_derived] = "made from the new Config, equal to the old one"


# Every Lease field (core/legion.py), as PROC_FIELDS. Checked together
# after: `expires` within now + ttl (else now: what runs under it is down
# at once), a lord only with it, `held_seen` not in the future (else now:
# a lease redis lost is not taken within a ttl).
LEASE_FIELDS: dict[str, Field] = {
    "lord": (_same, _bool),
    "expires": (_same, _time),
    "holder": (_same, _text),
    "problem": (_same, _text),
    "ids": (_same, _count),
    "held_seen": (_same, _opt_time),
    "releasing": (_same, _false),
    "done": (_same, _false),
}
LEASE_NOT_HANDED_OVER = {
    "name": "the new Config's legion",
    "ttl": "the new Config's, equal to the old one's",
    "pending": "dropped: its answer went to the old pidone's thread; asked again at once",
    "next_at": "the new pidone's now: it asks redis at once",
}


def proc_field_names(proc_type: type) -> set[str]:
    return {f.name for f in fields(proc_type)}


def handover(core: Supervisor) -> dict[str, Any]:
    """The core's state, JSON-able (every key a string, every value plain)."""
    return {
        "format": FORMAT,
        "core": {key: write(getattr(core, key)) for key, (write, _) in CORE_FIELDS.items()},
        "processes": {
            name: {key: write(getattr(p, key)) for key, (write, _) in PROC_FIELDS.items()}
            for name, p in core.procs.items()
        },
        "legions": {
            name: {key: write(getattr(lease, key)) for key, (write, _) in LEASE_FIELDS.items()}
            for name, lease in core.leases.items()
        },
    }


def resume(
    config: Config, data: Any, now: float, *, token_kept: bool = True
) -> tuple[Supervisor, list[str]]:
    """A Supervisor for `config` in the state `data` says, and the problems
    found (each refused value kept at its default). Raises Refused if `data`
    cannot be used at all (not a handover of this format). `token_kept`:
    the legions' token was handed over too (else no lease is ours)."""
    from pidone.core.supervisor import Supervisor

    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else _show(data)
        raise Refused(f"not a pidone handover of format {FORMAT} (format {got!r})")
    procs, state = data.get("processes"), data.get("core")
    if not isinstance(procs, dict) or not isinstance(state, dict):
        raise Refused('no "processes" and "core" objects')
    core = Supervisor(config, now)
    problems: list[str] = []
    for key, (_, read) in CORE_FIELDS.items():
        if key in state:
            try:
                setattr(core, key, read(state[key]))
            except Refused as why:
                problems.append(f"pidone's {key} {why}")
    if core.phase not in (Phase.UP, Phase.DRAINING):
        problems.append(f"pidone's phase {core.phase.value}: only up or draining is resumed")
        core.phase = Phase.UP
    problems += _resume_leases(core, data.get("legions"), now, token_kept)
    for name in procs:
        if name not in core.procs:
            problems.append(f"{_show(name)}: no such process in the configuration: ignored")
    for name, p in core.procs.items():
        given = procs.get(name)
        if not isinstance(given, dict):
            problems.append(f"{name}: not handed over: it starts as new")
            continue
        problems += _resume_proc(core, p, given)
    claimed: dict[int, str] = {}  # no two processes may claim one pid: the later starts as new
    for name, p in list(core.procs.items()):
        live = (p.pid, p.launcher_pid) if p.state in HAS_PID else ()
        pids = {pid for pid in live if pid is not None}
        taken = sorted(pid for pid in pids if claimed.get(pid, name) != name)
        if taken:
            problems.append(f"{name}: pid {taken[0]} is {claimed[taken[0]]}'s: it starts as new")
            core.procs[name] = Supervisor(config, now).procs[name]
            continue
        claimed.update(dict.fromkeys(pids, name))
    return core, problems


def _resume_proc(core: Supervisor, p: _Proc, given: dict[str, Any]) -> list[str]:
    fresh = p.copy()
    problems = []
    vital = False
    for key, (_, read) in PROC_FIELDS.items():
        if key not in given:
            continue
        try:
            value = read(given[key])
        except Refused as why:
            problems.append(f"{p.name}: {key} {why}")
            vital |= key in VITAL
            continue
        setattr(p, key, value)
    unknown = set(p.awaiting_sockets) - set(p.spec.sockets)
    if unknown:
        problems.append(f"{p.name}: awaiting_sockets names no socket of it: {sorted(unknown)}")
        p.awaiting_sockets = {}
    if p.state in HAS_PID and p.pid is None and p.launcher_pid is None:
        problems.append(f"{p.name}: {p.state.value} without a pid")
        vital = True
    if p.launch is Launch.SPAWNING:  # never between two events: a Spawn no one answers
        problems.append(f"{p.name}: a spawn on its way")
        vital = True
    if p.pid is not None and p.state not in HAS_PID:
        problems.append(f"{p.name}: a pid in state {p.state.value}")
        vital = True
    if vital:
        core.procs[p.name] = fresh
        problems.append(f"{p.name}: its state is refused: it starts as new")
    return problems


def _resume_leases(core: Supervisor, given: Any, now: float, token_kept: bool) -> list[str]:
    """Each configured legion's Lease from `given` ({name: fields}); a lord
    refused as lord counts as a loss, as any loss does."""
    problems: list[str] = []
    if not isinstance(given, dict):
        if core.leases:
            problems.append('no "legions" object: no lease is taken as ours')
        given = {}
    named = set(given) | {n for n, _ in core.lease_changes} | set(core.legion_told)
    for name in sorted(named - set(core.leases)):
        problems.append(f"legion {_show(name)}: no such legion in the configuration: ignored")
    core.lease_changes = {k: n for k, n in core.lease_changes.items() if k[0] in core.leases}
    core.legion_told = {n: text for n, text in core.legion_told.items() if n in core.leases}
    for name, lease in core.leases.items():
        entry = given.get(name)
        if not isinstance(entry, dict):
            problems.append(f"legion {name}: its lease is not handed over: not lord")
            entry = {}
        lease, said = _resume_lease(lease, entry, now)
        problems += said
        if lease.lord and not token_kept:
            problems.append(f"legion {name}: lord under the token refused: not lord")
            lease = replace(lease, lord=False)
        if entry.get("lord") is True and not lease.lord:
            key = (name, leasing.Change.LOST.value)
            core.lease_changes[key] = core.lease_changes.get(key, 0) + 1
            core.legion_told.pop(name, None)  # its standing is said again
        core.leases[name] = lease
    return problems


def _resume_lease(
    lease: leasing.Lease, given: dict[str, Any], now: float
) -> tuple[leasing.Lease, list[str]]:
    """One Lease from its fields in `given`, against the new pidone's clock."""
    name = lease.name
    problems: list[str] = []
    values: dict[str, Any] = {}
    for key, (_, read) in LEASE_FIELDS.items():
        if key in given:
            try:
                values[key] = read(given[key])
            except Refused as why:
                problems.append(f"legion {name}: {key} {why}")
    expires = values.get("expires")
    if expires is not None and expires > now + lease.ttl:  # no one measured that
        ahead = f"{expires - now:.3g} s from now, past the ttl ({lease.ttl:g} s)"
        problems.append(f"legion {name}: expires {ahead}: refused")
        del values["expires"]
    if "expires" not in values or (values.get("lord") and values["expires"] <= 0):
        if values.get("lord"):  # 0: none (Lease.must_stop_by), no bound on what runs
            problems.append(f"legion {name}: a lord without a valid expires: not lord")
            values["lord"] = False
        values["expires"] = now  # unknown: it may have ended, what runs under it stops now
    held = values.get("held_seen")
    if held is not None and held > now:
        problems.append(f"legion {name}: held_seen {held - now:.3g} s in the future: now")
        values["held_seen"] = now
    elif "held_seen" in given and "held_seen" not in values:  # refused: as if seen now
        values["held_seen"] = now
    return replace(lease, **values, pending=None, next_at=now), problems
