"""What a real `pidone run` and `pidone --` import, seen by an audit hook
in pidone's own process: without metrics, none of prometheus-client,
psutil or the HTTP server; with metrics, those (the positive control)."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.helpers.running import PYTHON, Init, wait_for
from tests.helpers.stack import Stack, free_port

# Runs pidone's main with an audit hook that writes every module imported
# to OUT; argv: OUT, pidone's executable (skipped), pidone's arguments.
RECORDER = """
import os, sys
out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
def hook(event, args):
    if event == "import":
        os.write(out, (str(args[0]) + "\\n").encode())
sys.addaudithook(hook)
sys.argv = ["pidone", *sys.argv[3:]]
from pidone.cli import main
sys.exit(main())
"""
METRICS_MODULES = {"prometheus_client", "psutil", "pidone.observe.metrics", "pidone.observe.http"}


def imports_of_run(tmp_path: Path, extra_toml: str) -> set[str]:
    out = tmp_path / "imports.txt"
    with Stack("subreaper", tmp_path) as stack:
        stack.start(
            f'[pidone]\n{extra_toml}\n[process.a]\ncommand = "sleep 60"\n',
            prefix=[PYTHON, "-c", RECORDER, str(out)],
        )
        wait_for(lambda: "a      | started" in stack.stdout_so_far(), what="a to start")
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
    return set(out.read_text().split())


def test_pidone_run_without_metrics_imports_none_of_the_metrics_stack(tmp_path: Path) -> None:
    loaded = imports_of_run(tmp_path, "")
    assert "pidone.runtime.loop" in loaded
    assert not (loaded & METRICS_MODULES), sorted(loaded & METRICS_MODULES)


def test_pidone_run_with_metrics_imports_it(tmp_path: Path) -> None:
    loaded = imports_of_run(tmp_path, f'metrics = "127.0.0.1:{free_port()}"')
    assert loaded >= METRICS_MODULES


def test_single_command_mode_imports_none_of_the_metrics_stack(tmp_path: Path) -> None:
    out = tmp_path / "imports.txt"
    with Init("subreaper", ["--", "true"], prefix=[PYTHON, "-c", RECORDER, str(out)]) as init:
        assert init.wait() == 0
    loaded = set(out.read_text().split())
    assert "pidone.single.init" in loaded
    assert not (loaded & METRICS_MODULES), sorted(loaded & METRICS_MODULES)


def test_single_command_mode_with_metrics_loads_no_supervisor_control_or_config(
    tmp_path: Path,
) -> None:
    """`pidone --metrics ADDR -- CMD` reads snapshots (core/snapshot.py): none
    of the config stack, the supervisor, the loop or the control socket."""
    out = tmp_path / "imports.txt"
    argv = ["--metrics", f"127.0.0.1:{free_port()}", "--", "true"]
    with Init("subreaper", argv, prefix=[PYTHON, "-c", RECORDER, str(out)]) as init:
        assert init.wait() == 0
    loaded = set(out.read_text().split())
    assert loaded >= METRICS_MODULES | {"pidone.core.snapshot", "pidone.single.metrics"}
    supervisor_side = {
        m
        for m in loaded
        if m.startswith(("pidone.config", "pidone.runtime", "pidone.control"))
        or m == "pidone.core.supervisor"
    }
    assert not supervisor_side, sorted(supervisor_side)
