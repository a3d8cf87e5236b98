"""A real Loop (not run: no signals caught, nothing spawned) answering ctl
requests the way the control server hands them over: the protocol parses,
the core decides and answers with a Reply for the request's ticket, the
loop only carries the answer to its client."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from pidone import __version__
from pidone.config import load
from pidone.core.states import Goal, ProcessState
from pidone.runtime.loop import Loop


def loop_for(tmp_path: Path) -> Loop:
    (tmp_path / "pidone.toml").write_text('[process.a]\ncommand = "sleep 5"\n')
    return Loop(load.load(None, tmp_path / "pidone.toml", None, environ={}))


def test_a_ctl_status_is_answered_by_the_core_through_its_ticket(tmp_path: Path) -> None:
    loop = loop_for(tmp_path)
    got: list[dict[str, Any]] = []
    loop._on_control({"command": "status", "args": {}}, got.append)
    assert got == [
        {
            "ok": True,
            "version": __version__,
            "shutting_down": False,
            "processes": [
                {
                    "name": "a",
                    "state": "stopped",
                    "ready": False,
                    "pid": None,
                    "uptime": None,
                    "restarts": 0,
                    "last_exit": None,
                }
            ],
        }
    ]
    assert loop.answers == {}


def test_a_ctl_request_that_faults_the_core_is_answered_and_changes_nothing(
    tmp_path: Path,
) -> None:
    loop = loop_for(tmp_path)
    a = loop.core.procs["a"]
    # A spec the stop's wait cannot compute its timeout from: handle() raises
    # after the request made `a` unwanted.
    a.spec = replace(a.spec, stop_timeout=None)  # type: ignore[arg-type]
    got: list[dict[str, Any]] = []
    loop._on_control({"command": "stop", "args": {"names": ["a"]}}, got.append)
    assert got == [{"ok": False, "error": "internal error: see pidone's log"}]
    a = loop.core.procs["a"]
    assert (a.state, a.goal, loop.core.waits, loop.answers) == (
        ProcessState.STOPPED,
        Goal.UP,
        [],
        {},
    )
    loop._on_control({"command": "shutdown", "args": {}}, got.append)  # still answering
    assert got[-1] == {"ok": True} and loop.core.shutting_down


def test_a_bad_ctl_request_never_reaches_the_core(tmp_path: Path) -> None:
    loop = loop_for(tmp_path)
    got: list[dict[str, Any]] = []
    loop._on_control({"command": "stop", "args": {"names": ["nope"]}}, got.append)
    assert got == [{"ok": False, "error": "stop: no such process: nope"}]
    assert (loop.tickets, loop.core.procs["a"].goal) == (0, Goal.UP)
