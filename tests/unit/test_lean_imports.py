"""Single-command mode lives as long as the container: it must stay about as
small as a bare interpreter (the benchmark's target is 1.3x its RSS). Guard
the heavy modules that would creep in through an innocent-looking import."""

from __future__ import annotations

import subprocess
import sys

HEAVY = {
    "argparse",
    "collections",
    "contextlib",
    "dataclasses",
    "enum",
    "logging",
    "re",
    "signal",  # the enum wrapper; pidone uses _signal
    "subprocess",
    "threading",
    "typing",
    "psutil",
    "prctl",
    "prometheus_client",
}


def test_heavy_modules_are_not_loaded_before_the_snapshot_either() -> None:
    probe = "import sys; import pidone.cli; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "pidone.system" in loaded
    assert not (loaded & HEAVY), sorted(loaded & HEAVY)
