"""Which ProcessSpec settings need the fork path is declared once, beside
them (config/specs.py, each field's "spawn" metadata). A field without a
class, or a class that disagrees with what the setting does, fails here:
before, a key forgotten in privileges.changes_identity was silently ignored
as PID 1 (its child posix_spawn'd, the setting never applied)."""

from __future__ import annotations

import dataclasses
import resource
from typing import Any

import pytest

from pidone.config.command import parse
from pidone.config.identity import resolve
from pidone.config.specs import ProcessSpec, ReadyCheck, Rlimit
from pidone.system import posix_spawn

FIELDS = {f.name: f for f in dataclasses.fields(ProcessSpec)}
BASE = ProcessSpec("web", parse("serve"))

# A value other than the default for every field: a new field fails until it has one.
SAMPLES: dict[str, Any] = {
    "name": "api",
    "command": parse("other"),
    "command_line": "other",
    "directory": "/srv",
    "environment": {"A": "1"},
    "env": {"A": "1"},
    "after": ("db",),
    "ready": ReadyCheck("settle", seconds=2.0),
    "restart": "never",
    "stop_signal": 2,
    "stop_timeout": 3.0,
    "stop_target": "group",
    "reload_signal": 10,
    "control": True,
    "pidfile": "/run/x.pid",
    "user": "1000",
    "group": "1000",
    "groups": ("4",),
    "umask": 0o027,
    "clear_env": True,
    "capabilities": ("NET_BIND_SERVICE",),
    "rlimits": (Rlimit("nofile", resource.RLIMIT_NOFILE, 1024, 1024),),
    "sockets": ("web",),
    "restart_dependents": False,
    "autostart": False,
    "stdin": True,
    "touch": ("/srv/app/reload",),
    "touch_signal": 1,
    "pid_namespace": True,
    "legion": "beat",
    "ready_timeout": 5.0,
    "backoff_initial": 1.0,
    "backoff_max": 60.0,
    "fatal_after": 3,
    "fatal_window": 10.0,
    "success_exit_codes": (0, 3),
    "on_fatal": "exit",
    "required": True,
    "alive": ReadyCheck("tcp", "127.0.0.1:80", host="127.0.0.1", port=80),
    "alive_interval": 5.0,
    "alive_timeout": 2.0,
    "alive_failures": 1,
    "alive_delay": 3.0,
    "watchdog": 5.0,
}


def test_every_process_setting_says_where_it_acts() -> None:
    unclassified = [n for n, f in FIELDS.items() if "spawn" not in f.metadata]
    assert unclassified == []
    assert {f.metadata["spawn"] for f in FIELDS.values()} == {"child", "spawn", "supervisor"}
    assert set(SAMPLES) == set(FIELDS), "give the new field a sample value here"


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_a_setting_runs_in_the_child_exactly_when_it_changes_the_identity(name: str) -> None:
    # The identity (resolve) is what the child's preparer applies before exec.
    spec = dataclasses.replace(BASE, **{name: SAMPLES[name]})
    child = FIELDS[name].metadata["spawn"] == "child"
    assert spec.runs_in_child() is child
    assert (resolve(spec) != resolve(BASE)) is child


def test_a_plain_process_runs_nothing_in_the_child() -> None:
    assert BASE.runs_in_child() is False


@pytest.mark.parametrize(
    ("environ", "on"),
    [({}, True), ({"PIDONE_POSIX_SPAWN": "1"}, True), ({"PIDONE_POSIX_SPAWN": "0"}, False)],
)
def test_the_posix_spawn_switch(environ: dict[str, str], on: bool) -> None:
    assert posix_spawn.enabled(environ) is on
