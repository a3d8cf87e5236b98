"""What changed between two configurations (`pidone ctl reread` and
`update`), pure: old Config and new Config in, a Diff out.

Keys are named as pidone.toml spells them (KEY_OF maps the few fields that
are spelled otherwise). Each changed key of a process is of one of two kinds:

    restart   it alters the running instance (how it is spawned: every
              CHILD or SPAWN field of ProcessSpec; and the supervisor keys
              that define what is tracked: pidfile, legion): `ctl update`
              restarts the process, the new instance gets the new spec;
    in place  only the supervisor reads it (restart, stop_signal,
              stop_timeout, backoff_*, fatal_*, alive*, ready, after, ...):
              applied with no signal, from the next event that reads it
              (`ctl restart NAME` bounces it if wanted).

A changed [socket.NAME] restarts every process that uses it. [pidone]
settings are classed once in SETTINGS: applied, or needing a restart of
pidone. A changed [legion.NAME] always needs a restart of pidone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from pidone.config.specs import Config, ProcessSpec, Settings

# ProcessSpec field -> the pidone.toml key that sets it, where they differ.
# `env` is everything the child gets: `environment`, .env, pidone's own
# environment and PORT; its change is one of `environment`.
KEY_OF: dict[str, str] = {"command_line": "command", "env": "environment"}

# SUPERVISOR fields that still define the running instance: a pidfile
# daemon is followed through its file, a legion process runs under its lease.
_RESTART_SUPERVISOR = frozenset({"command_line", "pidfile", "legion"})
RESTART_KEYS: frozenset[str] = frozenset(
    KEY_OF.get(f.name, f.name)
    for f in fields(ProcessSpec)
    if f.metadata["spawn"] in ("child", "spawn") or f.name in _RESTART_SUPERVISOR
)

APPLIED, NEEDS_RESTART = "applied", "needs a restart of pidone"
# Each [pidone] key: applied by `ctl update` (the process defaults land in
# each process's spec, so they show as that process's own change), or read
# once at the start and so needing a restart of pidone.
SETTINGS: dict[str, str] = {
    "stop_timeout": APPLIED,  # the default of each process's stop_timeout
    "log_format": NEEDS_RESTART,  # the relay formats every line from the start
    "control_socket": NEEDS_RESTART,  # the socket this ctl talks through
    "control_group": NEEDS_RESTART,  # the control socket's group, set when made
    "metrics": NEEDS_RESTART,  # the listening socket of the metrics server
    "settle_time": APPLIED,  # the default `ready` of each process
    "backoff_initial": APPLIED,
    "backoff_max": APPLIED,
    "backoff_reset": APPLIED,  # read by the supervisor at each exit
    "fatal_after": APPLIED,
    "fatal_window": APPLIED,
    "shutdown_delay": APPLIED,  # read by the supervisor at the SIGTERM
}


@dataclass(frozen=True)
class Changed:
    """A process whose spec differs: the keys, and which of them restart it."""

    name: str
    keys: tuple[str, ...]  # pidone.toml's spelling, in ProcessSpec's field order

    @property
    def restart(self) -> tuple[str, ...]:
        return tuple(k for k in self.keys if k in RESTART_KEYS)

    @property
    def in_place(self) -> tuple[str, ...]:
        return tuple(k for k in self.keys if k not in RESTART_KEYS)


@dataclass(frozen=True)
class Section:
    """Added, removed, changed (name -> keys) and unchanged names of one kind of table."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[tuple[str, tuple[str, ...]], ...] = ()
    unchanged: tuple[str, ...] = ()


@dataclass(frozen=True)
class Diff:
    added: tuple[str, ...]  # in the new config's order
    removed: tuple[str, ...]  # in the old config's order
    changed: tuple[Changed, ...]
    unchanged: tuple[str, ...]
    sockets: Section
    settings: tuple[tuple[str, str], ...]  # (key, APPLIED or NEEDS_RESTART)
    legions: Section

    @property
    def empty(self) -> bool:
        return not (
            self.added
            or self.removed
            or self.changed
            or self.settings
            or self.sockets.added
            or self.sockets.removed
            or self.sockets.changed
            or self.legions.added
            or self.legions.removed
            or self.legions.changed
        )

    # process -> the sockets its old or new spec uses
    uses: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def restarted(self) -> tuple[str, ...]:
        """The processes `ctl update` restarts, in the new config's order
        (changed first): a restart key changed, or a socket they use (old
        or new spec) was changed."""
        sockets = {name for name, _ in self.sockets.changed}
        by_socket = {n for n, used in self.uses.items() if sockets & set(used)}
        return tuple(c.name for c in self.changed if c.restart or c.name in by_socket) + tuple(
            n for n in self.unchanged if n in by_socket
        )

    def in_place(self) -> tuple[str, ...]:
        """The changed processes whose changes are all applied in place."""
        restarted = set(self.restarted())
        return tuple(c.name for c in self.changed if c.name not in restarted)


def process_keys(old: ProcessSpec, new: ProcessSpec) -> tuple[str, ...]:
    """The pidone.toml keys whose values differ, each once."""
    keys: dict[str, None] = {}
    for f in fields(ProcessSpec):
        if getattr(old, f.name) != getattr(new, f.name):
            keys[KEY_OF.get(f.name, f.name)] = None
    return tuple(keys)


# [legion.NAME]'s host, port, path and db are what its `redis` says.
_LEGION_KEY_OF = dict.fromkeys(("host", "port", "path", "db"), "redis")


def _section(
    old: Mapping[str, Any], new: Mapping[str, Any], key_of: Mapping[str, str] | None = None
) -> Section:
    """The tables of one kind; a changed one's keys are its spec's fields
    (their pidone.toml names through key_of), `name` aside."""
    changed = []
    for name in new:
        if name in old and old[name] != new[name]:
            a, b = old[name], new[name]
            keys = {
                (key_of or {}).get(f.name, f.name): None
                for f in fields(a)
                if f.name != "name" and getattr(a, f.name) != getattr(b, f.name)
            }
            changed.append((name, tuple(keys)))
    return Section(
        added=tuple(n for n in new if n not in old),
        removed=tuple(n for n in old if n not in new),
        changed=tuple(changed),
        unchanged=tuple(n for n in new if n in old and old[n] == new[n]),
    )


def diff(old: Config, new: Config) -> Diff:
    """Everything that differs between `old` (running) and `new` (read again)."""
    changed = []
    unchanged = []
    for name, spec in new.processes.items():
        before = old.processes.get(name)
        if before is None:
            continue
        keys = process_keys(before, spec)
        if keys:
            changed.append(Changed(name, keys))
        else:
            unchanged.append(name)
    sockets = _section(old.sockets, new.sockets)
    settings = tuple(
        (f.name, SETTINGS[f.name])
        for f in fields(Settings)
        if getattr(old.settings, f.name) != getattr(new.settings, f.name)
    )
    uses: dict[str, tuple[str, ...]] = {}
    for config in (old, new):
        for name, spec in config.processes.items():
            uses[name] = tuple(dict.fromkeys(uses.get(name, ()) + spec.sockets))
    return Diff(
        added=tuple(n for n in new.processes if n not in old.processes),
        removed=tuple(n for n in old.processes if n not in new.processes),
        changed=tuple(changed),
        unchanged=tuple(unchanged),
        sockets=sockets,
        settings=settings,
        legions=_section(old.legions, new.legions, _LEGION_KEY_OF),
        uses=uses,
    )


def lines(d: Diff) -> list[str]:
    """What `pidone ctl reread` prints: one line per process, socket,
    setting and legion that differs, then the unchanged processes."""
    out = [f"added: {n}" for n in d.added]
    out += [f"removed: {n}" for n in d.removed]
    restarted = set(d.restarted())
    for c in d.changed:
        how = "restarted" if c.name in restarted else "applied in place"
        out.append(f"changed: {c.name}: {', '.join(c.keys)} ({how})")
    for name, kind in (("socket", d.sockets), ("legion", d.legions)):
        out += [f"{name} added: {n}" for n in kind.added]
        out += [f"{name} removed: {n}" for n in kind.removed]
        out += [f"{name} changed: {n}: {', '.join(keys)}" for n, keys in kind.changed]
    if d.legions.added or d.legions.removed or d.legions.changed:
        out.append(f"legions: {NEEDS_RESTART}")
    out += [f"setting changed: {key} ({how})" for key, how in d.settings]
    by_socket = [n for n in d.unchanged if n in restarted]
    out += [f"restarted: {n}: a socket it uses changed" for n in by_socket]
    if d.unchanged:
        out.append(f"unchanged: {', '.join(d.unchanged)}")
    if d.empty:
        out.append("nothing to do")
    return out
