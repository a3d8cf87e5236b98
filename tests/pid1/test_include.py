"""`include = ["pidone.d/*.toml"]` for real: a process that only an included
file defines is started, as PID 1 and as a subreaper; what `pidone check`
accepts is what `pidone run` starts."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

from tests.helpers.running import PIDONE, wait_for
from tests.helpers.stack import Stack
from tests.pid1.test_control import ctl


def test_a_process_defined_only_in_an_included_file_runs(mode: str, tmp_path: Path) -> None:
    (tmp_path / "pidone.d").mkdir()
    with Stack(mode, tmp_path) as stack:
        (tmp_path / "pidone.d" / "10-worker.toml").write_text(f"""
[process.worker]
command = "{stack.svc("worker", "--notify")}"
ready = "notify"
after = ["web"]
""")
        toml = f"""include = ["pidone.d/*.toml"]
[process.web]
command = "{stack.svc("web")}"
stop_timeout = 2
"""
        (tmp_path / "pidone.toml").write_text(toml)
        checked = subprocess.run(
            [PIDONE, "check", "-c", str(tmp_path / "pidone.toml")],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stderr
        assert "  2. worker" in checked.stdout
        stack.start(toml)
        stack.wait_for("web up", "worker up", "worker listening")
        wait_for(lambda: re.search(r"^worker\s+\| ready$", stack.stdout_so_far(), re.M))
        assert ctl(stack, "wait-ready", "--timeout", "10").returncode == 0
        status = ctl(stack, "status", "--json")
        assert status.returncode == 0
        assert '"worker"' in status.stdout
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
    assert stack.count("worker up") == 1
