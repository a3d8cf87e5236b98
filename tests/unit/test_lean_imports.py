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


# `pidone run` without metrics also lives as long as the container (the
# benchmark's target: at most 18 MiB). What the supervisor and its config
# stack load must leave these out: each costs from 0.3 to 6 MiB
# (bench/RESULTS.md's import profile). prometheus-client and psutil come
# with pidone.observe.metrics, which the loop imports only when metrics are on.
# (argparse parses run's options and is dropped again: the probe parses.)
HEAVY_FOR_RUN = {
    "argparse",
    "difflib",
    "email",
    "gzip",
    "hashlib",  # OpenSSL's libcrypto: 3.6 MiB (config/rundir._sha256_hex)
    "_hashlib",
    "http.server",
    "http.client",
    "pidone.observe.http",
    "pidone.observe.metrics",
    "prometheus_client",
    "psutil",
    "shutil",
    "ssl",
    "subprocess",
    "urllib.request",
    "wsgiref",
}


def test_the_supervisor_without_metrics_leaves_out_the_heavy_modules() -> None:
    probe = (
        "import sys; from pidone import commands; from pidone.runtime import loop;"
        " commands.parse_args(['run', '-c', 'pidone.toml']);"
        " print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert {"pidone.config.load", "pidone.runtime.loop", "pidone.core.supervisor"} <= loaded
    assert not (loaded & HEAVY_FOR_RUN), sorted(loaded & HEAVY_FOR_RUN)


def test_metrics_bring_the_libraries_and_nothing_else_of_the_run_does() -> None:
    probe = "import sys; from pidone.observe import metrics; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert {"prometheus_client", "psutil", "pidone.observe.http"} <= loaded
